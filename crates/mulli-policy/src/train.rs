//! Training: AdamW with warmup + cosine learning rate, gradient clipping, EMA weights,
//! augmentation, task-balanced sampling, held-out validation, atomic checkpoints and
//! bit-for-bit `--resume`.
//!
//! A run directory holds `train.toml` (the exact config, written once), `metrics.jsonl` (one
//! line per logged step) and `checkpoint/` (see [`crate::checkpoint`]). Batches are packed
//! on a background thread one step ahead; what a step sees depends only on `(seed, step)`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::checkpoint::{self, PolicySpec, TrainState, TrainingSummary};
use crate::data::{Augment, HostBatch, LoadOptions, Norms, SampleRef, TrainData};
use crate::model::{
    Head, Losses, PixelTargets, TextEncoderKind, TextInput, Vla, VlaConfig, VlaInput,
};
use crate::normalize::{NormMode, Normalizer};
use crate::pretrained::PretrainedTextEncoder;
use crate::tokenizer::ByteTokenizer;

/// How a policy uses the datasets' privileged `observation.environment_state` (the
/// positions and articulations of the objects; simulated data has it). Every dataset needs
/// the same named environment state for `observed` and `perceived`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvState {
    /// Not used as an input (it may still be an auxiliary target, see `aux_weight`).
    #[default]
    Off,
    /// Appended to the policy's state: a state-based policy, like robomimic's "low-dim"
    /// ones (images still go in). At inference the observation must carry it — the
    /// simulator's does; on a robot it takes a pose estimator.
    Observed,
    /// Learned from the images: the keypoints' auxiliary head predicts the positions, and
    /// the policy reads its own predictions at inference, so it needs cameras only (needs
    /// `[model] keypoints`; see [`crate::VlaConfig::perceived`]).
    Perceived,
}

/// Everything that defines a training run (`--config FILE`, TOML). Unknown keys are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub seed: u64,
    pub steps: u64,
    /// Steps after `steps` that train the policy's control part from states alone — the
    /// instruction, the arm and the perceived entries, no frame decoded or encoded — with a
    /// learning-rate schedule of their own (warmup and cosine again). Perception (stem,
    /// keypoints, lift) stays as `steps` left it; its predictions on every training frame
    /// are computed once when these steps begin and given to `perceived_share` of each
    /// batch, the true values to the rest. Needs `[model] images_perception_only` with
    /// cameras. Why: a control step costs a fraction of a step with images, and the
    /// multi-task control is what lacks steps (docs/benchmarks.md, "Perception, then
    /// control"). 0 = off (and left out of the serialized config).
    #[serde(skip_serializing_if = "is_zero_steps")]
    pub control_steps: u64,
    pub batch_size: usize,
    /// Samples per control step; unset = `batch_size`. Why apart: a control step has no
    /// frame in it, so at `batch_size` it is mostly per-op overhead, and a larger batch
    /// buys more samples per second (docs/benchmarks.md, "Twice the control steps").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_batch_size: Option<usize>,
    /// At the first control step, the state gate ([`crate::VlaConfig::state_gate`]) starts
    /// again from open (every factor 1). Why: during `steps` the perceived positions are
    /// still poor, so the gate learns to shut most things' entries, and a sigmoid shut that
    /// far gets almost no gradient to reopen (measured at step 3,000 of the default
    /// flywheel: `bowl.x` 0.02, `plate.x` 0.04, `ketchup.y` 0.03 for their own
    /// instructions); the control steps then learn it from the frozen, sharper
    /// perception. Needs `control_steps`; off = left out of the serialized config.
    #[serde(skip_serializing_if = "is_false")]
    pub reopen_gate: bool,
    /// Each step's batch is split into this many micro-batches, whose forward and backward
    /// passes run on threads of their own and whose gradients are summed. The model learns
    /// the same thing whatever the machine's core count; it is a config value, not the
    /// number of cores, so that the same config gives the same weights everywhere.
    pub micro_batches: usize,
    pub lr: f64,
    /// The cosine schedule ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub warmup_steps: u64,
    pub weight_decay: f32,
    /// Per-tensor gradient norm limit (burn clips each parameter's gradient); 0 = off.
    pub grad_clip: f32,
    pub ema_decay: f32,
    /// Fraction of each dataset's episodes held out for validation.
    pub val_fraction: f64,
    pub val_every: u64,
    /// Validation samples (a fixed, evenly spaced subset of the held-out frames).
    pub val_samples: usize,
    pub checkpoint_every: u64,
    pub log_every: u64,
    /// Draw each (dataset, task) group equally often, instead of every frame equally often.
    pub balance_tasks: bool,
    pub norm: NormMode,
    /// Limit on the decoded training frames held in memory.
    pub max_memory_mb: usize,
    pub augment: Augment,
    /// Weight of the auxiliary loss: predict the objects' positions (from the datasets'
    /// `observation.environment_state`) from the image keypoints. Used when it is positive,
    /// the model has `keypoints`, and every dataset has a named environment state (simulated
    /// ones do; real ones usually do not, and then training goes on without it).
    pub aux_weight: f32,
    /// Weight of the pixel loss: keypoints of each labelled camera are trained to sit on the
    /// objects' image positions recorded in the datasets' environment state
    /// (`<thing>.<camera>.u|v`; see [`crate::data::PixelSource`]), one keypoint per thing
    /// and camera. Needs `[model] keypoints` ≥ things × labelled cameras. 0 = off (and left
    /// out of the serialized config).
    #[serde(skip_serializing_if = "crate::data::is_zero")]
    pub pixel_weight: f32,
    /// With `env_state = "perceived"`: the share of each batch whose position entries are
    /// the perception head's (detached) predictions rather than the true values. At 0.5 the
    /// action head learns both to use positions and to live with the perception error; at
    /// 0 it learns from true positions only and meets its own predictions at inference.
    #[serde(default = "half", skip_serializing_if = "is_half")]
    pub perceived_share: f32,
    /// `perceived_share` for the positions the lift places from the pixel-labelled
    /// keypoints (the objects and receptacles); unset = `perceived_share`. Why apart: the
    /// wrist camera's rays place a thing near the hand to about a centimetre, while the
    /// articulations (door angle, drawer opening) come from the auxiliary head, coarser;
    /// a control trained on true positions grasps precisely, one trained on predictions
    /// copes with the coarse entries (docs/benchmarks.md, "Hand–eye geometry").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_share: Option<f32>,
    /// With `env_state = "perceived"`: where a prediction replaces a perceived position
    /// (`.x`/`.y`/`.z`) in training, it is kept within this many metres of the truth.
    /// Unset = as predicted. Why: the demos centre the hand before it goes down, so a low
    /// hand a few centimetres beside the object appears in training only when perception
    /// is that far off, labelled "keep going down"; the control learns to go down
    /// whatever offset it sees. A cap keeps the small errors the control must live with
    /// and drops that contradiction. Measured: it did not change the descent, and the
    /// placements lost more than the grasps gained (docs/benchmarks.md, session 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perceived_error_cap: Option<f32>,
    /// Names of `observation.state` entries the policy does not see (they enter the model
    /// as 0, in training and at inference). Hiding the arm's own pose fights the copycat
    /// shortcut of behaviour cloning: with it, a policy can continue whatever motion its
    /// pose shows instead of looking where the object is (docs/benchmarks.md).
    pub state_ignore: Vec<String>,
    /// What the policy knows of the objects beyond its images (see [`EnvState`]).
    pub env_state: EnvState,
    /// The cameras the policy sees, by name (`observation.images.<name>`); unset = all of
    /// the data's. `[]` = none: a state-only policy (robomimic's "low-dim" setting, with
    /// `env_state = "observed"`), which trains without decoding a frame and several times
    /// faster per step. Observations may still carry the unused cameras.
    pub cameras: Option<Vec<String>>,
    /// With `env_state` on: each object's entries (`cube.x`, `cube.y`, …) become a token of
    /// their own instead of joining the arm's state token (see
    /// [`crate::VlaConfig::object_tokens`]).
    pub object_tokens: bool,
    /// With `env_state` on: the object whose position the others' are given relative to
    /// (the tool, `ee`, in mulli's kitchen); "" = absolute positions.
    pub env_state_origin: String,
    /// A frozen pretrained sentence encoder (config.json, model.safetensors, tokenizer.json)
    /// to use instead of the byte-level text encoder.
    pub text_encoder_dir: Option<PathBuf>,
    /// `cameras`, `state_dim`, `action_dim` and the text encoder's width are taken from the
    /// data and `text_encoder_dir`.
    pub model: VlaConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 0,
            steps: 2000,
            batch_size: 64,
            micro_batches: 2,
            lr: 5e-4,
            min_lr_ratio: 0.1,
            warmup_steps: 100,
            weight_decay: 1e-4,
            grad_clip: 1.0,
            ema_decay: 0.995,
            val_fraction: 0.1,
            val_every: 200,
            val_samples: 256,
            checkpoint_every: 200,
            log_every: 10,
            balance_tasks: true,
            norm: NormMode::MeanStd,
            max_memory_mb: 8192,
            augment: Augment::default(),
            aux_weight: 1.0,
            pixel_weight: 0.0,
            perceived_share: 0.5,
            lifted_share: None,
            perceived_error_cap: None,
            control_steps: 0,
            control_batch_size: None,
            reopen_gate: false,
            state_ignore: Vec::new(),
            env_state: EnvState::Off,
            env_state_origin: "ee".into(),
            cameras: None,
            object_tokens: false,
            text_encoder_dir: None,
            model: VlaConfig::default(),
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<(), PolicyError> {
        let positive = [
            ("steps", self.steps),
            ("batch_size", self.batch_size as u64),
            ("val_every", self.val_every),
            ("checkpoint_every", self.checkpoint_every),
            ("log_every", self.log_every),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(PolicyError::Config(format!("{name} = 0: must be positive")));
            }
        }
        if self.micro_batches == 0 || self.micro_batches > self.batch_size {
            return Err(PolicyError::Config(format!(
                "micro_batches = {}: must be between 1 and batch_size ({})",
                self.micro_batches, self.batch_size
            )));
        }
        if let Some(b) = self
            .control_batch_size
            .filter(|&b| b == 0 || b < self.micro_batches)
        {
            return Err(PolicyError::Config(format!(
                "control_batch_size = {b}: must be at least micro_batches ({}) (or left out to use batch_size)",
                self.micro_batches
            )));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(PolicyError::Config(format!(
                "lr = {}: must be positive",
                self.lr
            )));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(PolicyError::Config(format!(
                "min_lr_ratio = {}: must be in [0, 1]",
                self.min_lr_ratio
            )));
        }
        for (name, share) in [
            ("perceived_share", Some(self.perceived_share)),
            ("lifted_share", self.lifted_share),
        ] {
            if let Some(share) = share.filter(|s| !(0.0..=1.0).contains(s)) {
                return Err(PolicyError::Config(format!(
                    "{name} = {share}: must be in [0, 1]"
                )));
            }
        }
        if let Some(cap) = self
            .perceived_error_cap
            .filter(|c| !(*c > 0.0 && c.is_finite()))
        {
            return Err(PolicyError::Config(format!(
                "perceived_error_cap = {cap}: must be a positive number of metres (or left out)"
            )));
        }
        if self.perceived_error_cap.is_some() && self.env_state != EnvState::Perceived {
            // It only acts on perceived entries: set alone, it would silently do nothing.
            return Err(PolicyError::Config(
                "perceived_error_cap is set but env_state is not \"perceived\": it caps perceived positions, so it needs env_state = \"perceived\"".into(),
            ));
        }
        if !(self.pixel_weight >= 0.0 && self.pixel_weight.is_finite()) {
            return Err(PolicyError::Config(format!(
                "pixel_weight = {}: must be a finite number ≥ 0",
                self.pixel_weight
            )));
        }
        if !(self.aux_weight >= 0.0 && self.aux_weight.is_finite()) {
            return Err(PolicyError::Config(format!(
                "aux_weight = {}: must be a finite number ≥ 0",
                self.aux_weight
            )));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(PolicyError::Config(format!(
                "ema_decay = {}: must be in [0, 1)",
                self.ema_decay
            )));
        }
        if !(0.0..1.0).contains(&self.augment.word_dropout) {
            return Err(PolicyError::Config(format!(
                "augment.word_dropout = {}: must be at least 0 and below 1",
                self.augment.word_dropout
            )));
        }
        if self.augment.shift >= self.model.image_size / 2 {
            return Err(PolicyError::Config(format!(
                "augment.shift = {}: must be under half the image size ({})",
                self.augment.shift, self.model.image_size
            )));
        }
        Ok(())
    }

    /// Samples in the batch of `step`: `batch_size` for the image steps,
    /// `control_batch_size` (if set) for the control steps after them.
    pub fn batch_size_at(&self, step: u64) -> usize {
        match self.control_batch_size {
            Some(b) if step >= self.steps => b,
            _ => self.batch_size,
        }
    }

    /// Every step of the run: `steps`, then `control_steps`.
    pub fn total_steps(&self) -> u64 {
        self.steps + self.control_steps
    }

    /// Learning rate at `step`: linear warmup, then cosine decay to `lr * min_lr_ratio`;
    /// the control steps after `steps` run the same schedule over their own count.
    pub fn lr_at(&self, step: u64) -> f64 {
        let (step, steps) = match step.checked_sub(self.steps) {
            Some(s) => (s, self.control_steps),
            None => (step, self.steps),
        };
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let p = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let min = self.lr * self.min_lr_ratio;
        min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

fn half() -> f32 {
    0.5
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_steps(n: &u64) -> bool {
    *n == 0
}

fn is_half(x: &f32) -> bool {
    *x == 0.5
}

/// [`VlaConfig::aux_select`]: each auxiliary target from the head, except the absolute
/// positions (`<thing>.x|y|z`) of labelled things, which come from the lift; empty when no
/// target is lifted.
fn lifted_from_pixels(
    layout: &crate::data::DataLayout,
    aux_names: &[String],
    things: &[String],
) -> Vec<usize> {
    let relative = |j: usize| {
        layout
            .aux_source
            .as_ref()
            .and_then(|a| a.minus.get(j).copied().flatten())
            .is_some()
    };
    let n = aux_names.len();
    let select: Vec<usize> = aux_names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let lifted = name.rsplit_once('.').and_then(|(thing, axis)| {
                let k = things.iter().position(|t| t == thing)?;
                let a = ["x", "y", "z"].iter().position(|x| *x == axis)?;
                (!relative(j)).then_some(n + 3 * k + a)
            });
            lifted.unwrap_or(j)
        })
        .collect();
    if select.iter().enumerate().all(|(j, &i)| i == j) {
        Vec::new()
    } else {
        select
    }
}

