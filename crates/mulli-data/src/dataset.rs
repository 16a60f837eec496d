//! Reading a LeRobot dataset (v3.0 or v2.1) from a local directory.
//!
//! [`Dataset::open`] loads the metadata and every non-video column into memory (numbers are
//! small next to video; image features stay PNG-encoded until asked for). Video frames are
//! decoded on demand by [`Dataset::read_video_frame`], seeking by the true presentation
//! timestamp of each frame in the MP4, which is robust to the timestamp drift LeRobot's
//! concatenated videos show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use mulli_core::{DType, FeatureSpec};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::error::{DataError, Result};
use crate::info::{DatasetInfo, Version, fill_template};
use crate::stats::{FeatureStats, QUANTILES};
use crate::table::{Column, Table, read_parquet};
use crate::video::VideoReader;

/// Where an episode's frames of one camera live.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSegment {
    /// Relative to the dataset root.
    pub path: PathBuf,
    pub chunk_index: usize,
    pub file_index: usize,
    /// Seconds inside the (possibly concatenated) MP4 where the episode starts/ends.
    pub from_timestamp: f64,
    pub to_timestamp: f64,
}

/// One row of the episodes table.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeMeta {
    pub index: usize,
    pub tasks: Vec<String>,
    pub length: usize,
    /// Global frame index range `[from, to)` (LeRobot's `dataset_from_index`/`_to_index`).
    pub from: usize,
    pub to: usize,
    pub data_chunk: usize,
    pub data_file: usize,
    /// Relative path of the data parquet holding the episode.
    pub data_path: PathBuf,
    /// Per camera; `None` when the camera is absent in this episode.
    pub videos: BTreeMap<String, Option<VideoSegment>>,
    pub stats: BTreeMap<String, FeatureStats>,
}

/// A dataset opened for reading.
#[derive(Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub info: DatasetInfo,
    /// Task strings by task index.
    pub tasks: Vec<String>,
    pub episodes: Vec<EpisodeMeta>,
    /// All frames, in global index order. Row `r` holds global index `episodes[e].from + k`.
    pub table: Table,
    /// Dataset statistics (`meta/stats.json`, or aggregated from the episodes).
    pub stats: BTreeMap<String, FeatureStats>,
    /// Episode of each row, for O(1) lookups in the loader.
    row_episode: Vec<u32>,
    /// First row of each episode.
    episode_row: Vec<usize>,
}

impl Dataset {
    /// Open the dataset at `root` (a directory with `meta/info.json`).
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let info = DatasetInfo::load(&root)?;
        match info.version {
            Version::V30 => open_v30(root, info),
            Version::V21 => open_v21(root, info),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len
    }

    pub fn is_empty(&self) -> bool {
        self.table.len == 0
    }

    pub fn fps(&self) -> u32 {
        self.info.fps
    }

    pub fn feature(&self, name: &str) -> Option<&FeatureSpec> {
        self.info.features.get(name)
    }

    /// Episode number (position in `episodes`) of row `row`.
    pub fn episode_of_row(&self, row: usize) -> Result<usize> {
        self.row_episode
            .get(row)
            .map(|&e| e as usize)
            .ok_or(DataError::IndexOutOfRange {
                index: row,
                len: self.len(),
            })
    }

    /// Rows `[start, end)` of episode position `ep`.
    pub fn episode_rows(&self, ep: usize) -> Result<(usize, usize)> {
        let e = self.episodes.get(ep).ok_or(DataError::EpisodeOutOfRange {
            episode: ep,
            len: self.episodes.len(),
        })?;
        let start = self.episode_row[ep];
        Ok((start, start + e.length))
    }

