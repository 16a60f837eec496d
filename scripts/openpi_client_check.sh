#!/usr/bin/env bash
# Proves that Physical Intelligence's own client (openpi-client from PyPI) talks to
# `mulli serve`: metadata, actions [H, A], resizing, error frames, API key, /healthz, /metrics.
#
#   bash scripts/openpi_client_check.sh RUN         # serve this run (or checkpoint) directory
#   bash scripts/openpi_client_check.sh             # trains a tiny policy first (a minute or two)
#   MULLI=path/to/mulli VENV=/path/to/venv bash scripts/openpi_client_check.sh RUN
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-scripts/.venv-openpi}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  # openpi-client 0.1.2 imports typing_extensions without declaring it.
  "$VENV/bin/pip" install -q openpi-client typing_extensions
fi
if [ -z "${MULLI:-}" ]; then
  cargo build --release -q -p mulli
  MULLI=${CARGO_TARGET_DIR:-target}/release/mulli
fi
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
RUN=${1:-}
if [ -z "$RUN" ]; then
  "$MULLI" sim record --episodes 2 --tasks pick_up_apple --out "$WORK/data" >/dev/null
  cat > "$WORK/tiny.toml" <<'TOML'
steps = 2
batch_size = 4
[model]
image_size = 32
conv_channels = [8, 8, 8, 8]
d_model = 32
n_layers = 1
d_ff = 64
TOML
  "$MULLI" train --data "$WORK/data" --out "$WORK/run" --config "$WORK/tiny.toml" >/dev/null
  RUN=$WORK/run
fi
PORT=${PORT:-$((20000 + RANDOM % 20000))}
KEY=check-$RANDOM
"$MULLI" serve --policy "$RUN" --port "$PORT" --api-key "$KEY" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
  sleep 0.2
done
head -n 1 "$WORK/serve.log"
"$VENV/bin/python" scripts/openpi_client_check.py 127.0.0.1 "$PORT" "$KEY"