/// One logged step (a line of `metrics.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub step: u64,
    pub loss: f32,
    pub lr: f64,
    pub samples_per_s: f64,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f32>,
    /// The auxiliary (object position) loss of this step, when training with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_loss: Option<f32>,
    /// With pixel labels: the labelled keypoints' mean distance per axis from the labels,
    /// in the model's input pixels (this step's batch, augmentation included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_err_px: Option<f32>,
    /// The same per labelled camera, in the order of the model's `pixel_cameras`: a pixel
    /// of a wrist camera near the object is millimetres, one of an agent view centimetres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_err_px_by_camera: Option<Vec<f32>>,
    /// At validation steps, the same on the held-out episodes (no augmentation): a
    /// perception that only fits the training episodes shows here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_aux_loss: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_pixel_err_px: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_pixel_err_px_by_camera: Option<Vec<f32>>,
}

/// What the caller sees while training runs.
pub enum Event<'a> {
    Loading(&'a str),
    Started {
        first_step: u64,
        steps: u64,
        params: usize,
        data: &'a TrainData,
    },
    Step(&'a Metrics),
    Checkpoint(&'a Path),
    /// Something training decided that the user may want to know.
    Note(&'a str),
    /// Something training worked around that the user should know.
    Warning(&'a str),
}

/// Turns host batches into model inputs (the text front-end is the only stateful part: a
/// pretrained encoder caches one embedding per distinct instruction).
pub struct Batcher {
    tokenizer: ByteTokenizer,
    pretrained: Option<std::sync::Mutex<PretrainedTextEncoder>>,
    cameras: usize,
    image_size: usize,
    chunk: usize,
    action_dim: usize,
    state_dim: usize,
    aux_dim: usize,
    aux_weight: f32,
    /// Labelled keypoints of all labelled cameras and the side of their map
    /// ([`VlaConfig::pixel_targets`]).
    pixel_labels: usize,
    keypoint_side: usize,
    pixel_weight: f32,
    /// Batches without frames are control steps' ([`VlaConfig::images_perception_only`]).
    images_perception_only: bool,
}

impl Batcher {
    /// `pretrained` must be given exactly when the model's text encoder is pretrained, and
    /// produce embeddings of the model's width.
    pub fn new(
        config: &VlaConfig,
        pretrained: Option<PretrainedTextEncoder>,
    ) -> Result<Self, PolicyError> {
        match (&config.text_encoder, &pretrained) {
            (TextEncoderKind::Bytes, None) => {}
            (TextEncoderKind::Pretrained { dim }, Some(enc)) if *dim == enc.dim() => {}
            (TextEncoderKind::Pretrained { dim }, Some(enc)) => {
                return Err(PolicyError::Config(format!(
                    "the model expects {dim}-dim instruction embeddings; {} gives {}",
                    enc.dir().display(),
                    enc.dim()
                )));
            }
            (TextEncoderKind::Pretrained { .. }, None) => {
                return Err(PolicyError::Config(
                    "the model uses a pretrained text encoder but none was loaded (text_encoder_dir)"
                        .into(),
                ));
            }
            (TextEncoderKind::Bytes, Some(_)) => {
                return Err(PolicyError::Config(
                    "a pretrained text encoder was given to a byte-level model".into(),
                ));
            }
        }
        Ok(Batcher {
            tokenizer: ByteTokenizer::new(config.text_len),
            pretrained: pretrained.map(std::sync::Mutex::new),
            cameras: config.cameras,
            image_size: config.image_size,
            chunk: config.chunk,
            action_dim: config.action_dim,
            state_dim: config.state_dim,
            aux_dim: config.aux_dim,
            aux_weight: 1.0,
            pixel_labels: config.pixel_targets * config.pixel_cameras.len(),
            keypoint_side: config.keypoint_side(),
            pixel_weight: 1.0,
            images_perception_only: config.images_perception_only,
        })
    }

    /// Weight of the auxiliary loss in [`Self::loss`].
    pub fn with_aux_weight(mut self, weight: f32) -> Self {
        self.aux_weight = weight;
        self
    }

    /// Weight of the pixel loss in [`Self::loss`].
    pub fn with_pixel_weight(mut self, weight: f32) -> Self {
        self.pixel_weight = weight;
        self
    }

    pub fn text(
        &self,
        texts: &[String],
        index: &[i64],
        device: &Device,
    ) -> Result<TextInput, PolicyError> {
        let index_t =
            || Tensor::<1, Int>::from_data(TensorData::new(index.to_vec(), [index.len()]), device);
        if let Some(enc) = &self.pretrained {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let features = enc
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .encode_tensor(&refs, device)?;
            return Ok(TextInput::Embeddings {
                features,
                index: index_t(),
            });
        }
        // Padded only to the longest instruction here, not to `text_len`: padding is masked
        // out of attention and pooling, so the encoding is the same (to rounding), and a
        // 17-token "open the drawer" no longer runs the text encoder over 64 positions.
        let encoded: Vec<(Vec<u32>, usize)> =
            texts.iter().map(|t| self.tokenizer.encode(t)).collect();
        let len = encoded.iter().map(|(_, n)| *n).max().unwrap_or(2);
        let mut ids = Vec::with_capacity(texts.len() * len);
        let mut mask = Vec::with_capacity(texts.len() * len);
        for (tok, n) in &encoded {
            ids.extend(tok[..len].iter().map(|&v| i64::from(v)));
            mask.extend((0..len).map(|k| if k < *n { 1.0f32 } else { 0.0 }));
        }
        Ok(TextInput::Bytes {
            tokens: Tensor::from_data(TensorData::new(ids, [texts.len(), len]), device),
            mask: Tensor::from_data(TensorData::new(mask, [texts.len(), len]), device),
            index: index_t(),
        })
    }

    pub fn input(&self, b: &HostBatch, device: &Device) -> Result<VlaInput, PolicyError> {
        let s = self.image_size;
        let frames = b.size * self.cameras * 3 * s * s;
        let stateless = b.images.is_empty() && self.images_perception_only;
        if self.cameras > 0 && !stateless && b.images.len() != frames {
            return Err(PolicyError::Observation(format!(
                "a batch of {} samples has {} image values; the model's {} cameras at {s}×{s} need {frames}",
                b.size,
                b.images.len(),
                self.cameras
            )));
        }
        Ok(VlaInput {
            images: (self.cameras > 0 && !stateless).then(|| {
                Tensor::from_data(
                    TensorData::new(b.images.clone(), [b.size, self.cameras, 3, s, s]),
                    device,
                )
            }),
            text: self.text(&b.texts, &b.text_index, device)?,
            state: Tensor::from_data(
                TensorData::new(b.state.clone(), [b.size, self.state_dim]),
                device,
            ),
            shift: (!b.shifts.is_empty() && !stateless).then(|| {
                Tensor::from_data(
                    TensorData::new(b.shifts.clone(), [b.size, b.shifts.len() / b.size.max(1)]),
                    device,
                )
            }),
        })
    }

    fn targets(&self, b: &HostBatch, device: &Device) -> (Tensor<3>, Tensor<2>, Tensor<3>) {
        let shape = [b.size, self.chunk, self.action_dim];
        (
            Tensor::from_data(TensorData::new(b.action.clone(), shape), device),
            Tensor::from_data(
                TensorData::new(b.valid.clone(), [b.size, self.chunk]),
                device,
            ),
            Tensor::from_data(TensorData::new(b.noise.clone(), shape), device),
        )
    }

    /// The training loss of `model` on a host batch: the action loss plus the weighted
    /// auxiliary loss when the batch has auxiliary targets.
    pub fn loss(
        &self,
        model: &Vla,
        b: &HostBatch,
        device: &Device,
    ) -> Result<Tensor<1>, PolicyError> {
        Ok(self.total(self.losses(model, b, device)?))
    }

    /// The weighted sum of the losses that are there.
    fn total(&self, l: Losses) -> Tensor<1> {
        let mut total = l.action;
        if let Some(aux) = l.aux
            && self.aux_weight > 0.0
        {
            total = total + aux * self.aux_weight;
        }
        if let Some(pixel) = l.pixel
            && self.pixel_weight > 0.0
        {
            total = total + pixel.loss * self.pixel_weight;
        }
        total
    }

    /// The action loss and, when the batch and model have them, the auxiliary and pixel
    /// losses.
    pub fn losses(
        &self,
        model: &Vla,
        b: &HostBatch,
        device: &Device,
    ) -> Result<Losses, PolicyError> {
        let (target, valid, noise) = self.targets(b, device);
        let flow = (model.head() == Head::Flow).then(|| (noise, b.t.clone()));
        let aux = (self.aux_dim > 0 && b.aux.len() == b.size * self.aux_dim).then(|| {
            Tensor::from_data(
                TensorData::new(b.aux.clone(), [b.size, self.aux_dim]),
                device,
            )
        });
        let p = self.pixel_labels;
        let pixels = (p > 0 && b.pixels.len() == b.size * p * 2)
            .then(|| PixelTargets::new(&b.pixels, b.size, p, self.keypoint_side, device));
        Ok(model.losses(self.input(b, device)?, target, valid, flow, aux, pixels))
    }
}

/// Exponential moving average of the weights, kept on the host as flat f32 vectors in the
/// model's parameter order (cheap next to a training step: the default model has < 1 M
/// parameters).
struct Ema {
    decay: f32,
    params: Vec<HostParam>,
}

/// A parameter copied to the host: name, shape, parameter id, values.
type HostParam = (String, Vec<usize>, Option<u64>, Vec<f32>);

fn snapshot(model: &Vla) -> Result<Vec<HostParam>, PolicyError> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let data = bridge::to_data(&t)
                .map_err(|e| PolicyError::Checkpoint(format!("reading `{}`: {e:?}", t.name)))?;
            let shape = data.shape().to_vec();
            let values = data
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| PolicyError::Checkpoint(format!("reading `{}`: {e:?}", t.name)))?;
            Ok((t.name.clone(), shape, t.param_id, values))
        })
        .collect()
}

