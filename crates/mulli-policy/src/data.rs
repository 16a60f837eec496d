//! Training data: samples from one or more LeRobot datasets, held decoded in memory, drawn
//! task-balanced, augmented, and packed into host-side batches.
//!
//! Why decode everything up front: kitchen datasets are small (96 px frames: 27 KB each) and
//! training revisits every frame hundreds of times; decoding each video once, front to back,
//! costs seconds, while random access per batch would redo GOP decoding every step. The memory
//! estimate is checked against `max_memory_mb` before anything is decoded.
//!
//! Determinism: the samples, augmentations and flow-matching noise of step `s` depend only on
//! `(seed, s)`, so a resumed run sees exactly the batches the uninterrupted run would have.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mulli_core::rng::{self, RngExt};
use mulli_data::Dataset;
use mulli_data::table::Column;

use crate::PolicyError;
use crate::normalize::Normalizer;

pub const IMAGE_PREFIX: &str = "observation.images.";
pub const STATE_KEY: &str = "observation.state";
pub const ACTION_KEY: &str = "action";
/// Privileged simulator state (LeRobot's name); the source of auxiliary targets.
pub const ENV_STATE_KEY: &str = "observation.environment_state";

/// One dataset's frames, states and actions.
struct Source {
    path: PathBuf,
    /// Per camera, `[len, S, S, 3]` RGB8, already resized to the model's input size.
    frames: Vec<Vec<u8>>,
    state: Vec<f32>,
    action: Vec<f32>,
    /// `[len, aux_dim]` auxiliary targets (empty when the layout has none).
    aux: Vec<f32>,
    /// `[len, cameras, P, 2]` image coordinates of the pixel-labelled things (empty when the
    /// layout has none; see [`PixelSource`]).
    pixels: Vec<f32>,
    /// `[start, end)` rows of the episode of each row.
    episode_end: Vec<usize>,
    task: Vec<u32>,
}

/// Where samples come from and what they look like (shared by all sources).
#[derive(Clone, Debug, PartialEq)]
pub struct DataLayout {
    /// The cameras the policy sees (`observation.images.<name>`): the datasets' cameras,
    /// sorted, or the selection given to [`TrainData::load`] in its order; empty = none.
    pub cameras: Vec<String>,
    /// The datasets' other cameras, which the policy does not read.
    pub unused_cameras: Vec<String>,
    pub state_dim: usize,
    pub action_dim: usize,
    pub fps: u32,
    pub robot_type: Option<String>,
    pub state_names: Option<Vec<String>>,
    pub action_names: Option<Vec<String>>,
    /// Auxiliary targets every dataset has (see [`aux_columns`]): where they come from in
    /// the environment state; `None` = no targets.
    pub aux_source: Option<EnvStateInput>,
    /// The environment-state entries appended to `observation.state`
    /// ([`TrainData::observe_env_state`]); `None` = the state is proprioception only.
    pub env_state: Option<EnvStateInput>,
    /// Image positions of objects in the policy's cameras that every dataset has (see
    /// [`pixel_columns`]); `None` = no pixel labels.
    pub pixel_source: Option<PixelSource>,
}

/// Where things are in the cameras' images, from the environment state's
/// `<thing>.<camera>.u|v` entries (the simulator writes them; each coordinate in [-1, 1]
/// with pixel centres at `(2i + 1) / side - 1`, off the image outside that range): labels
/// that supervise the model's keypoints directly ([`crate::VlaConfig::pixel_targets`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PixelSource {
    /// The labelled cameras' names and indices among the policy's cameras, in the policy's
    /// camera order: the first that has labels, then every other with the same things.
    pub cameras: Vec<(String, usize)>,
    pub things: Vec<String>,
    /// Per labelled camera, per thing: the environment-state columns of u and v.
    pub columns: Vec<Vec<(usize, usize)>>,
}

impl PixelSource {
    /// The labelled cameras' names, joined for messages.
    pub fn camera_names(&self) -> String {
        let names: Vec<&str> = self.cameras.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    }
}

impl DataLayout {
    /// Names of the auxiliary targets (empty = none).
    pub fn aux_names(&self) -> &[String] {
        self.aux_source.as_ref().map_or(&[], |a| &a.names)
    }
}

/// Options for sampling and augmentation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Random shift of each image by up to this many pixels (edge-replicated, DrQ-style).
    pub shift: usize,
    /// Brightness and contrast factors drawn from [1 - x, 1 + x].
    pub brightness: f32,
    pub contrast: f32,
    /// Probability of dropping each word of a sample's instruction (at least one word stays),
    /// so the policy cannot lean on one exact phrasing. 0 = off (and left out of the
    /// serialized config, so configs and stage hashes from before it are unchanged).
    #[serde(skip_serializing_if = "is_zero")]
    pub word_dropout: f32,
}

pub(crate) fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

/// `text` with each whitespace-separated word dropped with probability `p`; never empty.
pub fn drop_words(text: &str, p: f32, r: &mut rng::Rng) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 2 {
        return text.to_string();
    }
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|_| !r.random_bool(p.clamp(0.0, 1.0) as f64))
        .collect();
    if kept.is_empty() {
        words[r.random_range(0..words.len())].to_string()
    } else {
        kept.join(" ")
    }
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            shift: 4,
            brightness: 0.2,
            contrast: 0.2,
            word_dropout: 0.0,
        }
    }
}

impl Augment {
    pub fn none() -> Self {
        Augment {
            shift: 0,
            brightness: 0.0,
            contrast: 0.0,
            word_dropout: 0.0,
        }
    }
}

/// The normalizations a batch applies: state and action, and the auxiliary targets' when
/// the batch should carry them.
#[derive(Clone, Copy, Debug)]
pub struct Norms<'a> {
    pub state: &'a Normalizer,
    pub action: &'a Normalizer,
    pub aux: Option<&'a Normalizer>,
}

/// A sample: (source, row).
pub type SampleRef = (u32, u32);

/// Samples of one task in one dataset.
#[derive(Clone, Debug)]
struct Group {
    samples: Vec<SampleRef>,
}

