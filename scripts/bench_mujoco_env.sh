#!/usr/bin/env bash
# Reference benchmark for the "env steps/s per core including two 96x96 cameras" figure:
# a MuJoCo manipulation env (Meta-World v3 pick-place-v3, Sawyer arm, mujoco 3.3.0) on one
# CPU core, measuring steps/s (a) without rendering and (b) with two 96x96 offscreen cameras
# ("corner" + "gripperPOV") rendered by mujoco.Renderer every env step, in software GL
# (Mesa llvmpipe through EGL by default, or OSMesa), random actions, single process,
# pinned with taskset to one core, math/llvmpipe threads set to 1/0. Prints progress on
# stderr and one JSON line on stdout.
#
#   bash scripts/bench_mujoco_env.sh                               # default N (3000 / 1000 steps)
#   bash scripts/bench_mujoco_env.sh --steps-norender 1000 --steps-render 300   # quick check
#   MUJOCO_GL=osmesa BENCH_CPU=1 bash scripts/bench_mujoco_env.sh  # other backend / core
#   VENV=/path/to/venv bash scripts/bench_mujoco_env.sh --env reach-v3 --cams corner,topview
#
# Creates the venv ($VENV, default /work/venv-mujoco) if missing and installs
# metaworld==3.1.1 (pins mujoco==3.3.0); installs the Mesa apt packages for the chosen
# backend when they are missing and we are root. Idempotent; re-runs only benchmark.
# Run it on an otherwise idle machine: concurrent compile jobs lower the wall numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-/work/venv-mujoco}
export MUJOCO_GL=${MUJOCO_GL:-egl}          # egl (Mesa llvmpipe) | osmesa
BENCH_CPU=${BENCH_CPU:-0}
METAWORLD_SPEC=${METAWORLD_SPEC:-metaworld==3.1.1}

# --- system GL libraries (software rendering) ---------------------------------------
need_apt=()
case "$MUJOCO_GL" in
  egl)    ldconfig -p | grep -q 'libEGL_mesa\.so' || need_apt+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
          ldconfig -p | grep -q 'libEGL\.so\.1'   || need_apt+=(libegl1) ;;
  osmesa) ldconfig -p | grep -q 'libOSMesa\.so'   || need_apt+=(libosmesa6) ;;
  *) echo "MUJOCO_GL must be egl or osmesa for CPU offscreen rendering" >&2; exit 2 ;;
esac
ldconfig -p | grep -q 'libGL\.so\.1' || need_apt+=(libgl1)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing apt packages: ${need_apt[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  else
    echo "missing system packages: ${need_apt[*]} (apt-get install them)" >&2; exit 2
  fi
fi

# --- Python venv ----------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  PY=""
  for c in "${PYTHON:-}" python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 python3.11 python3.13 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 14)))'; then PY=$c; break; fi
  done
  [ -n "$PY" ] || { echo "need Python 3.10..3.13 for metaworld 3.1" >&2; exit 2; }
  echo "creating venv $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
fi
# gymnasium's mujoco module imports `packaging` without declaring it, so install it too.
if ! "$VENV/bin/python" -c 'import metaworld, mujoco, packaging, PIL' >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "$METAWORLD_SPEC" packaging pillow >&2
fi

# --- run, one core, one thread --------------------------------------------------------
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMEXPR_NUM_THREADS=1
export VECLIB_MAXIMUM_THREADS=1 BLIS_NUM_THREADS=1
export LP_NUM_THREADS=${LP_NUM_THREADS:-0}  # llvmpipe rasterizes in the calling thread
export GALLIUM_DRIVER=${GALLIUM_DRIVER:-llvmpipe}
PIN=()
if command -v taskset >/dev/null; then PIN=(taskset -c "$BENCH_CPU"); else echo "taskset missing: not pinned" >&2; fi
exec "${PIN[@]}" "$VENV/bin/python" scripts/bench_mujoco_env.py "$@"