impl Ema {
    fn new(model: &Vla, decay: f32) -> Result<Self, PolicyError> {
        Ok(Ema {
            decay,
            params: snapshot(model)?,
        })
    }

    /// Blend in the current weights; the effective decay ramps up over the first steps so the
    /// average does not remember the random initialization.
    fn update(&mut self, model: &Vla, step: u64) -> Result<(), PolicyError> {
        let d = self.decay.min((1.0 + step as f32) / (10.0 + step as f32));
        for (ema, cur) in self.params.iter_mut().zip(snapshot(model)?) {
            for (e, c) in ema.3.iter_mut().zip(&cur.3) {
                *e = d * *e + (1.0 - d) * c;
            }
        }
        Ok(())
    }

    fn apply_to(&self, model: &mut Vla) {
        let tensors = self
            .params
            .iter()
            .map(|(name, shape, id, v)| {
                bridge::from_data(TensorData::new(v.clone(), shape.clone()), name.clone(), *id)
            })
            .collect();
        model.apply(tensors, None, None, false);
    }
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let mut c = AdamWConfig::new().with_weight_decay(config.weight_decay);
    if config.grad_clip > 0.0 {
        c = c.with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip)));
    }
    c.init()
}

/// Validation results: the mean action loss and, when training has them, the auxiliary
/// loss and the pixel error (in [-1, 1] image units), overall and per labelled camera.
#[derive(Clone, Debug, Default)]
struct Validation {
    action: Option<f32>,
    aux: Option<f32>,
    pixel: Option<f32>,
    pixel_by_camera: Option<Vec<f32>>,
}

