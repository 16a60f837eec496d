//! The training loader: shuffled batches of samples with observation history and action
//! chunks (`delta_timestamps`), padding masks at episode ends, images kept as uint8, and
//! multi-threaded prefetch.
//!
//! Why it is fast (LeRobot's loader is the baseline, see docs/benchmarks.md):
//! - numbers live in flat columns in memory: a chunk of 10 actions is 10 slice copies;
//! - each worker keeps a small LRU of open videos (bounded, unlike the unbounded decoder
//!   caches that LeRobot users saw grow to 30 GB per worker), and decodes the frames of a
//!   batch sorted by file and time, so GOP-forward decoding is shared between samples;
//! - batches are assembled directly into their final buffers (no per-sample tensors, no
//!   collation step, no inter-process pickling).
//!
//! Determinism: the order of samples in epoch `e` depends only on (seed, e); batch `b` is
//! built by worker `b % W` and handed out in order, so thread timing never changes a batch.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, bounded};
use mulli_core::{DType, rng};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::table::Column;
use crate::video::VideoReader;

/// Offsets in seconds per feature key, e.g. `action: [0.0, 0.1, …, 0.9]` for a 10-step chunk
/// at 10 fps, `observation.images.front: [-0.1, 0.0]` for one frame of history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaTimestamps(pub BTreeMap<String, Vec<f64>>);

impl DeltaTimestamps {
    /// Offsets given in frames (`range(0, 10)` → an action chunk of 10) at `fps`.
    pub fn frames(mut self, key: &str, offsets: impl IntoIterator<Item = i64>, fps: u32) -> Self {
        self.0.insert(
            key.to_owned(),
            offsets
                .into_iter()
                .map(|o| o as f64 / f64::from(fps))
                .collect(),
        );
        self
    }

    /// Convert seconds to frame offsets; each must be a multiple of 1/fps within `tolerance_s`
    /// (LeRobot's `check_delta_timestamps`).
    pub fn to_frames(&self, fps: u32, tolerance_s: f64) -> Result<BTreeMap<String, Vec<i64>>> {
        let mut out = BTreeMap::new();
        for (k, ds) in &self.0 {
            if ds.is_empty() {
                return Err(DataError::Invalid(format!(
                    "delta_timestamps[`{k}`] is empty"
                )));
            }
            let mut v = Vec::with_capacity(ds.len());
            for &d in ds {
                let f = d * f64::from(fps);
                if !d.is_finite()
                    || (f - f.round()).abs() / f64::from(fps) > tolerance_s
                    || f.abs() > 1e6
                {
                    return Err(DataError::Invalid(format!(
                        "delta_timestamps[`{k}`]: {d} s is not a multiple of 1/fps = {:.6} s",
                        1.0 / f64::from(fps)
                    )));
                }
                v.push(f.round() as i64);
            }
            out.insert(k.clone(), v);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// Worker threads; 0 loads on the calling thread.
    pub num_workers: usize,
    /// Batches each worker may prepare ahead.
    pub prefetch: usize,
    pub drop_last: bool,
    pub delta_timestamps: DeltaTimestamps,
    /// Features to load; `None` = every user feature.
    pub keys: Option<Vec<String>>,
    /// Open videos kept per worker (each holds a file handle, its sample table and a decoder).
    pub decoder_cache: usize,
    /// Decoded frames kept per worker, in MiB.
    pub frame_cache_mb: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            shuffle: true,
            seed: 0,
            num_workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            prefetch: 2,
            drop_last: false,
            delta_timestamps: DeltaTimestamps::default(),
            keys: None,
            decoder_cache: 8,
            frame_cache_mb: 64,
        }
    }
}

/// Typed tensor storage.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// A batch: per feature a tensor `[B, (T,) ...]`, plus `<key>_is_pad` masks `[B, T]` for keys
/// with delta timestamps. Images are `[B, (T,) H, W, C]` uint8.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Dataset row of each sample.
    pub rows: Vec<usize>,
    pub episode_index: Vec<i64>,
    pub tasks: Vec<String>,
    pub tensors: BTreeMap<String, Tensor>,
}

