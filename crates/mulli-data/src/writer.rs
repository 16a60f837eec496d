//! Writing LeRobot v3.0 datasets, crash-safe.
//!
//! `DatasetWriter::create(root, features, options)` → `add_frame(..)`… → `save_episode()` …
//! → `finalize()`.
//!
//! Durability design: `save_episode` stages the finished episode under
//! `root/.mulli-staging/episode-NNNNNN/` (its rows as parquet, its camera streams as encoded
//! H.264 packets, its metadata and stats as JSON), written to a temp directory, fsynced and
//! renamed, so an episode is staged entirely or not at all. Staged episodes are consolidated
//! into LeRobot's v3 files (many episodes per data parquet and per MP4) when they reach the
//! file-size limit and at `finalize`; each file is written to a temp name and renamed, and
//! `meta/info.json` is written last, as the commit point. A crash or kill therefore loses at
//! most the episode being recorded: reopening the directory (any mode) consolidates what was
//! staged and discards half-written temp files. LeRobot instead keeps parquet writers open
//! until `finalize()`, so a crash leaves files without footers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, Int64Array, Int64Builder, ListBuilder,
    RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use mulli_core::{DType, FeatureSpec, Features, Frame, Value};
use parquet::arrow::ArrowWriter;
use serde_json::{Map, json};

use crate::dataset::{Dataset, EpisodeMeta, VideoSegment, aggregate_episode_stats};
use crate::error::{DataError, Result, io};
use crate::fsutil::{commit, is_empty_dir, temp_path, write_atomic};
use crate::info::{DatasetInfo, INDEX_COLUMNS, Version};
use crate::stats::{FeatureStats, QUANTILES};
use crate::table::{Column, Table, read_parquet, write_parquet};
use crate::video::{
    EncodedPacket, Mp4H264Writer, packets_from_bytes, packets_to_bytes, write_h264_mp4,
};

const STAGING: &str = ".mulli-staging";

/// What to do when the target directory already holds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Refuse unless the directory is empty or absent.
    #[default]
    Create,
    /// Delete what is there (the CLI's `--force`).
    Overwrite,
    /// Add episodes to the dataset already there (features and fps must match).
    Append,
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub fps: u32,
    pub robot_type: Option<String>,
    pub mode: WriteMode,
    /// Keyframe interval of the H.264 streams. LeRobot uses 2 for cheap random access.
    pub video_gop: u32,
    pub data_files_size_in_mb: u64,
    pub video_files_size_in_mb: u64,
    pub chunks_size: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            fps: 30,
            robot_type: None,
            mode: WriteMode::Create,
            video_gop: 2,
            data_files_size_in_mb: crate::info::DEFAULT_DATA_FILE_SIZE_MB,
            video_files_size_in_mb: crate::info::DEFAULT_VIDEO_FILE_SIZE_MB,
            chunks_size: crate::info::DEFAULT_CHUNK_SIZE,
        }
    }
}

/// A staged (durable, not yet consolidated) episode.
#[derive(Debug, Clone)]
struct Staged {
    dir: PathBuf,
    meta: EpisodeMeta,
    data_bytes: u64,
    video_bytes: u64,
}

/// The episode being recorded.
struct Recording {
    table: Table,
    encoders: BTreeMap<String, Mp4H264Writer>,
    histograms: BTreeMap<String, Vec<[u64; 256]>>,
}

pub struct DatasetWriter {
    root: PathBuf,
    info: DatasetInfo,
    opts: WriterOptions,
    user: Features,
    tasks: Vec<String>,
    /// Consolidated episodes (in the v3 files, listed in info.json).
    committed: Vec<EpisodeMeta>,
    staged: Vec<Staged>,
    rec: Recording,
    /// Next (chunk, file) for data, per-camera video, and episodes files.
    next_data: (usize, usize),
    next_video: BTreeMap<String, (usize, usize)>,
    next_meta: (usize, usize),
}