/// Mean losses of `model` over fixed validation batches.
fn validate(
    model: &Vla,
    batches: &[HostBatch],
    batcher: &Batcher,
    device: &Device,
) -> Result<Validation, PolicyError> {
    if batches.is_empty() {
        return Ok(Validation::default());
    }
    let (mut action, mut aux, mut pixel) = (0.0, None, None);
    let mut by_camera: Option<Vec<f32>> = None;
    let mut n = 0;
    let add = |sum: &mut Option<f32>, t: Tensor<1>, w: f32| {
        *sum = Some(sum.unwrap_or(0.0) + t.into_scalar::<f32>() * w);
    };
    for b in batches {
        // The action loss alone: comparable between runs with and without auxiliary targets.
        let l = batcher.losses(model, b, device)?;
        let w = b.size as f32;
        action += l.action.into_scalar::<f32>() * w;
        if let Some(a) = l.aux {
            add(&mut aux, a, w);
        }
        if let Some(p) = l.pixel {
            add(&mut pixel, p.l1, w);
            let cams = host_values(p.l1_by_camera);
            let sum = by_camera.get_or_insert_with(|| vec![0.0; cams.len()]);
            for (s, c) in sum.iter_mut().zip(cams) {
                *s += c * w;
            }
        }
        n += b.size;
    }
    let n = n as f32;
    Ok(Validation {
        action: Some(action / n),
        aux: aux.map(|a| a / n),
        pixel: pixel.map(|p| p / n),
        pixel_by_camera: by_camera.map(|v| v.into_iter().map(|p| p / n).collect()),
    })
}