pub struct TrainData {
    sources: Vec<Source>,
    pub layout: DataLayout,
    pub image_size: usize,
    pub chunk: usize,
    /// Distinct task strings over all sources; `Source::task` indexes this.
    pub tasks: Vec<String>,
    groups: Vec<Group>,
    pub train_len: usize,
    pub val: Vec<SampleRef>,
    pub val_episodes: usize,
    pub train_episodes: usize,
    /// Whether batches carry the pixel labels ([`Self::supervise_pixels`]).
    pixels_on: bool,
}

/// A batch on the host, ready to become tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    pub size: usize,
    /// `[B, cameras, 3, S, S]` in [0, 1].
    pub images: Vec<f32>,
    /// Distinct instructions of the batch and each sample's position among them.
    pub texts: Vec<String>,
    pub text_index: Vec<i64>,
    /// Normalized `[B, state_dim]`.
    pub state: Vec<f32>,
    /// Normalized `[B, aux_dim]` auxiliary targets (empty when there are none).
    pub aux: Vec<f32>,
    /// `[B, cameras, P, 2]` image coordinates of the pixel-labelled things in each labelled
    /// camera, moved with that camera's random shift (empty unless
    /// [`TrainData::supervise_pixels`]).
    pub pixels: Vec<f32>,
    /// `[B, cameras, 2]`: each camera's random shift as the (u, v) to add, in [-1, 1]
    /// image coordinates, to a point of the shifted image to find it where the camera saw
    /// it; empty when nothing was shifted (validation, inference, `augment.shift = 0`).
    pub shifts: Vec<f32>,
    /// Normalized `[B, H, action_dim]`; padded steps repeat the episode's last action.
    pub action: Vec<f32>,
    /// `[B, H]`: 1 for real steps, 0 past the episode's end.
    pub valid: Vec<f32>,
    /// Flow matching: noise `[B, H, action_dim]` and times `[B]`.
    pub noise: Vec<f32>,
    pub t: Vec<f32>,
}

impl HostBatch {
    /// A batch of seeded random inputs of `config`'s shapes (benchmarks and tests): `b`
    /// samples, sample `i` with instruction `i % texts` (the kitchen has 12 tasks), every
    /// step valid.
    pub fn synthetic(config: &crate::VlaConfig, b: usize, texts: usize, seed: u64) -> HostBatch {
        let mut r = rng::seeded(seed);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| r.random::<f32>()).collect() };
        let s = config.image_size;
        let (h, a) = (config.chunk, config.action_dim);
        let distinct = texts.min(b).max(1);
        HostBatch {
            size: b,
            images: draw(b * config.cameras * 3 * s * s),
            texts: (0..distinct)
                .map(|i| format!("put the object {i} in the basket"))
                .collect(),
            text_index: (0..b).map(|i| (i % distinct) as i64).collect(),
            state: draw(b * config.state_dim),
            aux: draw(b * config.aux_dim),
            pixels: draw(b * config.pixel_targets * config.pixel_cameras.len() * 2)
                .into_iter()
                .map(|u| u * 2.0 - 1.0)
                .collect(),
            shifts: Vec::new(),
            action: draw(b * h * a),
            valid: vec![1.0; b * h],
            noise: draw(b * h * a),
            t: draw(b),
        }
    }

    /// Splits the batch into `parts` consecutive micro-batches of near-equal size (the
    /// first ones get the remainder), each with only the instructions its rows use. Rows
    /// keep their order, so the split is deterministic.
    pub fn split(&self, parts: usize) -> Vec<HostBatch> {
        let parts = parts.clamp(1, self.size.max(1));
        let (base, extra) = (self.size / parts, self.size % parts);
        let mut out = Vec::with_capacity(parts);
        let mut start = 0;
        for i in 0..parts {
            let n = base + usize::from(i < extra);
            out.push(self.rows(start, n));
            start += n;
        }
        out
    }

    /// Rows `start..start + n` as a batch of their own.
    fn rows(&self, start: usize, n: usize) -> HostBatch {
        let b = self.size.max(1);
        let slice = |v: &[f32]| -> Vec<f32> {
            let w = v.len() / b;
            v[start * w..(start + n) * w].to_vec()
        };
        let mut texts = Vec::new();
        let mut text_index = Vec::with_capacity(n);
        for &ix in &self.text_index[start..start + n] {
            let text = &self.texts[ix as usize];
            let local = match texts.iter().position(|t| t == text) {
                Some(p) => p,
                None => {
                    texts.push(text.clone());
                    texts.len() - 1
                }
            };
            text_index.push(local as i64);
        }
        HostBatch {
            size: n,
            images: slice(&self.images),
            texts,
            text_index,
            state: slice(&self.state),
            aux: slice(&self.aux),
            pixels: slice(&self.pixels),
            shifts: slice(&self.shifts),
            action: slice(&self.action),
            valid: slice(&self.valid),
            noise: slice(&self.noise),
            t: slice(&self.t),
        }
    }
}

fn f32_column(ds: &Dataset, path: &Path, key: &str) -> Result<(Vec<f32>, usize), PolicyError> {
    let err = |what: String| PolicyError::Data(format!("{}: {what}", path.display()));
    match ds.table.column(key) {
        Some(Column::F32(v, w)) => Ok((v.clone(), *w)),
        Some(Column::F64(v, w)) => Ok((v.iter().map(|&x| x as f32).collect(), *w)),
        Some(_) => Err(err(format!("feature `{key}` is not a float vector"))),
        None => Err(err(format!(
            "no feature `{key}` (a policy needs `{STATE_KEY}` and `{ACTION_KEY}`)"
        ))),
    }
}

/// A dataset's environment state as f32 values `[len, width]` with its entry names; `None`
/// unless it has a float one with one name per entry.
fn env_state_columns(ds: &Dataset) -> Option<(Vec<f32>, usize, Vec<String>)> {
    let (values, width) = match ds.table.column(ENV_STATE_KEY)? {
        Column::F32(v, w) => (v.clone(), *w),
        Column::F64(v, w) => (v.iter().map(|&x| x as f32).collect(), *w),
        _ => return None,
    };
    let all = names(ds, ENV_STATE_KEY)?;
    (all.len() == width).then_some((values, width, all))
}

