//! Whole-dataset operations: copy episodes between datasets, merge, split, convert
//! (v2.1 → v3.0, and any codec → mulli's H.264).
//!
//! All of them go through [`copy_episodes`]: frames are read (videos decoded) and written
//! again with [`DatasetWriter`], so the output always gets fresh, consistent metadata and
//! statistics and one codec. That re-encodes video (lossy, like any transcode); LeRobot's
//! merge instead concatenates MP4s without re-encoding, which only works when every input
//! shares codec, size and pixel format.

use std::path::Path;

use mulli_core::{DType, Frame, Value};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::loader::DecoderCache;
use crate::table::Column;
use crate::writer::{DatasetWriter, WriteMode, WriterOptions};

/// Called after each copied episode with (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Rebuild the frames of episode position `ep` of `src` as core [`Frame`]s (images HWC).
pub fn episode_frames(src: &Dataset, ep: usize, cache: &mut DecoderCache) -> Result<Vec<Frame>> {
    let (start, end) = src.episode_rows(ep)?;
    let user = src.info.user_features();
    let mut frames = Vec::with_capacity(end - start);
    for row in start..end {
        let mut f = Frame::new(src.task_of_row(row));
        for (name, spec) in &user {
            let v = match spec.dtype {
                DType::Video => {
                    let (h, w, c) = spec.image_hwc()?;
                    let mut px = vec![0u8; h * w * c];
                    if let Some((path, t)) = src.video_location(name, row)? {
                        let reader = cache.get(&path)?;
                        src.read_video_frame(reader, t, &mut px)?;
                    }
                    Value::U8(px)
                }
                DType::Image => {
                    let (h, w, c) = spec.image_hwc()?;
                    let mut px = vec![0u8; h * w * c];
                    src.read_image(name, row, &mut px)?;
                    Value::U8(px)
                }
                _ => match src.table.column(name) {
                    Some(Column::Image(_)) | None => {
                        return Err(DataError::Invalid(format!(
                            "feature `{name}` has no data column"
                        )));
                    }
                    Some(c) => c.value(row),
                },
            };
            f.values.insert(name.clone(), v);
        }
        frames.push(f);
    }
    Ok(frames)
}

/// Append episodes `eps` (positions) of `src` to `writer`.
pub fn copy_episodes(
    src: &Dataset,
    eps: &[usize],
    writer: &mut DatasetWriter,
    progress: Progress<'_>,
) -> Result<()> {
    let mut cache = DecoderCache::new(4);
    for (i, &ep) in eps.iter().enumerate() {
        for f in episode_frames(src, ep, &mut cache)? {
            writer.add_frame(&f)?;
        }
        writer.save_episode()?;
        progress(i + 1, eps.len());
    }
    Ok(())
}

fn writer_for(src: &Dataset, out: &Path, mode: WriteMode) -> Result<DatasetWriter> {
    let mut features = src.info.user_features();
    for f in features.values_mut() {
        f.info = None; // the writer records its own codec parameters
    }
    let opts = WriterOptions {
        fps: src.fps(),
        robot_type: src.info.robot_type.clone(),
        mode,
        ..Default::default()
    };
    DatasetWriter::create(out, &features, opts)
}

/// Merge datasets (same fps and features) into `out`, episodes in input order.
pub fn merge(
    inputs: &[&Path],
    out: &Path,
    mode: WriteMode,
    progress: Progress<'_>,
) -> Result<usize> {
    let first = inputs
        .first()
        .ok_or_else(|| DataError::Invalid("merge needs at least one input".into()))?;
    let datasets = inputs
        .iter()
        .map(Dataset::open)
        .collect::<Result<Vec<_>>>()?;
    let base = &datasets[0];
    let base_feats = base.info.user_features();
    for (d, p) in datasets.iter().zip(inputs).skip(1) {
        if d.fps() != base.fps() {
            return Err(DataError::Invalid(format!(
                "{}: fps {} differs from {} in {}",
                p.display(),
                d.fps(),
                base.fps(),
                first.display()
            )));
        }
        let feats = d.info.user_features();
        for (k, f) in &base_feats {
            match feats.get(k) {
                Some(g)
                    if g.dtype == f.dtype
                        && g.image_hwc().ok() == f.image_hwc().ok()
                        && (f.dtype.is_visual() || g.shape == f.shape) => {}
                Some(g) => {
                    return Err(DataError::Invalid(format!(
                        "{}: feature `{k}` is {} {:?}, but {} {:?} in {}",
                        p.display(),
                        g.dtype,
                        g.shape,
                        f.dtype,
                        f.shape,
                        first.display()
                    )));
                }
                None => {
                    return Err(DataError::Invalid(format!(
                        "{}: lacks feature `{k}` of {}",
                        p.display(),
                        first.display()
                    )));
                }
            }
        }
        if let Some(k) = feats.keys().find(|k| !base_feats.contains_key(*k)) {
            return Err(DataError::Invalid(format!(
                "{}: has feature `{k}` that {} lacks",
                p.display(),
                first.display()
            )));
        }
    }
    let total: usize = datasets.iter().map(|d| d.episodes.len()).sum();
    let mut w = writer_for(base, out, mode)?;
    let mut done = 0;
    for d in &datasets {
        let eps: Vec<usize> = (0..d.episodes.len()).collect();
        copy_episodes(d, &eps, &mut w, &mut |i, _| progress(done + i, total))?;
        done += eps.len();
    }
    let n = w.num_episodes();
    w.finalize()?;
    Ok(n)
}

