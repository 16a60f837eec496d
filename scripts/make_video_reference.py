#!/usr/bin/env python3
"""Make the reference frames (and two tiny videos) that mulli's video tests compare against.

Run inside a venv with `pip install "lerobot[dataset]==0.6.1"` (it brings PyAV 15, whose FFmpeg
has libx264, libsvtav1 and libaom), from the workspace root:

    python scripts/make_video_reference.py [crates/mulli-data/tests/fixtures/video] [shared/fixtures/lerobot-0.6.1]

Writes into the first directory:
  tiny_h264.mp4, tiny_h264/NNN.png   libx264 with B-frames (b-pyramid, two closed GOPs of 8), 64x48
  tiny_av1.mp4,  tiny_av1/NNN.png    libaom-av1 at an odd size (63x47), 12 frames, keyframe every 4
  lerobot/{h264,av1}/NNNNNN.png      frames of LeRobot 0.6.1's own fixture videos (front camera)
Every PNG is what LeRobot's PyAV path returns: `frame.to_ndarray(format="rgb24")`, in
presentation order. The lerobot/ frames are skipped when the shared fixtures are absent.
"""
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

FPS = 10
LEROBOT_INDICES = [0, 1, 2, 99, 100, 101, 2501, 4998, 4999]


def frame_image(k, w, h):
    """Smooth moving gradients with a moving blob (like LeRobot's fixture cameras)."""
    y, x = np.mgrid[0:h, 0:w]
    t = k * 0.5
    bx, by = (np.sin(t) * 0.3 + 0.5) * w, (np.cos(t * 0.7) * 0.3 + 0.5) * h
    blob = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / 40.0)
    img = np.zeros((h, w, 3), np.float64)
    img[..., 0] = 40 + 150 * ((x + 2.5 * k) % w) / w
    img[..., 1] = 50 + 140 * y / h + 30 * blob
    img[..., 2] = 60 + 120 * blob + 40 * np.sin(k * 0.3)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(path, codec, w, h, n, options):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = options
        for k in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(frame_image(k, w, h), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def dump_frames(video, out_dir, indices=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if indices is None or i in indices:
                Image.fromarray(fr.to_ndarray(format="rgb24")).save(out_dir / f"{i:06d}.png", optimize=True)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/mulli-data/tests/fixtures/video")
    shared = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/fixtures/lerobot-0.6.1")
    out.mkdir(parents=True, exist_ok=True)

    encode(out / "tiny_h264.mp4", "libx264", 64, 48, 16,
           {"g": "8", "bf": "3", "crf": "23", "x264-params": "b-pyramid=normal:open-gop=0:scenecut=0"})
    dump_frames(out / "tiny_h264.mp4", out / "tiny_h264")
    encode(out / "tiny_av1.mp4", "libaom-av1", 63, 47, 12,
           {"g": "4", "crf": "30", "cpu-used": "8", "lag-in-frames": "0"})
    dump_frames(out / "tiny_av1.mp4", out / "tiny_av1")

    for codec in ["h264", "av1"]:
        video = shared / codec / "videos/observation.images.front/chunk-000/file-000.mp4"
        if video.exists():
            dump_frames(video, out / "lerobot" / codec, set(LEROBOT_INDICES))
        else:
            print(f"skipped lerobot/{codec}: {video} not found")


if __name__ == "__main__":
    main()