impl DatasetWriter {
    /// Start writing a dataset of `features` at `root` (see [`WriteMode`] for existing dirs).
    /// `features` are the user's features; LeRobot's index columns are added.
    pub fn create(
        root: impl AsRef<Path>,
        features: &Features,
        opts: WriterOptions,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if opts.fps == 0 {
            return Err(DataError::Invalid("fps must be > 0".into()));
        }
        let mut user = Features::new();
        for (name, f) in features {
            if INDEX_COLUMNS.contains(&name.as_str()) {
                continue;
            }
            if name != &f.name {
                return Err(DataError::Invalid(format!(
                    "feature key `{name}` and its name `{}` differ",
                    f.name
                )));
            }
            if name.contains('/') || name.is_empty() {
                return Err(DataError::Invalid(format!(
                    "feature name `{name}` must be non-empty and without `/`"
                )));
            }
            if f.dtype.is_visual() {
                let (h, w, c) = f.image_hwc()?;
                if f.dtype == DType::Video && (c != 3 || h % 2 != 0 || w % 2 != 0) {
                    return Err(DataError::Invalid(format!(
                        "video feature `{name}`: shape {:?}: H.264 needs 3 channels and even height and width",
                        f.shape
                    )));
                }
            }
            user.insert(name.clone(), f.clone());
        }
        let has_dataset = root.join("meta/info.json").exists() || root.join(STAGING).exists();
        match opts.mode {
            WriteMode::Append if has_dataset => return Self::reopen(root, &user, opts),
            WriteMode::Create | WriteMode::Append => {
                if !is_empty_dir(&root)? {
                    return Err(DataError::NotEmpty { path: root });
                }
            }
            WriteMode::Overwrite => {
                if root.exists() {
                    std::fs::remove_dir_all(&root).map_err(io(&root))?;
                }
            }
        }
        std::fs::create_dir_all(root.join(STAGING)).map_err(io(&root))?;
        let mut info = DatasetInfo::new_v30(opts.fps, opts.robot_type.clone(), &user);
        info.chunks_size = opts.chunks_size.max(1);
        info.data_files_size_in_mb = opts.data_files_size_in_mb;
        info.video_files_size_in_mb = opts.video_files_size_in_mb;
        for f in info.features.values_mut() {
            if f.dtype == DType::Video {
                f.info = Some(video_info_block(f, opts.fps, opts.video_gop)?);
            }
        }
        let next_video = info.video_keys().into_iter().map(|k| (k, (0, 0))).collect();
        let mut w = DatasetWriter {
            rec: Recording::new(&info),
            root,
            info,
            opts,
            user,
            tasks: Vec::new(),
            committed: Vec::new(),
            staged: Vec::new(),
            next_data: (0, 0),
            next_video,
            next_meta: (0, 0),
        };
        // info.json first, so the directory is recognisably a (empty) mulli/LeRobot dataset.
        w.write_metadata()?;
        Ok(w)
    }

