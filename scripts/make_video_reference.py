#!/usr/bin/env python3
"""Make the reference frames (and three tiny videos) that mulli's video tests compare against.

Run inside a venv with `pip install "lerobot[dataset]==0.6.1"` (it brings PyAV 15, whose FFmpeg
has libx264, libsvtav1 and libaom), from the workspace root:

    python scripts/make_video_reference.py [crates/mulli-data/tests/fixtures/video] [shared/fixtures/lerobot-0.6.1]

Writes into the first directory:
  tiny_h264.mp4, tiny_h264/NNN.png          libx264 with B-frames (b-pyramid, two closed GOPs of 8), 64x48
  tiny_av1.mp4, tiny_av1/NNN.png            libsvtav1 (LeRobot's default encoder), 64x64, keyframe every 4
  tiny_av1_odd.mp4, tiny_av1_odd/NNN.png    libaom-av1 at an odd size (63x47)
  lerobot/{h264,av1}/NNNNNN.png             frames of LeRobot 0.6.1's own fixture videos (front camera)
PNGs are what LeRobot's PyAV path returns, `frame.to_ndarray(format="rgb24")`, in presentation
order; the lerobot/ frames are skipped when the shared fixtures are absent.

Except tiny_av1_odd/: for odd sizes FFmpeg's swscale leaves its exact yuv420p->rgb24 fast path
for a generic, chroma-interpolating one that mulli does not reproduce (about 1.5 levels mean,
up to ~37 at sharp colour edges). Its PNGs are PyAV's decoded YUV planes converted with the
fast path's arithmetic (`swscale_fast_rgb24` below), which is what mulli implements, so the test
checks odd-size decoding and conversion exactly.
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


def swscale_fast_rgb24(fr):
    """FFmpeg's x86 yuv420p->rgb24 (BT.601 limited, nearest chroma, 13-bit coefficients,
    truncating pmulhw), which `frame.to_ndarray(format="rgb24")` uses for even sizes."""
    w, h = fr.width, fr.height
    cw, ch = (w + 1) // 2, (h + 1) // 2

    def plane(i, pw, ph):
        p = fr.planes[i]
        return np.frombuffer(p, np.uint8).reshape(ph, p.line_size)[:, :pw].astype(np.int64)

    y, u, v = plane(0, w, h), plane(1, cw, ch), plane(2, cw, ch)
    u = np.repeat(np.repeat(u, 2, 0), 2, 1)[:h, :w] - 128
    v = np.repeat(np.repeat(v, 2, 0), 2, 1)[:h, :w] - 128
    mulhi = lambda a, b: (a * b) >> 16
    luma = mulhi(y * 8 - 128, 9539)
    rgb = [luma + mulhi(v * 8, 13075), luma + mulhi(u * 8, -3209) + mulhi(v * 8, -6660), luma + mulhi(u * 8, 16525)]
    return np.clip(np.stack(rgb, -1), 0, 255).astype(np.uint8)


def dump_frames(video, out_dir, indices=None, convert=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if indices is None or i in indices:
                rgb = convert(fr) if convert else fr.to_ndarray(format="rgb24")
                if convert is None and fr.width % 2 == 0 and fr.height % 2 == 0:
                    assert (swscale_fast_rgb24(fr) == rgb).all(), "PyAV no longer uses the fast path"
                Image.fromarray(rgb).save(out_dir / f"{i:06d}.png", optimize=True)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/mulli-data/tests/fixtures/video")
    shared = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/fixtures/lerobot-0.6.1")
    out.mkdir(parents=True, exist_ok=True)

    encode(out / "tiny_h264.mp4", "libx264", 64, 48, 16,
           {"g": "8", "bf": "3", "crf": "23", "x264-params": "b-pyramid=normal:open-gop=0:scenecut=0"})
    dump_frames(out / "tiny_h264.mp4", out / "tiny_h264")
    encode(out / "tiny_av1.mp4", "libsvtav1", 64, 64, 12, {"g": "4", "crf": "30", "preset": "12"})
    dump_frames(out / "tiny_av1.mp4", out / "tiny_av1")
    encode(out / "tiny_av1_odd.mp4", "libaom-av1", 63, 47, 6,
           {"g": "3", "crf": "30", "cpu-used": "8", "lag-in-frames": "0"})
    dump_frames(out / "tiny_av1_odd.mp4", out / "tiny_av1_odd", convert=swscale_fast_rgb24)

    for codec in ["h264", "av1"]:
        video = shared / codec / "videos/observation.images.front/chunk-000/file-000.mp4"
        if video.exists():
            dump_frames(video, out / "lerobot" / codec, set(LEROBOT_INDICES))
        else:
            print(f"skipped lerobot/{codec}: {video} not found")


if __name__ == "__main__":
    main()