/// The auxiliary targets of a dataset: the positions and articulations in its environment
/// state (entries named `<thing>.x|y|z|angle|opening`; orientations are left out, as near-
/// constant quaternion entries make noisy targets). `None` when the dataset has no float
/// environment state with names.
fn aux_columns(ds: &Dataset) -> Option<(EnvStateInput, Vec<f32>)> {
    let (values, width, all) = env_state_columns(ds)?;
    let keep: Vec<usize> = (0..width)
        .filter(|&i| {
            let last = all[i].rsplit('.').next().unwrap_or("");
            matches!(last, "x" | "y" | "z" | "angle" | "opening")
        })
        .collect();
    if keep.is_empty() {
        return None;
    }
    let rows = values.len() / width.max(1);
    let mut out = Vec::with_capacity(rows * keep.len());
    for r in 0..rows {
        out.extend(keep.iter().map(|&i| values[r * width + i]));
    }
    let input = EnvStateInput {
        width,
        names: keep.iter().map(|&i| all[i].clone()).collect(),
        index: keep,
        minus: Vec::new(),
    };
    Some((input, out))
}

/// The pixel labels of a dataset: the things with both `<thing>.<camera>.u` and `.v`
/// entries in its environment state for the first of `cameras` that has any, and for every
/// later camera that has all the same things; their values `[len, cameras, P, 2]`. `None`
/// when there are none.
fn pixel_columns(ds: &Dataset, cameras: &[String]) -> Option<(PixelSource, Vec<f32>)> {
    let (values, width, all) = env_state_columns(ds)?;
    let column = |name: String| all.iter().position(|n| *n == name);
    let mut source: Option<PixelSource> = None;
    for (camera_index, cam) in cameras.iter().enumerate() {
        let labelled = match &source {
            None => {
                let su = format!(".{cam}.u");
                let mut things = Vec::new();
                let mut columns = Vec::new();
                for (iu, name) in all.iter().enumerate() {
                    let Some(thing) = name.strip_suffix(&su) else {
                        continue;
                    };
                    if let Some(iv) = column(format!("{thing}.{cam}.v")) {
                        things.push(thing.to_owned());
                        columns.push((iu, iv));
                    }
                }
                (!things.is_empty()).then_some((things, columns))
            }
            Some(src) => src
                .things
                .iter()
                .map(|t| {
                    Some((
                        column(format!("{t}.{cam}.u"))?,
                        column(format!("{t}.{cam}.v"))?,
                    ))
                })
                .collect::<Option<Vec<_>>>()
                .map(|columns| (src.things.clone(), columns)),
        };
        let Some((things, columns)) = labelled else {
            continue;
        };
        let src = source.get_or_insert_with(|| PixelSource {
            cameras: Vec::new(),
            things,
            columns: Vec::new(),
        });
        src.cameras.push((cam.clone(), camera_index));
        src.columns.push(columns);
    }
    let source = source?;
    let rows = values.len() / width.max(1);
    let mut out = Vec::with_capacity(rows * source.cameras.len() * source.things.len() * 2);
    for r in 0..rows {
        for &(u, v) in source.columns.iter().flatten() {
            out.extend([values[r * width + u], values[r * width + v]]);
        }
    }
    Some((source, out))
}

/// The entries of the environment state (`observation.environment_state`) a policy observes:
/// `index` into a vector of `width` values, with their names. A policy trained with
/// `env_state = "observed"` (or `"perceived"`) appends them to its state, in this order.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvStateInput {
    pub width: usize,
    pub index: Vec<usize>,
    pub names: Vec<String>,
    /// Per observed entry, the entry of the same vector subtracted from it: positions are
    /// relative to an origin object's (the tool's), so "move the hand to the object" is
    /// the value itself. Empty = absolute (and for the auxiliary targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub minus: Vec<Option<usize>>,
}

impl EnvStateInput {
    /// The observed entries of one environment-state vector, or an error naming the mismatch.
    pub fn select(&self, env_state: &[f32]) -> Result<Vec<f32>, String> {
        if env_state.len() != self.width {
            return Err(format!(
                "environment_state has {} values; this policy observes {} of a {}-value environment state ({}{})",
                env_state.len(),
                self.index.len(),
                self.width,
                self.names
                    .iter()
                    .take(4)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.names.len() > 4 { ", …" } else { "" }
            ));
        }
        Ok(self
            .index
            .iter()
            .enumerate()
            .map(|(k, &i)| match self.minus.get(k).copied().flatten() {
                Some(o) => env_state[i] - env_state[o],
                None => env_state[i],
            })
            .collect())
    }