    /// Task string of row `row`.
    pub fn task_of_row(&self, row: usize) -> &str {
        let ti = self
            .table
            .i64s("task_index")
            .and_then(|t| t.get(row))
            .copied()
            .unwrap_or(0);
        self.tasks
            .get(ti.max(0) as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Episode-relative timestamp of row `row` (the `timestamp` column).
    pub fn timestamp_of_row(&self, row: usize) -> f64 {
        match self.table.column("timestamp") {
            Some(Column::F32(v, 1)) => f64::from(v[row]),
            Some(Column::F64(v, 1)) => v[row],
            _ => {
                let (start, _) = self
                    .episode_rows(self.row_episode[row] as usize)
                    .unwrap_or((row, row));
                (row - start) as f64 / f64::from(self.info.fps)
            }
        }
    }

    /// Absolute path of an episode's video for `key`, with the time inside it of row `row`.
    /// `None` if the camera is absent in that episode.
    pub fn video_location(&self, key: &str, row: usize) -> Result<Option<(PathBuf, f64)>> {
        let ep = &self.episodes[self.episode_of_row(row)?];
        let Some(seg) = ep.videos.get(key).and_then(|s| s.as_ref()) else {
            return Ok(None);
        };
        Ok(Some((
            self.root.join(&seg.path),
            seg.from_timestamp + self.timestamp_of_row(row),
        )))
    }

    /// The frame of `reader` shown at time `t` (seconds in the file): the frame whose true
    /// presentation timestamp is nearest, which must be within half a frame period.
    pub fn locate_video_frame(&self, reader: &VideoReader, t: f64) -> Result<usize> {
        let idx = reader.index_at(t);
        let pts = reader.timestamps().get(idx).copied().unwrap_or(f64::NAN);
        let tol = 0.5 / f64::from(self.info.fps);
        if (pts - t).abs() > tol || reader.is_empty() {
            return Err(DataError::Invalid(format!(
                "{}: no frame near t={t:.4}s (nearest is frame {idx} at {pts:.4}s; the video has {} frames): the episode's video timestamps do not match its data",
                reader.path().display(),
                reader.len()
            )));
        }
        Ok(idx)
    }

    /// Decode the frame at time `t` of `reader` into `out` (HWC RGB8), seeking by the true
    /// presentation timestamp (see [`Self::locate_video_frame`], [`Self::video_location`]).
    pub fn read_video_frame(&self, reader: &mut VideoReader, t: f64, out: &mut [u8]) -> Result<()> {
        let idx = self.locate_video_frame(reader, t)?;
        reader.decode_into(idx, out)?;
        Ok(())
    }

    /// Decode the PNG of image feature `key` at `row` into `out` (HWC).
    pub fn read_image(&self, key: &str, row: usize, out: &mut [u8]) -> Result<()> {
        let spec = self
            .feature(key)
            .ok_or_else(|| DataError::Invalid(format!("no feature `{key}`")))?;
        let Some(Column::Image(rows)) = self.table.column(key) else {
            return Err(DataError::Invalid(format!(
                "feature `{key}` is not an image feature"
            )));
        };
        let bytes = rows.get(row).ok_or(DataError::IndexOutOfRange {
            index: row,
            len: rows.len(),
        })?;
        let ep = &self.episodes[self.episode_of_row(row)?];
        crate::png_codec::decode_into(
            bytes,
            spec.image_hwc()?,
            out,
            (&self.root.join(&ep.data_path), key, row),
        )
    }

    /// Every frame of visual feature `key` (video or PNG images), decoded in row order into
    /// one `[len, H, W, C]` buffer. Videos are decoded front to back, each file opened once
    /// per episode, which is many times faster than random access; trainers that fit the
    /// decoded frames in memory use this instead of decoding per batch.
    pub fn decode_all_frames(&self, key: &str) -> Result<Vec<u8>> {
        let spec = self
            .feature(key)
            .ok_or_else(|| DataError::Invalid(format!("no feature `{key}`")))?;
        if !spec.dtype.is_visual() {
            return Err(DataError::Invalid(format!(
                "feature `{key}` is {:?}, not an image or video",
                spec.dtype
            )));
        }
        let (h, w, c) = spec.image_hwc()?;
        let frame = h * w * c;
        let mut out = vec![0u8; self.len() * frame];
        let is_video = spec.dtype == DType::Video;
        for ep in 0..self.episodes.len() {
            let (start, end) = self.episode_rows(ep)?;
            let mut reader: Option<(PathBuf, VideoReader)> = None;
            for row in start..end {
                let dst = &mut out[row * frame..(row + 1) * frame];
                if !is_video {
                    self.read_image(key, row, dst)?;
                    continue;
                }
                let Some((path, t)) = self.video_location(key, row)? else {
                    return Err(DataError::Invalid(format!(
                        "episode {} has no video for `{key}`",
                        self.episodes[ep].index
                    )));
                };
                if reader.as_ref().is_none_or(|(p, _)| *p != path) {
                    reader = Some((path.clone(), VideoReader::open(&path)?));
                }
                let (_, r) = reader.as_mut().expect("opened above");
                self.read_video_frame(r, t, dst)?;
            }
        }
        Ok(out)
    }
}

fn open_v30(root: PathBuf, info: DatasetInfo) -> Result<Dataset> {
    let tasks = read_tasks_parquet(&root.join("meta/tasks.parquet"))?;
    let episodes = read_episodes_v30(&root, &info)?;
    let table = read_data_files(&root, &info, &episodes)?;
    finish(root, info, tasks, episodes, table)
}

fn open_v21(root: PathBuf, info: DatasetInfo) -> Result<Dataset> {
    let tasks_path = root.join("meta/tasks.jsonl");
    let mut tasks: Vec<(usize, String)> = Vec::new();
    for (line_no, v) in read_jsonl(&tasks_path)? {
        let ti = v.get("task_index").and_then(Value::as_u64);
        let t = v.get("task").and_then(Value::as_str);
        match (ti, t) {
            (Some(i), Some(t)) => tasks.push((i as usize, t.to_owned())),
            _ => {
                return Err(field(
                    &tasks_path,
                    &format!("line {line_no}"),
                    "expected {\"task_index\": int, \"task\": str}",
                ));
            }
        }
    }
    tasks.sort();
    let tasks: Vec<String> = tasks.into_iter().map(|(_, t)| t).collect();

    let ep_path = root.join("meta/episodes.jsonl");
    let mut stats_by_ep: BTreeMap<usize, BTreeMap<String, FeatureStats>> = BTreeMap::new();
    let stats_path = root.join("meta/episodes_stats.jsonl");
    if stats_path.exists() {
        for (line_no, v) in read_jsonl(&stats_path)? {
            let ei = v
                .get("episode_index")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    field(
                        &stats_path,
                        &format!("line {line_no}"),
                        "missing episode_index",
                    )
                })?;
            let mut m = BTreeMap::new();
            if let Some(Value::Object(s)) = v.get("stats") {
                for (k, sv) in s {
                    let st = FeatureStats::from_json(sv).map_err(|e| {
                        field(&stats_path, &format!("line {line_no}: stats.{k}"), &e)
                    })?;
                    m.insert(k.clone(), st);
                }
            }
            stats_by_ep.insert(ei as usize, m);
        }
    }
    let video_keys = info.video_keys();
    let mut episodes = Vec::new();
    let mut next_from = 0usize;
    for (line_no, v) in read_jsonl(&ep_path)? {
        let index = v
            .get("episode_index")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                field(
                    &ep_path,
                    &format!("line {line_no}"),
                    "missing integer episode_index",
                )
            })? as usize;
        let length = v.get("length").and_then(Value::as_u64).ok_or_else(|| {
            field(
                &ep_path,
                &format!("line {line_no}"),
                "missing integer length",
            )
        })? as usize;
        let ep_tasks: Vec<String> = v
            .get("tasks")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let chunk = index / info.chunks_size;
        let nums = [
            ("episode_chunk", chunk),
            ("episode_index", index),
            ("chunk_index", chunk),
        ];
        let data_path = PathBuf::from(fill_template(&info.data_path, &nums, &[]));
        let mut videos = BTreeMap::new();
        for key in &video_keys {
            let t = info.video_path.as_deref().unwrap_or("");
            let path = PathBuf::from(fill_template(t, &nums, &[("video_key", key)]));
            let seg = root.join(&path).exists().then(|| VideoSegment {
                path,
                chunk_index: chunk,
                file_index: index,
                from_timestamp: 0.0,
                to_timestamp: length as f64 / f64::from(info.fps),
            });
            videos.insert(key.clone(), seg);
        }
        episodes.push(EpisodeMeta {
            index,
            tasks: ep_tasks,
            length,
            from: next_from,
            to: next_from + length,
            data_chunk: chunk,
            data_file: index,
            data_path,
            videos,
            stats: stats_by_ep.remove(&index).unwrap_or_default(),
        });
        next_from += length;
    }
    let table = read_data_files(&root, &info, &episodes)?;
    finish(root, info, tasks, episodes, table)
}

