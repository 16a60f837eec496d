#!/usr/bin/env python3
"""Regenerates fuzz/seeds/ from the LeRobot test fixtures plus a few hand-made files.

Run from the repository root:  python3 fuzz/scripts/make_seeds.py
Needs pyarrow for the hand-made parquet seeds (e.g. `python3 -m venv /tmp/v &&
/tmp/v/bin/pip install pyarrow && /tmp/v/bin/python fuzz/scripts/make_seeds.py`).
Every seed is kept under 20 KB.
"""
import json
import shutil
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/mulli-data/tests/fixtures/lerobot"
SEEDS = ROOT / "fuzz/seeds"
LIMIT = 20 * 1024


def put(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    assert len(data) < LIMIT, (target, name, len(data))
    (d / name).write_bytes(data)


def png_rgb(w, h, seed=0):
    raw = b"".join(b"\x00" + bytes(((x * 31 + y * 17 + seed) % 256) for x in range(w) for _ in range(3)) for y in range(h))
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def info_json():
    for ds in ["v21", "v30_h264", "v30_av1", "v30_images"]:
        put("info_json", f"{ds}.json", (FIX / ds / "meta/info.json").read_bytes())


def stats_json():
    put("stats_json", "v30_stats.json", (FIX / "v30_h264/meta/stats.json").read_bytes())
    first = json.loads((FIX / "v21/meta/episodes_stats.jsonl").read_text().splitlines()[0])
    put("stats_json", "v21_episode_stats.json", json.dumps(first["stats"]).encode())
    # one image-style (C,1,1) record without quantiles (older datasets)
    img = {k: [[[v]] for v in vals] for k, vals in
           {"min": [0.0, 0.1, 0.2], "max": [1.0, 0.9, 0.8], "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}.items()}
    img["count"] = [42]
    put("stats_json", "image_no_quantiles.json", json.dumps(img).encode())


def parquet_table():
    put("parquet_table", "v30_h264_file-000.parquet", (FIX / "v30_h264/data/chunk-000/file-000.parquet").read_bytes())
    put("parquet_table", "v21_episode_000001.parquet", (FIX / "v21/data/chunk-000/episode_000001.parquet").read_bytes())
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 3
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cams = [{"bytes": png_rgb(8, 8, i), "path": None} for i in range(n)]
    actions = [[0.1 * i, 0.2 * i, 0.3 * i] for i in range(n)]
    tasks = [f"pick cube {i}" for i in range(n)]
    # What mulli/LeRobot write: fixed-size list vector, int64 scalar, HF Image struct, string.
    t = pa.table({
        "action": pa.array(actions, pa.list_(pa.float32(), 3)),
        "index": pa.array(range(n), pa.int64()),
        "cam": pa.array(cams, img_t),
        "task": pa.array(tasks, pa.string()),
    })
    for comp in ["zstd", "snappy", "none"]:
        buf = pa.BufferOutputStream()
        pq.write_table(t, buf, compression=comp)
        put("parquet_table", f"mulli_features_{comp}.parquet", buf.getvalue().to_pybytes())
    # Variants readers must accept: variable lists, large lists, raw binary images,
    # other numeric widths, a 2-row row group split.
    t2 = pa.table({
        "action": pa.array(actions, pa.large_list(pa.float64())),
        "index": pa.array(range(n), pa.int32()),
        "cam": pa.array([c["bytes"] for c in cams], pa.large_binary()),
        "task": pa.array(tasks, pa.large_string()),
    })
    buf = pa.BufferOutputStream()
    pq.write_table(t2, buf, compression="snappy", row_group_size=2)
    put("parquet_table", "variants_large_lists.parquet", buf.getvalue().to_pybytes())
    t3 = pa.table({
        "observation.state": pa.array([[[1.0, 2.0], [3.0, 4.0]]] * n, pa.list_(pa.list_(pa.float32(), 2), 2)),
        "action": pa.array(actions, pa.list_(pa.float32())),
        "timestamp": pa.array([0.0, 0.1, 0.2], pa.float32()),
        "frame_index": pa.array(range(n), pa.int64()),
        "episode_index": pa.array([0] * n, pa.int64()),
        "task_index": pa.array([0, 1, 0], pa.int64()),
        "index": pa.array(range(n), pa.int64()),
    })
    buf = pa.BufferOutputStream()
    pq.write_table(t3, buf, compression="none")
    put("parquet_table", "numeric_nd.parquet", buf.getvalue().to_pybytes())


def mp4_video():
    put("mp4_video", "h264_v21_front_ep1.mp4",
        (FIX / "v21/videos/chunk-000/observation.images.front/episode_000001.mp4").read_bytes())
    put("mp4_video", "av1_v30_front.mp4",
        (FIX / "v30_av1/videos/observation.images.front/chunk-000/file-000.mp4").read_bytes())


def png_image():
    def blob(packets):
        out = b"MULLIPKT" + struct.pack("<HI", 1, len(packets))
        for key, data in packets:
            out += struct.pack("<BI", int(key), len(data)) + data
        return out
    put("png_image", "empty.bin", blob([]))
    put("png_image", "three.bin", blob([(True, b"\x00\x00\x00\x01\x67\x42"), (False, b"\x00\x00\x01\x41"), (False, b"")]))
    put("png_image", "png_payload.bin", blob([(True, png_rgb(8, 8))]))


if __name__ == "__main__":
    for f in [info_json, stats_json, parquet_table, mp4_video, png_image]:
        f()
    for p in sorted(SEEDS.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:6d} {p.relative_to(ROOT)}")