/// One feature to load: its kind and per-step offsets.
#[derive(Debug, Clone)]
struct KeyPlan {
    key: String,
    dtype: DType,
    /// Elements per step (image: H*W*C).
    numel: usize,
    /// Per-step shape (image: [H, W, C]).
    step_shape: Vec<usize>,
    /// Frame offsets; `None` = the current frame only, no time axis.
    offsets: Option<Vec<i64>>,
}

pub struct Loader {
    ds: Arc<Dataset>,
    cfg: LoaderConfig,
    plan: Arc<Vec<KeyPlan>>,
}

impl Loader {
    pub fn new(ds: Arc<Dataset>, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(DataError::Invalid("batch_size must be > 0".into()));
        }
        let frames = cfg.delta_timestamps.to_frames(ds.fps(), 1e-4)?;
        let user = ds.info.user_features();
        let keys: Vec<String> = match &cfg.keys {
            Some(k) => k.clone(),
            None => user.keys().cloned().collect(),
        };
        for k in frames.keys() {
            if !keys.contains(k) {
                return Err(DataError::Invalid(format!(
                    "delta_timestamps names `{k}`, which is not a loaded feature (features: {})",
                    keys.join(", ")
                )));
            }
        }
        let mut plan = Vec::new();
        for k in keys {
            let spec = ds.feature(&k).ok_or_else(|| {
                DataError::Invalid(format!(
                    "no feature `{k}` in the dataset (it has: {})",
                    user.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            if spec.dtype == DType::String {
                continue;
            }
            let step_shape = if spec.dtype.is_visual() {
                let (h, w, c) = spec.image_hwc()?;
                vec![h, w, c]
            } else {
                spec.shape.clone()
            };
            plan.push(KeyPlan {
                dtype: spec.dtype,
                numel: step_shape.iter().product(),
                step_shape,
                offsets: frames.get(&k).cloned(),
                key: k,
            });
        }
        Ok(Loader {
            ds,
            cfg,
            plan: Arc::new(plan),
        })
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.ds
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.ds.len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.ds.len()).collect();
        if self.cfg.shuffle {
            rng::shuffle(
                &mut order,
                &mut rng::substream(self.cfg.seed, "loader-epoch", epoch),
            );
        }
        order
    }

    /// Build the batch of the given rows on this thread.
    pub fn batch(&self, rows: &[usize], cache: &mut DecoderCache) -> Result<Batch> {
        build_batch(&self.ds, &self.plan, rows, cache)
    }

    /// Iterate over one epoch's batches, prepared by `num_workers` threads.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let order = self.order(epoch);
        let bs = self.cfg.batch_size;
        let mut batches: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        if self.cfg.drop_last && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        let total = batches.len();
        let workers = self.cfg.num_workers;
        if workers == 0 {
            return EpochIter {
                next: 0,
                total,
                mode: Mode::Inline {
                    ds: self.ds.clone(),
                    plan: self.plan.clone(),
                    batches,
                    cache: DecoderCache::new(self.cfg.decoder_cache),
                },
            };
        }
        let batches = Arc::new(batches);
        let mut rxs = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded(self.cfg.prefetch.max(1));
            let (ds, plan, batches) = (self.ds.clone(), self.plan.clone(), batches.clone());
            let (cap, budget) = (self.cfg.decoder_cache, self.cfg.frame_cache_mb << 20);
            std::thread::Builder::new()
                .name(format!("mulli-loader-{w}"))
                .spawn(move || {
                    let mut cache = DecoderCache::with_frame_budget(cap, budget);
                    for b in (w..batches.len()).step_by(workers) {
                        let r = build_batch(&ds, &plan, &batches[b], &mut cache);
                        if tx.send(r).is_err() {
                            return; // the consumer stopped early
                        }
                    }
                })
                .expect("spawning a loader thread");
            rxs.push(rx);
        }
        EpochIter {
            next: 0,
            total,
            mode: Mode::Threads(rxs),
        }
    }
}

enum Mode {
    Inline {
        ds: Arc<Dataset>,
        plan: Arc<Vec<KeyPlan>>,
        batches: Vec<Vec<usize>>,
        cache: DecoderCache,
    },
    Threads(Vec<Receiver<Result<Batch>>>),
}