    /// Express the positions (`<thing>.x|y|z`) relative to `origin`'s (`origin.x|y|z`,
    /// which stay absolute); an error lists the entries when the origin is not there.
    fn relative_to(&mut self, origin: &str) -> Result<(), PolicyError> {
        let axis = |n: &str| {
            n.rsplit_once('.')
                .map(|(thing, a)| (thing.to_owned(), a.to_owned()))
        };
        let origin_of = |a: &str| {
            self.names
                .iter()
                .position(|n| n == &format!("{origin}.{a}"))
                .map(|k| self.index[k])
        };
        let (Some(x), Some(y), Some(z)) = (origin_of("x"), origin_of("y"), origin_of("z")) else {
            return Err(PolicyError::Config(format!(
                "env_state_origin = \"{origin}\": the environment state has no {origin}.x, {origin}.y and {origin}.z (it has {}); set env_state_origin = \"\" for absolute positions",
                self.names.join(", ")
            )));
        };
        self.minus = self
            .names
            .iter()
            .map(|n| match axis(n) {
                Some((thing, a)) if thing != origin => match a.as_str() {
                    "x" => Some(x),
                    "y" => Some(y),
                    "z" => Some(z),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        Ok(())
    }
}

/// Axis names as a list, whether stored as `[...]` or LeRobot's `{"motors": [...]}`.
fn names(ds: &Dataset, key: &str) -> Option<Vec<String>> {
    let v = &ds.feature(key)?.names;
    let list = match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => o.values().next()?.as_array()?,
        _ => return None,
    };
    list.iter().map(|n| n.as_str().map(str::to_owned)).collect()
}

/// Bilinear resize of an RGB8 image (`h`×`w`) to `s`×`s` ([`mulli_core::resize_rgb`]). Used
/// for both training data and live observations so they match exactly.
pub fn resize_rgb(src: &[u8], h: usize, w: usize, s: usize) -> Vec<u8> {
    mulli_core::resize_rgb(src, h, w, s, s)
}

/// HWC RGB8 `s`×`s` → CHW floats in [0, 1], appended to `out`, with an optional shift
/// `(dy, dx)` (edge-replicated) and brightness/contrast factors.
pub fn push_chw(out: &mut Vec<f32>, img: &[u8], s: usize, shift: (i32, i32), bc: (f32, f32)) {
    let (b, c) = bc;
    let mean = if c == 1.0 {
        0.0
    } else {
        img.iter().map(|&v| f32::from(v)).sum::<f32>() / (img.len() as f32 * 255.0) * b
    };
    let last = s as i32 - 1;
    for ch in 0..3 {
        for y in 0..s as i32 {
            let yy = (y + shift.0).clamp(0, last) as usize;
            for x in 0..s as i32 {
                let xx = (x + shift.1).clamp(0, last) as usize;
                let v = f32::from(img[(yy * s + xx) * 3 + ch]) / 255.0 * b;
                out.push(((v - mean) * c + mean).clamp(0.0, 1.0));
            }
        }
    }
}

/// How [`TrainData::load`] reads the datasets.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions<'a> {
    /// Side of the square model input every frame is resized to.
    pub image_size: usize,
    /// Actions per sample (the chunk H).
    pub chunk: usize,
    /// Fraction of each dataset's episodes held out for validation.
    pub val_fraction: f64,
    pub seed: u64,
    /// Limit on the decoded frames held in memory.
    pub max_memory_mb: usize,
    /// The cameras to use, by name; `None` = all of the datasets' cameras, `Some(&[])` =
    /// none (a state-only policy: no frame is decoded).
    pub cameras: Option<&'a [String]>,
}

/// The cameras a policy sees out of a dataset's `available` ones, and the rest: all of
/// them (there must be one), or exactly `selection`, each of which must exist once.
fn select_cameras(
    available: &[String],
    selection: Option<&[String]>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let Some(selection) = selection else {
        if available.is_empty() {
            return Err(format!(
                "no camera features (`{IMAGE_PREFIX}<name>`); to train a state-only policy, set `cameras = []` (with env_state = \"observed\")"
            ));
        }
        return Ok((available.to_vec(), Vec::new()));
    };
    for (i, name) in selection.iter().enumerate() {
        if !available.contains(name) {
            return Err(format!(
                "cameras lists `{name}`, but the dataset's cameras are {available:?}"
            ));
        }
        if selection[..i].contains(name) {
            return Err(format!("cameras lists `{name}` twice"));
        }
    }
    let unused = available
        .iter()
        .filter(|c| !selection.contains(c))
        .cloned()
        .collect();
    Ok((selection.to_vec(), unused))
}

impl TrainData {
    /// Load `paths`, check they agree on cameras and dimensions, decode every frame of the
    /// selected cameras at `image_size`, and hold out `val_fraction` of each dataset's
    /// episodes (chosen by `seed`).
    pub fn load(
        paths: &[PathBuf],
        options: &LoadOptions<'_>,
        mut progress: impl FnMut(&str),
    ) -> Result<Self, PolicyError> {
        let &LoadOptions {
            image_size,
            chunk,
            val_fraction,
            seed,
            max_memory_mb,
            cameras: selection,
        } = options;
        if paths.is_empty() {
            return Err(PolicyError::Data("no dataset given (--data DIR)".into()));
        }
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(PolicyError::Config(format!(
                "val_fraction = {val_fraction}: must be in [0, 1)"
            )));
        }
        let mut layout: Option<(DataLayout, PathBuf)> = None;
        let mut sources = Vec::new();
        let mut tasks: Vec<String> = Vec::new();
        let mut task_ids: BTreeMap<String, u32> = BTreeMap::new();
        let mut groups: BTreeMap<(u32, u32), Vec<SampleRef>> = BTreeMap::new();
        let mut val = Vec::new();
        let (mut val_episodes, mut train_episodes) = (0, 0);
        let mut total_bytes = 0usize;
        for (si, path) in paths.iter().enumerate() {
            let ds = Dataset::open(path)
                .map_err(|e| PolicyError::Data(format!("{}: {e}", path.display())))?;
            if ds.is_empty() {
                return Err(PolicyError::Data(format!(
                    "{}: the dataset has no frames",
                    path.display()
                )));
            }
            let available: Vec<String> = ds
                .info
                .features
                .iter()
                .filter(|(_, f)| f.dtype.is_visual())
                .filter_map(|(k, _)| k.strip_prefix(IMAGE_PREFIX).map(str::to_owned))
                .collect();
            let (cameras, unused_cameras) = select_cameras(&available, selection)
                .map_err(|m| PolicyError::Data(format!("{}: {m}", path.display())))?;
            let (state, state_dim) = f32_column(&ds, path, STATE_KEY)?;
            let (action, action_dim) = f32_column(&ds, path, ACTION_KEY)?;
            let (aux_source, aux) = match aux_columns(&ds) {
                Some((src, values)) => (Some(src), values),
                None => (None, Vec::new()),
            };
            let (pixel_source, pixels) = match pixel_columns(&ds, &cameras) {
                Some((src, values)) => (Some(src), values),
                None => (None, Vec::new()),
            };
            let this = DataLayout {
                cameras,
                unused_cameras,
                state_dim,
                action_dim,
                fps: ds.fps(),
                robot_type: ds.info.robot_type.clone(),
                state_names: names(&ds, STATE_KEY),
                action_names: names(&ds, ACTION_KEY),
                aux_source,
                env_state: None,
                pixel_source,
            };
            match &layout {
                None => layout = Some((this.clone(), path.clone())),
                Some((first, first_path)) => {
                    let mismatch = if first.cameras != this.cameras {
                        Some(format!("cameras {:?} vs {:?}", this.cameras, first.cameras))
                    } else if (first.state_dim, first.action_dim)
                        != (this.state_dim, this.action_dim)
                    {
                        Some(format!(
                            "state/action sizes {}/{} vs {}/{}",
                            this.state_dim, this.action_dim, first.state_dim, first.action_dim
                        ))
                    } else if first.fps != this.fps {
                        Some(format!("fps {} vs {}", this.fps, first.fps))
                    } else {
                        None
                    };
                    if let Some(m) = mismatch {
                        return Err(PolicyError::Data(format!(
                            "{} does not match {}: {m}; datasets trained together need the same cameras, state, action and fps",
                            path.display(),
                            first_path.display()
                        )));
                    }
                    // Auxiliary targets and pixel labels only where every dataset has the
                    // same ones.
                    let mut agreed = first.clone();
                    if first.aux_source != this.aux_source {
                        agreed.aux_source = None;
                    }
                    if first.pixel_source != this.pixel_source {
                        agreed.pixel_source = None;
                    }
                    if agreed != *first {
                        layout = Some((agreed, first_path.clone()));
                    }
                }
            }
            let cams = layout.as_ref().expect("set above").0.cameras.clone();
            total_bytes += ds.len() * cams.len() * image_size * image_size * 3;
            if total_bytes > max_memory_mb << 20 {
                return Err(PolicyError::Data(format!(
                    "the decoded frames need more than max_memory_mb = {max_memory_mb} MiB (at {}: {} MiB); raise it or train on fewer/smaller datasets",
                    path.display(),
                    total_bytes >> 20
                )));
            }
            let mut frames = Vec::with_capacity(cams.len());
            for cam in &cams {
                let key = format!("{IMAGE_PREFIX}{cam}");
                progress(&format!("decoding {key} of {}", path.display()));
                let spec = ds.feature(&key).expect("camera listed from the features");
                let (h, w, c) = spec
                    .image_hwc()
                    .map_err(|e| PolicyError::Data(format!("{}: {e}", path.display())))?;
                if c != 3 {
                    return Err(PolicyError::Data(format!(
                        "{}: `{key}` has {c} channels; RGB (3) expected",
                        path.display()
                    )));
                }
                let all = ds
                    .decode_all_frames(&key)
                    .map_err(|e| PolicyError::Data(format!("{}: {e}", path.display())))?;
                let frame = h * w * 3;
                let mut resized = Vec::with_capacity(ds.len() * image_size * image_size * 3);
                for f in all.chunks_exact(frame) {
                    resized.extend(resize_rgb(f, h, w, image_size));
                }
                frames.push(resized);
            }
            let mut episode_end = vec![0; ds.len()];
            let mut task = vec![0u32; ds.len()];
            for (row, slot) in task.iter_mut().enumerate() {
                let t = ds.task_of_row(row);
                let next = tasks.len() as u32;
                let id = *task_ids.entry(t.to_owned()).or_insert(next);
                if id == next {
                    tasks.push(t.to_owned());
                }
                *slot = id;
            }
            // Hold out whole episodes: neighbouring frames of one episode are near copies.
            let n_eps = ds.episodes.len();
            let mut order: Vec<usize> = (0..n_eps).collect();
            rng::shuffle(
                &mut order,
                &mut rng::substream(seed, "val-episodes", si as u64),
            );
            let n_val = if val_fraction > 0.0 && n_eps >= 2 {
                ((n_eps as f64 * val_fraction).round() as usize).clamp(1, n_eps - 1)
            } else {
                0
            };
            let held: Vec<bool> = {
                let mut h = vec![false; n_eps];
                for &e in &order[..n_val] {
                    h[e] = true;
                }
                h
            };
            val_episodes += n_val;
            train_episodes += n_eps - n_val;
            for (ep, &is_val) in held.iter().enumerate() {
                let (start, end) = ds
                    .episode_rows(ep)
                    .map_err(|e| PolicyError::Data(format!("{}: {e}", path.display())))?;
                for row in start..end {
                    episode_end[row] = end;
                    let r = (si as u32, row as u32);
                    if is_val {
                        val.push(r);
                    } else {
                        groups.entry((si as u32, task[row])).or_default().push(r);
                    }
                }
            }
            sources.push(Source {
                path: path.clone(),
                frames,
                state,
                action,
                aux,
                pixels,
                episode_end,
                task,
            });
        }
        let layout = layout.expect("at least one dataset").0;
        for src in &mut sources {
            if layout.aux_source.is_none() {
                src.aux = Vec::new();
            }
            if layout.pixel_source.is_none() {
                src.pixels = Vec::new();
            }
        }
        let groups: Vec<Group> = groups
            .into_values()
            .map(|samples| Group { samples })
            .collect();
        let train_len = groups.iter().map(|g| g.samples.len()).sum();
        if train_len == 0 {
            return Err(PolicyError::Data("no training samples".into()));
        }
        Ok(TrainData {
            sources,
            layout,
            image_size,
            chunk,
            tasks,
            groups,
            train_len,
            val,
            val_episodes,
            train_episodes,
            pixels_on: false,
        })
    }

