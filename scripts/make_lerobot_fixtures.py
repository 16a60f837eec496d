#!/usr/bin/env python3
"""Make the tiny LeRobot-written fixture datasets mulli's tests read.

Run inside a venv with `pip install "lerobot[dataset]==0.6.1"` (Python >= 3.12):

    python scripts/make_lerobot_fixtures.py crates/mulli-data/tests/fixtures/lerobot

Writes, with LeRobot's own writer:
  v30_av1/     LeRobot's default codec (libsvtav1), 3 episodes of different lengths
  v30_h264/    the same frames encoded with h264
  v30_images/  the same frames as `image` features (PNG bytes in parquet)
  v21/         a v2.1 layout (one parquet/mp4 per episode, JSONL metadata) made from v30_h264
and for each v3.0 one, expected/frames.json: what LeRobot itself returns for every frame (state, action,
task, and per-camera, per-channel means of the decoded frame, plus three full frames as raw HWC bytes in expected/),
so mulli's tests can check it reads each frame exactly.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from lerobot.configs.video import RGBEncoderConfig
from lerobot.datasets.lerobot_dataset import LeRobotDataset

H = W = 32
FPS = 10
LENGTHS = [12, 9, 15]
TASKS = ["pick up the cube", "케첩을 냉장고에 넣어줘"]
FULL_FRAMES = [0, 12, 35]


def frame_image(ep, k, cam):
    y, x = np.mgrid[0:H, 0:W]
    t = k * 0.45 + ep * 1.1 + cam * 0.6
    bx, by = (np.sin(t) * 0.35 + 0.5) * W, (np.cos(t * 0.8) * 0.35 + 0.5) * H
    blob = ((x - bx) ** 2 + (y - by) ** 2) < 25
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 40 + 160 * ((x + 3 * k) % W) / W
    img[..., 1] = 40 + 160 * y / H
    img[..., 2] = 70 + 140 * blob
    return img


def features(video):
    dt = "video" if video else "image"
    cam = {"dtype": dt, "shape": [H, W, 3], "names": ["height", "width", "channels"]}
    return {
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["a", "b", "c", "d"]},
        "action": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        "observation.images.front": cam,
        "observation.images.wrist": dict(cam),
    }


def write(root, video, vcodec=None):
    kw = {}
    if vcodec:
        kw["rgb_encoder"] = RGBEncoderConfig(vcodec=vcodec)
    ds = LeRobotDataset.create("mulli/fixture", FPS, features(video), root=root, robot_type="fixture", use_videos=video, **kw)
    rng = np.random.default_rng(0)
    for ep, n in enumerate(LENGTHS):
        for k in range(n):
            ds.add_frame({
                "observation.state": rng.standard_normal(4).astype(np.float32),
                "action": rng.standard_normal(3).astype(np.float32),
                "observation.images.front": frame_image(ep, k, 0),
                "observation.images.wrist": frame_image(ep, k, 1),
                "task": TASKS[ep % 2],
            })
        ds.save_episode()
    ds.finalize()


def expected(root):
    ds = LeRobotDataset("mulli/fixture", root=root)
    out = {"frames": []}
    for i in range(len(ds)):
        item = ds[i]
        row = {
            "index": int(item["index"]),
            "episode_index": int(item["episode_index"]),
            "frame_index": int(item["frame_index"]),
            "timestamp": float(item["timestamp"]),
            "task": item["task"],
            "state": item["observation.state"].tolist(),
            "action": item["action"].tolist(),
        }
        for cam in ["front", "wrist"]:
            img = item[f"observation.images.{cam}"]  # CHW float in [0, 1]
            u8 = (img * 255).round().clamp(0, 255).to(dtype=__import__("torch").uint8)
            row[f"{cam}_mean"] = [round(v, 3) for v in u8.float().mean(dim=(1, 2)).tolist()]
            if i in FULL_FRAMES:
                raw = Path(root) / f"expected/{i:03d}_{cam}.rgb"  # HWC uint8
                raw.parent.mkdir(exist_ok=True)
                raw.write_bytes(u8.permute(1, 2, 0).contiguous().numpy().tobytes())
        out["frames"].append(row)
    (Path(root) / "expected/frames.json").write_text(json.dumps(out, ensure_ascii=False))


def make_v21(src, dst):
    """v2.1 layout from a v3.0 h264 dataset: per-episode parquet and mp4, JSONL metadata."""
    import av
    import pyarrow.parquet as pq

    src, dst = Path(src), Path(dst)
    info = json.loads((src / "meta/info.json").read_text())
    data = pq.read_table(src / "data/chunk-000/file-000.parquet")
    eps = pq.read_table(src / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    tasks = pq.read_table(src / "meta/tasks.parquet").to_pandas()
    (dst / "meta").mkdir(parents=True)
    with open(dst / "meta/tasks.jsonl", "w") as f:
        for task, row in tasks.iterrows():
            f.write(json.dumps({"task_index": int(row["task_index"]), "task": task}, ensure_ascii=False) + "\n")
    with open(dst / "meta/episodes.jsonl", "w") as f:
        for e in eps:
            f.write(json.dumps({"episode_index": e["episode_index"], "tasks": e["tasks"], "length": e["length"]}, ensure_ascii=False) + "\n")
    with open(dst / "meta/episodes_stats.jsonl", "w") as f:
        for e in eps:
            stats = {}
            for k, v in e.items():
                if k.startswith("stats/"):
                    _, feat, stat = k.split("/")
                    stats.setdefault(feat, {})[stat] = v
            f.write(json.dumps({"episode_index": e["episode_index"], "stats": stats}) + "\n")
    video_keys = [k for k, v in info["features"].items() if v["dtype"] == "video"]
    for e in eps:
        i = e["episode_index"]
        part = data.slice(e["dataset_from_index"], e["length"])
        out = dst / f"data/chunk-000/episode_{i:06d}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, out)
        for key in video_keys:
            # Re-encode the episode's frames into its own file, timestamps from 0.
            with av.open(str(src / f"videos/{key}/chunk-000/file-000.mp4")) as c:
                frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
            start = round(e[f"videos/{key}/from_timestamp"] * FPS)
            vout = dst / f"videos/chunk-000/{key}/episode_{i:06d}.mp4"
            vout.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(vout), "w") as c:
                s = c.add_stream("libx264", rate=FPS)
                s.width, s.height, s.pix_fmt = W, H, "yuv420p"
                s.options = {"g": "2", "crf": "18"}
                for img in frames[start:start + e["length"]]:
                    for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
    info["codebase_version"] = "v2.1"
    info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    info["total_chunks"] = 1
    info["total_videos"] = len(eps) * len(video_keys)
    for k in ["data_files_size_in_mb", "video_files_size_in_mb"]:
        info.pop(k, None)
    (dst / "meta/info.json").write_text(json.dumps(info, indent=4))


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/mulli-data/tests/fixtures/lerobot")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write(out / "v30_av1", True)
    write(out / "v30_h264", True, "h264")
    write(out / "v30_images", False)
    make_v21(out / "v30_h264", out / "v21")
    for name in ["v30_av1", "v30_h264", "v30_images"]:
        expected(out / name)
    # v2.1 is not loadable by LeRobot >= 0.4: its tests compare against v30_h264's
    # expectations (same frames, re-encoded once more).


if __name__ == "__main__":
    main()