fn finish(
    root: PathBuf,
    info: DatasetInfo,
    tasks: Vec<String>,
    episodes: Vec<EpisodeMeta>,
    table: Table,
) -> Result<Dataset> {
    // Map rows to episodes from the data itself, and check it agrees with the metadata.
    let ep_col = table.i64s("episode_index").ok_or_else(|| {
        DataError::Invalid(format!(
            "{}: data has no int64 `episode_index` column",
            root.display()
        ))
    })?;
    let pos_of: BTreeMap<i64, usize> = episodes
        .iter()
        .enumerate()
        .map(|(p, e)| (e.index as i64, p))
        .collect();
    let mut row_episode = Vec::with_capacity(table.len);
    let mut episode_row = vec![usize::MAX; episodes.len()];
    let mut counts = vec![0usize; episodes.len()];
    for (row, &e) in ep_col.iter().enumerate() {
        let p = *pos_of.get(&e).ok_or_else(|| DataError::Invalid(format!("{}: data row {row} has episode_index {e}, which the episodes metadata does not list", root.display())))?;
        if episode_row[p] == usize::MAX {
            episode_row[p] = row;
        } else if row_episode.last() != Some(&(p as u32)) {
            return Err(DataError::Invalid(format!(
                "{}: rows of episode {e} are not contiguous (again at row {row})",
                root.display()
            )));
        }
        counts[p] += 1;
        row_episode.push(p as u32);
    }
    for (p, e) in episodes.iter().enumerate() {
        if counts[p] != e.length {
            return Err(DataError::Invalid(format!(
                "{}: episode {} has length {} in the metadata but {} rows in {}",
                root.display(),
                e.index,
                e.length,
                counts[p],
                e.data_path.display()
            )));
        }
    }
    let stats = match read_stats_json(&root.join("meta/stats.json"))? {
        Some(s) => s,
        None => aggregate_episode_stats(&episodes),
    };
    Ok(Dataset {
        root,
        info,
        tasks,
        episodes,
        table,
        stats,
        row_episode,
        episode_row,
    })
}

