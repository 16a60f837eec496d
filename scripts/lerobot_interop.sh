#!/usr/bin/env bash
# Proves that a dataset written by mulli loads in LeRobot 0.6.1 with identical frames,
# actions and stats. Installs LeRobot into a venv (Python >= 3.12 needed by lerobot 0.6).
#
#   bash scripts/lerobot_interop.sh            # uses ./scripts/.venv, creates it if absent
#   VENV=/path/to/venv bash scripts/lerobot_interop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-scripts/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  PY=""
  for c in python3.13 python3.12 /root/.pyenv/versions/3.12*/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then PY=$c; break; fi
  done
  [ -n "$PY" ] || { echo "need Python >= 3.12 for lerobot 0.6.1" >&2; exit 2; }
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q "lerobot[dataset]==0.6.1"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo run --release -q -- dataset demo --out "$WORK/video" --episodes 4 --frames 25
cargo run --release -q -- dataset demo --out "$WORK/images" --episodes 2 --frames 10 --images
# A kitchen recording: simulator cameras, Korean and English task strings, bool features.
cargo run --release -q -- sim record --episodes 3 --tasks pick_up_apple,close_drawer --out "$WORK/kitchen" >/dev/null
ROWS=0,1,24,25,57,99
cargo run --release -q -- dataset frames "$WORK/video" --rows $ROWS --out "$WORK/video-frames"
cargo run --release -q -- dataset frames "$WORK/images" --rows 0,9,19 --out "$WORK/image-frames"
"$VENV/bin/python" scripts/lerobot_interop.py "$WORK/video" "$WORK/video-frames" "$ROWS"
"$VENV/bin/python" scripts/lerobot_interop.py "$WORK/images" "$WORK/image-frames" 0,9,19
cargo run --release -q -- dataset frames "$WORK/kitchen" --rows 0,1,30,40 --out "$WORK/kitchen-frames"
"$VENV/bin/python" scripts/lerobot_interop.py "$WORK/kitchen" "$WORK/kitchen-frames" 0,1,30,40
