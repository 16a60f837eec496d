#!/usr/bin/env python3
"""Reference benchmark: steps/s of a MuJoCo manipulation env (Meta-World) on one CPU core,
without rendering and with two 96x96 offscreen cameras rendered every env step.

Run it through scripts/bench_mujoco_env.sh (which makes the venv, pins the process to one
core and sets the thread variables). It prints human-readable progress on stderr and one
JSON line on stdout.

Measured phases (single process, random actions pre-sampled with a fixed seed, warm-up
steps not timed, episode resets on truncation are timed and counted):
  no_render   env.step(a) only
  render      env.step(a) + for each camera: Renderer.update_scene(data, camera) +
              Renderer.render(out=preallocated uint8 HxWx3 buffer), once per render profile:
                lean    shadows, reflections and MSAA off, offscreen buffer = image size
                        (closest to a plain rasterizer; the headline number)
                default the model's visual settings as shipped by Meta-World / MuJoCo:
                        4096^2 shadow map, 4x MSAA, reflective floor, 640x480 buffer
                        (very slow in software GL: several hundred ms per step)
  render_only the two camera renders alone on a frozen state (render cost breakdown)

Both wall-clock steps/s and steps per process CPU-second are reported: the CPU figure
counts every thread of the process (Mesa llvmpipe's too), so it is the fairer
"per core" number on a shared machine.
"""

from __future__ import annotations

import os

# Pin math libraries to one thread before numpy/mujoco are imported.
for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa llvmpipe: 0 = rasterize in the calling thread (no worker threads).
os.environ.setdefault("LP_NUM_THREADS", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from importlib import metadata  # noqa: E402

import numpy as np  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pkg_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def gl_info() -> dict:
    """GL_RENDERER / GL_VERSION of the context mujoco.Renderer made current."""
    try:
        from OpenGL import GL  # PyOpenGL, a dependency of mujoco

        def s(x):
            v = GL.glGetString(x)
            return v.decode() if isinstance(v, bytes) else v

        return {"gl_renderer": s(GL.GL_RENDERER), "gl_version": s(GL.GL_VERSION)}
    except Exception as e:  # pragma: no cover - diagnostic only
        return {"gl_renderer": None, "gl_error": repr(e)}


def make_env(env_name: str, seed: int):
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)

    # The standard Meta-World v3 single-task constructor (TimeLimit(500),
    # RecordEpisodeStatistics, task-select wrappers ...), exactly as users get it.
    env = gym.make(
        "Meta-World/MT1", env_name=env_name, seed=seed, disable_env_checker=True
    )
    return env