/// Aggregate per-episode stats into dataset stats, feature by feature.
pub fn aggregate_episode_stats(episodes: &[EpisodeMeta]) -> BTreeMap<String, FeatureStats> {
    let mut keys: Vec<&String> = episodes.iter().flat_map(|e| e.stats.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let parts: Vec<&FeatureStats> =
                episodes.iter().filter_map(|e| e.stats.get(k)).collect();
            FeatureStats::aggregate(&parts).map(|s| (k.clone(), s))
        })
        .collect()
}

/// `meta/stats.json`, if present.
pub fn read_stats_json(path: &Path) -> Result<Option<BTreeMap<String, FeatureStats>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DataError::Io {
                path: path.to_owned(),
                source: e,
            });
        }
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| DataError::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| field(path, "(root)", "expected an object of features"))?;
    let mut out = BTreeMap::new();
    for (k, s) in obj {
        out.insert(
            k.clone(),
            FeatureStats::from_json(s).map_err(|e| field(path, k, &e))?,
        );
    }
    Ok(Some(out))
}

fn read_data_files(root: &Path, info: &DatasetInfo, episodes: &[EpisodeMeta]) -> Result<Table> {
    let features: Vec<&FeatureSpec> = info
        .features
        .values()
        .filter(|f| f.dtype != DType::Video)
        .collect();
    let mut files: Vec<&PathBuf> = Vec::new();
    for e in episodes {
        if files.last() != Some(&&e.data_path) && !files.contains(&&e.data_path) {
            files.push(&e.data_path);
        }
    }
    let mut table = Table::default();
    for f in files {
        let part = read_parquet(&root.join(f), &features)?;
        table.append(part)?;
    }
    if table.columns.is_empty() {
        for f in &features {
            table.columns.insert(f.name.clone(), Column::empty_for(f));
        }
    }
    Ok(table)
}