    /// Reopen an existing dataset for appending, recovering staged episodes after a crash.
    fn reopen(root: PathBuf, user: &Features, opts: WriterOptions) -> Result<Self> {
        clean_temp_files(&root)?;
        let ds = Dataset::open(&root)?;
        if ds.info.version != Version::V30 {
            return Err(DataError::Invalid(format!(
                "{}: can only append to v3.0 datasets; convert it first (`mulli dataset convert`)",
                root.display()
            )));
        }
        let existing = ds.info.user_features();
        if !user.is_empty() {
            for (k, f) in user {
                match existing.get(k) {
                    Some(e) if e.dtype == f.dtype && e.shape == f.shape => {}
                    Some(e) => {
                        return Err(DataError::Invalid(format!(
                            "{}: feature `{k}` is {} {:?} in the dataset but {} {:?} in the new data",
                            root.display(),
                            e.dtype,
                            e.shape,
                            f.dtype,
                            f.shape
                        )));
                    }
                    None => {
                        return Err(DataError::Invalid(format!(
                            "{}: feature `{k}` is not in the existing dataset",
                            root.display()
                        )));
                    }
                }
            }
            if let Some(k) = existing.keys().find(|k| !user.contains_key(*k)) {
                return Err(DataError::Invalid(format!(
                    "{}: the new data lacks feature `{k}` of the existing dataset",
                    root.display()
                )));
            }
        }
        if ds.info.fps != opts.fps {
            return Err(DataError::Invalid(format!(
                "{}: dataset fps is {}, the writer was given {}",
                root.display(),
                ds.info.fps,
                opts.fps
            )));
        }
        let committed = ds.episodes.clone();
        let next_data = next_slot(
            committed.iter().map(|e| (e.data_chunk, e.data_file)),
            ds.info.chunks_size,
        );
        let mut next_video = BTreeMap::new();
        for k in ds.info.video_keys() {
            let used = committed.iter().filter_map(|e| {
                e.videos
                    .get(&k)
                    .and_then(|s| s.as_ref())
                    .map(|s| (s.chunk_index, s.file_index))
            });
            let slot = next_slot(used, ds.info.chunks_size);
            next_video.insert(k, slot);
        }
        let next_meta = next_slot(existing_meta_files(&root)?.into_iter(), ds.info.chunks_size);
        let mut w = DatasetWriter {
            rec: Recording::new(&ds.info),
            root: root.clone(),
            opts,
            user: existing,
            tasks: ds.tasks.clone(),
            committed,
            staged: Vec::new(),
            next_data,
            next_video,
            next_meta,
            info: ds.info,
        };
        w.recover_staged()?;
        Ok(w)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn info(&self) -> &DatasetInfo {
        &self.info
    }

    /// Episodes saved so far (consolidated and staged).
    pub fn num_episodes(&self) -> usize {
        self.committed.len() + self.staged.len()
    }

    /// Frames of all saved episodes: the global index of the next saved frame.
    fn frames_saved(&self) -> usize {
        // The last saved episode ends where the next one starts.
        self.staged
            .last()
            .map(|s| s.meta.to)
            .or_else(|| self.committed.last().map(|e| e.to))
            .unwrap_or(0)
    }

    /// Frames in the episode being recorded.
    pub fn episode_len(&self) -> usize {
        self.rec.table.len
    }

    /// Add one frame to the current episode. Images are HWC uint8.
    pub fn add_frame(&mut self, frame: &Frame) -> Result<()> {
        frame.check(&self.user)?;
        if frame.task.is_empty() {
            return Err(DataError::Invalid("frame has an empty task string".into()));
        }
        let frame_index = self.rec.table.len;
        for (name, spec) in &self.user {
            let value = &frame.values[name];
            match spec.dtype {
                DType::Video | DType::Image => {
                    let Value::U8(px) = value else {
                        unreachable!("checked")
                    };
                    let (h, w, c) = spec.image_hwc()?;
                    if spec.dtype == DType::Video {
                        let enc = match self.rec.encoders.get_mut(name) {
                            Some(e) => e,
                            None => {
                                let e = Mp4H264Writer::new(
                                    w as u32,
                                    h as u32,
                                    self.opts.fps,
                                    self.opts.video_gop,
                                )?;
                                self.rec.encoders.entry(name.clone()).or_insert(e)
                            }
                        };
                        enc.push_rgb(px)?;
                    } else {
                        let png = crate::png_codec::encode(px, w as u32, h as u32, c)?;
                        self.rec.column(name).push(&Value::U8(png))?;
                    }
                    let hist = self
                        .rec
                        .histograms
                        .entry(name.clone())
                        .or_insert_with(|| vec![[0; 256]; c]);
                    accumulate_histogram(hist, px, c);
                }
                _ => self.rec.column(name).push(value)?,
            }
        }
        let task_index = match self.tasks.iter().position(|t| t == &frame.task) {
            Some(i) => i,
            None => {
                self.tasks.push(frame.task.clone());
                self.tasks.len() - 1
            }
        };
        let ep = self.num_episodes() as i64;
        let global = (self.frames_saved() + frame_index) as i64;
        self.rec.column("timestamp").push(&Value::F32(vec![
            (frame_index as f64 / f64::from(self.opts.fps)) as f32,
        ]))?;
        self.rec
            .column("frame_index")
            .push(&Value::I64(vec![frame_index as i64]))?;
        self.rec
            .column("episode_index")
            .push(&Value::I64(vec![ep]))?;
        self.rec.column("index").push(&Value::I64(vec![global]))?;
        self.rec
            .column("task_index")
            .push(&Value::I64(vec![task_index as i64]))?;
        self.rec.table.len += 1;
        Ok(())
    }

    /// Drop the frames of the current episode.
    pub fn clear_episode(&mut self) {
        self.rec = Recording::new(&self.info);
    }

    /// Finish the current episode and make it durable. Returns its episode index.
    pub fn save_episode(&mut self) -> Result<usize> {
        let length = self.rec.table.len;
        if length == 0 {
            return Err(DataError::Invalid(
                "save_episode: the episode has no frames".into(),
            ));
        }
        let rec = std::mem::replace(&mut self.rec, Recording::new(&self.info));
        let index = self.num_episodes();
        let from = self.frames_saved();

        // Per-episode stats of every stored feature, as LeRobot computes them.
        let mut stats = BTreeMap::new();
        for (name, spec) in &self.info.features {
            let s =
                match spec.dtype {
                    DType::Video | DType::Image => rec
                        .histograms
                        .get(name)
                        .and_then(|h| FeatureStats::from_u8_histograms(h, length as u64)),
                    DType::String => None,
                    _ => rec.table.columns.get(name).and_then(|c| {
                        FeatureStats::from_rows(&c.rows_f64(0, length), spec.numel())
                    }),
                };
            if let Some(s) = s {
                stats.insert(name.clone(), s);
            }
        }
        let task_idx = rec.table.i64s("task_index").unwrap_or(&[]).to_vec();
        let mut tasks: Vec<String> = Vec::new();
        for t in task_idx {
            let s = &self.tasks[t as usize];
            if !tasks.contains(s) {
                tasks.push(s.clone());
            }
        }

        let final_dir = self.root.join(STAGING).join(format!("episode-{index:06}"));
        let tmp_dir = self
            .root
            .join(STAGING)
            .join(format!(".episode-{index:06}.tmp"));
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        }
        std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        let stored = self.stored_features();
        let data_bytes = write_parquet(&tmp_dir.join("data.parquet"), &rec.table, &stored, None)?;
        let mut video_bytes = 0;
        let mut frames = Map::new();
        for (key, enc) in rec.encoders {
            let n = enc.frames();
            let bytes = packets_to_bytes(&enc.into_packets());
            video_bytes += bytes.len() as u64;
            write_atomic(&tmp_dir.join(format!("{key}.h264pkt")), &bytes)?;
            frames.insert(key, json!(n));
        }
        let meta = json!({
            "episode_index": index,
            "length": length,
            "tasks": tasks,
            "all_tasks": self.tasks,
            "video_frames": frames,
            "stats": stats.iter().map(|(k, s)| (k.clone(), s.to_json())).collect::<Map<_, _>>(),
        });
        write_atomic(&tmp_dir.join("episode.json"), meta.to_string().as_bytes())?;
        if let Ok(d) = std::fs::File::open(&tmp_dir) {
            let _ = d.sync_all();
        }
        commit(&tmp_dir, &final_dir)?;
        self.staged.push(Staged {
            dir: final_dir,
            meta: staged_meta(index, tasks, length, from, stats),
            data_bytes,
            video_bytes,
        });
        let limit = |mb: u64| mb.saturating_mul(1 << 20);
        let staged_data: u64 = self.staged.iter().map(|s| s.data_bytes).sum();
        let staged_video: u64 = self.staged.iter().map(|s| s.video_bytes).sum();
        if staged_data >= limit(self.opts.data_files_size_in_mb)
            || staged_video >= limit(self.opts.video_files_size_in_mb)
        {
            self.consolidate()?;
        }
        Ok(index)
    }

