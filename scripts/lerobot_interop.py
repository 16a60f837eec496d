#!/usr/bin/env python3
"""Load a mulli-written dataset with LeRobot 0.6.1 and compare it with mulli's own reading.

    python scripts/lerobot_interop.py DATASET [FRAMES_DIR ROWS]

Checks: LeRobotDataset opens it; every frame's state/action/index/timestamp/task equals the
parquet values; LeRobot's stats equal statistics recomputed from the data; LeRobot's decoded
video frames match the PNGs `mulli dataset frames` exported (same H.264 stream, so only
YUV→RGB rounding may differ) and action chunks come with correct `action_is_pad` masks.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from lerobot.datasets.lerobot_dataset import LeRobotDataset


def main():
    root = Path(sys.argv[1])
    frames_dir = sys.argv[2] if len(sys.argv) > 2 else ""
    rows = [int(r) for r in sys.argv[3].split(",")] if len(sys.argv) > 3 and sys.argv[3] else []
    info = json.loads((root / "meta/info.json").read_text())
    fps = info["fps"]
    ds = LeRobotDataset("mulli/interop", root=root, delta_timestamps={"action": [i / fps for i in range(5)]})
    data = pq.read_table(sorted((root / "data").rglob("*.parquet"))[0]).to_pandas()
    assert len(ds) == info["total_frames"] == len(data), (len(ds), info["total_frames"], len(data))
    assert ds.num_episodes == info["total_episodes"]
    cams = [k for k, v in info["features"].items() if v["dtype"] in ("video", "image")]
    for i in range(len(ds)):
        item = ds[i]
        row = data.iloc[i]
        assert np.array_equal(item["observation.state"].numpy(), np.stack(row["observation.state"])), i
        assert np.array_equal(item["action"][0].numpy(), np.stack(row["action"])), i
        assert int(item["index"]) == row["index"] and int(item["frame_index"]) == row["frame_index"]
        assert abs(float(item["timestamp"]) - row["frame_index"] / fps) < 1e-6
        # Action chunk: padded past the episode end.
        ep_len = int((data["episode_index"] == row["episode_index"]).sum())
        pad = item["action_is_pad"].numpy()
        assert list(pad) == [row["frame_index"] + k >= ep_len for k in range(5)], (i, pad)
        for cam in cams:
            assert tuple(item[cam].shape) == (3, info["features"][cam]["shape"][0], info["features"][cam]["shape"][1])
    # Stats: LeRobot's loaded stats against the data itself.
    for key in ["observation.state", "action"]:
        x = np.stack(data[key].to_numpy())
        s = ds.meta.stats[key]
        assert np.allclose(s["mean"], x.mean(0), atol=1e-5), key
        assert np.allclose(s["std"], x.std(0), atol=1e-5), key
        assert np.allclose(s["min"], x.min(0)) and np.allclose(s["max"], x.max(0)), key
    worst = 0
    for r in rows:
        item = ds[r]
        for cam in cams:
            lr = (item[cam] * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy().astype(int)
            ours = np.asarray(Image.open(Path(frames_dir) / cam / f"{r}.png").convert("RGB")).astype(int)
            d = np.abs(lr - ours)
            worst = max(worst, d.max())
            assert d.mean() < 1.0 and d.max() <= 6, f"row {r} {cam}: mean diff {d.mean():.2f}, max {d.max()}"
    print(f"OK: LeRobot 0.6.1 loaded {root} ({len(ds)} frames, {ds.num_episodes} episodes, cameras {cams}); "
          f"values, pads and stats match; camera frames of {len(rows)} rows within {worst} (max abs) of mulli's")


if __name__ == "__main__":
    main()