fn read_tasks_parquet(path: &Path) -> Result<Vec<String>> {
    let batches = read_batches(path)?;
    let mut pairs: Vec<(i64, String)> = Vec::new();
    for b in &batches {
        let ti = int_col(path, b, "task_index")?;
        let task = b
            .column_by_name("task")
            .or_else(|| b.column_by_name("__index_level_0__"))
            .ok_or_else(|| col_err(path, "task", "missing"))?;
        let task = arrow::compute::cast(task, &DataType::Utf8)
            .map_err(|e| col_err(path, "task", &e.to_string()))?;
        let s = task.as_string::<i32>();
        for (r, &t) in ti.iter().enumerate() {
            pairs.push((t, s.value(r).to_owned()));
        }
    }
    pairs.sort();
    for (pos, (ti, t)) in pairs.iter().enumerate() {
        if *ti != pos as i64 {
            return Err(col_err(
                path,
                "task_index",
                &format!(
                    "task indices must be 0..{} without gaps; `{t}` has {ti}",
                    pairs.len()
                ),
            ));
        }
    }
    Ok(pairs.into_iter().map(|(_, t)| t).collect())
}

fn read_episodes_v30(root: &Path, info: &DatasetInfo) -> Result<Vec<EpisodeMeta>> {
    let dir = root.join("meta/episodes");
    let mut files = Vec::new();
    if dir.exists() {
        collect_parquet(&dir, &mut files)?;
    } else if info.total_episodes > 0 {
        return Err(DataError::Missing {
            path: dir,
            expected_by: format!("info.json (total_episodes = {})", info.total_episodes),
        });
    }
    files.sort();
    let video_keys = info.video_keys();
    let mut out = Vec::new();
    for path in files {
        for b in read_batches(&path)? {
            let n = b.num_rows();
            let ep = int_col(&path, &b, "episode_index")?;
            let len = int_col(&path, &b, "length")?;
            let dc = int_col(&path, &b, "data/chunk_index")?;
            let df = int_col(&path, &b, "data/file_index")?;
            let from = int_col(&path, &b, "dataset_from_index")?;
            let to = int_col(&path, &b, "dataset_to_index")?;
            let tasks = list_of_strings(&path, &b, "tasks")?;
            let mut vids = Vec::new();
            for key in &video_keys {
                let c = opt_int_col(&b, &format!("videos/{key}/chunk_index"));
                let f = opt_int_col(&b, &format!("videos/{key}/file_index"));
                let a = opt_f64_col(&b, &format!("videos/{key}/from_timestamp"));
                let z = opt_f64_col(&b, &format!("videos/{key}/to_timestamp"));
                vids.push((key, c, f, a, z));
            }
            let stats_cols = stats_columns(&path, &b)?;
            for r in 0..n {
                let bad = |c: &str, v: i64| {
                    col_err(&path, c, &format!("row {r}: {v} must be non-negative"))
                };
                let nonneg = |c: &str, v: i64| {
                    if v < 0 {
                        Err(bad(c, v))
                    } else {
                        Ok(v as usize)
                    }
                };
                let (from_r, to_r) = (
                    nonneg("dataset_from_index", from[r])?,
                    nonneg("dataset_to_index", to[r])?,
                );
                let length = nonneg("length", len[r])?;
                if to_r < from_r || to_r - from_r != length {
                    return Err(col_err(
                        &path,
                        "dataset_to_index",
                        &format!("row {r}: [{from_r}, {to_r}) does not span length {length}"),
                    ));
                }
                let (data_chunk, data_file) = (
                    nonneg("data/chunk_index", dc[r])?,
                    nonneg("data/file_index", df[r])?,
                );
                let mut videos = BTreeMap::new();
                for (key, c, f, a, z) in &vids {
                    let seg = match (
                        c.as_ref().and_then(|c| c[r]),
                        f.as_ref().and_then(|f| f[r]),
                        a.as_ref().and_then(|a| a[r]),
                        z.as_ref().and_then(|z| z[r]),
                    ) {
                        (Some(c), Some(f), Some(a), Some(z)) if c >= 0 && f >= 0 => {
                            Some(VideoSegment {
                                path: info.video_file(key, c as usize, f as usize),
                                chunk_index: c as usize,
                                file_index: f as usize,
                                from_timestamp: a,
                                to_timestamp: z,
                            })
                        }
                        (None, None, None, None) => None,
                        _ => {
                            return Err(col_err(
                                &path,
                                &format!("videos/{key}/*"),
                                &format!(
                                    "row {r}: the camera's chunk/file/from/to columns are partly missing"
                                ),
                            ));
                        }
                    };
                    videos.insert((*key).clone(), seg);
                }
                let mut stats = BTreeMap::new();
                for (feat, cols) in &stats_cols {
                    if let Some(s) = cols.row(r) {
                        stats.insert(feat.clone(), s);
                    }
                }
                out.push(EpisodeMeta {
                    index: nonneg("episode_index", ep[r])?,
                    tasks: tasks[r].clone(),
                    length,
                    from: from_r,
                    to: to_r,
                    data_chunk,
                    data_file,
                    data_path: info.data_file(data_chunk, data_file),
                    videos,
                    stats,
                });
            }
        }
    }
    out.sort_by_key(|e| e.from);
    Ok(out)
}