/// A small tensor's values on the host (for the logs: empty if they cannot be read).
fn host_values(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// One step's losses on the host: the action loss, the auxiliary loss and the keypoint
/// errors (over all labelled cameras, and per camera), averaged over the micro-batches.
pub struct StepLosses {
    pub action: f32,
    pub aux: Option<f32>,
    pub pixel: Option<(f32, Vec<f32>)>,
}

/// The gradients of one training step. The batch is split into `micro_batches` parts whose
/// forward and backward passes run on threads of their own and whose gradients are summed,
/// each loss scaled by its part's share of the batch. burn-flex runs most ops of a model
/// this small on one thread (a training step kept 1.2 of 2 cores busy); independent
/// micro-batches fill the other core. The parts are fixed by the batch, and their
/// gradients are summed in part order, so the result does not depend on the thread count
/// or the scheduling.
pub fn gradients(
    batcher: &Batcher,
    model: &Vla,
    host: &HostBatch,
    micro_batches: usize,
    device: &Device,
) -> Result<(GradientsParams, StepLosses), PolicyError> {
    let parts = host.split(micro_batches);
    let one = |part: &HostBatch| -> Result<(GradientsParams, StepLosses), PolicyError> {
        let share = part.size as f32 / host.size.max(1) as f32;
        // With several parts, each works on a fork of the model: the same parameter ids
        // but leaves of its own, so that the parts' autodiff graphs share no node (burn
        // merges graphs that share nodes under one lock, and the merge can deadlock).
        let forked;
        let model = if parts.len() > 1 {
            forked = model.clone().fork(device);
            &forked
        } else {
            model
        };
        let losses = batcher.losses(model, part, device)?;
        let action = losses.action.clone();
        let aux = losses.aux.clone();
        let pixel = losses
            .pixel
            .as_ref()
            .map(|p| (p.l1.clone(), p.l1_by_camera.clone()));
        let total = batcher.total(losses) * share;
        let grads = GradientsParams::from_grads(total.backward(), model);
        let scalars = StepLosses {
            action: action.into_scalar::<f32>() * share,
            aux: aux.map(|a| a.into_scalar::<f32>() * share),
            pixel: pixel.map(|(all, cams)| {
                let cams = host_values(cams).into_iter().map(|e| e * share).collect();
                (all.into_scalar::<f32>() * share, cams)
            }),
        };
        Ok((grads, scalars))
    };
    if parts.len() == 1 {
        return one(&parts[0]);
    }
    let results: Vec<Result<(GradientsParams, StepLosses), PolicyError>> =
        std::thread::scope(|scope| {
            let (first, rest) = parts.split_first().expect("at least one part");
            let handles: Vec<_> = rest.iter().map(|p| scope.spawn(move || one(p))).collect();
            let mut out = vec![one(first)];
            for h in handles {
                out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            out
        });
    let mut acc = GradientsAccumulator::<Vla>::new();
    let mut sum = StepLosses {
        action: 0.0,
        aux: None,
        pixel: None,
    };
    for r in results {
        let (grads, l) = r?;
        acc.accumulate(model, grads);
        sum.action += l.action;
        sum.aux = match (sum.aux, l.aux) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        sum.pixel = match (sum.pixel, l.pixel) {
            (Some((a, ca)), Some((b, cb))) => {
                Some((a + b, ca.iter().zip(&cb).map(|(x, y)| x + y).collect()))
            }
            (a, b) => a.or(b),
        };
    }
    Ok((acc.grads(), sum))
}

/// Train into `run` (created if needed). With `resume`, continue the run's last checkpoint
/// with its saved config and data; otherwise `run` must not already hold a run.
pub fn train(
    run: &Path,
    data_paths: &[PathBuf],
    config: Option<TrainConfig>,
    resume: bool,
    device: &Device,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<PolicySpec, PolicyError> {
    let io = |p: &Path, e: std::io::Error| PolicyError::Io(format!("{}: {e}", p.display()));
    let config_path = run.join("train.toml");
    let (config, data_paths) = if resume {
        if checkpoint::checkpoint_dir(run).is_none() {
            return Err(PolicyError::Checkpoint(format!(
                "{}: no checkpoint to resume (expected {}/checkpoint/)",
                run.display(),
                run.display()
            )));
        }
        let text = fs::read_to_string(&config_path).map_err(|e| io(&config_path, e))?;
        let saved: SavedRun = toml::from_str(&text)
            .map_err(|e| PolicyError::Config(format!("{}: {e}", config_path.display())))?;
        if let Some(c) = &config
            && *c != saved.config
        {
            return Err(PolicyError::Config(format!(
                "--resume continues the run's own config ({}); a different --config was given",
                config_path.display()
            )));
        }
        if !data_paths.is_empty() && data_paths != saved.data.as_slice() {
            return Err(PolicyError::Config(format!(
                "--resume continues on the run's own data ({:?}); different --data was given",
                saved.data
            )));
        }
        (saved.config, saved.data)
    } else {
        if checkpoint::checkpoint_dir(run).is_some() || config_path.exists() {
            return Err(PolicyError::Config(format!(
                "{} already holds a training run; pass --resume to continue it, or choose another --out",
                run.display()
            )));
        }
        (config.unwrap_or_default(), data_paths.to_vec())
    };
    config.validate()?;
    // Gradients need the autodiff wrapper; callers may pass the plain device.
    let device = &if device.is_autodiff() {
        device.clone()
    } else {
        device.clone().autodiff()
    };

    let mut data = TrainData::load(
        &data_paths,
        &LoadOptions {
            image_size: config.model.image_size,
            chunk: config.model.chunk,
            val_fraction: config.val_fraction,
            seed: config.seed,
            max_memory_mb: config.max_memory_mb,
            cameras: config.cameras.as_deref(),
        },
        |m| on_event(Event::Loading(m)),
    )?;
    let mut model_config = config.model.clone();
    if config.env_state != EnvState::Off {
        let env = data.observe_env_state(&config.env_state_origin)?;
        if config.object_tokens {
            model_config.object_tokens = object_groups(&env.names);
        }
    } else if config.object_tokens {
        return Err(PolicyError::Config(
            "object_tokens = true makes tokens of the observed objects: it needs env_state = \"observed\" or \"perceived\"".into(),
        ));
    }
    model_config.cameras = data.layout.cameras.len();
    model_config.state_dim = data.layout.state_dim;
    model_config.action_dim = data.layout.action_dim;
    let pretrained = match &config.text_encoder_dir {
        Some(dir) => {
            on_event(Event::Loading("pretrained text encoder"));
            let enc = PretrainedTextEncoder::load(dir, &device.clone().inner())?;
            model_config.text_encoder = TextEncoderKind::Pretrained { dim: enc.dim() };
            Some(enc)
        }
        None => {
            model_config.text_encoder = TextEncoderKind::Bytes;
            None
        }
    };
    let aux_names = if config.aux_weight > 0.0 && model_config.keypoints > 0 {
        data.layout.aux_names().to_vec()
    } else {
        Vec::new()
    };
    if config.env_state == EnvState::Perceived {
        if aux_names.is_empty() {
            return Err(PolicyError::Config(format!(
                "env_state = \"perceived\" learns the positions from the images' keypoints: it needs [model] keypoints > 0 (now {}) and aux_weight > 0 (now {})",
                model_config.keypoints, config.aux_weight
            )));
        }
        model_config.perceived = aux_names.len();
    }
    model_config.aux_dim = aux_names.len();
    let pixel_things = if config.pixel_weight > 0.0 {
        let source = data.supervise_pixels()?;
        let needed = source.things.len() * source.cameras.len();
        if model_config.keypoints < needed {
            return Err(PolicyError::Config(format!(
                "pixel_weight > 0 trains one keypoint per labelled thing in each labelled camera ({} things: {}; cameras {}); set [model] keypoints ≥ {needed} (now {})",
                source.things.len(),
                source.things.join(", "),
                source.camera_names(),
                model_config.keypoints
            )));
        }
        model_config.pixel_targets = source.things.len();
        model_config.pixel_cameras = source.cameras.iter().map(|(_, i)| *i).collect();
        model_config.lift_reads_arm = source.cameras.len() > 1;
        model_config.aux_select = lifted_from_pixels(&data.layout, &aux_names, &source.things);
        source.things
    } else {
        Vec::new()
    };
    model_config.validate()?;
    if config.control_steps > 0 && model_config.cameras > 0 && !model_config.images_perception_only
    {
        return Err(PolicyError::Config(format!(
            "control_steps = {} train the policy from states alone, but its fusion reads the {} camera(s); set [model] images_perception_only = true (with env_state = \"perceived\")",
            config.control_steps, model_config.cameras
        )));
    }
    if config.reopen_gate && (config.control_steps == 0 || !model_config.state_gate) {
        return Err(PolicyError::Config(format!(
            "reopen_gate = true reopens the state gate where the control steps begin, but control_steps = {} and [model] state_gate = {}; set both (control_steps > 0, state_gate = true) or leave reopen_gate out",
            config.control_steps, model_config.state_gate
        )));
    }
    let (states, actions) = data.stats_rows();
    let mut state_norm = norm_from_rows(config.norm, &states, data.layout.state_dim)?;
    if !config.state_ignore.is_empty() {
        state_norm.ignored = ignored_state(&config.state_ignore, &data.layout)?;
    }
    let action_norm = norm_from_rows(config.norm, &actions, data.layout.action_dim)?;
    let aux_norm = if aux_names.is_empty() {
        None
    } else if model_config.perceived > 0 {
        // The head's predictions replace state entries, so they share the state's scale.
        let from = data.layout.state_dim - model_config.perceived;
        Some(Normalizer {
            mode: state_norm.mode,
            shift: state_norm.shift[from..].to_vec(),
            scale: state_norm.scale[from..].to_vec(),
            ignored: Vec::new(),
        })
    } else {
        Some(norm_from_rows(
            NormMode::MeanStd,
            &data.aux_rows(),
            aux_names.len(),
        )?)
    };
    if let (true, Some(aux_norm)) = (model_config.lift_reads_arm, &aux_norm) {
        // A resumed run keeps the geometry it started with (an older run has none).
        model_config.hand_eye = if resume {
            let dir = checkpoint::checkpoint_dir(run).expect("checked above");
            checkpoint::read_spec(&dir)?.model.hand_eye
        } else {
            on_event(Event::Loading("hand–eye calibration"));
            match crate::calibrate::hand_eye(&data, &model_config, &state_norm, aux_norm) {
                Ok(h) => Some(h),
                Err(why) => {
                    on_event(Event::Warning(&format!(
                        "the cameras on the hand keep the learned lift: {why}"
                    )));
                    None
                }
            }
        };
        if let Some(h) = &model_config.hand_eye {
            for (j, c) in h.cameras.iter().enumerate() {
                on_event(Event::Note(&format!(
                    "hand–eye calibration of {}: fits {} labels to {:.3} px (median); centre {:?} m in the hand's frame",
                    data.layout
                        .pixel_source
                        .as_ref()
                        .and_then(|s| s.cameras.get(j + 1))
                        .map_or("a hand camera", |c| c.0.as_str()),
                    c.points,
                    c.fit_px,
                    c.centre
                )));
            }
        }
        model_config.validate()?;
    }
    if model_config.lift_ray_trust && model_config.hand_eye.is_none() {
        on_event(Event::Warning(
            "lift_ray_trust is off: it weighs the rays of a calibrated camera on the hand, and there is none",
        ));
        model_config.lift_ray_trust = false;
    }
    if model_config.hand_relative && model_config.hand_eye.is_none() {
        // Like the lift, fall back rather than fail: the option only helps where the
        // geometry is known.
        on_event(Event::Warning(
            "hand_relative is off: it needs a hand–eye calibration of a camera on the hand, and there is none",
        ));
        model_config.hand_relative = false;
        model_config.relative_near = None;
    }
    let batcher = Batcher::new(&model_config, pretrained)?
        .with_aux_weight(config.aux_weight)
        .with_pixel_weight(config.pixel_weight);

    fs::create_dir_all(run).map_err(|e| io(run, e))?;
    if !resume {
        let saved = SavedRun {
            data: data_paths.clone(),
            config: config.clone(),
        };
        let text = toml::to_string_pretty(&saved)
            .map_err(|e| PolicyError::Config(format!("serializing the config: {e}")))?;
        fs::write(&config_path, text).map_err(|e| io(&config_path, e))?;
    }

    let mut opt = optimizer(&config);
    let (model, mut ema, mut state) = if resume {
        let dir = checkpoint::checkpoint_dir(run).expect("checked above");
        let spec = checkpoint::read_spec(&dir)?;
        let r = checkpoint::load_resume(&dir, &spec, opt, device)?;
        opt = r.optimizer;
        let ema = Ema::new(&r.ema, config.ema_decay)?;
        (r.model, ema, r.state)
    } else {
        let model = Vla::new(&model_config, config.seed, device)?;
        let ema = Ema::new(&model, config.ema_decay)?;
        (model, ema, TrainState::default())
    };
    let cap = perceived_cap(
        config.perceived_error_cap,
        &aux_names,
        aux_norm.as_ref(),
        &model_config,
    );
    let mut model = model
        .with_perceived_share(config.perceived_share, config.lifted_share)
        .with_perceived_cap(cap);
    let params = model.num_params();
    let mut spec = PolicySpec {
        format: checkpoint::FORMAT.into(),
        model: model_config.clone(),
        cameras: data.layout.cameras.clone(),
        unused_cameras: data.layout.unused_cameras.clone(),
        fps: data.layout.fps,
        robot_type: data.layout.robot_type.clone(),
        state_names: data.layout.state_names.clone(),
        action_names: data.layout.action_names.clone(),
        state_norm,
        action_norm,
        aux_names,
        aux_norm,
        pixel_things,
        env_state: data.layout.env_state.clone(),
        text_encoder_dir: config
            .text_encoder_dir
            .as_ref()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone())),
        execution: mulli_core::Execution::ENSEMBLE,
        params,
        training: TrainingSummary {
            datasets: data_paths.iter().map(|p| p.display().to_string()).collect(),
            tasks: data.tasks.clone(),
            train_episodes: data.train_episodes,
            val_episodes: data.val_episodes,
            train_frames: data.train_len,
            step: state.step,
            steps: config.total_steps(),
            batch_size: config.batch_size,
            seed: config.seed,
            last_loss: None,
            last_val_loss: None,
        },
    };

    // Metrics past the checkpoint belong to steps that will be redone.
    let metrics_path = run.join("metrics.jsonl");
    trim_metrics(&metrics_path, state.step)?;
    let mut metrics_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| io(&metrics_path, e))?;

    let val_batches = validation_batches(&data, &config, &spec);
    let inner = device.clone().inner();
    let mut ema_model = Vla::new(&model_config, config.seed, &inner)?;

    on_event(Event::Started {
        first_step: state.step,
        steps: config.total_steps(),
        params,
        data: &data,
    });

    let first = state.step;
    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let (tx, rx) = mpsc::sync_channel::<(u64, HostBatch, Vec<SampleRef>)>(2);
    // The perception's predictions on the training frames, for the control steps.
    let mut cache: Option<PerceptionCache> = None;
    let mut last_loss = None;
    let mut last_val = None;
    let mut val_extra: Option<Validation> = None;
    let mut window = (Instant::now(), 0usize);
    std::thread::scope(|scope| -> Result<(), PolicyError> {
        // Owned here so that leaving early (an error, a panic) drops the receiver and the
        // producer's next send fails instead of blocking the scope's join forever.
        let rx = rx;
        let (data, config, spec) = (&data, &config, &spec);
        scope.spawn(move || {
            for step in first..config.total_steps() {
                let samples = data.sample(
                    config.seed,
                    step,
                    config.batch_size_at(step),
                    config.balance_tasks,
                );
                let norms = Norms {
                    state: &spec.state_norm,
                    action: &spec.action_norm,
                    aux: spec.aux_norm.as_ref(),
                };
                let stream = ("train-augment", step);
                let b = if step < config.steps {
                    data.batch(&samples, norms, &config.augment, config.seed, stream)
                } else {
                    data.state_batch(&samples, norms, &config.augment, config.seed, stream)
                };
                if tx.send((step, b, samples)).is_err() {
                    return;
                }
            }
        });
        for (step, mut host, samples) in rx.iter() {
            if step >= config.steps && spec.model.cameras > 0 && spec.model.perceived > 0 {
                if cache.is_none() {
                    on_event(Event::Loading("perceiving the training frames"));
                    // The perception is frozen from here on (no control step reaches it),
                    // so a resumed run computes the same predictions.
                    cache = Some(PerceptionCache::compute(
                        &model.valid(),
                        data,
                        &batcher,
                        spec,
                        &inner,
                    )?);
                }
                let cache = cache.as_ref().expect("computed above");
                let mask = model.perceived_mask(host.size);
                cache.apply(&mut host, &samples, &mask, model.perceived_cap());
            }
            if step == config.steps && config.reopen_gate {
                // Exactly once, at the first control step; a run resumed past it has the
                // reopened gate in its checkpoint.
                model = model.reopen_gate();
            }
            let lr = config.lr_at(step);
            model = model.without_unused_grads(step >= config.steps);
            let (grads, step_losses) =
                gradients(&batcher, &model, &host, config.micro_batches, device)?;
            let StepLosses {
                action: loss,
                aux: aux_loss,
                pixel: pixel_err,
            } = step_losses;
            // Mean |error| of a labelled keypoint in the model's input pixels.
            let half = spec.model.image_size as f32 / 2.0;
            let px = |v: Vec<f32>| v.into_iter().map(|e| e * half).collect::<Vec<f32>>();
            let (pixel_err_px, pixel_err_px_by_camera) = match pixel_err {
                Some((all, cams)) => (Some(all * half), Some(px(cams))),
                None => (None, None),
            };
            if !loss.is_finite() {
                return Err(PolicyError::Diverged { step, loss });
            }
            model = opt.step(lr, model, grads);
            ema.update(&model.valid(), step)?;
            window.1 += host.size;
            state.step = step + 1;
            last_loss = Some(loss);
            let done = state.step == config.total_steps();
            let validate_now = state.step.is_multiple_of(config.val_every) || done;
            if validate_now {
                ema.apply_to(&mut ema_model);
                let v = validate(&ema_model, &val_batches, &batcher, &inner)?;
                last_val = v.action;
                val_extra = Some(v);
            }
            if state.step.is_multiple_of(config.log_every) || validate_now {
                let secs = window.0.elapsed().as_secs_f64().max(1e-9);
                let m = Metrics {
                    step: state.step,
                    loss,
                    lr,
                    samples_per_s: window.1 as f64 / secs,
                    elapsed_s: elapsed_before + started.elapsed().as_secs_f64(),
                    val_loss: if validate_now { last_val } else { None },
                    aux_loss,
                    pixel_err_px,
                    pixel_err_px_by_camera,
                    val_aux_loss: val_extra.as_ref().and_then(|v| v.aux),
                    val_pixel_err_px: val_extra.as_ref().and_then(|v| v.pixel).map(|e| e * half),
                    val_pixel_err_px_by_camera: val_extra
                        .as_ref()
                        .and_then(|v| v.pixel_by_camera.clone())
                        .map(px),
                };
                val_extra = None;
                window = (Instant::now(), 0);
                let line = serde_json::to_string(&m).expect("metrics serialize");
                writeln!(metrics_file, "{line}").map_err(|e| io(&metrics_path, e))?;
                on_event(Event::Step(&m));
            }
            if state.step.is_multiple_of(config.checkpoint_every) || done {
                if !validate_now {
                    ema.apply_to(&mut ema_model);
                }
                state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                let mut s = spec.clone();
                s.training.step = state.step;
                s.training.last_loss = last_loss;
                s.training.last_val_loss = last_val;
                metrics_file.sync_data().map_err(|e| io(&metrics_path, e))?;
                let dir = checkpoint::save(run, &s, &model.valid(), &ema_model, &opt, &state)?;
                on_event(Event::Checkpoint(&dir));
            }
        }
        Ok(())
    })?;
    spec.training.step = state.step;
    spec.training.last_loss = last_loss;
    spec.training.last_val_loss = last_val;
    Ok(spec)
}