    /// Consolidate staged episodes and write the final metadata. The dataset is then a
    /// complete LeRobot v3.0 dataset. Frames added since the last `save_episode` are dropped
    /// (with a warning), as LeRobot does.
    pub fn finalize(mut self) -> Result<DatasetInfo> {
        if self.rec.table.len > 0 {
            tracing::warn!(
                frames = self.rec.table.len,
                "finalize: dropping an unsaved episode"
            );
        }
        self.consolidate()?;
        let staging = self.root.join(STAGING);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        Ok(self.info.clone())
    }

    /// Features stored in parquet (everything except video), in info order.
    fn stored_features(&self) -> Vec<&FeatureSpec> {
        self.info
            .features
            .values()
            .filter(|f| f.dtype != DType::Video)
            .collect()
    }

    /// Move staged episodes into v3 files; info.json last.
    fn consolidate(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return self.write_metadata();
        }
        let staged = self.staged.clone();
        let stored: Vec<FeatureSpec> = self.stored_features().into_iter().cloned().collect();
        let stored_refs: Vec<&FeatureSpec> = stored.iter().collect();
        let mut metas: Vec<EpisodeMeta> = staged.iter().map(|s| s.meta.clone()).collect();

        // Data: one file for this batch of episodes (each batch stays under the size limit
        // because staging flushes when it reaches it).
        let (chunk, file) = self.next_data;
        let rel = self.info.data_file(chunk, file);
        let mut table = Table::default();
        for s in &staged {
            table.append(read_parquet(&s.dir.join("data.parquet"), &stored_refs)?)?;
        }
        let path = self.root.join(&rel);
        let tmp = temp_path(&path);
        write_parquet(&tmp, &table, &stored_refs, Some(hf_features_json(&stored)))?;
        commit(&tmp, &path)?;
        for m in &mut metas {
            m.data_chunk = chunk;
            m.data_file = file;
            m.data_path = rel.clone();
        }
        self.next_data = advance(self.next_data, self.info.chunks_size);