/// The `stats/<feature>/<stat>` columns of an episodes table, grouped by feature.
struct StatsCols {
    cols: BTreeMap<String, Vec<Option<Vec<f64>>>>,
    nested: bool,
}

impl StatsCols {
    fn row(&self, r: usize) -> Option<FeatureStats> {
        let get = |k: &str| self.cols.get(k).and_then(|c| c[r].clone());
        let mut obj = serde_json::Map::new();
        for k in ["min", "max", "mean", "std", "count"]
            .iter()
            .chain(QUANTILES.iter().map(|(n, _)| n))
        {
            if let Some(v) = get(k) {
                obj.insert((*k).into(), serde_json::json!(v));
            }
        }
        let mut s = FeatureStats::from_json(&Value::Object(obj)).ok()?;
        s.image = self.nested;
        Some(s)
    }
}

fn stats_columns(path: &Path, b: &RecordBatch) -> Result<BTreeMap<String, StatsCols>> {
    let mut out: BTreeMap<String, StatsCols> = BTreeMap::new();
    for (i, f) in b.schema().fields().iter().enumerate() {
        let Some(rest) = f.name().strip_prefix("stats/") else {
            continue;
        };
        let Some((feat, stat)) = rest.rsplit_once('/') else {
            continue;
        };
        let col = b.column(i);
        let mut nested = false;
        let mut rows = Vec::with_capacity(b.num_rows());
        for r in 0..b.num_rows() {
            if col.is_null(r) {
                rows.push(None);
                continue;
            }
            let (vals, n) = flatten_numeric(&col.slice(r, 1))
                .map_err(|e| col_err(path, f.name(), &format!("row {r}: {e}")))?;
            nested |= n;
            rows.push(Some(vals));
        }
        let entry = out.entry(feat.to_owned()).or_insert_with(|| StatsCols {
            cols: BTreeMap::new(),
            nested: false,
        });
        if stat != "count" {
            entry.nested |= nested;
        }
        entry.cols.insert(stat.to_owned(), rows);
    }
    Ok(out)
}