/// Write the episodes `eps` (positions) of `src` to a new dataset at `out`.
pub fn subset(
    src: &Dataset,
    eps: &[usize],
    out: &Path,
    mode: WriteMode,
    progress: Progress<'_>,
) -> Result<usize> {
    for &e in eps {
        if e >= src.episodes.len() {
            return Err(DataError::EpisodeOutOfRange {
                episode: e,
                len: src.episodes.len(),
            });
        }
    }
    let mut w = writer_for(src, out, mode)?;
    copy_episodes(src, eps, &mut w, progress)?;
    let n = w.num_episodes();
    w.finalize()?;
    Ok(n)
}

/// Convert any readable dataset (v2.1 or v3.0, AV1 or H.264) into a mulli v3.0 dataset.
pub fn convert(src: &Path, out: &Path, mode: WriteMode, progress: Progress<'_>) -> Result<usize> {
    let ds = Dataset::open(src)?;
    let eps: Vec<usize> = (0..ds.episodes.len()).collect();
    subset(&ds, &eps, out, mode, progress)
}

/// Parse a split spec like `train=0.8,val=0.2` (fractions, shuffled by seed) or
/// `train=0:40,val=40:50` (episode ranges) into (name, episode positions).
pub fn plan_split(spec: &str, num_episodes: usize, seed: u64) -> Result<Vec<(String, Vec<usize>)>> {
    let mut parts = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, val) = item.split_once('=').ok_or_else(|| {
            DataError::Invalid(format!(
                "split `{item}`: expected NAME=FRACTION or NAME=START:END"
            ))
        })?;
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(DataError::Invalid(format!(
                "split name `{name}` must be a plain name"
            )));
        }
        parts.push((name.to_owned(), val.to_owned()));
    }
    if parts.is_empty() {
        return Err(DataError::Invalid("empty split spec".into()));
    }
    let ranges = parts.iter().all(|(_, v)| v.contains(':'));
    let mut out = Vec::new();
    if ranges {
        for (name, v) in parts {
            let (a, b) = v.split_once(':').unwrap_or(("", ""));
            let a: usize = a
                .parse()
                .map_err(|_| DataError::Invalid(format!("split `{name}`: bad start `{a}`")))?;
            let b: usize = b
                .parse()
                .map_err(|_| DataError::Invalid(format!("split `{name}`: bad end `{b}`")))?;
            if a >= b || b > num_episodes {
                return Err(DataError::Invalid(format!(
                    "split `{name}`: range {a}:{b} is empty or beyond the {num_episodes} episodes"
                )));
            }
            out.push((name, (a..b).collect()));
        }
        return Ok(out);
    }
    let fracs = parts
        .iter()
        .map(|(n, v)| {
            v.parse::<f64>()
                .ok()
                .filter(|f| *f > 0.0 && *f <= 1.0)
                .ok_or_else(|| {
                    DataError::Invalid(format!("split `{n}`: `{v}` is not a fraction in (0, 1]"))
                })
        })
        .collect::<Result<Vec<f64>>>()?;
    let sum: f64 = fracs.iter().sum();
    if sum > 1.0 + 1e-9 {
        return Err(DataError::Invalid(format!(
            "split fractions add up to {sum}, more than 1"
        )));
    }
    let mut order: Vec<usize> = (0..num_episodes).collect();
    mulli_core::rng::shuffle(
        &mut order,
        &mut mulli_core::rng::substream(seed, "split", 0),
    );
    let mut at = 0;
    for (i, ((name, _), f)) in parts.into_iter().zip(&fracs).enumerate() {
        let n = if i + 1 == fracs.len() && (sum - 1.0).abs() < 1e-9 {
            num_episodes - at
        } else {
            (f * num_episodes as f64).round() as usize
        };
        let n = n.min(num_episodes - at);
        if n == 0 {
            return Err(DataError::Invalid(format!(
                "split `{name}` would get no episodes (the dataset has {num_episodes})"
            )));
        }
        let mut eps = order[at..at + n].to_vec();
        eps.sort();
        out.push((name, eps));
        at += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_plans() {
        let p = plan_split("train=0.8,val=0.2", 10, 1).unwrap();
        assert_eq!(p[0].1.len(), 8);
        assert_eq!(p[1].1.len(), 2);
        let mut all: Vec<usize> = p.iter().flat_map(|(_, e)| e.clone()).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(plan_split("a=0:3,b=3:5", 5, 0).unwrap()[1].1, vec![3, 4]);
        for bad in [
            "",
            "train",
            "a=0:9",
            "a=1.5",
            "a=0.7,b=0.7",
            "a=3:3",
            "../x=0.5",
        ] {
            assert!(plan_split(bad, 5, 0).is_err(), "{bad}");
        }
    }
}