        // Videos: concatenate each camera's episodes into one MP4 (no re-encoding).
        for key in self.info.video_keys() {
            let (chunk, file) = self.next_video.get(&key).copied().unwrap_or((0, 0));
            let rel = self.info.video_file(&key, chunk, file);
            let (h, w, _) = self.info.features[&key].image_hwc()?;
            let mut packets: Vec<EncodedPacket> = Vec::new();
            for (s, m) in staged.iter().zip(metas.iter_mut()) {
                let p = s.dir.join(format!("{key}.h264pkt"));
                let bytes = std::fs::read(&p).map_err(io(&p))?;
                let ep_packets = packets_from_bytes(&bytes)
                    .map_err(|e| DataError::Invalid(format!("{}: {e}", p.display())))?;
                if ep_packets.len() != m.length {
                    return Err(DataError::Invalid(format!(
                        "{}: {} frames staged, episode has {}",
                        p.display(),
                        ep_packets.len(),
                        m.length
                    )));
                }
                let from_ts = packets.len() as f64 / f64::from(self.opts.fps);
                packets.extend(ep_packets);
                m.videos.insert(
                    key.clone(),
                    Some(VideoSegment {
                        path: rel.clone(),
                        chunk_index: chunk,
                        file_index: file,
                        from_timestamp: from_ts,
                        to_timestamp: from_ts + m.length as f64 / f64::from(self.opts.fps),
                    }),
                );
            }
            let path = self.root.join(&rel);
            let tmp = temp_path(&path);
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).map_err(io(d))?;
            }
            write_h264_mp4(&tmp, w as u32, h as u32, self.opts.fps, &packets)?;
            crate::fsutil::sync_file(&tmp)?;
            commit(&tmp, &path)?;
            self.next_video
                .insert(key, advance((chunk, file), self.info.chunks_size));
        }

        // Episodes metadata for this batch.
        let (mc, mf) = self.next_meta;
        let ep_path = self
            .root
            .join(format!("meta/episodes/chunk-{mc:03}/file-{mf:03}.parquet"));
        write_episodes_parquet(&ep_path, &metas, &self.info, (mc, mf))?;
        self.next_meta = advance(self.next_meta, self.info.chunks_size);

        self.committed.extend(metas);
        self.staged.clear();
        self.write_metadata()?;
        for s in &staged {
            std::fs::remove_dir_all(&s.dir).map_err(io(&s.dir))?;
        }
        Ok(())
    }

    /// tasks.parquet, stats.json and info.json (last: it is the commit point).
    fn write_metadata(&mut self) -> Result<()> {
        write_tasks_parquet(&self.root.join("meta/tasks.parquet"), &self.tasks)?;
        let stats = aggregate_episode_stats(&self.committed);
        let stats_json: Map<String, serde_json::Value> = stats
            .iter()
            .map(|(k, s)| (k.clone(), s.to_json()))
            .collect();
        write_atomic(
            &self.root.join("meta/stats.json"),
            serde_json::to_string_pretty(&stats_json)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        self.info.total_episodes = self.committed.len();
        self.info.total_frames = self.committed.iter().map(|e| e.length).sum();
        self.info.total_tasks = self.tasks.len();
        self.info.splits = Map::new();
        self.info
            .splits
            .insert("train".into(), json!(format!("0:{}", self.committed.len())));
        let text = serde_json::to_string_pretty(&self.info.to_json()).unwrap_or_default();
        write_atomic(&self.root.join("meta/info.json"), text.as_bytes())
    }

    /// Load staged episodes left by an interrupted writer, then consolidate them.
    fn recover_staged(&mut self) -> Result<()> {
        let staging = self.root.join(STAGING);
        if !staging.exists() {
            return std::fs::create_dir_all(&staging).map_err(io(&staging));
        }
        let mut dirs: Vec<(usize, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&staging).map_err(io(&staging))? {
            let entry = entry.map_err(io(&staging))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            match name
                .strip_prefix("episode-")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(i) => dirs.push((i, path)),
                // An episode that was being staged when the writer died: it is lost.
                None => {
                    tracing::warn!(path = %path.display(), "removing a partially staged episode");
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        }
        dirs.sort();
        let mut from: usize = self.committed.iter().map(|e| e.length).sum();
        for (i, dir) in dirs {
            if i < self.committed.len() {
                // Consolidated before the crash; only the cleanup was missed.
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
                continue;
            }
            if i != self.num_episodes() {
                return Err(DataError::Invalid(format!(
                    "{}: staged episode {i} does not follow episode {} (a staged episode is missing)",
                    dir.display(),
                    self.num_episodes()
                )));
            }
            let meta_path = dir.join("episode.json");
            let text = std::fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| DataError::Json {
                    path: meta_path.clone(),
                    message: e.to_string(),
                })?;
            let length = v["length"].as_u64().ok_or_else(|| {
                DataError::Invalid(format!("{}: missing length", meta_path.display()))
            })? as usize;
            if let Some(all) = v["all_tasks"].as_array() {
                for t in all.iter().filter_map(|t| t.as_str()) {
                    if !self.tasks.iter().any(|x| x == t) {
                        self.tasks.push(t.to_owned());
                    }
                }
            }
            let tasks = v["tasks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut stats = BTreeMap::new();
            if let Some(s) = v["stats"].as_object() {
                for (k, sv) in s {
                    if let Ok(st) = FeatureStats::from_json(sv) {
                        stats.insert(k.clone(), st);
                    }
                }
            }
            let data_bytes = std::fs::metadata(dir.join("data.parquet"))
                .map(|m| m.len())
                .unwrap_or(0);
            self.staged.push(Staged {
                dir,
                meta: staged_meta(i, tasks, length, from, stats),
                data_bytes,
                video_bytes: 0,
            });
            from += length;
        }
        if !self.staged.is_empty() {
            tracing::info!(
                episodes = self.staged.len(),
                "recovered staged episodes from an interrupted write"
            );
            self.consolidate()?;
        }
        Ok(())
    }
}

impl Recording {
    fn new(info: &DatasetInfo) -> Self {
        let mut table = Table::default();
        for f in info.features.values().filter(|f| f.dtype != DType::Video) {
            table.columns.insert(f.name.clone(), Column::empty_for(f));
        }
        Recording {
            table,
            encoders: BTreeMap::new(),
            histograms: BTreeMap::new(),
        }
    }

    fn column(&mut self, name: &str) -> &mut Column {
        self.table
            .columns
            .get_mut(name)
            .expect("every stored feature has a column")
    }
}

/// Open a dataset directory that a writer may have left mid-way, and make it consistent:
/// temp files removed, staged episodes consolidated. Returns the number of episodes.
pub fn recover(root: &Path) -> Result<usize> {
    let info = DatasetInfo::load(root)?;
    let opts = WriterOptions {
        fps: info.fps,
        robot_type: info.robot_type.clone(),
        mode: WriteMode::Append,
        ..Default::default()
    };
    let w = DatasetWriter::create(root, &Features::new(), opts)?;
    let n = w.num_episodes();
    w.finalize()?;
    Ok(n)
}

/// Metadata of a staged episode; file locations are filled in at consolidation.
fn staged_meta(
    index: usize,
    tasks: Vec<String>,
    length: usize,
    from: usize,
    stats: BTreeMap<String, FeatureStats>,
) -> EpisodeMeta {
    EpisodeMeta {
        index,
        tasks,
        length,
        from,
        to: from + length,
        data_chunk: 0,
        data_file: 0,
        data_path: PathBuf::new(),
        videos: BTreeMap::new(),
        stats,
    }
}

fn accumulate_histogram(hist: &mut [[u64; 256]], px: &[u8], c: usize) {
    // Subsample pixels of large images: the stats need the distribution, not every pixel.
    let pixels = px.len() / c.max(1);
    let step = (pixels / 16_384).max(1);
    for p in (0..pixels).step_by(step) {
        for (ch, h) in hist.iter_mut().enumerate() {
            h[usize::from(px[p * c + ch])] += 1;
        }
    }
}

fn video_info_block(f: &FeatureSpec, fps: u32, gop: u32) -> Result<serde_json::Value> {
    let (h, w, c) = f.image_hwc()?;
    Ok(json!({
        "video.height": h,
        "video.width": w,
        "video.codec": "h264",
        "video.pix_fmt": "yuv420p",
        "video.fps": fps,
        "video.channels": c,
        "has_audio": false,
        "video.g": gop,
        "video.encoder": "openh264",
        "is_depth_map": false,
    }))
}

fn advance((chunk, file): (usize, usize), chunks_size: usize) -> (usize, usize) {
    if file + 1 >= chunks_size {
        (chunk + 1, 0)
    } else {
        (chunk, file + 1)
    }
}

fn next_slot(used: impl Iterator<Item = (usize, usize)>, chunks_size: usize) -> (usize, usize) {
    used.max()
        .map(|s| advance(s, chunks_size))
        .unwrap_or((0, 0))
}

fn existing_meta_files(root: &Path) -> Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let dir = root.join("meta/episodes");
    let Ok(chunks) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for c in chunks.flatten() {
        let Some(ci) = c
            .file_name()
            .to_string_lossy()
            .strip_prefix("chunk-")
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        for f in std::fs::read_dir(c.path()).map_err(io(c.path()))?.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(fi) = name
                .strip_prefix("file-")
                .and_then(|s| s.strip_suffix(".parquet"))
                .and_then(|s| s.parse().ok())
            {
                out.push((ci, fi));
            }
        }
    }
    Ok(out)
}