/// Batches of one epoch, in order.
pub struct EpochIter {
    next: usize,
    total: usize,
    mode: Mode,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let b = self.next;
        self.next += 1;
        match &mut self.mode {
            Mode::Inline {
                ds,
                plan,
                batches,
                cache,
            } => Some(build_batch(ds, plan, &batches[b], cache)),
            Mode::Threads(rxs) => {
                let n = rxs.len();
                Some(rxs[b % n].recv().unwrap_or_else(|_| {
                    Err(DataError::Invalid("a loader worker thread died".into()))
                }))
            }
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let r = self.total - self.next;
        (r, Some(r))
    }
}

/// Per-worker decoding state: a bounded LRU of open videos and a bounded LRU of decoded
/// frames (so samples that share frames — observation history, repeated epochs on small
/// datasets — decode them once). Both bounds are what keeps memory flat on large datasets.
pub struct DecoderCache {
    cap: usize,
    open: Vec<(PathBuf, VideoReader)>,
    frames: HashMap<(PathBuf, usize), (Vec<u8>, u64)>,
    frames_by_age: BTreeMap<u64, (PathBuf, usize)>,
    frame_bytes: usize,
    frame_budget: usize,
    clock: u64,
    /// Frame-cache hits and misses (for benchmarks).
    pub hits: u64,
    pub misses: u64,
}

impl DecoderCache {
    /// `cap` open videos, no frame cache.
    pub fn new(cap: usize) -> Self {
        Self::with_frame_budget(cap, 0)
    }