/// The perception's predictions (normalized perceived state entries) on every training
/// frame, computed once for the control steps ([`TrainConfig::control_steps`]).
struct PerceptionCache {
    index: HashMap<SampleRef, usize>,
    /// `[frames, perceived]`, in the order of `index`'s values.
    values: Vec<f32>,
    perceived: usize,
}

/// Frames per forward pass when perceiving the training frames.
const PERCEIVE_BATCH: usize = 64;

impl PerceptionCache {
    /// Runs `model`'s perception over every training frame, unaugmented, on two threads
    /// (each its half, in fixed chunks, so the values do not depend on the scheduling).
    fn compute(
        model: &Vla,
        data: &TrainData,
        batcher: &Batcher,
        spec: &PolicySpec,
        device: &Device,
    ) -> Result<Self, PolicyError> {
        let samples: Vec<SampleRef> = data.train_samples().collect();
        let k = spec.model.perceived;
        let plain = Augment {
            shift: 0,
            brightness: 0.0,
            contrast: 0.0,
            word_dropout: 0.0,
        };
        let norms = Norms {
            state: &spec.state_norm,
            action: &spec.action_norm,
            aux: spec.aux_norm.as_ref(),
        };
        let run = |part: &[SampleRef]| -> Result<Vec<f32>, PolicyError> {
            let mut out = Vec::with_capacity(part.len() * k);
            for chunk in part.chunks(PERCEIVE_BATCH) {
                let host = data.batch(chunk, norms, &plain, 0, ("perceive", 0));
                let p = model
                    .perceive(batcher.input(&host, device)?)
                    .expect("a perceiving model perceives");
                out.extend(host_values(p.flatten(0, 1)));
            }
            Ok(out)
        };
        // Split at a chunk boundary, so each chunk is the same whatever the thread count.
        let half = samples.len().div_ceil(2 * PERCEIVE_BATCH) * PERCEIVE_BATCH;
        let (a, b) = samples.split_at(half.min(samples.len()));
        let (va, vb) = std::thread::scope(|scope| {
            let other = scope.spawn(|| run(b));
            let first = run(a);
            (
                first,
                other
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            )
        });
        let mut values = va?;
        values.extend(vb?);
        if values.len() != samples.len() * k {
            return Err(PolicyError::Config(format!(
                "perceiving the training frames gave {} values for {} frames × {k} entries",
                values.len(),
                samples.len()
            )));
        }
        let index = samples
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();
        Ok(PerceptionCache {
            index,
            values,
            perceived: k,
        })
    }