/// Flatten a 1-row (possibly nested) list column to f64 values; true if nested > 1 level.
fn flatten_numeric(a: &arrow::array::ArrayRef) -> std::result::Result<(Vec<f64>, bool), String> {
    let mut cur = a.clone();
    let mut depth = 0;
    loop {
        cur = match cur.data_type() {
            DataType::List(_) => {
                let l = cur.as_list::<i32>();
                let o = l.value_offsets();
                l.values()
                    .slice(o[0] as usize, (o[o.len() - 1] - o[0]) as usize)
            }
            DataType::LargeList(_) => {
                let l = cur.as_list::<i64>();
                let o = l.value_offsets();
                l.values()
                    .slice(o[0] as usize, (o[o.len() - 1] - o[0]) as usize)
            }
            DataType::FixedSizeList(_, n) => {
                let l = cur.as_fixed_size_list();
                l.values()
                    .slice(l.offset() * *n as usize, l.len() * *n as usize)
            }
            _ => break,
        };
        depth += 1;
    }
    let f = arrow::compute::cast(&cur, &DataType::Float64)
        .map_err(|e| format!("not numeric ({}): {e}", cur.data_type()))?;
    let f = f.as_primitive::<Float64Type>();
    Ok((f.iter().map(|x| x.unwrap_or(f64::NAN)).collect(), depth > 1))
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(crate::error::io(dir))? {
        let entry = entry.map_err(crate::error::io(dir))?;
        let p = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // temp files of an interrupted write
        }
        if p.is_dir() {
            collect_parquet(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}

pub(crate) fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = crate::fsutil::open_existing(path, "the dataset layout")?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| DataError::Parquet {
            path: path.to_owned(),
            message: format!("not a readable parquet file: {e}"),
        })?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| DataError::Parquet {
            path: path.to_owned(),
            message: format!("corrupt data: {e}"),
        })
}

fn int_col(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| col_err(path, name, "missing"))?;
    if c.null_count() > 0 {
        return Err(col_err(path, name, "contains nulls"));
    }
    let c = arrow::compute::cast(c, &DataType::Int64)
        .map_err(|e| col_err(path, name, &format!("expected integers: {e}")))?;
    Ok(c.as_primitive::<Int64Type>().values().to_vec())
}

fn opt_int_col(b: &RecordBatch, name: &str) -> Option<Vec<Option<i64>>> {
    let c = arrow::compute::cast(b.column_by_name(name)?, &DataType::Int64).ok()?;
    Some(c.as_primitive::<Int64Type>().iter().collect())
}

fn opt_f64_col(b: &RecordBatch, name: &str) -> Option<Vec<Option<f64>>> {
    let c = arrow::compute::cast(b.column_by_name(name)?, &DataType::Float64).ok()?;
    Some(c.as_primitive::<Float64Type>().iter().collect())
}

fn list_of_strings(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Vec<String>>> {
    let Some(c) = b.column_by_name(name) else {
        return Ok(vec![Vec::new(); b.num_rows()]);
    };
    let target = DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new(
        "element",
        DataType::Utf8,
        true,
    )));
    let c = arrow::compute::cast(c, &target)
        .map_err(|e| col_err(path, name, &format!("expected a list of strings: {e}")))?;
    let l = c.as_list::<i32>();
    Ok((0..l.len())
        .map(|r| {
            if l.is_null(r) {
                return Vec::new();
            }
            let v = l.value(r);
            let s = v.as_string::<i32>();
            (0..s.len()).map(|i| s.value(i).to_owned()).collect()
        })
        .collect())
}

fn read_jsonl(path: &Path) -> Result<Vec<(usize, Value)>> {
    let text = crate::fsutil::read_existing(path, "a v2.1 dataset")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line).map_err(|e| DataError::Json {
            path: path.to_owned(),
            message: format!("line {}: {e}", i + 1),
        })?;
        out.push((i + 1, v));
    }
    Ok(out)
}

fn col_err(path: &Path, column: &str, message: &str) -> DataError {
    DataError::Column {
        path: path.to_owned(),
        column: column.to_owned(),
        message: message.to_owned(),
    }
}

fn field(path: &Path, f: &str, message: &str) -> DataError {
    DataError::Field {
        path: path.to_owned(),
        field: f.to_owned(),
        message: message.to_owned(),
    }
}
