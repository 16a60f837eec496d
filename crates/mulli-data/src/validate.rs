//! `mulli dataset validate`: every problem of a dataset, each with its file and row.
//!
//! Opening a dataset already rejects what cannot be read at all; validation then checks what
//! a reader would silently get wrong: totals in info.json, index continuity, timestamps vs
//! fps, task indices, video frame counts and timestamps per episode, decodable images, and
//! stored statistics against statistics recomputed from the data.

use std::path::PathBuf;

use mulli_core::DType;

use crate::dataset::{Dataset, aggregate_episode_stats};
use crate::error::Result;
use crate::stats::FeatureStats;
use crate::video::VideoReader;

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub row: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            Some(r) => write!(f, "{} (row {r}): {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// At most this many problems of one kind are listed, then a count.
const MAX_PER_KIND: usize = 20;

pub fn validate(ds: &Dataset, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Problem>> {
    let mut out = Vec::new();
    let info_path = ds.root.join("meta/info.json");
    let push = |out: &mut Vec<Problem>, file: PathBuf, row: Option<usize>, message: String| {
        out.push(Problem { file, row, message })
    };

    // Totals.
    let frames: usize = ds.episodes.iter().map(|e| e.length).sum();
    if ds.info.total_episodes != ds.episodes.len() {
        push(
            &mut out,
            info_path.clone(),
            None,
            format!(
                "total_episodes is {}, the episodes metadata lists {}",
                ds.info.total_episodes,
                ds.episodes.len()
            ),
        );
    }
    if ds.info.total_frames != frames {
        push(
            &mut out,
            info_path.clone(),
            None,
            format!(
                "total_frames is {}, the episodes add up to {frames}",
                ds.info.total_frames
            ),
        );
    }
    if ds.info.total_tasks != ds.tasks.len() {
        push(
            &mut out,
            info_path.clone(),
            None,
            format!(
                "total_tasks is {}, meta/tasks lists {}",
                ds.info.total_tasks,
                ds.tasks.len()
            ),
        );
    }

    // Index continuity and timestamps, row by row.
    let fps = f64::from(ds.fps());
    let idx = ds.table.i64s("index").unwrap_or(&[]);
    let fidx = ds.table.i64s("frame_index").unwrap_or(&[]);
    let tidx = ds.table.i64s("task_index").unwrap_or(&[]);
    let mut kinds = [0usize; 4];
    for (p, ep) in ds.episodes.iter().enumerate() {
        let (start, end) = ds.episode_rows(p)?;
        let file = ds.root.join(&ep.data_path);
        for (k, row) in (start..end).enumerate() {
            let mut report = |kind: usize, msg: String, out: &mut Vec<Problem>| {
                kinds[kind] += 1;
                if kinds[kind] <= MAX_PER_KIND {
                    out.push(Problem {
                        file: file.clone(),
                        row: Some(row),
                        message: msg,
                    });
                }
            };
            if idx.get(row).is_some_and(|&i| i != (ep.from + k) as i64) {
                report(
                    0,
                    format!(
                        "episode {}: index is {}, expected {} (dataset_from_index {} + frame {k})",
                        ep.index,
                        idx[row],
                        ep.from + k,
                        ep.from
                    ),
                    &mut out,
                );
            }
            if fidx.get(row).is_some_and(|&i| i != k as i64) {
                report(
                    1,
                    format!(
                        "episode {}: frame_index is {}, expected {k}",
                        ep.index, fidx[row]
                    ),
                    &mut out,
                );
            }
            let ts = ds.timestamp_of_row(row);
            if (ts - k as f64 / fps).abs() > 1e-4 {
                report(
                    2,
                    format!(
                        "episode {}: timestamp {ts:.6} s is not frame {k} / fps {fps} = {:.6} s",
                        ep.index,
                        k as f64 / fps
                    ),
                    &mut out,
                );
            }
            if tidx
                .get(row)
                .is_some_and(|&t| t < 0 || t as usize >= ds.tasks.len())
            {
                report(
                    3,
                    format!(
                        "episode {}: task_index {} is not in meta/tasks (0..{})",
                        ep.index,
                        tidx[row],
                        ds.tasks.len()
                    ),
                    &mut out,
                );
            }
        }
    }
    for (kind, name) in ["index", "frame_index", "timestamp", "task_index"]
        .iter()
        .enumerate()
    {
        if kinds[kind] > MAX_PER_KIND {
            push(
                &mut out,
                ds.root.join("data"),
                None,
                format!(
                    "… and {} more `{name}` problems",
                    kinds[kind] - MAX_PER_KIND
                ),
            );
        }
    }

    // Videos: each episode's segment must hold exactly its frames, at the right times.
    let videos = ds.info.video_keys();
    let total = ds.episodes.len() * videos.len().max(1);
    let mut done = 0;
    let mut open: Option<(PathBuf, VideoReader)> = None;
    for key in &videos {
        for ep in &ds.episodes {
            done += 1;
            progress(done, total);
            let Some(seg) = ep.videos.get(key).and_then(|s| s.as_ref()) else {
                continue;
            };
            let path = ds.root.join(&seg.path);
            if open.as_ref().is_none_or(|(p, _)| p != &path) {
                match VideoReader::open(&path) {
                    Ok(r) => open = Some((path.clone(), r)),
                    Err(e) => {
                        push(&mut out, path.clone(), None, format!("camera `{key}`: {e}"));
                        open = None;
                        continue;
                    }
                }
            }
            let Some((_, reader)) = open.as_mut() else {
                continue;
            };
            let half = 0.5 / fps;
            let in_seg = reader
                .timestamps()
                .iter()
                .filter(|&&t| t >= seg.from_timestamp - half && t < seg.to_timestamp - half)
                .count();
            if in_seg != ep.length {
                push(
                    &mut out,
                    path.clone(),
                    None,
                    format!(
                        "camera `{key}`, episode {}: {in_seg} frames in [{:.3}, {:.3}) s, expected {} (the episode's length)",
                        ep.index, seg.from_timestamp, seg.to_timestamp, ep.length
                    ),
                );
            }
            // Decode the first and last frame of the episode to prove they are readable.
            let (h, w, c) = ds.info.features[key].image_hwc()?;
            let mut buf = vec![0u8; h * w * c];
            if reader.width() as usize != w || reader.height() as usize != h {
                push(
                    &mut out,
                    path.clone(),
                    None,
                    format!(
                        "camera `{key}`: video is {}×{}, info.json says {w}×{h}",
                        reader.width(),
                        reader.height()
                    ),
                );
                continue;
            }
            for t in [
                seg.from_timestamp,
                seg.from_timestamp + (ep.length.saturating_sub(1)) as f64 / fps,
            ] {
                if let Err(e) = ds.read_video_frame(reader, t, &mut buf) {
                    push(
                        &mut out,
                        path.clone(),
                        None,
                        format!("camera `{key}`, episode {}: {e}", ep.index),
                    );
                }
            }
        }
    }
    if videos.is_empty() {
        progress(1, 1);
    }

    // Image features must decode.
    for key in ds.info.image_keys() {
        let (h, w, c) = ds.info.features[&key].image_hwc()?;
        let mut buf = vec![0u8; h * w * c];
        let mut bad = 0;
        for row in 0..ds.len() {
            if let Err(e) = ds.read_image(&key, row, &mut buf) {
                bad += 1;
                if bad <= MAX_PER_KIND {
                    let file = ds
                        .root
                        .join(&ds.episodes[ds.episode_of_row(row)?].data_path);
                    push(&mut out, file, Some(row), e.to_string());
                }
            }
        }
    }

    // Statistics: per-episode stats against the data, dataset stats against the episodes.
    for (p, ep) in ds.episodes.iter().enumerate() {
        let (start, end) = ds.episode_rows(p)?;
        for (name, stored) in &ep.stats {
            let Some(spec) = ds.feature(name) else {
                continue;
            };
            if spec.dtype.is_visual() || spec.dtype == DType::String {
                continue;
            }
            let Some(col) = ds.table.column(name) else {
                continue;
            };
            if let Some(fresh) = FeatureStats::from_rows(&col.rows_f64(start, end), spec.numel())
                && let Some(msg) = compare_stats(stored, &fresh)
            {
                push(
                    &mut out,
                    ds.root.join("meta/episodes"),
                    None,
                    format!("episode {} stats of `{name}`: {msg}", ep.index),
                );
            }
        }
    }
    let agg = aggregate_episode_stats(&ds.episodes);
    let stats_path = ds.root.join("meta/stats.json");
    for (name, stored) in &ds.stats {
        if let Some(fresh) = agg.get(name)
            && let Some(msg) = compare_stats(stored, fresh)
        {
            push(
                &mut out,
                stats_path.clone(),
                None,
                format!("`{name}`: {msg} (compared with the aggregate of the episodes' stats)"),
            );
        }
    }
    Ok(out)
}

/// Compare min/max/mean/std (quantiles are approximate in LeRobot, so not compared).
fn compare_stats(stored: &FeatureStats, fresh: &FeatureStats) -> Option<String> {
    if stored.dim() != fresh.dim() {
        return Some(format!(
            "{} values stored, the data has {}",
            stored.dim(),
            fresh.dim()
        ));
    }
    if stored.count != fresh.count {
        return Some(format!(
            "count is {}, the data has {}",
            stored.count, fresh.count
        ));
    }
    for (what, a, b) in [
        ("min", &stored.min, &fresh.min),
        ("max", &stored.max, &fresh.max),
        ("mean", &stored.mean, &fresh.mean),
        ("std", &stored.std, &fresh.std),
    ] {
        for (d, (x, y)) in a.iter().zip(b).enumerate() {
            if (x - y).abs() > 1e-4 * (1.0 + y.abs()) {
                return Some(format!("{what}[{d}] is {x}, the data gives {y}"));
            }
        }
    }
    None
}