/// Remove temp files (`.name.tmp`) an interrupted writer left in the dataset tree.
fn clean_temp_files(dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == STAGING {
            continue;
        }
        if p.is_dir() {
            clean_temp_files(&p)?;
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// HF `datasets` schema metadata for the data parquet, as LeRobot writes it.
fn hf_features_json(features: &[FeatureSpec]) -> String {
    fn value(d: DType) -> serde_json::Value {
        json!({"dtype": d.as_str(), "_type": "Value"})
    }
    let mut m = Map::new();
    for f in features {
        let v = match f.dtype {
            DType::Image => json!({"_type": "Image"}),
            DType::String => value(DType::String),
            d if f.shape == [1] => value(d),
            d => f.shape.iter().rev().fold(
                value(d),
                |inner, &n| json!({"feature": inner, "length": n, "_type": "List"}),
            ),
        };
        m.insert(f.name.clone(), v);
    }
    json!({"info": {"features": m}}).to_string()
}

/// `meta/tasks.parquet` with pandas metadata so `pd.read_parquet` indexes by task (LeRobot
/// reads it that way).
fn write_tasks_parquet(path: &Path, tasks: &[String]) -> Result<()> {
    let pandas = json!({
        "index_columns": ["task"],
        "column_indexes": [{"name": null, "field_name": null, "pandas_type": "unicode", "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": null},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": null}
        ],
        "attributes": {},
        "creator": {"library": "mulli", "version": env!("CARGO_PKG_VERSION")},
        "pandas_version": "2.3.3"
    });
    let schema = Schema::new(vec![
        Field::new("task_index", DataType::Int64, true),
        Field::new("task", DataType::Utf8, true),
    ])
    .with_metadata(std::collections::HashMap::from([(
        "pandas".to_owned(),
        pandas.to_string(),
    )]));
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..tasks.len() as i64)),
            Arc::new(StringArray::from_iter_values(tasks.iter())),
        ],
    )
    .map_err(|e| DataError::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_batch_atomic(path, &batch)
}