def run_steps(env, actions, n, renderer=None, cams=(), bufs=(), seed=0):
    """Step n times with the given actions; returns (wall_s, cpu_s, resets)."""
    u = env.unwrapped
    resets = 0
    step = env.step
    t_cpu = time.process_time()
    t0 = time.perf_counter()
    for i in range(n):
        _obs, _r, term, trunc, _info = step(actions[i % len(actions)])
        if renderer is not None:
            for cam, buf in zip(cams, bufs):
                renderer.update_scene(u.data, camera=cam)
                renderer.render(out=buf)
        if term or trunc:
            env.reset(seed=seed + 1 + resets)
            resets += 1
    wall = time.perf_counter() - t0
    cpu = time.process_time() - t_cpu
    return wall, cpu, resets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="pick-place-v3", help="Meta-World v3 task name")
    ap.add_argument("--cams", default="corner,gripperPOV",
                    help="comma-separated camera names rendered each step")
    ap.add_argument("--size", type=int, default=96, help="square image side (px)")
    ap.add_argument("--steps-norender", type=int, default=3000)
    ap.add_argument("--steps-render", type=int, default=1000,
                    help="timed steps with rendering, lean profile")
    ap.add_argument("--steps-render-default", type=int, default=100,
                    help="timed steps with rendering, default profile (slow)")
    ap.add_argument("--profiles", default="lean,default",
                    help="render profiles to measure: lean, default")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-frames", default=None,
                    help="directory: save the last frame of each camera as PNG")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    import mujoco

    env = make_env(args.env, args.seed)
    u = env.unwrapped
    m = u.model
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    lo, hi = env.action_space.low, env.action_space.high
    actions = rng.uniform(lo, hi, size=(4096, lo.shape[0])).astype(np.float32)

    cams = [c for c in args.cams.split(",") if c]
    for c in cams:
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, c) < 0:
            raise SystemExit(f"camera {c!r} not in model")
    profiles = [p for p in args.profiles.split(",") if p]
    for p in profiles:
        if p not in ("lean", "default"):
            raise SystemExit(f"unknown render profile {p!r}")
    bufs = [np.empty((args.size, args.size, 3), dtype=np.uint8) for _ in cams]
    vis_default = {
        "offwidth": int(m.vis.global_.offwidth),
        "offheight": int(m.vis.global_.offheight),
        "offsamples": int(m.vis.quality.offsamples),
        "shadowsize": int(m.vis.quality.shadowsize),
        "nlight": int(m.nlight),
        "lights_casting_shadow": int(np.sum(m.light_castshadow)),
    }

    def make_renderer(profile: str):
        if profile == "default":
            return mujoco.Renderer(m, height=args.size, width=args.size)
        # lean: only the GL context / scene flags change; physics is untouched.
        g, q = m.vis.global_, m.vis.quality
        saved = (g.offwidth, g.offheight, q.offsamples)
        g.offwidth, g.offheight, q.offsamples = args.size, args.size, 0
        try:
            r = mujoco.Renderer(m, height=args.size, width=args.size)
        finally:
            g.offwidth, g.offheight, q.offsamples = saved
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return r

    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    gl = {}

    # (a) no rendering
    run_steps(env, actions, args.warmup, seed=args.seed)
    env.reset(seed=args.seed)
    w_a, c_a, r_a = run_steps(env, actions, args.steps_norender, seed=args.seed)
    log(f"no_render: {args.steps_norender} steps in {w_a:.3f}s wall -> "
        f"{args.steps_norender / w_a:.1f} steps/s ({args.steps_norender / c_a:.1f}/cpu-s)")

    # (b) step + two cameras, per render profile; (c) render-only breakdown
    rendered = {}
    frame_means = {}
    for prof in profiles:
        renderer = make_renderer(prof)
        if not gl:
            gl = gl_info()
            log(f"env={args.env} ({type(u).__name__}) frame_skip={u.frame_skip} "
                f"dt={u.dt} GL={os.environ['MUJOCO_GL']} {gl.get('gl_renderer')} "
                f"affinity={affinity}")
        n = args.steps_render if prof == "lean" else args.steps_render_default
        warm = args.warmup if prof == "lean" else min(args.warmup, 5)
        env.reset(seed=args.seed)
        run_steps(env, actions, warm, renderer, cams, bufs, seed=args.seed)
        env.reset(seed=args.seed)
        w_b, c_b, r_b = run_steps(env, actions, n, renderer, cams, bufs, seed=args.seed)
        log(f"render[{prof}]: {n} steps in {w_b:.3f}s wall -> "
            f"{n / w_b:.2f} steps/s ({n / c_b:.2f}/cpu-s)")

        n_c = max(n // 2, 1)
        t_cpu = time.process_time()
        t0 = time.perf_counter()
        for _ in range(n_c):
            for cam, buf in zip(cams, bufs):
                renderer.update_scene(u.data, camera=cam)
                renderer.render(out=buf)
        w_c = time.perf_counter() - t0
        c_c = time.process_time() - t_cpu
        log(f"render_only[{prof}]: {n_c} x {len(cams)} cams in {w_c:.3f}s -> "
            f"{1e3 * w_c / n_c:.3f} ms per camera pair")

        means = [round(float(b.mean()), 2) for b in bufs]
        frame_means[prof] = means
        if any(mv == 0.0 for mv in means):
            log(f"WARNING: a rendered frame is all black ({prof})")
        if args.save_frames:
            from PIL import Image

            os.makedirs(args.save_frames, exist_ok=True)
            for cam, buf in zip(cams, bufs):
                Image.fromarray(buf).save(
                    os.path.join(args.save_frames, f"{prof}_{cam}.png"))
        rendered[prof] = {
            "steps": n,
            "wall_s": round(w_b, 4),
            "cpu_s": round(c_b, 4),
            "resets": r_b,
            "steps_per_s": round(n / w_b, 3),
            "steps_per_cpu_s": round(n / c_b, 3),
            "render_only_ms_per_step": round(1e3 * w_c / n_c, 3),
            "render_only_cpu_ms_per_step": round(1e3 * c_c / n_c, 3),
        }
        renderer.close()

    result = {
        "bench": "mujoco_env_steps_per_s",
        "env": args.env,
        "env_class": type(u).__name__,
        "constructor": f'gym.make("Meta-World/MT1", env_name="{args.env}")',
        "versions": {
            "python": platform.python_version(),
            "mujoco": mujoco.__version__,
            "metaworld": pkg_version("metaworld"),
            "gymnasium": pkg_version("gymnasium"),
            "numpy": np.__version__,
        },
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        **gl,
        "threads": {k: os.environ.get(k) for k in
                    ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "LP_NUM_THREADS")},
        "cpu_affinity": affinity,
        "cpu_model": cpu_model(),
        "physics": {
            "timestep": float(m.opt.timestep),
            "frame_skip": int(u.frame_skip),
            "env_dt": float(u.dt),
            "control_hz": round(1.0 / float(u.dt), 3),
            "max_episode_steps": int(u.max_path_length),
            "ngeom": int(m.ngeom),
            "nbody": int(m.nbody),
            "nmeshface": int(m.nmeshface),
        },
        "render": {
            "cameras": cams,
            "width": args.size,
            "height": args.size,
            "api": "mujoco.Renderer.update_scene+render(out=buf) per camera per step",
            "model_vis_as_shipped": vis_default,
            "profiles": {
                "lean": "shadows+reflections off, offsamples=0, offscreen buffer = image size",
                "default": "model visual settings as shipped (shadow map, MSAA, reflections)",
            },
            "frame_means": frame_means,
        },
        "warmup_steps": args.warmup,
        "no_render": {
            "steps": args.steps_norender,
            "wall_s": round(w_a, 4),
            "cpu_s": round(c_a, 4),
            "resets": r_a,
            "steps_per_s": round(args.steps_norender / w_a, 2),
            "steps_per_cpu_s": round(args.steps_norender / c_a, 2),
        },
        "render_2cams": rendered,
    }
    print(json.dumps(result), flush=True)
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