    /// Put the pixel labels into every batch ([`HostBatch::pixels`]) and say what they are;
    /// an error names the datasets when they have none in a camera the policy sees.
    pub fn supervise_pixels(&mut self) -> Result<PixelSource, PolicyError> {
        let Some(source) = self.layout.pixel_source.clone() else {
            return Err(PolicyError::Data(format!(
                "pixel_weight > 0 needs every dataset to have the same image positions of objects in the policy's cameras ({}): `{ENV_STATE_KEY}` entries named <thing>.<camera>.u and .v, which `mulli sim record` writes; {} do not",
                self.layout.cameras.join(", "),
                self.paths()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        self.pixels_on = true;
        Ok(source)
    }

    /// Append the environment-state entries of the auxiliary targets (object positions and
    /// articulations; positions relative to `origin`'s unless it is empty, and the auxiliary
    /// targets become the same relative values) to every row's state, so the policy observes them — a state-based
    /// policy, like robomimic's "low-dim" ones. Needs every dataset to have the same named
    /// environment state.
    pub fn observe_env_state(&mut self, origin: &str) -> Result<EnvStateInput, PolicyError> {
        let Some(mut input) = self.layout.aux_source.clone() else {
            return Err(PolicyError::Data(format!(
                "env_state = \"observed\" or \"perceived\" needs every dataset to have a named `{ENV_STATE_KEY}` with positions (entries ending in .x/.y/.z/.angle/.opening), all with the same entries; {} do not",
                self.paths()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let (sd, xd) = (self.layout.state_dim, input.index.len());
        if !origin.is_empty() {
            input.relative_to(origin)?;
            // Where each origin coordinate sits among the kept entries.
            let at: Vec<Option<usize>> = input
                .minus
                .iter()
                .map(|m| m.and_then(|o| input.index.iter().position(|&i| i == o)))
                .collect();
            for src in &mut self.sources {
                for row in src.aux.chunks_exact_mut(xd) {
                    let before = row.to_vec();
                    for (v, o) in row.iter_mut().zip(&at) {
                        if let Some(o) = o {
                            *v -= before[*o];
                        }
                    }
                }
            }
            // The auxiliary targets are now these relative positions too.
            self.layout.aux_source = Some(input.clone());
        }
        for src in &mut self.sources {
            let rows = src.state.len() / sd.max(1);
            let mut state = Vec::with_capacity(rows * (sd + xd));
            for r in 0..rows {
                state.extend_from_slice(&src.state[r * sd..(r + 1) * sd]);
                state.extend_from_slice(&src.aux[r * xd..(r + 1) * xd]);
            }
            src.state = state;
        }
        self.layout.state_dim = sd + xd;
        self.layout.state_names = Some(
            self.layout
                .state_names
                .clone()
                .unwrap_or_else(|| (0..sd).map(|i| format!("state_{i}")).collect())
                .into_iter()
                .chain(input.names.iter().cloned())
                .collect(),
        );
        self.layout.env_state = Some(input.clone());
        Ok(input)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.sources.iter().map(|s| s.path.clone()).collect()
    }

    /// Number of (dataset, task) groups that balanced sampling draws from evenly.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// All training states and actions (for normalization statistics over every dataset).
    pub fn stats_rows(&self) -> (Vec<f32>, Vec<f32>) {
        let mut s = Vec::new();
        let mut a = Vec::new();
        for src in &self.sources {
            s.extend_from_slice(&src.state);
            a.extend_from_slice(&src.action);
        }
        (s, a)
    }

    /// All training auxiliary targets (empty when the layout has none).
    pub fn aux_rows(&self) -> Vec<f32> {
        self.sources
            .iter()
            .flat_map(|s| s.aux.iter().copied())
            .collect()
    }

    /// The samples of training step `step`: task-balanced (each (dataset, task) group equally
    /// likely, then a uniform row) or uniform over all training frames.
    pub fn sample(&self, seed: u64, step: u64, batch: usize, balanced: bool) -> Vec<SampleRef> {
        let mut r = rng::substream(seed, "train-batch", step);
        (0..batch)
            .map(|_| {
                if balanced {
                    let g = &self.groups[r.random_range(0..self.groups.len())];
                    g.samples[r.random_range(0..g.samples.len())]
                } else {
                    let mut i = r.random_range(0..self.train_len);
                    let mut found = self.groups[0].samples[0];
                    for g in &self.groups {
                        if i < g.samples.len() {
                            found = g.samples[i];
                            break;
                        }
                        i -= g.samples.len();
                    }
                    found
                }
            })
            .collect()
    }

    /// Pack `samples` into a host batch. `aug_seed` = `Some((seed, step))` draws augmentation
    /// and flow noise from that stream; validation passes a fixed stream and no augmentation.
    pub fn batch(
        &self,
        samples: &[SampleRef],
        norms: Norms<'_>,
        augment: &Augment,
        seed: u64,
        stream: (&str, u64),
    ) -> HostBatch {
        self.pack(samples, norms, augment, seed, stream, true)
    }

    /// [`Self::batch`] without the frames and what is learned from them (auxiliary and
    /// pixel targets): a control step's batch (`images` empty), which neither copies nor
    /// augments a frame (the instruction's word dropout still applies).
    pub fn state_batch(
        &self,
        samples: &[SampleRef],
        norms: Norms<'_>,
        augment: &Augment,
        seed: u64,
        stream: (&str, u64),
    ) -> HostBatch {
        self.pack(samples, norms, augment, seed, stream, false)
    }

    /// A sample's raw state, auxiliary targets and pixel labels (`[cameras, P, 2]`; empty
    /// without labels): what a hand camera is fitted to ([`crate::calibrate`]).
    pub fn labels(&self, (source, row): SampleRef) -> (&[f32], &[f32], &[f32]) {
        let src = &self.sources[source as usize];
        let row = row as usize;
        let part = |v: &'_ [f32]| -> std::ops::Range<usize> {
            let width = v.len() / src.task.len().max(1);
            row * width..(row + 1) * width
        };
        (
            &src.state[part(&src.state)],
            &src.aux[part(&src.aux)],
            &src.pixels[part(&src.pixels)],
        )
    }

    /// Every training sample, in a fixed order (each task group of each dataset in turn).
    pub fn train_samples(&self) -> impl Iterator<Item = SampleRef> + '_ {
        self.groups.iter().flat_map(|g| g.samples.iter().copied())
    }

    fn pack(
        &self,
        samples: &[SampleRef],
        norms: Norms<'_>,
        augment: &Augment,
        seed: u64,
        stream: (&str, u64),
        images: bool,
    ) -> HostBatch {
        let Norms {
            state: state_norm,
            action: action_norm,
            aux: aux_norm,
        } = norms;
        let mut r = rng::substream(seed, stream.0, stream.1);
        let s = self.image_size;
        let (sd, ad, h) = (self.layout.state_dim, self.layout.action_dim, self.chunk);
        let cams = self.layout.cameras.len();
        let b = samples.len();
        let mut out = HostBatch {
            size: b,
            images: Vec::with_capacity(b * cams * 3 * s * s),
            texts: Vec::new(),
            text_index: Vec::with_capacity(b),
            state: Vec::with_capacity(b * sd),
            aux: Vec::new(),
            pixels: Vec::new(),
            shifts: Vec::new(),
            action: Vec::with_capacity(b * h * ad),
            valid: Vec::with_capacity(b * h),
            noise: Vec::with_capacity(b * h * ad),
            t: Vec::with_capacity(b),
        };
        let mut text_pos: BTreeMap<String, i64> = BTreeMap::new();
        for &(si, row) in samples {
            let src = &self.sources[si as usize];
            let row = row as usize;
            let mut shifts = Vec::with_capacity(cams);
            for cam in src.frames.iter().filter(|_| images) {
                let img = &cam[row * s * s * 3..(row + 1) * s * s * 3];
                let sh = augment.shift as i32;
                let shift = if sh > 0 {
                    (r.random_range(-sh..=sh), r.random_range(-sh..=sh))
                } else {
                    (0, 0)
                };
                // The shifted image shows input pixel (x + dx, y + dy) at (x, y): every
                // thing in it moves by (-dx, -dy) pixels, 2/s per pixel in [-1, 1] units.
                let (dy, dx) = shift;
                shifts.push((2.0 * dx as f32 / s as f32, 2.0 * dy as f32 / s as f32));
                let jitter = |r: &mut rng::Rng, x: f32| {
                    if x > 0.0 {
                        r.random_range(1.0 - x..=1.0 + x)
                    } else {
                        1.0
                    }
                };
                let bc = (
                    jitter(&mut r, augment.brightness),
                    jitter(&mut r, augment.contrast),
                );
                push_chw(&mut out.images, img, s, shift, bc);
                if augment.shift > 0 {
                    let (du, dv) = shifts[shifts.len() - 1];
                    out.shifts.extend([du, dv]);
                }
            }
            let task = &self.tasks[src.task[row] as usize];
            // Draws only when on, so runs without it keep their random stream.
            let text: std::borrow::Cow<str> = if augment.word_dropout > 0.0 {
                drop_words(task, augment.word_dropout, &mut r).into()
            } else {
                task.as_str().into()
            };
            // Allocates once per distinct text of the batch, not per sample.
            let pos = match text_pos.get(text.as_ref()) {
                Some(&pos) => pos,
                None => {
                    let pos = out.texts.len() as i64;
                    text_pos.insert(text.to_string(), pos);
                    out.texts.push(text.into_owned());
                    pos
                }
            };
            out.text_index.push(pos);
            let mut st = src.state[row * sd..(row + 1) * sd].to_vec();
            state_norm.normalize(&mut st);
            out.state.extend(st);
            let xd = self.layout.aux_names().len();
            if let Some(norm) = aux_norm
                && xd > 0
                && images
            {
                let mut x = src.aux[row * xd..(row + 1) * xd].to_vec();
                norm.normalize(&mut x);
                out.aux.extend(x);
            }
            if let (true, true, Some(px)) = (images, self.pixels_on, &self.layout.pixel_source) {
                let n = px.cameras.len() * px.things.len() * 2;
                let labels = src.pixels[row * n..(row + 1) * n].chunks_exact(px.things.len() * 2);
                for ((_, ci), labels) in px.cameras.iter().zip(labels) {
                    let (du, dv) = shifts[*ci];
                    for uv in labels.chunks_exact(2) {
                        out.pixels.extend([uv[0] - du, uv[1] - dv]);
                    }
                }
            }
            let end = src.episode_end[row];
            for k in 0..h {
                let (r_k, ok) = if row + k < end {
                    (row + k, 1.0)
                } else {
                    (end - 1, 0.0)
                };
                let mut a = src.action[r_k * ad..(r_k + 1) * ad].to_vec();
                action_norm.normalize(&mut a);
                out.action.extend(a);
                out.valid.push(ok);
            }
            out.t.push(beta_time(&mut r));
            for _ in 0..h * ad {
                out.noise.push(normal(&mut r));
            }
        }
        out
    }
}

/// A standard normal draw (Box–Muller), so noise depends only on our seeded stream.
pub fn normal(r: &mut rng::Rng) -> f32 {
    let u1: f32 = r.random_range(f32::EPSILON..1.0);
    let u2: f32 = r.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Flow-matching time: pi0 samples t from Beta(1.5, 1) scaled into [0.001, 1], favouring noisy
/// times. Beta(1.5, 1) is the distribution of U^(1/1.5).
fn beta_time(r: &mut rng::Rng) -> f32 {
    let u: f32 = r.random::<f32>();
    0.001 + 0.999 * u.powf(1.0 / 1.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Word dropout keeps a non-empty, in-order subsequence of the words, is the identity
        /// at p = 0, and is a function of the seed.
        #[test]
        fn word_dropout_keeps_an_ordered_nonempty_subsequence(
            words in proptest::collection::vec("[a-z가-힣]{1,6}", 1..8),
            p in 0.0f32..0.99,
            seed in any::<u64>(),
        ) {
            let text = words.join(" ");
            let out = drop_words(&text, p, &mut rng::seeded(seed));
            prop_assert_eq!(&out, &drop_words(&text, p, &mut rng::seeded(seed)));
            prop_assert!(!out.is_empty());
            let mut rest = words.iter();
            for w in out.split(' ') {
                prop_assert!(rest.any(|x| x == w), "{} is not in order in {}", w, text);
            }
            prop_assert_eq!(drop_words(&text, 0.0, &mut rng::seeded(seed)), text);
        }
    }

    proptest! {
        /// Splitting a batch partitions its rows in order into near-equal parts, and every
        /// row keeps its own instruction; each part lists only the instructions it uses.
        #[test]
        fn split_partitions_the_rows_in_order(
            size in 1usize..20,
            parts in 1usize..24,
            widths in proptest::collection::vec(0usize..5, 9),
            texts in proptest::collection::vec("[a-z가-힣 ]{0,8}", 1..5),
            seed in any::<u64>(),
        ) {
            let mut r = rng::seeded(seed);
            let mut col = |w: usize| -> Vec<f32> {
                (0..size * w).map(|_| normal(&mut r)).collect()
            };
            let text_index: Vec<i64> =
                (0..size).map(|i| ((i as u64 ^ seed) % texts.len() as u64) as i64).collect();
            let b = HostBatch {
                size,
                images: col(widths[0]),
                texts: texts.clone(),
                text_index,
                state: col(widths[1]),
                aux: col(widths[2]),
                pixels: col(widths[3]),
                shifts: col(widths[8]),
                action: col(widths[4]),
                valid: col(widths[5]),
                noise: col(widths[6]),
                t: col(widths[7]),
            };
            let split = b.split(parts);
            prop_assert_eq!(split.len(), parts.min(size));
            let sizes: Vec<usize> = split.iter().map(|p| p.size).collect();
            prop_assert_eq!(sizes.iter().sum::<usize>(), size);
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            prop_assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
            let joined = |f: fn(&HostBatch) -> &Vec<f32>| -> Vec<f32> {
                split.iter().flat_map(|p| f(p).iter().copied()).collect()
            };
            prop_assert_eq!(joined(|p| &p.images), b.images.clone());
            prop_assert_eq!(joined(|p| &p.state), b.state.clone());
            prop_assert_eq!(joined(|p| &p.aux), b.aux.clone());
            prop_assert_eq!(joined(|p| &p.pixels), b.pixels.clone());
            prop_assert_eq!(joined(|p| &p.shifts), b.shifts.clone());
            prop_assert_eq!(joined(|p| &p.action), b.action.clone());
            prop_assert_eq!(joined(|p| &p.valid), b.valid.clone());
            prop_assert_eq!(joined(|p| &p.noise), b.noise.clone());
            prop_assert_eq!(joined(|p| &p.t), b.t.clone());
            let row_texts: Vec<&String> = split
                .iter()
                .flat_map(|p| p.text_index.iter().map(|&i| &p.texts[i as usize]))
                .collect();
            let want: Vec<&String> = b.text_index.iter().map(|&i| &b.texts[i as usize]).collect();
            prop_assert_eq!(row_texts, want);
            for p in &split {
                let used: std::collections::BTreeSet<i64> = p.text_index.iter().copied().collect();
                prop_assert_eq!(used.len(), p.texts.len());
            }
        }
    }

    #[test]
    fn camera_selection_keeps_the_given_order_and_names_what_is_wrong() {
        let available: Vec<String> = vec!["front".into(), "wrist".into()];
        let sel = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            select_cameras(&available, None).unwrap(),
            (available.clone(), Vec::new())
        );
        assert_eq!(
            select_cameras(&available, Some(&sel(&["wrist", "front"]))).unwrap(),
            (sel(&["wrist", "front"]), Vec::new())
        );
        assert_eq!(
            select_cameras(&available, Some(&[])).unwrap(),
            (Vec::new(), available.clone())
        );
        let e = select_cameras(&available, Some(&sel(&["side"]))).unwrap_err();
        assert!(e.contains("`side`") && e.contains("wrist"), "{e}");
        let e = select_cameras(&available, Some(&sel(&["front", "front"]))).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = select_cameras(&[], None).unwrap_err();
        assert!(e.contains("cameras = []"), "{e}");
        assert_eq!(select_cameras(&[], Some(&[])).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn resize_keeps_a_constant_image_constant_and_identity_is_exact() {
        let img: Vec<u8> = (0..8 * 6 * 3).map(|i| (i % 251) as u8).collect();
        assert_eq!(resize_rgb(&img, 6, 8, 6).len(), 6 * 6 * 3);
        let same: Vec<u8> = (0..5 * 5 * 3).map(|i| i as u8).collect();
        assert_eq!(resize_rgb(&same, 5, 5, 5), same);
        let flat = vec![77u8; 10 * 12 * 3];
        assert!(resize_rgb(&flat, 10, 12, 7).iter().all(|&v| v == 77));
    }

    #[test]
    fn shift_and_jitter_stay_in_range() {
        let s = 4;
        let img: Vec<u8> = (0..s * s * 3).map(|i| (i * 5) as u8).collect();
        let mut plain = Vec::new();
        push_chw(&mut plain, &img, s, (0, 0), (1.0, 1.0));
        assert_eq!(plain.len(), 3 * s * s);
        // Channel-first: first value is channel 0 of pixel (0, 0), next is pixel (0, 1).
        assert_eq!(plain[0], 0.0);
        assert_eq!(plain[1], 15.0 / 255.0);
        let mut shifted = Vec::new();
        push_chw(&mut shifted, &img, s, (0, 1), (1.0, 1.0));
        assert_eq!(shifted[0], plain[1]);
        // Beyond the edge, the last column repeats.
        assert_eq!(shifted[s - 1], plain[s - 1]);
        let mut bright = Vec::new();
        push_chw(&mut bright, &img, s, (0, 0), (1.8, 1.5));
        assert!(bright.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    /// Relative positions subtract the origin's coordinate of the same axis; the origin,
    /// angles and openings stay absolute; a missing origin is an error naming the entries.
    #[test]
    fn env_state_positions_relative_to_an_origin() {
        let names = [
            "cube.x",
            "cube.y",
            "cube.z",
            "door.angle",
            "ee.x",
            "ee.y",
            "ee.z",
        ];
        let mut input = EnvStateInput {
            width: 8,
            // Entry 3 (a quaternion, say) is not observed.
            index: vec![0, 1, 2, 4, 5, 6, 7],
            names: names.iter().map(|n| n.to_string()).collect(),
            minus: Vec::new(),
        };
        let v = [1.0, 2.0, 3.0, 9.0, 0.5, 0.25, 0.5, 1.0];
        assert_eq!(
            input.select(&v).unwrap(),
            [1.0, 2.0, 3.0, 0.5, 0.25, 0.5, 1.0]
        );
        let e = input.relative_to("hand").unwrap_err().to_string();
        assert!(e.contains("hand.x") && e.contains("cube.x"), "{e}");
        input.relative_to("ee").unwrap();
        assert_eq!(
            input.select(&v).unwrap(),
            [0.75, 1.5, 2.0, 0.5, 0.25, 0.5, 1.0]
        );
        let e = input.select(&v[..7]).unwrap_err();
        assert!(e.contains("7 values") && e.contains("8-value"), "{e}");
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut r = rng::seeded(3);
        let xs: Vec<f32> = (0..20_000).map(|_| normal(&mut r)).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / xs.len() as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