fn write_batch_atomic(path: &Path, batch: &RecordBatch) -> Result<()> {
    let tmp = temp_path(path);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let pq = |e: parquet::errors::ParquetError| DataError::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).map_err(pq)?;
    w.write(batch).map_err(pq)?;
    let f = w.into_inner().map_err(pq)?;
    f.sync_all().map_err(io(&tmp))?;
    commit(&tmp, path)
}

/// The episodes table, with LeRobot's column names.
fn write_episodes_parquet(
    path: &Path,
    eps: &[EpisodeMeta],
    info: &DatasetInfo,
    (mc, mf): (usize, usize),
) -> Result<()> {
    let mut fields: Vec<Field> = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let int = |name: &str,
               f: &dyn Fn(&EpisodeMeta) -> Option<usize>,
               fields: &mut Vec<Field>,
               cols: &mut Vec<ArrayRef>| {
        fields.push(Field::new(name, DataType::Int64, true));
        cols.push(Arc::new(
            eps.iter()
                .map(|e| f(e).map(|v| v as i64))
                .collect::<Int64Array>(),
        ));
    };
    int("episode_index", &|e| Some(e.index), &mut fields, &mut cols);
    let mut tb = ListBuilder::new(StringBuilder::new()).with_field(Field::new(
        "element",
        DataType::Utf8,
        true,
    ));
    for e in eps {
        for t in &e.tasks {
            tb.values().append_value(t);
        }
        tb.append(true);
    }
    let tasks_arr = tb.finish();
    fields.push(Field::new("tasks", tasks_arr.data_type().clone(), true));
    cols.push(Arc::new(tasks_arr));
    int("length", &|e| Some(e.length), &mut fields, &mut cols);
    int(
        "data/chunk_index",
        &|e| Some(e.data_chunk),
        &mut fields,
        &mut cols,
    );
    int(
        "data/file_index",
        &|e| Some(e.data_file),
        &mut fields,
        &mut cols,
    );
    int(
        "dataset_from_index",
        &|e| Some(e.from),
        &mut fields,
        &mut cols,
    );
    int("dataset_to_index", &|e| Some(e.to), &mut fields, &mut cols);
    for key in info.video_keys() {
        let seg = |e: &EpisodeMeta| e.videos.get(&key).and_then(|s| s.clone());
        int(
            &format!("videos/{key}/chunk_index"),
            &|e| seg(e).map(|s| s.chunk_index),
            &mut fields,
            &mut cols,
        );
        int(
            &format!("videos/{key}/file_index"),
            &|e| seg(e).map(|s| s.file_index),
            &mut fields,
            &mut cols,
        );
        for (suffix, pick) in [("from_timestamp", true), ("to_timestamp", false)] {
            fields.push(Field::new(
                format!("videos/{key}/{suffix}"),
                DataType::Float64,
                true,
            ));
            cols.push(Arc::new(
                eps.iter()
                    .map(|e| {
                        seg(e).map(|s| {
                            if pick {
                                s.from_timestamp
                            } else {
                                s.to_timestamp
                            }
                        })
                    })
                    .collect::<Float64Array>(),
            ));
        }
    }
    // Per-episode stats, flattened as `stats/<feature>/<stat>`.
    for (name, spec) in &info.features {
        if spec.dtype == DType::String {
            continue;
        }
        let image = spec.dtype.is_visual();
        let mut stat_names: Vec<&str> = vec!["min", "max", "mean", "std", "count"];
        stat_names.extend(QUANTILES.iter().map(|(n, _)| *n));
        for stat in stat_names {
            let col_name = format!("stats/{name}/{stat}");
            let arr: ArrayRef = if stat == "count" {
                let mut b = ListBuilder::new(Int64Builder::new()).with_field(Field::new(
                    "element",
                    DataType::Int64,
                    true,
                ));
                for e in eps {
                    match e.stats.get(name) {
                        Some(s) => {
                            b.values().append_value(s.count as i64);
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            } else {
                let pick = |s: &FeatureStats| -> Vec<f64> {
                    match stat {
                        "min" => s.min.clone(),
                        "max" => s.max.clone(),
                        "mean" => s.mean.clone(),
                        "std" => s.std.clone(),
                        q => QUANTILES
                            .iter()
                            .position(|(n, _)| *n == q)
                            .map(|i| s.quantiles[i].clone())
                            .unwrap_or_default(),
                    }
                };
                if image {
                    // (C, 1, 1) nested lists, as LeRobot stores image stats.
                    let el = |t| Field::new("element", t, true);
                    let inner =
                        ListBuilder::new(Float64Builder::new()).with_field(el(DataType::Float64));
                    let mid_t = DataType::List(Arc::new(el(DataType::Float64)));
                    let mid = ListBuilder::new(inner).with_field(el(mid_t.clone()));
                    let mut outer =
                        ListBuilder::new(mid).with_field(el(DataType::List(Arc::new(el(mid_t)))));
                    for e in eps {
                        match e.stats.get(name) {
                            Some(s) => {
                                for v in pick(s) {
                                    let m = outer.values();
                                    m.values().values().append_value(v);
                                    m.values().append(true);
                                    m.append(true);
                                }
                                outer.append(true);
                            }
                            None => outer.append(false),
                        }
                    }
                    Arc::new(outer.finish())
                } else {
                    let mut b = ListBuilder::new(Float64Builder::new()).with_field(Field::new(
                        "element",
                        DataType::Float64,
                        true,
                    ));
                    for e in eps {
                        match e.stats.get(name) {
                            Some(s) => {
                                b.values().append_slice(&pick(s));
                                b.append(true);
                            }
                            None => b.append(false),
                        }
                    }
                    Arc::new(b.finish())
                }
            };
            fields.push(Field::new(col_name, arr.data_type().clone(), true));
            cols.push(arr);
        }
    }
    int(
        "meta/episodes/chunk_index",
        &|_| Some(mc),
        &mut fields,
        &mut cols,
    );
    int(
        "meta/episodes/file_index",
        &|_| Some(mf),
        &mut fields,
        &mut cols,
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| {
        DataError::Parquet {
            path: path.to_owned(),
            message: e.to_string(),
        }
    })?;
    write_batch_atomic(path, &batch)
}