    /// Gives the batch's perceived entries (the end of the state) the cached predictions
    /// where `mask` (`[B · perceived]`, [`Vla::perceived_mask`]) says, as a step with
    /// images does.
    /// `cap` ([`Vla::with_perceived_cap`]; empty = none) keeps each one within that
    /// distance of the truth it replaces.
    fn apply(&self, host: &mut HostBatch, samples: &[SampleRef], mask: &[bool], cap: &[f32]) {
        let b = host.size;
        let k = self.perceived;
        let sd = host.state.len() / b.max(1);
        for (i, s) in samples.iter().enumerate() {
            let Some(&row) = self.index.get(s) else {
                continue;
            };
            let state = &mut host.state[(i + 1) * sd - k..(i + 1) * sd];
            let cached = &self.values[row * k..(row + 1) * k];
            for (j, ((v, &c), &m)) in state
                .iter_mut()
                .zip(cached)
                .zip(&mask[i * k..(i + 1) * k])
                .enumerate()
            {
                if m {
                    *v = capped(*v, c, cap.get(j).copied());
                }
            }
        }
    }
}

/// [`TrainConfig::perceived_error_cap`] per perceived entry, in the entries' normalized
/// units: the cap over the entry's scale for positions (`.x`/`.y`/`.z`), infinite for the
/// rest. Empty when off or when the model perceives nothing.
fn perceived_cap(
    cap_m: Option<f32>,
    aux_names: &[String],
    aux_norm: Option<&Normalizer>,
    model: &VlaConfig,
) -> Vec<f32> {
    let (Some(cap), Some(norm)) = (cap_m, aux_norm) else {
        return Vec::new();
    };
    if model.perceived == 0 || norm.scale.len() != aux_names.len() {
        return Vec::new();
    }
    aux_names
        .iter()
        .zip(&norm.scale)
        .map(|(name, &scale)| {
            if [".x", ".y", ".z"].iter().any(|s| name.ends_with(s)) {
                cap / scale
            } else {
                f32::INFINITY
            }
        })
        .collect()
}

/// The prediction `predicted` that replaces `truth`, kept within `cap` of it (`None` or
/// infinite: as predicted). The image steps apply the same rule in the graph
/// ([`Vla::with_perceived_cap`]).
fn capped(truth: f32, predicted: f32, cap: Option<f32>) -> f32 {
    match cap {
        Some(cap) => predicted.max(truth - cap).min(truth + cap),
        None => predicted,
    }
}

/// What `train.toml` holds: the data and the config of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SavedRun {
    data: Vec<PathBuf>,
    config: TrainConfig,
}

/// Which state entries `names` hides; every name must be one of the data's state names.
fn ignored_state(
    names: &[String],
    layout: &crate::data::DataLayout,
) -> Result<Vec<bool>, PolicyError> {
    let Some(state_names) = &layout.state_names else {
        return Err(PolicyError::Config(
            "state_ignore needs the datasets' observation.state to have names; they have none"
                .into(),
        ));
    };
    let mut ignored = vec![false; state_names.len()];
    for n in names {
        match state_names.iter().position(|s| s == n) {
            Some(i) => ignored[i] = true,
            None => {
                return Err(PolicyError::Config(format!(
                    "state_ignore: no state entry `{n}`; the data has {}",
                    state_names.join(", ")
                )));
            }
        }
    }
    Ok(ignored)
}

/// Sizes of the runs of consecutive environment-state names that belong to one object
/// (`cube.x, cube.y, cube.z, drawer.opening` → `[3, 1]`).
fn object_groups(names: &[String]) -> Vec<usize> {
    let object = |n: &str| {
        n.rsplit_once('.')
            .map_or(n.to_owned(), |(o, _)| o.to_owned())
    };
    let mut groups: Vec<(String, usize)> = Vec::new();
    for name in names {
        let o = object(name);
        match groups.last_mut() {
            Some((last, n)) if *last == o => *n += 1,
            _ => groups.push((o, 1)),
        }
    }
    groups.into_iter().map(|(_, n)| n).collect()
}

fn norm_from_rows(mode: NormMode, rows: &[f32], dim: usize) -> Result<Normalizer, PolicyError> {
    let values: Vec<f64> = rows.iter().map(|&v| f64::from(v)).collect();
    let stats = mulli_data::FeatureStats::from_rows(&values, dim)
        .ok_or_else(|| PolicyError::Data("no rows to compute normalization statistics".into()))?;
    let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    match mode {
        NormMode::MeanStd => Normalizer::new(mode, &f(&stats.mean), &f(&stats.std)),
        NormMode::Quantile => {
            Normalizer::new(mode, &f(&stats.quantiles[0]), &f(&stats.quantiles[4]))
        }
    }
}

fn validation_batches(data: &TrainData, config: &TrainConfig, spec: &PolicySpec) -> Vec<HostBatch> {
    if data.val.is_empty() || config.val_samples == 0 {
        return Vec::new();
    }
    let n = config.val_samples.min(data.val.len());
    let picked: Vec<_> = (0..n).map(|i| data.val[i * data.val.len() / n]).collect();
    picked
        .chunks(config.batch_size)
        .enumerate()
        .map(|(i, s)| {
            data.batch(
                s,
                Norms {
                    state: &spec.state_norm,
                    action: &spec.action_norm,
                    aux: spec.aux_norm.as_ref(),
                },
                &Augment::none(),
                config.seed,
                ("val", i as u64),
            )
        })
        .collect()
}

