#!/usr/bin/env bash
# GPU checks of a GPU build of mulli: burn's GPU backend against the PyTorch twin on the same
# GPU, then the flywheel trained and evaluated on the GPU.
#
#   cargo build --release -p mulli --features vulkan      # pure Rust (cuda needs a download)
#   bash scripts/gpu_check.sh BIN OUT smoke                # on the GPU machine: ~1 min
#   bash scripts/gpu_check.sh BIN OUT full [FLYWHEEL_S]    # benches, twin, quick + default flywheel
#
# BIN is the mulli binary, OUT a folder for the logs and eval files, DEVICE (environment) the
# mulli device: vulkan:0 (default) or cuda:0. Vulkan needs the loader (libvulkan1; a folder
# .gl/ of Debian .deb files is unpacked when present) and the NVIDIA driver's ICD; CUDA needs
# the driver and NVRTC. The twin needs python3 with torch. FLYWHEEL_S caps the default
# flywheel's wall time (default 300 s); a run cut short still leaves its finished stages' files.
set -uo pipefail
BIN=${1:?usage: gpu_check.sh BIN OUT smoke|full [FLYWHEEL_S]}
OUT=${2:?usage: gpu_check.sh BIN OUT smoke|full [FLYWHEEL_S]}
MODE=${3:-smoke}
FLYWHEEL_S=${4:-300}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
exec > >(tee -a "$LOG") 2>&1

DEVICE=${DEVICE:-vulkan:0}
if [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$icd}
# NVRTC ships in different places (CUDA toolkit, pip wheels): put every copy on the path.
for d in $(find /usr/local /usr/lib /opt -name 'libnvrtc.so*' -printf '%h\n' 2>/dev/null | sort -u); do
    LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
export LD_LIBRARY_PATH
echo "== $(date -u +%FT%TZ) mode $MODE, device $DEVICE; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc
"$BIN" --version

step() { # step NAME SECONDS CMD...: run with a time limit, time it, keep going on failure
    local name=$1 limit=$2; shift 2
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@"
    echo "== $name: exit $? in $((SECONDS - t0)) s"
}

if [ "$MODE" = smoke ]; then
    ls /usr/local/nvidia/share/vulkan/icd.d/ 2>&1
    ldconfig -p | grep -i "libvulkan\|libnvrtc"
    step infer 90 "$BIN" bench infer --device "$DEVICE" --calls 20
    step train 90 "$BIN" bench train --device "$DEVICE" --steps 3
    exit 0
fi

TWIN=scripts/bench_policy_torch.py
step train-l1 90 "$BIN" bench train --device "$DEVICE" --steps 40
step train-l1-b256 90 "$BIN" bench train --device "$DEVICE" --steps 20 --batch-size 256
step train-flow 90 "$BIN" bench train --device "$DEVICE" --steps 40 --head flow
step infer-l1 90 "$BIN" bench infer --device "$DEVICE" --calls 200
step infer-flow 90 "$BIN" bench infer --device "$DEVICE" --calls 100 --head flow
step twin-cuda-l1 90 python3 $TWIN --device cuda --threads 16 --steps 40 --infer 200
step twin-cuda-l1-b256 90 python3 $TWIN --device cuda --threads 16 --steps 20 --batch 256 --infer 20
step twin-cuda-flow 90 python3 $TWIN --device cuda --threads 16 --steps 40 --infer 100 --head flow

W=$(mktemp -d)
step flywheel-quick 150 "$BIN" flywheel --quick --device "$DEVICE" --out "$W/quick"
cp "$W"/quick/eval-*/eval_info.json "$OUT/quick_eval_info.json" 2>/dev/null
step flywheel "$FLYWHEEL_S" "$BIN" flywheel --device "$DEVICE" --out "$W/fw"
# Stage folders are named by the hash of their inputs.
for f in "$W"/fw/eval-*/eval_info.json "$W"/fw/train-*/run/metrics.jsonl "$W"/fw/flywheel.json; do
    [ -f "$f" ] && cp "$f" "$OUT/fw_$(basename "$f")"
done
ls "$W"/fw "$W"/fw/*/
