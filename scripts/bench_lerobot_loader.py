#!/usr/bin/env python3
"""LeRobot's loader on a dataset, measured the way `mulli bench loader` measures mulli's:
shuffled batches of 64 with a 10-step action chunk and every camera decoded.

    python scripts/bench_lerobot_loader.py DATASET_DIR [--workers 2] [--batches 40] [--backend torchcodec|pyav]

Prints samples/s. Needs `pip install "lerobot[dataset]==0.6.1"` (Python >= 3.12).
"""
import argparse
import time

import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--backend", default=None)
    a = ap.parse_args()
    probe = LeRobotDataset("bench/local", root=a.root)
    fps = probe.fps
    ds = LeRobotDataset(
        "bench/local",
        root=a.root,
        delta_timestamps={"action": [i / fps for i in range(a.chunk)]},
        video_backend=a.backend,
    )
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers,
                                     persistent_workers=a.workers > 0, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    first = None
    n = 0
    for i, b in enumerate(dl):
        if i == 0:
            first = time.perf_counter() - t0
        n += b["action"].shape[0]
        if i + 1 >= a.batches:
            break
    s = time.perf_counter() - t0
    print(f"lerobot backend={a.backend or "default"} workers={a.workers}: {n / s:.0f} samples/s "
          f"({n} samples in {s:.2f} s, first batch {first:.2f} s)")


if __name__ == "__main__":
    main()