/// Keep only the metric lines up to `step` (a resumed run redoes the steps after it).
fn trim_metrics(path: &Path, step: u64) -> Result<(), PolicyError> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<Metrics>(l).is_ok_and(|m| m.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() != text.len() {
        let tmp = path.with_extension("jsonl.tmp");
        fs::write(&tmp, kept)
            .and_then(|()| fs::rename(&tmp, path))
            .map_err(|e| PolicyError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};

    /// Every parameter's gradient, flattened, in the model's parameter order.
    struct Flat<'a>(&'a GradientsParams, Vec<Vec<f32>>);

    impl ModuleVisitor for Flat<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self
                .0
                .get::<D>(param.id)
                .expect("every parameter has a gradient");
            self.1.push(host_values(g.flatten::<1>(0, D - 1)));
        }
    }

    fn flat(model: &Vla, grads: &GradientsParams) -> Vec<Vec<f32>> {
        let mut v = Flat(grads, Vec::new());
        model.visit(&mut v);
        v.1
    }

    /// Splitting a batch into micro-batches computes the gradient of the same loss: each
    /// part's loss is weighted by its share, so with every step valid the sum is the whole
    /// batch's up to float rounding, even for parts of unequal size. The split is
    /// deterministic.
    #[test]
    fn control_steps_run_the_schedule_again() {
        let config = TrainConfig {
            steps: 100,
            control_steps: 300,
            warmup_steps: 10,
            ..TrainConfig::default()
        };
        assert_eq!(config.total_steps(), 400);
        assert_eq!(config.lr_at(100), config.lr_at(0), "a second warmup");
        assert!(
            config.lr_at(99) < config.lr * 0.2,
            "the image steps end annealed"
        );
        assert!(
            config.lr_at(110) > config.lr * 0.99,
            "the control steps start high"
        );
        let end = config.lr * config.min_lr_ratio;
        assert!((config.lr_at(400) - end).abs() < 1e-9 * config.lr);
        let plain = TrainConfig {
            control_steps: 0,
            ..config.clone()
        };
        assert_eq!(
            plain.lr_at(99),
            config.lr_at(99),
            "the image steps are unchanged"
        );
    }

    #[test]
    fn control_steps_take_their_own_batch_size() {
        let config = TrainConfig {
            steps: 100,
            control_steps: 300,
            batch_size: 32,
            control_batch_size: Some(64),
            ..TrainConfig::default()
        };
        config.validate().unwrap();
        assert_eq!(config.batch_size_at(0), 32);
        assert_eq!(config.batch_size_at(99), 32);
        assert_eq!(config.batch_size_at(100), 64);
        assert_eq!(config.batch_size_at(399), 64);
        let unset = TrainConfig {
            control_batch_size: None,
            ..config.clone()
        };
        assert_eq!(unset.batch_size_at(100), 32, "unset: batch_size");
        let zero = TrainConfig {
            control_batch_size: Some(0),
            ..config
        };
        let err = zero.validate().unwrap_err().to_string();
        assert!(err.contains("control_batch_size = 0"), "{err}");
    }

    #[test]
    fn micro_batches_sum_to_the_whole_batch_gradient() {
        let config = VlaConfig {
            cameras: 1,
            image_size: 16,
            state_dim: 4,
            action_dim: 3,
            chunk: 3,
            text_len: 24,
            d_model: 16,
            n_heads: 2,
            d_ff: 32,
            n_layers: 1,
            conv_channels: vec![8, 8],
            ..VlaConfig::default()
        };
        let device = Device::flex().autodiff();
        let model = Vla::new(&config, 3, &device).unwrap();
        let batcher = Batcher::new(&config, None).unwrap();
        let host = HostBatch::synthetic(&config, 12, 3, 11);
        let (whole, l1) = gradients(&batcher, &model, &host, 1, &device).unwrap();
        let whole = flat(&model, &whole);
        for parts in [2, 3, 5] {
            let (split, l) = gradients(&batcher, &model, &host, parts, &device).unwrap();
            let split = flat(&model, &split);
            assert_eq!(split.len(), whole.len());
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for (a, b) in whole.iter().zip(&split) {
                for (x, y) in a.iter().zip(b) {
                    num += f64::from(x - y).powi(2);
                    den += f64::from(*x).powi(2);
                }
            }
            let rel = (num / den).sqrt();
            assert!(
                rel < 1e-4,
                "{parts} parts: relative gradient difference {rel}"
            );
            assert!((l.action - l1.action).abs() < 1e-5, "{parts} parts");
            let (again, _) = gradients(&batcher, &model, &host, parts, &device).unwrap();
            assert!(
                flat(&model, &again) == split,
                "{parts} parts: not deterministic"
            );
        }
    }

    #[test]
    fn micro_batches_must_fit_the_batch() {
        for (micro_batches, ok) in [(0, false), (1, true), (32, true), (33, false)] {
            let c = TrainConfig {
                batch_size: 32,
                micro_batches,
                ..TrainConfig::default()
            };
            match c.validate() {
                Ok(()) => assert!(ok, "{micro_batches} accepted"),
                Err(e) => {
                    assert!(!ok, "{micro_batches}: {e}");
                    let e = e.to_string();
                    assert!(e.contains("micro_batches") && e.contains("32"), "{e}");
                }
            }
        }
    }

    #[test]
    fn shares_of_predictions_are_fractions() {
        for (perceived_share, lifted_share, bad) in [
            (0.5, None, None),
            (0.5, Some(0.0), None),
            (1.5, None, Some("perceived_share = 1.5")),
            (0.5, Some(-0.1), Some("lifted_share = -0.1")),
            (0.5, Some(f32::NAN), Some("lifted_share = NaN")),
        ] {
            let c = TrainConfig {
                perceived_share,
                lifted_share,
                ..TrainConfig::default()
            };
            match (c.validate(), bad) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e}"),
                (r, _) => panic!("{perceived_share}, {lifted_share:?}: {r:?}"),
            }
        }
        // Unset, it stays out of saved configs (and stage hashes).
        let text = toml::to_string(&TrainConfig::default()).unwrap();
        assert!(!text.contains("lifted_share"), "{text}");
    }

    #[test]
    fn the_error_cap_is_in_metres_for_positions_only() {
        for (cap, bad) in [
            (Some(0.02), None),
            (Some(0.0), Some("perceived_error_cap = 0")),
            (Some(f32::INFINITY), Some("perceived_error_cap = inf")),
            (Some(-1.0), Some("perceived_error_cap = -1")),
        ] {
            let c = TrainConfig {
                perceived_error_cap: cap,
                env_state: EnvState::Perceived,
                ..TrainConfig::default()
            };
            match (c.validate(), bad) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e}"),
                (r, _) => panic!("{cap:?}: {r:?}"),
            }
        }
        let alone = TrainConfig {
            perceived_error_cap: Some(0.02),
            ..TrainConfig::default()
        };
        let e = alone.validate().unwrap_err().to_string();
        assert!(e.contains("needs env_state = \"perceived\""), "{e}");
        let text = toml::to_string(&TrainConfig::default()).unwrap();
        assert!(!text.contains("perceived_error_cap"), "{text}");
        // 2 cm over a scale of 0.1 m is 0.2 normalized; the door's angle is not capped.
        let names = ["apple.x", "apple.z", "fridge.angle"].map(String::from);
        let norm = Normalizer::new(NormMode::MeanStd, &[0.0; 3], &[0.1, 0.05, 0.3]).unwrap();
        let model = VlaConfig {
            perceived: 3,
            ..VlaConfig::default()
        };
        let cap = perceived_cap(Some(0.02), &names, Some(&norm), &model);
        assert!(
            (cap[0] - 0.2).abs() < 1e-6 && (cap[1] - 0.4).abs() < 1e-6,
            "{cap:?}"
        );
        assert_eq!(cap[2], f32::INFINITY);
        assert!(perceived_cap(None, &names, Some(&norm), &model).is_empty());
        let blind = VlaConfig {
            perceived: 0,
            ..model
        };
        assert!(perceived_cap(Some(0.02), &names, Some(&norm), &blind).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn a_capped_prediction_stays_near_the_truth(
            truth in -5.0f32..5.0,
            predicted in -5.0f32..5.0,
            cap in 0.0f32..2.0,
        ) {
            let v = capped(truth, predicted, Some(cap));
            proptest::prop_assert!((v - truth).abs() <= cap + 1e-6);
            if (predicted - truth).abs() <= cap {
                proptest::prop_assert_eq!(v, predicted);
            } else {
                // Moved towards the truth, never past it.
                proptest::prop_assert!((v - predicted) * (truth - predicted) > 0.0);
            }
            proptest::prop_assert_eq!(capped(truth, predicted, None), predicted);
            proptest::prop_assert_eq!(capped(truth, predicted, Some(f32::INFINITY)), predicted);
        }
    }

    /// Instructions are padded to the batch's longest, not to `text_len`, and encode the
    /// same as fully padded ones: padding is masked out of attention and pooling.
    #[test]
    fn instructions_pad_to_the_longest_and_encode_as_if_fully_padded() {
        let config = VlaConfig {
            text_len: 40,
            text_layers: 2,
            ..crate::model::tests::tiny()
        };
        let device = Device::flex();
        let model = Vla::new(&config, 5, &device).unwrap();
        let batcher = Batcher::new(&config, None).unwrap();
        let texts = vec!["open it".to_string(), "서랍을 열어줘".to_string()];
        let trimmed = batcher.text(&texts, &[0, 1], &device).unwrap();
        let TextInput::Bytes { tokens, .. } = &trimmed else {
            panic!("a byte-level model gets byte tokens");
        };
        // "서랍을 열어줘": 19 UTF-8 bytes + BOS + EOS.
        assert_eq!(tokens.dims(), [2, 21]);
        let tok = ByteTokenizer::new(config.text_len);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for t in &texts {
            let (v, n) = tok.encode(t);
            ids.extend(v.iter().map(|&i| i64::from(i)));
            mask.extend((0..config.text_len).map(|k| if k < n { 1.0f32 } else { 0.0 }));
        }
        let full = TextInput::Bytes {
            tokens: Tensor::from_data(TensorData::new(ids, [2, config.text_len]), &device),
            mask: Tensor::from_data(TensorData::new(mask, [2, config.text_len]), &device),
            index: Tensor::from_data(TensorData::new(vec![0i64, 1], [2]), &device),
        };
        let a = host_values(model.encode_text(trimmed).flatten(0, 1));
        let b = host_values(model.encode_text(full).flatten(0, 1));
        assert_eq!(a.len(), 2 * config.d_model);
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-5,
            "trimmed and padded encodings differ by {worst}"
        );
        // One long instruction keeps its full length (truncated at `text_len`).
        let long = vec!["x".repeat(100)];
        let TextInput::Bytes { tokens, .. } = batcher.text(&long, &[0], &device).unwrap() else {
            panic!("byte tokens");
        };
        assert_eq!(tokens.dims(), [1, config.text_len]);
    }
}
