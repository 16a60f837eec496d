#!/usr/bin/env bash
# PyTorch twin of the mulli VLA policy (crates/mulli-policy/src/model.rs): training samples/s
# and batch-1 inference latency on CPU. See scripts/bench_policy_torch.py for the flags.
#
#   bash scripts/bench_policy_torch.sh                       # L1 head, default sizes
#   bash scripts/bench_policy_torch.sh --head flow           # flow-matching head
#   bash scripts/bench_policy_torch.sh --steps 3 --infer 5   # quick smoke check
#   VENV=/path/to/venv bash scripts/bench_policy_torch.sh    # another venv with torch
#
# Run it on an otherwise idle machine: concurrent compile jobs lower the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/work/venv-lerobot}
[ -x "$VENV/bin/python" ] || { echo "no python in $VENV (needs torch)" >&2; exit 2; }
exec "$VENV/bin/python" scripts/bench_policy_torch.py "$@"