    /// `cap` open videos and up to `frame_budget` bytes of decoded frames.
    pub fn with_frame_budget(cap: usize, frame_budget: usize) -> Self {
        DecoderCache {
            cap: cap.max(1),
            open: Vec::new(),
            frames: HashMap::new(),
            frames_by_age: BTreeMap::new(),
            frame_bytes: 0,
            frame_budget,
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, path: &PathBuf) -> Result<&mut VideoReader> {
        if let Some(i) = self.open.iter().position(|(p, _)| p == path) {
            let e = self.open.remove(i);
            self.open.push(e);
        } else {
            if self.open.len() >= self.cap {
                self.open.remove(0);
            }
            self.open.push((path.clone(), VideoReader::open(path)?));
        }
        Ok(&mut self.open.last_mut().expect("just pushed").1)
    }

    /// Decode the frame of `path` at time `t` into `out`, through the frame cache.
    pub fn read_frame(
        &mut self,
        ds: &Dataset,
        path: &PathBuf,
        t: f64,
        out: &mut [u8],
    ) -> Result<()> {
        let reader = self.get(path)?;
        let idx = ds.locate_video_frame(reader, t)?;
        if self.frame_budget == 0 {
            return Ok(self.get(path)?.decode_into(idx, out)?);
        }
        self.clock += 1;
        let key = (path.clone(), idx);
        if let Some((px, age)) = self.frames.get_mut(&key)
            && px.len() == out.len()
        {
            out.copy_from_slice(px);
            self.frames_by_age.remove(age);
            *age = self.clock;
            self.frames_by_age.insert(self.clock, key);
            self.hits += 1;
            return Ok(());
        }
        self.misses += 1;
        self.get(path)?.decode_into(idx, out)?;
        while self.frame_bytes + out.len() > self.frame_budget {
            let Some((_, old)) = self.frames_by_age.pop_first() else {
                break;
            };
            if let Some((px, _)) = self.frames.remove(&old) {
                self.frame_bytes -= px.len();
            }
        }
        if out.len() <= self.frame_budget {
            self.frame_bytes += out.len();
            self.frames_by_age.insert(self.clock, key.clone());
            if let Some((old, age)) = self.frames.insert(key, (out.to_vec(), self.clock)) {
                self.frame_bytes -= old.len();
                self.frames_by_age.remove(&age);
            }
        }
        Ok(())
    }
}

fn build_batch(
    ds: &Dataset,
    plan: &[KeyPlan],
    rows: &[usize],
    cache: &mut DecoderCache,
) -> Result<Batch> {
    let b = rows.len();
    let mut ep_index = Vec::with_capacity(b);
    let mut tasks = Vec::with_capacity(b);
    let mut bounds = Vec::with_capacity(b);
    for &r in rows {
        let ep = ds.episode_of_row(r)?;
        bounds.push(ds.episode_rows(ep)?);
        ep_index.push(ds.episodes[ep].index as i64);
        tasks.push(ds.task_of_row(r).to_owned());
    }
    let mut tensors = BTreeMap::new();
    for kp in plan {
        let steps = kp.offsets.as_ref().map_or(1, Vec::len);
        // Query rows (clamped into the episode) and pad flags, sample-major.
        let mut q = Vec::with_capacity(b * steps);
        let mut pad = Vec::with_capacity(b * steps);
        for (i, &r) in rows.iter().enumerate() {
            let (start, end) = bounds[i];
            match &kp.offsets {
                None => {
                    q.push(r);
                    pad.push(false);
                }
                Some(offs) => {
                    for &o in offs {
                        let t = r as i64 + o;
                        pad.push(t < start as i64 || t >= end as i64);
                        q.push(t.clamp(start as i64, end as i64 - 1) as usize);
                    }
                }
            }
        }
        let mut shape = vec![b];
        if kp.offsets.is_some() {
            shape.push(steps);
        }
        shape.extend(&kp.step_shape);
        let data = gather(ds, kp, &q, cache)?;
        tensors.insert(kp.key.clone(), Tensor { shape, data });
        if kp.offsets.is_some() {
            tensors.insert(
                format!("{}_is_pad", kp.key),
                Tensor {
                    shape: vec![b, steps],
                    data: TensorData::Bool(pad),
                },
            );
        }
    }
    Ok(Batch {
        rows: rows.to_vec(),
        episode_index: ep_index,
        tasks,
        tensors,
    })
}

fn gather(ds: &Dataset, kp: &KeyPlan, q: &[usize], cache: &mut DecoderCache) -> Result<TensorData> {
    let n = kp.numel;
    match kp.dtype {
        DType::Video => {
            let mut out = vec![0u8; q.len() * n];
            // Decode in (file, time) order so consecutive frames share GOP decoding.
            let mut reqs: Vec<(PathBuf, f64, usize)> = Vec::with_capacity(q.len());
            for (slot, &r) in q.iter().enumerate() {
                if let Some((path, t)) = ds.video_location(&kp.key, r)? {
                    reqs.push((path, t, slot));
                } // else: camera absent in this episode; the frame stays black
            }
            reqs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            for (path, t, slot) in reqs {
                cache.read_frame(ds, &path, t, &mut out[slot * n..(slot + 1) * n])?;
            }
            Ok(TensorData::U8(out))
        }
        DType::Image => {
            let mut out = vec![0u8; q.len() * n];
            for (slot, &r) in q.iter().enumerate() {
                ds.read_image(&kp.key, r, &mut out[slot * n..(slot + 1) * n])?;
            }
            Ok(TensorData::U8(out))
        }
        _ => {
            let col = ds
                .table
                .column(&kp.key)
                .ok_or_else(|| DataError::Invalid(format!("column `{}` was not loaded", kp.key)))?;
            Ok(match col {
                Column::F32(v, w) => TensorData::F32(
                    q.iter()
                        .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                        .collect(),
                ),
                Column::F64(v, w) => TensorData::F32(
                    q.iter()
                        .flat_map(|&r| v[r * w..(r + 1) * w].iter().map(|&x| x as f32))
                        .collect(),
                ),
                Column::I64(v, w) => TensorData::I64(
                    q.iter()
                        .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                        .collect(),
                ),
                Column::I32(v, w) => TensorData::I64(
                    q.iter()
                        .flat_map(|&r| v[r * w..(r + 1) * w].iter().map(|&x| i64::from(x)))
                        .collect(),
                ),
                Column::U8(v, w) => TensorData::U8(
                    q.iter()
                        .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                        .collect(),
                ),
                Column::Bool(v, w) => TensorData::Bool(
                    q.iter()
                        .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                        .collect(),
                ),
                Column::Str(_) | Column::Image(_) => {
                    return Err(DataError::Invalid(format!("`{}` is not numeric", kp.key)));
                }
            })
        }
    }
}
