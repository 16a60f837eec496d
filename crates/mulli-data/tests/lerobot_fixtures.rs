//! mulli reads datasets written by LeRobot 0.6.1 itself, frame-exactly.
//!
//! Fixtures: `tests/fixtures/lerobot/` (made by `scripts/make_lerobot_fixtures.py` with
//! LeRobot's own writer; `expected/` holds what LeRobot's `LeRobotDataset[i]` returned).

use std::path::{Path, PathBuf};

use mulli_data::loader::DecoderCache;
use mulli_data::{Dataset, Version};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lerobot")
        .join(name)
}

fn expected(name: &str) -> Vec<Value> {
    let p = fixture(name).join("expected/frames.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["frames"].as_array().unwrap().clone()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Decode every camera frame and compare with LeRobot's: per-channel means within
/// `mean_tol`, and the three stored full frames closest to their own reference.
fn check_frames(ds: &Dataset, exp: &[Value], exp_dir: &Path, mean_tol: f64) {
    let mut cache = DecoderCache::new(4);
    let n = 32 * 32 * 3;
    let mut worst = 0f64;
    for cam in ["front", "wrist"] {
        let key = format!("observation.images.{cam}");
        let mut buf = vec![0u8; n];
        let mut decoded = Vec::new();
        for (row, e) in exp.iter().enumerate() {
            match ds.feature(&key).unwrap().dtype {
                mulli_core::DType::Video => {
                    let (path, t) = ds.video_location(&key, row).unwrap().unwrap();
                    let r = cache.get(&path).unwrap();
                    ds.read_video_frame(r, t, &mut buf).unwrap();
                }
                _ => ds.read_image(&key, row, &mut buf).unwrap(),
            }
            let want = f32s(&e[format!("{cam}_mean")]);
            for (c, &w) in want.iter().enumerate() {
                let mean = buf
                    .iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&x| f64::from(x))
                    .sum::<f64>()
                    / (32.0 * 32.0);
                let d = (mean - f64::from(w)).abs();
                worst = worst.max(d);
                assert!(
                    d <= mean_tol,
                    "{}: row {row} {cam} channel {c}: mean {mean:.2}, LeRobot {w:.2}",
                    ds.root.display()
                );
            }
            decoded.push(buf.clone());
        }
        // Full frames: each decoded frame must be nearest to LeRobot's frame of the same index.
        let refs: Vec<(usize, Vec<u8>)> = [0usize, 12, 35]
            .iter()
            .map(|&i| {
                (
                    i,
                    std::fs::read(exp_dir.join(format!("{i:03}_{cam}.rgb"))).unwrap(),
                )
            })
            .collect();
        let mad = |a: &[u8], b: &[u8]| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| (i32::from(x) - i32::from(y)).abs() as f64)
                .sum::<f64>()
                / a.len() as f64
        };
        for (i, r) in &refs {
            let own = mad(&decoded[*i], r);
            for j in [i.saturating_sub(1), (i + 1).min(decoded.len() - 1)] {
                if j != *i {
                    assert!(
                        own < mad(&decoded[j], r),
                        "{cam} frame {i}: neighbour {j} matches LeRobot's frame better ({own:.2})"
                    );
                }
            }
            assert!(
                own < mean_tol.max(1.5),
                "{cam} frame {i}: mean abs diff {own:.2} vs LeRobot"
            );
        }
    }
    eprintln!(
        "{}: worst per-channel mean difference vs LeRobot {worst:.3}",
        ds.root.display()
    );
}

fn check_dataset(name: &str, exp_name: &str, version: Version, mean_tol: f64) {
    let ds = Dataset::open(fixture(name)).unwrap();
    assert_eq!(ds.info.version, version);
    assert_eq!(ds.fps(), 10);
    assert_eq!(ds.episodes.len(), 3);
    assert_eq!(ds.len(), 12 + 9 + 15);
    assert_eq!(ds.tasks, vec!["pick up the cube", "케첩을 냉장고에 넣어줘"]);
    assert_eq!(
        ds.episodes.iter().map(|e| e.length).collect::<Vec<_>>(),
        vec![12, 9, 15]
    );
    let exp = expected(exp_name);
    assert_eq!(exp.len(), ds.len());
    let state = ds.table.f32s("observation.state").unwrap();
    let action = ds.table.f32s("action").unwrap();
    for (row, e) in exp.iter().enumerate() {
        assert_eq!(
            &state[row * 4..row * 4 + 4],
            f32s(&e["state"]).as_slice(),
            "row {row}"
        );
        assert_eq!(
            &action[row * 3..row * 3 + 3],
            f32s(&e["action"]).as_slice(),
            "row {row}"
        );
        assert_eq!(ds.task_of_row(row), e["task"].as_str().unwrap());
        assert_eq!(
            ds.table.i64s("index").unwrap()[row],
            e["index"].as_i64().unwrap()
        );
        assert!((ds.timestamp_of_row(row) - e["timestamp"].as_f64().unwrap()).abs() < 1e-6);
    }
    // Per-episode and dataset statistics are read.
    assert!(ds.stats.contains_key("observation.state"));
    assert!(ds.episodes[0].stats["action"].quantiles[2].len() == 3);
    check_frames(&ds, &exp, &fixture(exp_name).join("expected"), mean_tol);
    let problems = mulli_data::validate::validate(&ds, &mut |_, _| {}).unwrap();
    assert!(problems.is_empty(), "{name}: {problems:#?}");
}

#[test]
fn reads_lerobot_v30_av1() {
    check_dataset("v30_av1", "v30_av1", Version::V30, 1.0);
}

#[test]
fn reads_lerobot_v30_h264() {
    check_dataset("v30_h264", "v30_h264", Version::V30, 1.0);
}

#[test]
fn reads_lerobot_v30_png_images() {
    // PNG is lossless: means must match to rounding.
    check_dataset("v30_images", "v30_images", Version::V30, 0.01);
}

#[test]
fn reads_v21_layout() {
    // Same frames as v30_h264, encoded once more by the fixture script: looser tolerance.
    check_dataset("v21", "v30_h264", Version::V21, 4.0);
}

/// The 5,000-frame fixtures LeRobot wrote for the loader comparison (outside the repo).
#[test]
fn reads_shared_lerobot_fixtures_when_present() {
    let dir = std::env::var_os("MULLI_LEROBOT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/lerobot-0.6.1")
        });
    if !dir.exists() {
        eprintln!(
            "skipped: shared LeRobot fixtures not found at {}",
            dir.display()
        );
        return;
    }
    for codec in ["av1", "h264"] {
        let ds = Dataset::open(dir.join(codec)).unwrap();
        assert_eq!((ds.len(), ds.episodes.len()), (5000, 50));
        let mut cache = DecoderCache::new(2);
        let mut buf = vec![0u8; 96 * 96 * 3];
        for row in [0, 99, 100, 2501, 4999] {
            let (p, t) = ds
                .video_location("observation.images.front", row)
                .unwrap()
                .unwrap();
            ds.read_video_frame(cache.get(&p).unwrap(), t, &mut buf)
                .unwrap();
        }
    }
}
