//! The VLA model: camera images, an instruction and the robot state in; a chunk of H future
//! actions out.
//!
//! ```text
//! cameras ─ shared GroupNorm CNN (k3 s2 ×4) ─ 5×5 feature grid ─ Linear ─┐ 25 tokens/camera
//!   (or 2×2 patch merging ×4, channels-last: 4×4 grid at 64 px)          │ (16)
//! instruction ─ bytes ─ embedding + 1 transformer layer ─ masked mean ───┤ 1 token
//!   (or a frozen pretrained sentence embedding ─ Linear)                 │
//! state ─ Linear ────────────────────────────────────────────────────────┤ 1 token
//! action queries (L1) / noisy actions + time (flow) ─────────────────────┘ H tokens
//!        └─ pre-norm transformer (fusion) ─ LayerNorm ─ Linear ─ H × action_dim
//! ```
//!
//! Two heads share the backbone, chosen by [`Head`]: ACT-style L1 regression of the chunk
//! (one pass), and pi0-style flow matching (velocity field, a few Euler steps at inference;
//! the observation encoder runs once, only the fusion transformer runs per step).
//!
//! Why these shapes (measured on burn-flex, 2 cores; docs/benchmarks.md): strided valid
//! convolutions without pooling layers are the cheapest convolutional way down from 96 px;
//! the patch stem trades their overlap for pure matrix multiplication, which burn-flex trains
//! 1.5× faster end to end (the CPU flywheel's choice); keeping a grid per camera instead of a
//! global pool preserves where things are, which grasping needs; distinct instructions are
//! encoded once per batch (a batch holds a few dozen distinct strings at most), which makes
//! the text encoder almost free.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{
    Embedding, EmbeddingConfig, Gelu, GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig,
    Linear, LinearConfig, Relu,
};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::tokenizer::VOCAB;

/// How the action chunk is produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// ACT-style: regress the chunk directly, L1 loss.
    L1,
    /// pi0-style flow matching: learn the velocity from noise to actions, integrate with
    /// `flow_steps` Euler steps at inference.
    Flow,
}

/// How camera images become feature grids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStem {
    /// Valid 3×3 stride-2 convolutions with GroupNorm (overlapping receptive fields).
    #[default]
    Conv,
    /// Non-overlapping 2×2 patches merged by a linear layer with LayerNorm, channels-last
    /// (ConvNeXt-style downsampling). On burn-flex it is pure matrix multiplication, about
    /// twice as fast as the convolutions forward and backward (docs/benchmarks.md).
    Patch,
}

/// Where the instruction embedding comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TextEncoderKind {
    /// Bytes of the UTF-8 string through a small transformer trained with the policy: any
    /// language, no vocabulary file.
    Bytes,
    /// A frozen pretrained sentence encoder producing `dim`-sized embeddings (see
    /// [`crate::pretrained`]); only a projection is trained.
    Pretrained { dim: usize },
}

/// Sizes of the model. The defaults are the CPU model the flywheel trains in minutes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VlaConfig {
    /// Cameras (0 = none: a state-only policy; the image stem is not built).
    pub cameras: usize,
    /// Square input images (pixels per side).
    pub image_size: usize,
    pub state_dim: usize,
    pub action_dim: usize,
    /// Actions predicted per step (the chunk H).
    pub chunk: usize,
    /// Tokens per instruction (see [`crate::ByteTokenizer`]).
    pub text_len: usize,
    pub d_model: usize,
    pub n_heads: usize,
    /// Fusion transformer layers.
    pub n_layers: usize,
    /// Feed-forward width of every transformer layer.
    pub d_ff: usize,
    /// Transformer layers of the byte-level text encoder.
    pub text_layers: usize,
    /// Output channels of each stride-2 stage of the image stem.
    pub conv_channels: Vec<usize>,
    /// The image stem's kind (older checkpoints have none: convolutions).
    pub stem: ImageStem,
    /// Spatial-softmax keypoints per camera, read from the stem's stride-4 feature map
    /// (after its second stage) and given to the fusion as one extra token per camera;
    /// 0 = none (older checkpoints). See [`Keypoints`].
    pub keypoints: usize,
    /// Stem stages before the keypoint map (2 = stride 4, 16×16 at 64 px; 1 = stride 2,
    /// 32×32). Why configurable: one agent-view cell at stride 4 is 8–12 cm of the table,
    /// and the perceived positions are what limits grasping (docs/benchmarks.md).
    #[serde(
        default = "default_keypoint_stage",
        skip_serializing_if = "is_default_keypoint_stage"
    )]
    pub keypoint_stage: usize,
    /// Auxiliary targets predicted from the keypoints during training (object positions from
    /// the dataset's privileged environment state; see [`crate::train`]); set by training
    /// from the data, 0 = none. Unused at inference.
    pub aux_dim: usize,
    /// The last `perceived` state entries are the auxiliary head's own prediction at
    /// inference (object positions seen in the images), not an input: the policy acts from
    /// cameras alone. Training feeds half of each batch the true values and half the
    /// (detached) predictions, so the action head learns to use positions and to live with
    /// the perception error. 0 = off; otherwise equal to `aux_dim`.
    pub perceived: usize,
    /// Labelled things: in the j-th camera of `pixel_cameras`, keypoints
    /// `j·pixel_targets .. (j+1)·pixel_targets` are trained to sit on them (the objects'
    /// image positions the simulator records; see [`crate::data::PixelSource`]), or on a
    /// "not in view" cell when the thing is off that image; their heat maps also read the
    /// coarser stem stages for context. Set by training from the data when
    /// `pixel_weight > 0`; 0 = off. Why: keypoints pulled onto the objects only through the
    /// auxiliary position regression stay 4–5 cm off after a flywheel's training
    /// (docs/benchmarks.md); a per-pixel target on each heat map is dense supervision, as in
    /// keypoint detectors.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pixel_targets: usize,
    /// The labelled cameras (indices into the policy's cameras); empty with no pixel targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pixel_cameras: Vec<usize>,
    /// The lift places things from the labelled cameras after the first (taken to move with
    /// the hand) as the hand's position plus an offset, reading the arm's part of the state
    /// (everything before the perceived entries), wherever those cameras see the thing; from
    /// the first camera alone elsewhere (see `NearLift`). Why: a wrist camera moves with
    /// the hand, so where a thing is in its image says where it is only together with the
    /// hand's pose; then the wrist view places the thing to millimetres at the final
    /// approach, where the agent view is 2–3 cm a pixel. Set by training with more than
    /// one labelled camera.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lift_reads_arm: bool,
    /// With pixel targets: where each auxiliary prediction comes from, as an index into the
    /// auxiliary head's outputs (`0..aux_dim`) followed by the lift's (`aux_dim + 3k + a`:
    /// labelled thing k, axis x, y, z) — a labelled thing's absolute position is lifted
    /// from its own keypoint. Set by training; empty = all from the head.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux_select: Vec<usize>,
    /// With `lift_reads_arm`: where the cameras that move with the hand sit on it and how
    /// they look, fitted to the training labels ([`crate::calibrate`]). The lift then
    /// places a thing a moving camera sees by geometry — the ray through its keypoint, from
    /// the hand's pose in the state, down to the thing's height — instead of `NearLift`'s
    /// MLP. Why: with the true keypoints, the MLP still put the target 2.6 cm off within
    /// 10 cm of the hand and 4.5 cm at 10–20 cm in closed loop (the product of the hand's
    /// rotation and the ray is what a small ReLU MLP fits worst, and the policy's own
    /// poses are not the demos'), while the keypoints were 1.1–1.2 px off there
    /// (docs/benchmarks.md, "Hand–eye geometry"). Set by training; `None` = the MLP
    /// (older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_eye: Option<HandEye>,
    /// With [`Self::hand_eye`]: a moving camera's ray estimate is blended with the fixed
    /// camera's by a learned weight `σ(a·t + b·u² + c·v² + d_k)` (t: the ray's length in
    /// metres, (u, v): the keypoint in [-1, 1], d_k per thing: the fixed camera sees some
    /// things better than others) instead of replacing it wherever the camera
    /// sees the thing. Why: at the start pose the wrist sees far things at the edge of its
    /// view and its rays pull them toward the hand (perceived-on-true slope 0.75 against
    /// the fixed camera's own 1.0; docs/benchmarks.md, session 26), while near the object
    /// its millimetres are what a grasp needs; the lift's loss against the true positions
    /// says which to trust where. Starts at σ(2) = 0.88 everywhere. Measured: the apple's
    /// start slope 0.75 → 0.81, but the trust, learned over every frame, leans on the fixed
    /// camera near the grasp too (the cube 0.6 → 1.8 cm off there): 56.1% → 50.0% (seed 0),
    /// so it stays off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lift_ray_trust: bool,
    /// Sizes of consecutive groups at the end of the state that become one token each — an
    /// object's entries of the observed environment state (position, angle, opening), set by
    /// training with `object_tokens = true`. The rest of the state (the arm) stays one
    /// token. Empty = the whole state is one token (older checkpoints). Why: with the
    /// objects in one token, picking *the instructed* object's coordinates out of a linear
    /// mix of all of them is left to the feed-forward layers; as tokens, attention can select
    /// the object the instruction names (object-centric input, as in VIMA or slot policies).
    pub object_tokens: Vec<usize>,
    /// Scale each state entry by a gate in (0, 2) computed from the instruction before the
    /// state is projected: `state · 2σ(W·text)`. Why: a multi-task policy must pick the
    /// named object's coordinates out of all objects'; attention over two prefix tokens
    /// cannot select within the state token, and the feed-forward layers approximate the
    /// product of instruction and state slowly. The gate is that product, one layer deep
    /// (FiLM on the input). It starts at 1 (zero-initialized), so it begins as the plain model.
    pub state_gate: bool,
    /// The gate also reads the (normalized) state: `state · 2σ(W·text + U·state)`. Why: a
    /// pick-and-place policy must attend to the object before the grasp and to the
    /// receptacle after it, and the instruction alone cannot say which phase it is in; the
    /// arm's state (gripper closed, height) can. Needs `state_gate`; `U` starts at zero.
    pub state_gate_reads_state: bool,
    /// The gate's factor is `1 + logits` instead of `2σ(logits)`. Why: a sigmoid gate
    /// saturates, and an entry it shuts early in training (gate 0.00) gets no gradient to
    /// reopen — trained policies had exactly one coordinate of one task's object shut
    /// (bowl.x for "put the apple in the bowl", ketchup.y for "… ketchup on the plate"),
    /// different ones per seed, and failed that task even when told the truth
    /// (`mulli policy explain`; docs/benchmarks.md, session 27). A linear factor's
    /// gradient never vanishes (FiLM's form). Zero-initialized, so it too starts at 1.
    /// Measured: 55.8% → 49.2% with two slots (seed 0), so it stays off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub state_gate_linear: bool,
    /// The sigmoid gate's factor is `floor + 2(1 − floor)·σ(logits)`, in (floor, 2 − floor):
    /// a shut entry still reaches the control at `floor` of its scale. Why: the same dead
    /// gates as [`Self::state_gate_linear`]; a floor keeps the information flowing (the
    /// control can learn to read a dimmed entry) while keeping the sigmoid's bounds.
    /// Starts at 1 like the plain gate. 0 = off; needs `state_gate`, not with the linear form.
    /// Measured: 56.1% → 40.3% at 0.25 (seed 0): the gate still goes to its bounds, so every
    /// other object leaks in at a seventh of the named one's weight and the grasps suffer.
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub state_gate_floor: f32,
    /// With [`Self::hand_relative`]: one gate per lifted thing, shared by its x, y and z
    /// (the mean of their logits), instead of one per entry. Why: the dead gates above were
    /// single coordinates of the task's own thing (`ketchup.y` shut while `ketchup.x` was
    /// wide open, `bowl.x` while `bowl.y` was); a thing is relevant or not as a whole, and a
    /// shared logit keeps getting the gradient of the coordinates that stay open.
    /// The arm's entries keep their own gates. Needs `state_gate`. Measured: the task's own
    /// things stay open and, told the truth, the bowl task succeeds 15 of 20 times (4 with
    /// per-entry gates), but the closed loop scores 53.4% against 55.9% over two seeds
    /// (docs/benchmarks.md, "Dead gates"), so it stays off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub state_gate_per_thing: bool,
    /// The state gate's logits come from the instruction alone, without a bias. Why: a
    /// bias is shared by every task, so ten of eleven tasks push a rare thing's entries shut
    /// for all instructions (measured at step 3,000 of the flywheel: `ketchup.y` 0.02,
    /// `mustard.x` 0.18 for their own instructions, the common apple 1.3–1.7). Needs
    /// `state_gate`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub state_gate_no_bias: bool,
    /// The images feed perception only: the fusion reads the instruction and the state
    /// (with the perceived entries), not the image and keypoint tokens. Why: then the
    /// policy's control part trains on states alone, without decoding or encoding a frame
    /// (`TrainConfig::control_steps`), at several times the steps per second; a multi-task
    /// policy that is told the positions needs ~4× the flywheel's steps to place objects
    /// (docs/benchmarks.md, "Perception, then control"). Needs `perceived > 0`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub images_perception_only: bool,
    /// With a hand–eye calibration ([`Self::hand_eye`]): the state token also reads each
    /// lifted thing's position relative to the hand (in decimetres), gated like the thing's
    /// own entries. Why: the flywheel's failed grasps go down beside the object even when
    /// the policy sees it within 1.5 cm (docs/benchmarks.md, "Where the grasps fail");
    /// whether the hand is over the target is a function of the difference, which the
    /// control otherwise forms from two separately normalized inputs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hand_relative: bool,
    /// With [`Self::hand_relative`]: the state token also reads `tanh(d / relative_near)`
    /// of each relative coordinate `d` (metres), so a centimetre near the object moves the
    /// input as much as a decimetre far from it. Why: near the object the flywheel's
    /// control comes straight down whatever offset it perceives (docs/benchmarks.md,
    /// session 22); in decimetres the offsets a grasp must correct are a tenth of a unit.
    /// Measured there: the descent stayed the same, so it stays off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_near: Option<f32>,
    /// With [`Self::hand_relative`]: `slots` instruction-chosen positions, each a softmax
    /// over the lifted things (logits from the instruction) of their positions relative to
    /// the hand, appended to the state token (decimetres, ungated). Why: with one state
    /// token, "where the named receptacle is" must be decoded per receptacle from a linear
    /// mix of all things' coordinates, so a receptacle only one task uses (the bowl) gets a
    /// tenth of the data and its x was ignored in two of three trained policies even when
    /// told the truth (docs/benchmarks.md, session 27). A slot is the same three numbers
    /// whichever thing the instruction names: moving toward slot 2 is learned once for
    /// every receptacle (a pointer, as in slot/object-centric policies). 0 = off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slots: usize,
    pub head: Head,
    /// Euler steps of the flow head at inference.
    pub flow_steps: usize,
    pub text_encoder: TextEncoderKind,
}

/// The geometry of the lift for cameras that move with the hand ([`VlaConfig::hand_eye`]):
/// everything is in the un-normalized units of the data (metres), with the affine maps that
/// take the model's normalized state and outputs there and back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandEye {
    /// One per labelled camera after the first, in `pixel_cameras` order.
    pub cameras: Vec<HandCamera>,
    /// The state entries of the hand's position and orientation quaternion (x, y, z, qx,
    /// qy, qz, qw), indices into the arm's part of the state.
    pub hand: [usize; 7],
    /// Un-normalizing those entries: `value = normalized · scale + shift`.
    pub hand_shift: [f32; 7],
    pub hand_scale: [f32; 7],
    /// Per labelled thing, (x, y, z) of the same map for its lifted position: the
    /// normalization of the auxiliary target it becomes (shift 0, scale 1 where none).
    pub thing_shift: Vec<[f32; 3]>,
    pub thing_scale: Vec<[f32; 3]>,
}

/// A pinhole camera rigidly on the hand, as fitted ([`crate::calibrate::fit_hand_camera`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandCamera {
    /// The ray through image point (u, v) (each in [-1, 1]) in the hand's frame:
    /// `ray · (u, v, 1)`, row-major; its scale is free.
    pub ray: [[f32; 3]; 3],
    /// The camera's centre in the hand's frame (m).
    pub centre: [f32; 3],
    /// Median reprojection error of the fit over the training labels, in pixels of the
    /// model's image (for `mulli policy info`).
    pub fit_px: f32,
    /// Labels the fit used.
    pub points: usize,
}

impl HandEye {
    fn validate(&self, config: &VlaConfig) -> Result<(), PolicyError> {
        let arm = config.state_dim.saturating_sub(config.perceived);
        let moving = config.pixel_cameras.len().saturating_sub(1);
        let bad = |what: String| Err(PolicyError::Config(format!("hand_eye: {what}")));
        if !config.lift_reads_arm || self.cameras.len() != moving {
            return bad(format!(
                "{} camera(s) for lift_reads_arm = {} with {moving} labelled camera(s) after the first",
                self.cameras.len(),
                config.lift_reads_arm
            ));
        }
        if let Some(i) = self.hand.iter().find(|&&i| i >= arm) {
            return bad(format!(
                "hand entry {i} is outside the arm's {arm} state entries"
            ));
        }
        let p = config.pixel_targets;
        if self.thing_shift.len() != p || self.thing_scale.len() != p {
            return bad(format!(
                "{} / {} thing maps for pixel_targets = {p}",
                self.thing_shift.len(),
                self.thing_scale.len()
            ));
        }
        let numbers = self
            .hand_shift
            .iter()
            .chain(&self.hand_scale)
            .chain(self.thing_shift.iter().flatten())
            .chain(self.thing_scale.iter().flatten())
            .chain(
                self.cameras
                    .iter()
                    .flat_map(|c| c.ray.iter().flatten().chain(&c.centre)),
            );
        for v in numbers {
            if !v.is_finite() {
                return bad(format!("value {v} is not finite"));
            }
        }
        Ok(())
    }
}

fn is_zero_f32(x: &f32) -> bool {
    *x == 0.0
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_keypoint_stage() -> usize {
    KEYPOINT_STAGE
}

fn is_default_keypoint_stage(n: &usize) -> bool {
    *n == KEYPOINT_STAGE
}

impl Default for VlaConfig {
    fn default() -> Self {
        Self {
            cameras: 2,
            image_size: 96,
            state_dim: 15,
            action_dim: 7,
            chunk: 10,
            text_len: 64,
            d_model: 128,
            n_heads: 4,
            n_layers: 3,
            d_ff: 512,
            text_layers: 1,
            conv_channels: vec![32, 64, 64, 64],
            stem: ImageStem::Conv,
            keypoints: 0,
            keypoint_stage: KEYPOINT_STAGE,
            aux_dim: 0,
            perceived: 0,
            pixel_targets: 0,
            pixel_cameras: Vec::new(),
            lift_reads_arm: false,
            lift_ray_trust: false,
            aux_select: Vec::new(),
            hand_eye: None,
            object_tokens: Vec::new(),
            state_gate: false,
            state_gate_reads_state: false,
            state_gate_linear: false,
            state_gate_floor: 0.0,
            state_gate_per_thing: false,
            state_gate_no_bias: false,
            images_perception_only: false,
            hand_relative: false,
            relative_near: None,
            slots: 0,
            head: Head::L1,
            flow_steps: 5,
            text_encoder: TextEncoderKind::Bytes,
        }
    }
}

impl VlaConfig {
    /// Per labelled thing, the auxiliary (= perceived) entries its lifted x, y and z become
    /// through `aux_select`; `None` for a thing whose absolute position is not among them.
    pub(crate) fn lifted_entries(&self) -> Vec<Option<[usize; 3]>> {
        (0..self.pixel_targets)
            .map(|k| {
                let entry = |a: usize| {
                    self.aux_select
                        .iter()
                        .position(|&i| i == self.aux_dim + 3 * k + a)
                };
                Some([entry(0)?, entry(1)?, entry(2)?])
            })
            .collect()
    }

    /// Inputs of the lift's MLPs: (u, v, in view) per camera it reads and the thing's
    /// one-hot identity — all labelled cameras, or with [`Self::lift_reads_arm`] the first
    /// one; and of the near part (0 without it): the other cameras, the identity and the
    /// arm's state.
    fn lift_inputs(&self) -> (usize, usize) {
        let c = self.pixel_cameras.len();
        let p = self.pixel_targets;
        if self.lift_reads_arm {
            (3 + p, 3 * (c - 1) + p + self.state_dim - self.perceived)
        } else {
            (3 * c + p, 0)
        }
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let checks = [
            ("image_size", self.image_size, 8),
            ("state_dim", self.state_dim, 1),
            ("action_dim", self.action_dim, 1),
            ("chunk", self.chunk, 1),
            ("text_len", self.text_len, 2),
            ("d_model", self.d_model, 8),
            ("n_heads", self.n_heads, 1),
            ("n_layers", self.n_layers, 1),
            ("d_ff", self.d_ff, 1),
            ("flow_steps", self.flow_steps, 1),
        ];
        for (name, value, min) in checks {
            if value < min {
                return Err(PolicyError::Config(format!(
                    "{name} = {value}: must be at least {min}"
                )));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) || !self.d_model.is_multiple_of(2) {
            return Err(PolicyError::Config(format!(
                "d_model = {} must be even and divisible by n_heads = {}",
                self.d_model, self.n_heads
            )));
        }
        if self.conv_channels.is_empty() {
            return Err(PolicyError::Config(
                "conv_channels is empty: need at least one convolution".into(),
            ));
        }
        if let Some(c) = self.conv_channels.iter().find(|&&c| c == 0 || c % 8 != 0) {
            return Err(PolicyError::Config(format!(
                "conv_channels contains {c}: each must be a positive multiple of 8 (GroupNorm groups)"
            )));
        }
        if self.keypoints > 0
            && (self.keypoint_stage == 0 || self.conv_channels.len() < self.keypoint_stage)
        {
            return Err(PolicyError::Config(format!(
                "keypoints = {} are read after stem stage {} (keypoint_stage, at least 1), and conv_channels has {} stages",
                self.keypoints,
                self.keypoint_stage,
                self.conv_channels.len()
            )));
        }
        if self.aux_dim > 0 && self.keypoints == 0 {
            return Err(PolicyError::Config(format!(
                "aux_dim = {}: auxiliary targets are predicted from keypoints; set keypoints > 0",
                self.aux_dim
            )));
        }
        if self.perceived > 0 && (self.perceived != self.aux_dim || self.perceived > self.state_dim)
        {
            return Err(PolicyError::Config(format!(
                "perceived = {}: the perceived state entries are the auxiliary targets, so it must equal aux_dim = {} and fit in state_dim = {}",
                self.perceived, self.aux_dim, self.state_dim
            )));
        }
        let labelled = self.pixel_targets * self.pixel_cameras.len();
        if labelled > self.keypoints {
            return Err(PolicyError::Config(format!(
                "pixel_targets = {} in {} cameras: each labelled thing gets a keypoint of its own in each labelled camera; set keypoints ≥ {labelled} (now {})",
                self.pixel_targets,
                self.pixel_cameras.len(),
                self.keypoints
            )));
        }
        if (self.pixel_targets > 0) == self.pixel_cameras.is_empty() {
            return Err(PolicyError::Config(format!(
                "pixel_targets = {} with pixel_cameras = {:?}: labelled things need labelled cameras and the other way round (a checkpoint trained with pixel labels before they named their cameras, 2026-11-30, must be retrained)",
                self.pixel_targets, self.pixel_cameras
            )));
        }
        if let Some(&c) = self.pixel_cameras.iter().find(|&&c| c >= self.cameras) {
            return Err(PolicyError::Config(format!(
                "pixel_cameras has camera {c}: the policy has {} cameras",
                self.cameras
            )));
        }
        if self.lift_reads_arm && self.pixel_cameras.len() < 2 {
            return Err(PolicyError::Config(format!(
                "lift_reads_arm = true reads the arm's state for the cameras that move with it (the labelled cameras after the first): needs at least 2 in pixel_cameras (now {:?})",
                self.pixel_cameras
            )));
        }
        if let Some(h) = &self.hand_eye {
            h.validate(self)?;
        }
        if let Some(near) = self.relative_near
            && !(near > 0.0 && near.is_finite() && self.hand_relative)
        {
            return Err(PolicyError::Config(format!(
                "relative_near = {near}: must be a positive number of metres, with hand_relative = true (now {})",
                self.hand_relative
            )));
        }
        if self.slots > 0 && !self.hand_relative {
            return Err(PolicyError::Config(format!(
                "slots = {}: a slot chooses among the things the state token reads relative to the hand; set hand_relative = true",
                self.slots
            )));
        }
        if self.slots > 16 {
            return Err(PolicyError::Config(format!(
                "slots = {}: at most 16 (one or two name what an instruction is about)",
                self.slots
            )));
        }
        if self.hand_relative && !self.object_tokens.is_empty() {
            return Err(PolicyError::Config(
                "hand_relative = true adds to the state token: it needs object_tokens off".into(),
            ));
        }
        let outputs = self.aux_dim + 3 * self.pixel_targets;
        if !self.aux_select.is_empty()
            && (self.pixel_targets == 0
                || self.aux_select.len() != self.aux_dim
                || self.aux_select.iter().any(|&i| i >= outputs))
        {
            return Err(PolicyError::Config(format!(
                "aux_select has {} entries: needs pixel_targets > 0 (now {}) and one entry below {outputs} per auxiliary target (aux_dim = {})",
                self.aux_select.len(),
                self.pixel_targets,
                self.aux_dim
            )));
        }
        let objects: usize = self.object_tokens.iter().sum();
        if self.object_tokens.contains(&0) || objects >= self.state_dim {
            return Err(PolicyError::Config(format!(
                "object_tokens = {:?}: each group needs an entry, and together they must leave part of state_dim = {} for the arm",
                self.object_tokens, self.state_dim
            )));
        }
        if self.state_gate_linear && !self.state_gate {
            return Err(PolicyError::Config(
                "state_gate_linear = true changes the state gate's form: set state_gate = true too"
                    .into(),
            ));
        }
        if self.state_gate_floor != 0.0
            && (!self.state_gate
                || self.state_gate_linear
                || !(0.0..1.0).contains(&self.state_gate_floor))
        {
            return Err(PolicyError::Config(format!(
                "state_gate_floor = {}: expected a number in [0, 1) with state_gate = true and state_gate_linear = false",
                self.state_gate_floor
            )));
        }
        if self.state_gate_per_thing && !(self.state_gate && self.hand_relative) {
            return Err(PolicyError::Config(
                "state_gate_per_thing = true shares the state gate over each lifted thing's coordinates: set state_gate = true and hand_relative = true too".into(),
            ));
        }
        if self.state_gate_no_bias && !self.state_gate {
            return Err(PolicyError::Config(
                "state_gate_no_bias = true changes the state gate: set state_gate = true too"
                    .into(),
            ));
        }
        if self.state_gate_reads_state && !self.state_gate {
            return Err(PolicyError::Config(
                "state_gate_reads_state = true extends the state gate: set state_gate = true too"
                    .into(),
            ));
        }
        if self.images_perception_only && self.cameras > 0 && self.perceived == 0 {
            return Err(PolicyError::Config(
                "images_perception_only = true: the images then feed only the perceived state entries, and there are none; train with env_state = \"perceived\"".into(),
            ));
        }
        if self.cameras == 0 && self.keypoints > 0 {
            return Err(PolicyError::Config(format!(
                "keypoints = {} are read from camera images, but the policy has no cameras",
                self.keypoints
            )));
        }
        if self.cameras > 0 && self.grid_side() == 0 {
            return Err(PolicyError::Config(format!(
                "image_size = {} is too small for {} stride-2 stages",
                self.image_size,
                self.conv_channels.len()
            )));
        }
        if let TextEncoderKind::Pretrained { dim: 0 } = self.text_encoder {
            return Err(PolicyError::Config(
                "text_encoder.dim = 0: a pretrained encoder has a positive width".into(),
            ));
        }
        Ok(())
    }

    /// Side of the feature grid after the stem (valid 3×3 stride-2 convolutions, or 2×2
    /// patches that drop an odd last row and column).
    pub fn grid_side(&self) -> usize {
        let mut s = self.image_size;
        for _ in &self.conv_channels {
            match self.stem {
                ImageStem::Conv if s < 3 => return 0,
                ImageStem::Conv => s = (s - 3) / 2 + 1,
                ImageStem::Patch => s /= 2,
            }
        }
        s
    }

    /// Image tokens over all cameras (grid cells; keypoint tokens not included).
    pub fn image_tokens(&self) -> usize {
        self.cameras * self.grid_side() * self.grid_side()
    }

    /// Side of the feature map the keypoints are read from.
    pub fn keypoint_side(&self) -> usize {
        let mut s = self.image_size;
        for _ in 0..self.keypoint_stage.min(self.conv_channels.len()) {
            s = match self.stem {
                ImageStem::Conv => s.saturating_sub(3) / 2 + 1,
                ImageStem::Patch => s / 2,
            };
        }
        s
    }

    fn transformer(&self, layers: usize) -> TransformerEncoderConfig {
        TransformerEncoderConfig::new(self.d_model, self.d_ff, self.n_heads, layers)
            .with_dropout(0.0)
            .with_norm_first(true)
    }
}

#[derive(Module, Debug)]
struct ConvBlock {
    conv: Conv2d,
    norm: GroupNorm,
    act: Relu,
}

impl ConvBlock {
    fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([2, 2])
                .init(device),
            norm: GroupNormConfig::new(8, c_out).init(device),
            act: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.act.forward(self.norm.forward(self.conv.forward(x)))
    }
}

/// One patch-merging stage: `[N, S, S, C]` → `[N, S/2, S/2, C']`, channels-last.
#[derive(Module, Debug)]
struct PatchBlock {
    merge: Linear,
    norm: LayerNorm,
    act: Relu,
}

impl PatchBlock {
    fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        PatchBlock {
            merge: LinearConfig::new(4 * c_in, c_out).init(device),
            norm: LayerNormConfig::new(c_out).init(device),
            act: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, s, _, c] = x.dims();
        let h = s / 2;
        let x = if s % 2 == 1 {
            x.narrow(1, 0, 2 * h).narrow(2, 0, 2 * h)
        } else {
            x
        };
        // Each output pixel reads its 2×2 block: (row, dy, col, dx, c) → (row, col, dy, dx, c).
        let blocks: Tensor<6> = x.reshape([n, h, 2, h, 2, c]);
        let flat: Tensor<2> = blocks
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([n * h * h, 4 * c]);
        let y = self
            .act
            .forward(self.norm.forward(self.merge.forward(flat)));
        let c_out = y.dims()[1];
        y.reshape([n, h, h, c_out])
    }
}

/// Stem stages before the keypoint map: stride 4 (16×16 at 64 px), fine enough to place a
/// 4-cm object to about a pixel of the agent view, coarse enough to be cheap.
const KEYPOINT_STAGE: usize = 2;

/// Spatial softmax (Levine et al. 2016; robomimic's and Diffusion Policy's visual encoders):
/// a 1×1 projection makes `K` heat maps of a stride-4 feature map, a softmax over positions
/// turns each into a distribution, and its expected image coordinates (x, y in [-1, 1]) are
/// the keypoint. The grid tokens carry *what* is where only implicitly (a 16-pixel cell's
/// features); keypoints hand the fusion explicit coordinates, which is what placing a hand on
/// a small object needs. Measured (docs/benchmarks.md): they change nothing while the policy
/// can copy its arm pose; with the pose hidden and the auxiliary loss they sharpen where the
/// hand goes and bring the drawer and fridge tasks back by vision. Off by default.
#[derive(Module, Debug)]
struct Keypoints {
    heat: Linear,
    /// Heat contributions of the stem's later (coarser) stages, upsampled to the keypoint
    /// map: what a 4×4-pixel patch cannot tell (which object this is) comes from a wider
    /// view, where it is comes from the fine map. Only with pixel targets (empty before).
    context: Vec<Linear>,
    /// The logit of each labelled keypoint's extra "not in view" cell `[1, cameras·P]`
    /// (only with pixel targets): the thing is off this image, or hidden, when no cell of
    /// the heat map outbids it. A wrist camera sees a thing only near it, and its keypoint
    /// must say so rather than point somewhere.
    absent: Option<Param<Tensor<2>>>,
    /// Heat from each cell's 3×3 neighbourhood of the keypoint map (only with pixel
    /// targets). Why: the patch stem's cells do not overlap, so a cell's features see only
    /// its own 4×4 pixels, its colour but not the shape around it; look-alikes (the blue
    /// cube and the blue bowl, ketchup and the apple) differ in size and shape.
    window: Option<Window>,
    proj: Linear,
    /// One learned position per camera's keypoint token.
    positions: Param<Tensor<2>>,
}

/// Hidden width of [`Window`], and the channels each cell gives its neighbours' windows.
const WINDOW_WIDTH: usize = 32;
const WINDOW_CHANNELS: usize = 8;

/// A small detector on each cell's 3×3 neighbourhood: the map's channels reduced per cell,
/// then a 3×3 convolution as im2col plus matrix products (what the CPU backend runs
/// fastest) and a ReLU layer. Why the reduction: im2col of the full map copies nine times
/// its 32 channels per cell, and that copy cost more than the rest of the detector
/// (training at 160 instead of 240 samples/s).
#[derive(Module, Debug)]
struct Window {
    reduce: Linear,
    hidden: Linear,
    out: Linear,
    act: Relu,
}

impl Window {
    /// Heat `[N·S·S, K]` of the channels-last map `[N, S, S, C]` (zero-padded at the edges).
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [n, s, _, c_in] = x.dims();
        let device = x.device();
        let c = self.reduce.weight.val().dims()[1];
        let x = self
            .reduce
            .forward(x.reshape([n * s * s, c_in]))
            .reshape([n, s, s, c]);
        let rows = Tensor::<4>::zeros([n, 1, s, c], &device);
        let x = Tensor::cat(vec![rows.clone(), x, rows], 1);
        let cols = Tensor::<4>::zeros([n, s + 2, 1, c], &device);
        let x = Tensor::cat(vec![cols.clone(), x, cols], 2);
        let patches: Vec<Tensor<4>> = (0..3)
            .flat_map(|dy| (0..3).map(move |dx| (dy, dx)))
            .map(|(dy, dx)| x.clone().narrow(1, dy, s).narrow(2, dx, s))
            .collect();
        let x = Tensor::cat(patches, 3).reshape([n * s * s, 9 * c]);
        self.out.forward(self.act.forward(self.hidden.forward(x)))
    }
}

impl Keypoints {
    /// Heat maps `[N, S·S, K]` (row-major positions) of the channels-last keypoint map
    /// `[N, S, S, C]` and the later stages' maps.
    fn heat(&self, x: Tensor<4>, later: Vec<Tensor<4>>) -> Tensor<3> {
        let [n, s, _, c] = x.dims();
        let mut heat = self.heat.forward(x.clone().reshape([n * s * s, c]));
        if let Some(window) = &self.window {
            heat = heat + window.forward(x);
        }
        let k = heat.dims()[1];
        for (lin, map) in self.context.iter().zip(later) {
            let [_, sl, _, cl] = map.dims();
            let coarse = lin
                .forward(map.reshape([n * sl * sl, cl]))
                .reshape([n, sl, sl, k]);
            // Nearest-neighbour upsampling by index (any sizes, so the conv stem works too).
            let idx: Vec<i64> = (0..s).map(|i| (i * sl / s) as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [s]), &heat.device());
            let up = coarse.select(1, idx.clone()).select(2, idx);
            heat = heat + up.reshape([n * s * s, k]);
        }
        heat.reshape([n, s * s, k])
    }
}

/// Auxiliary head: the keypoints of all cameras → object positions. Training it pulls the
/// keypoints onto the objects, dense supervision on every frame that the action loss alone
/// gives slowly (see [`crate::train::TrainConfig::aux_weight`]).
#[derive(Module, Debug)]
struct AuxHead {
    hidden: Linear,
    out: Linear,
    act: Relu,
    /// Where each labelled thing is, from its own keypoint alone (see
    /// [`VlaConfig::aux_select`]); `None` without pixel labels.
    lift: Option<Lift>,
}

/// One labelled thing's keypoints (u, v and whether it is in view, per labelled camera), its
/// identity (one-hot) and, with a wrist camera, the arm's state → its position (x, y, z),
/// shared by all things. Why its own keypoint alone: a head that reads every keypoint of
/// both cameras learns the demos' shortcut — the expert's hand (and the wrist view) heads
/// for the object, so "the object is where the hand goes" fits the training frames, and in
/// closed loop the perceived object follows the policy's own hand (measured: 12–15 cm off,
/// the spread of the object's positions, while the keypoint was 1.4 px off).
#[derive(Module, Debug)]
struct Lift {
    hidden: Linear,
    out: Linear,
    act: Relu,
    /// With [`VlaConfig::lift_reads_arm`]: the position from the cameras that move with the
    /// hand, which takes over where they see the thing; the MLP above then reads the first
    /// (fixed) camera only.
    near: Option<NearLift>,
    /// [`VlaConfig::lift_ray_trust`]: (ray length, u², v², the thing's identity) → the logit
    /// of the weight of a moving camera's ray estimate.
    ray_trust: Option<Linear>,
}

/// Where a thing is from the cameras that move with the hand (the labelled cameras after the
/// first): the hand's position (an affine map of the arm's state) plus an offset from where
/// the thing is in those images, its identity and the arm's pose. Why an offset: a wrist
/// camera measures where the thing is relative to the hand, over a range of centimetres
/// that a small MLP fits far more finely than positions anywhere on the table.
#[derive(Module, Debug)]
struct NearLift {
    hidden: Linear,
    out: Linear,
    hand: Linear,
}

impl AuxHead {
    /// Auxiliary predictions `[B, aux_dim]` of every camera's keypoints `[B, cameras·2K]`,
    /// with the labelled things' positions from the lift when `select` is not empty: each
    /// thing's (u, v, in view) in each of the `cameras` labelled cameras, its identity, and
    /// the arm's state `[B, A]` when given.
    fn forward(
        &self,
        xy: Tensor<2>,
        labelled: Option<&Labelled>,
        arm: Option<Tensor<2>>,
        cameras: usize,
        select: &[i64],
        hand_eye: Option<&HandEye>,
    ) -> Tensor<2> {
        let all = self.out.forward(self.act.forward(self.hidden.forward(xy)));
        let (Some(lift), Some(l), false) = (&self.lift, labelled, select.is_empty()) else {
            return all;
        };
        let [b, n, _] = l.xy.dims();
        let p = n / cameras.max(1);
        let device = l.xy.device();
        // Each camera's (u, v) scaled by whether it sees the thing, and that probability:
        // a keypoint with nothing to find points somewhere, and the lift must not read it.
        // Camera-major [B, C·P, 3] → thing-major [B, P, C, 3].
        let seen = l.seen.clone().unsqueeze_dim::<3>(2);
        let by_camera = Tensor::cat(vec![l.xy.clone() * seen.clone(), seen], 2)
            .reshape([b, cameras, p, 3])
            .swap_dims(1, 2);
        let ids = Tensor::<2>::eye(p, &device)
            .unsqueeze_dim::<3>(0)
            .repeat_dim(0, b);
        let mlp = |hidden: &Linear, out: &Linear, input: Tensor<3>| {
            let width = input.dims()[2];
            out.forward(
                lift.act
                    .forward(hidden.forward(input.reshape([b * p, width]))),
            )
            .reshape([b, p, 3])
        };
        let lifted = match (&lift.near, arm, hand_eye) {
            (None, Some(arm), Some(geometry)) => {
                let first = by_camera.narrow(2, 0, 1).reshape([b, p, 3]);
                let far = mlp(
                    &lift.hidden,
                    &lift.out,
                    Tensor::cat(vec![first, ids.clone()], 2),
                );
                let mut lifted = far.clone();
                for (j, camera) in geometry.cameras.iter().enumerate() {
                    let (xy, seen) = (
                        l.xy.clone().narrow(1, (j + 1) * p, p),
                        l.seen.clone().narrow(1, (j + 1) * p, p),
                    );
                    let (near, valid, length) =
                        lift_by_ray(geometry, camera, xy.clone(), arm.clone(), &far);
                    let mut weight = seen * valid;
                    if let Some(trust) = &lift.ray_trust {
                        let features = Tensor::cat(
                            vec![length.unsqueeze_dim::<3>(2), xy.powi_scalar(2), ids.clone()],
                            2,
                        );
                        let logit = trust
                            .forward(features.reshape([b * p, 3 + p]))
                            .reshape([b, p]);
                        weight = weight * burn::tensor::activation::sigmoid(logit);
                    }
                    let weight = weight.unsqueeze_dim::<3>(2).repeat_dim(2, 3);
                    lifted = lifted.clone() + (near - lifted) * weight;
                }
                lifted
            }
            (Some(near), Some(arm), _) => {
                let first = by_camera.clone().narrow(2, 0, 1).reshape([b, p, 3]);
                let far = mlp(
                    &lift.hidden,
                    &lift.out,
                    Tensor::cat(vec![first, ids.clone()], 2),
                );
                let moving = by_camera.narrow(2, 1, cameras - 1);
                let seen = moving.clone().narrow(3, 2, 1).max_dim(2).reshape([b, p, 1]);
                let input = Tensor::cat(
                    vec![
                        moving.reshape([b, p, 3 * (cameras - 1)]),
                        ids,
                        arm.clone().unsqueeze_dim::<3>(1).repeat_dim(1, p),
                    ],
                    2,
                );
                let hand = near
                    .hand
                    .forward(arm)
                    .unsqueeze_dim::<3>(1)
                    .repeat_dim(1, p);
                let close = mlp(&near.hidden, &near.out, input) + hand;
                far.clone() + (close - far) * seen.repeat_dim(2, 3)
            }
            _ => mlp(
                &lift.hidden,
                &lift.out,
                Tensor::cat(vec![by_camera.reshape([b, p, 3 * cameras]), ids], 2),
            ),
        };
        let xyz = lifted.reshape([b, p * 3]);
        let index =
            Tensor::<1, Int>::from_data(TensorData::new(select.to_vec(), [select.len()]), &device);
        Tensor::cat(vec![all, xyz], 1).select(1, index)
    }
}

/// A constant `[rows, cols]` tensor of row-major `values`.
fn constant(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Where things seen by a camera on the hand are: the ray through each keypoint `xy`
/// `[B, P, 2]`, from the hand's pose in the (normalized) arm state `[B, A]`, down to the
/// height of the first camera's estimate `far` `[B, P, 3]` (normalized; its height
/// detached: a camera looking down places a thing in x and y almost regardless of small
/// height errors, and the fixed camera's height is the one it measures well) →
/// (normalized positions `[B, P, 3]`, `[B, P]` 1 where the ray meets that height in front
/// of the camera, within 2 m, else 0 — those keep `far` —, `[B, P]` the ray's length to
/// there in metres, 0 where not valid).
fn lift_by_ray(
    geometry: &HandEye,
    camera: &HandCamera,
    xy: Tensor<3>,
    arm: Tensor<2>,
    far: &Tensor<3>,
) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
    let [b, p, _] = xy.dims();
    let device = xy.device();
    // The hand's pose in metres.
    let hand: Vec<Tensor<2>> = (0..7)
        .map(|i| {
            arm.clone().narrow(1, geometry.hand[i], 1) * geometry.hand_scale[i]
                + geometry.hand_shift[i]
        })
        .collect();
    let position = Tensor::cat(hand[..3].to_vec(), 1); // [B, 3]
    let norm = (hand[3].clone().powi_scalar(2)
        + hand[4].clone().powi_scalar(2)
        + hand[5].clone().powi_scalar(2)
        + hand[6].clone().powi_scalar(2))
    .sqrt()
    .clamp_min(1e-6);
    let [x, y, z, w] = [3, 4, 5, 6].map(|i| hand[i].clone() / norm.clone());
    let m = |a: &Tensor<2>, c: &Tensor<2>| a.clone() * c.clone() * 2.0;
    let one = |a: Tensor<2>, c: Tensor<2>| a.neg() - c + 1.0;
    // Row-major rotation of the unit quaternion (x, y, z, w): hand frame → world.
    let rotation = Tensor::cat(
        vec![
            one(m(&y, &y), m(&z, &z)),
            m(&x, &y) - m(&z, &w),
            m(&x, &z) + m(&y, &w),
            m(&x, &y) + m(&z, &w),
            one(m(&x, &x), m(&z, &z)),
            m(&y, &z) - m(&x, &w),
            m(&x, &z) - m(&y, &w),
            m(&y, &z) + m(&x, &w),
            one(m(&x, &x), m(&y, &y)),
        ],
        1,
    )
    .reshape([b, 3, 3]);
    // Rays in the hand frame, then in the world, unit length.
    let ray = constant(camera.ray.concat(), [3, 3], &device);
    let uv1 = Tensor::cat(vec![xy, Tensor::ones([b, p, 1], &device)], 2);
    let in_hand = uv1.matmul(ray.transpose().unsqueeze_dim::<3>(0).repeat_dim(0, b));
    let dir = in_hand.matmul(rotation.clone().swap_dims(1, 2)); // [B, P, 3]
    let dir = dir.clone() / dir.powi_scalar(2).sum_dim(2).sqrt().clamp_min(1e-6);
    let centre = constant(camera.centre.to_vec(), [1, 3], &device)
        .unsqueeze_dim::<3>(0)
        .repeat_dim(0, b)
        .matmul(rotation.swap_dims(1, 2))
        .reshape([b, 3])
        + position; // [B, 3]
    let shift = constant(geometry.thing_shift.concat(), [p, 3], &device).unsqueeze_dim::<3>(0);
    let scale = constant(geometry.thing_scale.concat(), [p, 3], &device).unsqueeze_dim::<3>(0);
    let height = (far.clone().detach() * scale.clone() + shift.clone()).narrow(2, 2, 1); // [B, P, 1]
    // Meet the plane z = height: t = (height - centre.z) / dir.z, for rays going down.
    let dz = dir.clone().narrow(2, 2, 1);
    let down = dz.clone().lower_elem(-0.05).float();
    let dz = dz * down.clone() + down.clone() - 1.0; // -1 where not going down: t stays finite
    let centre = centre.unsqueeze_dim::<3>(1); // [B, 1, 3]
    let t = (height - centre.clone().narrow(2, 2, 1)) / dz;
    let valid = down * t.clone().greater_elem(0.0).float() * t.clone().lower_elem(2.0).float();
    let t = t * valid.clone();
    let near = (centre + dir * t.clone() - shift) / scale;
    (near, valid.reshape([b, p]), t.reshape([b, p]))
}

/// Keypoints `[B, N, 2]` (N = `cameras.len()` · `per`, camera-major) moved by each camera's
/// augmentation shift `[B, all cameras·2]` (see [`VlaInput::shift`]): camera `cameras[j]`'s
/// to keypoints `j·per..(j + 1)·per`.
fn unshifted(xy: Tensor<3>, shift: &Tensor<2>, cameras: &[usize], per: usize) -> Tensor<3> {
    let offsets: Vec<Tensor<3>> = cameras
        .iter()
        .map(|&c| {
            shift
                .clone()
                .narrow(1, 2 * c, 2)
                .unsqueeze_dim::<3>(1)
                .repeat_dim(1, per)
        })
        .collect();
    xy + Tensor::cat(offsets, 1)
}

/// Expected coordinates `[N, K, 2]` (x = column, y = row, pixel centres in [-1, 1]) of the
/// softmax over positions of each of K heat maps `[N, S·S, K]` (row-major positions).
fn spatial_softmax(heat: Tensor<3>, side: usize) -> Tensor<3> {
    let prob = burn::tensor::activation::softmax(heat.swap_dims(1, 2), 2);
    expected_coords(prob, side)
}

/// Expected (x, y) `[N, K, 2]` of distributions over the cells `[N, K, S·S]` of an S×S map
/// (pixel centres in [-1, 1]).
fn expected_coords(prob: Tensor<3>, side: usize) -> Tensor<3> {
    let n = prob.dims()[0];
    let coord = |i: usize| (2.0 * i as f32 + 1.0) / side as f32 - 1.0;
    let grid: Vec<f32> = (0..side * side)
        .flat_map(|p| [coord(p % side), coord(p / side)])
        .collect();
    let grid = Tensor::<2>::from_data(TensorData::new(grid, [side * side, 2]), &prob.device());
    prob.matmul(grid.unsqueeze_dim::<3>(0).repeat_dim(0, n))
}

/// The pixel loss of labelled heat maps `[B, S·S + 1, N]` (the "not in view" cell last) with
/// expected coordinates `[B, N, 2]`: cross-entropy against the labelled cell (a sharp peak
/// where the thing is, or the last cell where it is off the image) plus the L1 of the
/// expected coordinates (sub-cell precision) over the labels on the image; and that L1 alone.
fn pixel_loss(heat: Tensor<3>, xy: Tensor<3>, t: PixelTargets, cameras: usize) -> PixelLoss {
    let on = t.on_image;
    let [b, n] = on.dims();
    let logp = burn::tensor::activation::log_softmax(heat.swap_dims(1, 2), 2); // [B, N, S·S+1]
    let picked: Tensor<2> = logp.gather(2, t.cell).flatten(1, 2);
    let ce = picked.mean().neg();
    let err = (xy - t.uv).abs().sum_dim(2).flatten::<2>(1, 2) * on.clone(); // [B, N]
    let l1 = err.clone().sum().div(on.clone().sum().clamp_min(1.0) * 2.0);
    let per_camera = |x: Tensor<2>| -> Tensor<1> {
        x.reshape([b, cameras, n / cameras.max(1)])
            .sum_dim(2)
            .sum_dim(0)
            .reshape([cameras])
    };
    let l1_by_camera = per_camera(err).div(per_camera(on).clamp_min(1.0) * 2.0);
    PixelLoss {
        loss: ce + l1.clone(),
        l1,
        l1_by_camera,
    }
}

/// Like [`spatial_softmax`], but each map's expectation is taken over the 3×3 cells around
/// its peak only: `[N, S·S, K]` → `[N, K, 2]`. Why: where two things look alike (the blue
/// cube and the blue bowl), a map can hold two peaks, and the plain expectation lands
/// between them, on neither (measured: 30 cm off in some layouts); the peak's
/// neighbourhood keeps sub-cell precision without the averaging.
fn peak_softmax(heat: Tensor<3>, side: usize) -> Tensor<3> {
    let device = heat.device();
    let heat = heat.swap_dims(1, 2); // [N, K, S·S]
    let peak = heat.clone().argmax(2).float(); // [N, K, 1]
    let (pr, pc) = {
        let r = peak.clone().div_scalar(side as f32).floor();
        (r.clone(), peak - r * side as f32)
    };
    let cells = |f: fn(usize, usize) -> usize| {
        let v: Vec<f32> = (0..side * side).map(|p| f(p, side) as f32).collect();
        Tensor::<1>::from_data(TensorData::new(v, [side * side]), &device)
            .unsqueeze_dim::<2>(0)
            .unsqueeze_dim::<3>(0)
    };
    let (rows, cols) = (cells(|p, s| p / s), cells(|p, s| p % s));
    let near = (rows - pr).abs().lower_equal_elem(1.0).float()
        * (cols - pc).abs().lower_equal_elem(1.0).float();
    // Softmax restricted to the window (max-subtracted for stability).
    let max = heat.clone().max_dim(2);
    let w = (heat - max).exp() * near;
    let prob = w.clone() / w.sum_dim(2);
    expected_coords(prob, side)
}

/// The byte-level instruction encoder.
#[derive(Module, Debug)]
struct ByteTextEncoder {
    tokens: Embedding,
    positions: Param<Tensor<2>>,
    layers: Option<TransformerEncoder>,
}

/// Flow-matching parts: noisy actions and the time in, as token features.
#[derive(Module, Debug)]
struct FlowInput {
    action_in: Linear,
    time1: Linear,
    time2: Linear,
    act: Gelu,
}

#[derive(Module, Debug)]
pub struct Vla {
    /// The stem: exactly one of `blocks` (conv) and `patches` is non-empty, unless the
    /// model has no cameras (then neither is, and there is no `image_proj`). Two lists rather
    /// than an enum keep the conv stem's parameter names (`blocks.N.…`), so checkpoints
    /// written before the patch stem still load.
    blocks: Vec<ConvBlock>,
    patches: Vec<PatchBlock>,
    image_proj: Option<Linear>,
    image_positions: Option<Param<Tensor<2>>>,
    keypoints: Option<Keypoints>,
    aux: Option<AuxHead>,
    bytes: Option<ByteTextEncoder>,
    text_proj: Option<Linear>,
    /// The state's arm part (all of it without object tokens) → one token.
    state_proj: Linear,
    /// One projection per object group ([`VlaConfig::object_tokens`]) and a learned
    /// identity per object token.
    object_proj: Vec<Linear>,
    object_ids: Option<Param<Tensor<2>>>,
    /// Instruction → per-entry state gate ([`VlaConfig::state_gate`]).
    state_gate: Option<Linear>,
    /// State → the same gate's logits ([`VlaConfig::state_gate_reads_state`]).
    state_gate_state: Option<Linear>,
    /// Instruction → each slot's logits over the relative things ([`VlaConfig::slots`]).
    slot_logits: Option<Linear>,
    /// [`VlaConfig::state_gate_linear`].
    #[module(skip)]
    state_gate_linear: bool,
    /// [`VlaConfig::state_gate_floor`].
    #[module(skip)]
    state_gate_floor: f32,
    /// [`VlaConfig::state_gate_per_thing`].
    #[module(skip)]
    state_gate_per_thing: bool,
    queries: Param<Tensor<2>>,
    /// Positions of the text, state and action tokens.
    token_positions: Param<Tensor<2>>,
    flow: Option<FlowInput>,
    fusion: TransformerEncoder,
    out_norm: LayerNorm,
    out: Linear,
    chunk: usize,
    action_dim: usize,
    d_model: usize,
    flow_steps: usize,
    perceived: usize,
    pixel_targets: usize,
    #[module(skip)]
    pixel_cameras: Vec<usize>,
    #[module(skip)]
    lift_reads_arm: bool,
    #[module(skip)]
    images_perception_only: bool,
    keypoint_stage: usize,
    /// Training only: the share of each batch whose perceived entries are the predictions
    /// (see [`Self::with_perceived_share`]).
    #[module(skip)]
    perceived_share: f32,
    /// The same for the entries the lift places ([`Self::with_perceived_share`]).
    #[module(skip)]
    lifted_share: f32,
    /// Training only: the largest |prediction − truth| a perceived entry may take where the
    /// predictions replace the truth, per entry in normalized units (infinite = no cap;
    /// empty = off; see [`Self::with_perceived_cap`]).
    #[module(skip)]
    perceived_cap: Vec<f32>,
    /// Inference only: the perceived entries that keep the given (true) values instead of
    /// the predictions, one flag per entry; empty = off (see [`Self::with_oracle`]).
    #[module(skip)]
    oracle: Vec<bool>,
    #[module(skip)]
    aux_select: Vec<i64>,
    #[module(skip)]
    hand_eye: Option<HandEye>,
    /// The things whose position relative to the hand the state token reads
    /// ([`VlaConfig::hand_relative`]); empty = off.
    #[module(skip)]
    relative: Vec<RelativeThing>,
    /// [`VlaConfig::relative_near`] in decimetres.
    #[module(skip)]
    relative_near: Option<f32>,
}

/// A lifted thing's entries in the state and their map to metres
/// ([`VlaConfig::hand_relative`]).
#[derive(Clone, Debug)]
struct RelativeThing {
    /// Its index among the labelled things (`pixel_targets`).
    thing: usize,
    state: [usize; 3],
    shift: [f32; 3],
    scale: [f32; 3],
}

/// Relative positions enter the state token in decimetres: the table's reach is a few of
/// them, a grasp's tolerance a tenth of one.
const RELATIVE_PER_M: f32 = 10.0;

/// The lifted things of a [`VlaConfig::hand_relative`] model: each labelled thing whose
/// three axes are perceived entries (`aux_select`), in thing order.
fn relative_things(config: &VlaConfig) -> Result<Vec<RelativeThing>, PolicyError> {
    if !config.hand_relative {
        return Ok(Vec::new());
    }
    let Some(h) = &config.hand_eye else {
        return Err(PolicyError::Config(
            "hand_relative = true needs the wrist camera's hand–eye calibration (hand_eye), which training fits from the pixel labels: this model has none".into(),
        ));
    };
    let arm = config.state_dim - config.perceived;
    let things: Vec<RelativeThing> = (config.lifted_entries().into_iter().enumerate())
        .filter_map(|(k, entries)| {
            Some(RelativeThing {
                thing: k,
                state: entries?.map(|j| arm + j),
                shift: h.thing_shift[k],
                scale: h.thing_scale[k],
            })
        })
        .collect();
    if things.is_empty() {
        return Err(PolicyError::Config(
            "hand_relative = true: no lifted thing's position is among the perceived entries"
                .into(),
        ));
    }
    Ok(things)
}

/// What a model reads of the state for one instruction ([`Vla::read_instruction`]).
#[derive(Clone, Debug, PartialEq)]
pub struct InstructionReading {
    /// Each state entry's gate factor ([`VlaConfig::state_gate`]; in (0, 2) unless
    /// [`VlaConfig::state_gate_linear`]); a gate that
    /// also reads the state (`state_gate_reads_state`) is shown at the mean state.
    pub gate: Option<Vec<f32>>,
    /// Each slot's weights over [`Self::things`], summing to 1 ([`VlaConfig::slots`]).
    pub slots: Vec<Vec<f32>>,
    /// The things a slot chooses among, as indices of the labelled things
    /// (`PolicySpec::pixel_things`).
    pub things: Vec<usize>,
}

/// The keypoints of a forward pass.
struct KeypointOut {
    /// Every camera's keypoint coordinates `[B, cameras·2K]`.
    xy: Tensor<2>,
    /// The labelled keypoints ([`VlaConfig::pixel_targets`]) of the labelled cameras.
    labelled: Option<Labelled>,
}

/// The labelled keypoints of a forward pass, camera-major (`N = cameras·P`).
struct Labelled {
    /// Heat maps with the "not in view" cell last `[B, S·S + 1, N]`.
    heat: Tensor<3>,
    /// Coordinates `[B, N, 2]` (peak softmax over the image cells).
    xy: Tensor<3>,
    /// The probability that each thing is in view `[B, N]`.
    seen: Tensor<2>,
}

/// What [`Vla::encode_parts`] produces besides the tokens, for the training losses.
struct Encoded {
    tokens: Tensor<3>,
    /// The auxiliary head's predictions `[B, aux_dim]`.
    aux: Option<Tensor<2>>,
    keypoints: Option<KeypointOut>,
}

/// The training losses of one batch.
pub struct Losses {
    /// The action loss.
    pub action: Tensor<1>,
    /// Mean L1 of the auxiliary head against the normalized targets.
    pub aux: Option<Tensor<1>>,
    /// The pixel-label loss of the labelled keypoints, when the batch has labels.
    pub pixel: Option<PixelLoss>,
}

/// The pixel-label loss of a batch and its keypoint errors for the logs.
pub struct PixelLoss {
    /// Cross-entropy of each heat map against the labelled cell (or "not in view") plus
    /// the L1 of its expected coordinates: what training minimizes.
    pub loss: Tensor<1>,
    /// The mean L1 per axis of the labelled keypoints on the image, in [-1, 1] image units:
    /// over all labelled cameras, and per labelled camera `[cameras]`.
    pub l1: Tensor<1>,
    pub l1_by_camera: Tensor<1>,
}

/// Pixel labels of a batch for the labelled keypoints: coordinates `[B, N, 2]` in [-1, 1],
/// which of them are on the image `[B, N]` (1 = yes), and the cell each falls in `[B, N, 1]`
/// (row-major on the keypoint map; `S·S`, the "not in view" cell, where off the image).
pub struct PixelTargets {
    pub uv: Tensor<3>,
    pub on_image: Tensor<2>,
    pub cell: Tensor<3, Int>,
}

impl PixelTargets {
    /// From host values `[B, P, 2]` for a keypoint map of side `side`.
    pub fn new(values: &[f32], b: usize, p: usize, side: usize, device: &Device) -> Self {
        let mut on = Vec::with_capacity(b * p);
        let mut cell = Vec::with_capacity(b * p);
        let mut uv = Vec::with_capacity(b * p * 2);
        let index = |x: f32| (((x + 1.0) * 0.5 * side as f32) as usize).min(side - 1);
        for xy in values.chunks_exact(2) {
            let (u, v) = (xy[0], xy[1]);
            let ok = u.is_finite() && v.is_finite() && u.abs() <= 1.0 && v.abs() <= 1.0;
            on.push(if ok { 1.0f32 } else { 0.0 });
            cell.push(if ok {
                (index(v) * side + index(u)) as i64
            } else {
                (side * side) as i64
            });
            uv.extend(if ok { [u, v] } else { [0.0, 0.0] });
        }
        PixelTargets {
            uv: Tensor::from_data(TensorData::new(uv, [b, p, 2]), device),
            on_image: Tensor::from_data(TensorData::new(on, [b, p]), device),
            cell: Tensor::from_data(TensorData::new(cell, [b, p, 1]), device),
        }
    }
}

/// Where the perceived state entries ([`VlaConfig::perceived`]) come from in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Perception {
    /// Training: the first samples of the batch keep their true values, the last
    /// `perceived_share` of it gets the auxiliary head's detached predictions.
    Mixed,
    /// Inference: the predictions for every sample.
    Predicted,
}

/// The instruction part of a batch. Distinct instructions are encoded once: `index[b]` is the
/// row (in `tokens` or `features`) of sample `b`'s instruction.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // built once per batch; boxing would buy nothing
pub enum TextInput {
    /// Byte tokens `[U, text_len]` with a mask of real tokens `[U, text_len]` (1 = token).
    Bytes {
        tokens: Tensor<2, Int>,
        mask: Tensor<2>,
        index: Tensor<1, Int>,
    },
    /// Pretrained sentence embeddings `[U, dim]`.
    Embeddings {
        features: Tensor<2>,
        index: Tensor<1, Int>,
    },
    /// Instructions already through the model's text encoder ([`Vla::encode_text`],
    /// `[U, d]`): a policy keeps its episode's instruction encoded between steps.
    Encoded {
        features: Tensor<2>,
        index: Tensor<1, Int>,
    },
}

/// One batch of model inputs: images in [0, 1] as `[B, cameras, 3, H, W]` (`None` for a
/// model without cameras), the instructions, and normalized state `[B, state_dim]`.
#[derive(Clone, Debug)]
pub struct VlaInput {
    pub images: Option<Tensor<5>>,
    pub text: TextInput,
    pub state: Tensor<2>,
    /// Training only: each camera's augmentation shift `[B, cameras·2]`, the (u, v) in
    /// [-1, 1] to add to a point of the shifted image to find it where the camera saw it
    /// (`HostBatch::shifts`). The keypoints are moved back by it before the auxiliary head
    /// and the lift read them; the pixel loss keeps them where they are in the shifted
    /// image. Why: the lift maps where a thing is in a camera's image to where it is on
    /// the table, and a shifted image moves the first by up to 4 pixels (8 cm in the agent
    /// view) without moving the second; trained on that, the lift pulls things toward the
    /// middle of the table, most at its far edge, where the flywheel's failed grasps' objects
    /// stand (docs/benchmarks.md, session 26). `None` = not shifted.
    pub shift: Option<Tensor<2>>,
}

fn normal(shape: [usize; 2], device: &Device) -> Param<Tensor<2>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, 0.02),
        device,
    ))
}

impl Vla {
    /// A freshly initialized model; the same `seed` gives the same weights.
    pub fn new(config: &VlaConfig, seed: u64, device: &Device) -> Result<Self, PolicyError> {
        config.validate()?;
        let relative = relative_things(config)?;
        let d = config.d_model;
        let (mut blocks, mut patches) = (Vec::new(), Vec::new());
        let mut c_in = 3;
        let mut keypoint_channels = 0;
        let stem = if config.cameras > 0 {
            config.conv_channels.as_slice()
        } else {
            &[]
        };
        for (stage, &c) in stem.iter().enumerate() {
            if stage == config.keypoint_stage {
                keypoint_channels = c_in;
            }
            match config.stem {
                ImageStem::Conv => blocks.push(ConvBlock::new(c_in, c, device)),
                ImageStem::Patch => patches.push(PatchBlock::new(c_in, c, device)),
            }
            c_in = c;
        }
        if config.conv_channels.len() == config.keypoint_stage {
            keypoint_channels = c_in;
        }
        let later_stages = if config.pixel_targets > 0 {
            stem.get(config.keypoint_stage..).unwrap_or(&[])
        } else {
            &[]
        };
        let keypoints = (config.keypoints > 0).then(|| Keypoints {
            heat: LinearConfig::new(keypoint_channels, config.keypoints).init(device),
            context: later_stages
                .iter()
                .map(|&c| LinearConfig::new(c, config.keypoints).init(device))
                .collect(),
            absent: (config.pixel_targets > 0).then(|| {
                normal(
                    [1, config.pixel_targets * config.pixel_cameras.len()],
                    device,
                )
            }),
            window: (config.pixel_targets > 0).then(|| Window {
                reduce: LinearConfig::new(keypoint_channels, WINDOW_CHANNELS).init(device),
                hidden: LinearConfig::new(9 * WINDOW_CHANNELS, WINDOW_WIDTH).init(device),
                out: LinearConfig::new(WINDOW_WIDTH, config.keypoints).init(device),
                act: Relu::new(),
            }),
            proj: LinearConfig::new(2 * config.keypoints, d).init(device),
            positions: normal([config.cameras, d], device),
        });
        let aux = (config.aux_dim > 0).then(|| AuxHead {
            hidden: LinearConfig::new(config.cameras * 2 * config.keypoints, d).init(device),
            out: LinearConfig::new(d, config.aux_dim).init(device),
            act: Relu::new(),
            lift: (!config.aux_select.is_empty()).then(|| {
                let (far, near) = config.lift_inputs();
                Lift {
                    hidden: LinearConfig::new(far, d).init(device),
                    out: LinearConfig::new(d, 3).init(device),
                    act: Relu::new(),
                    near: (config.lift_reads_arm && config.hand_eye.is_none()).then(|| NearLift {
                        hidden: LinearConfig::new(near, d).init(device),
                        out: LinearConfig::new(d, 3).init(device),
                        hand: LinearConfig::new(config.state_dim - config.perceived, 3)
                            .init(device),
                    }),
                    ray_trust: (config.lift_ray_trust && config.hand_eye.is_some())
                        .then(|| LinearConfig::new(3 + config.pixel_targets, 1).init(device)),
                }
            }),
        });
        let (bytes, text_proj) = match config.text_encoder {
            TextEncoderKind::Bytes => (
                Some(ByteTextEncoder {
                    tokens: EmbeddingConfig::new(VOCAB, d).init(device),
                    positions: normal([config.text_len, d], device),
                    layers: (config.text_layers > 0)
                        .then(|| config.transformer(config.text_layers).init(device)),
                }),
                None,
            ),
            TextEncoderKind::Pretrained { dim } => {
                (None, Some(LinearConfig::new(dim, d).init(device)))
            }
        };
        let flow = (config.head == Head::Flow).then(|| FlowInput {
            action_in: LinearConfig::new(config.action_dim, d).init(device),
            time1: LinearConfig::new(d, d).init(device),
            time2: LinearConfig::new(d, d).init(device),
            act: Gelu::new(),
        });
        let mut model = Vla {
            blocks,
            patches,
            image_proj: (config.cameras > 0).then(|| LinearConfig::new(c_in, d).init(device)),
            image_positions: (config.cameras > 0)
                .then(|| normal([config.image_tokens(), d], device)),
            keypoints,
            aux,
            bytes,
            text_proj,
            state_proj: LinearConfig::new(
                config.state_dim - config.object_tokens.iter().sum::<usize>()
                    + 3 * (relative.len() + config.slots)
                        * if config.relative_near.is_some() { 2 } else { 1 },
                d,
            )
            .init(device),
            object_proj: config
                .object_tokens
                .iter()
                .map(|&n| LinearConfig::new(n, d).init(device))
                .collect(),
            object_ids: (!config.object_tokens.is_empty())
                .then(|| normal([config.object_tokens.len(), d], device)),
            state_gate: config.state_gate.then(|| {
                LinearConfig::new(d, config.state_dim)
                    .with_bias(!config.state_gate_no_bias)
                    .init(device)
            }),
            state_gate_state: (config.state_gate && config.state_gate_reads_state).then(|| {
                LinearConfig::new(config.state_dim, config.state_dim)
                    .with_bias(false)
                    .init(device)
            }),
            state_gate_linear: config.state_gate_linear,
            state_gate_floor: config.state_gate_floor,
            state_gate_per_thing: config.state_gate_per_thing,
            slot_logits: (config.slots > 0)
                .then(|| LinearConfig::new(d, config.slots * relative.len()).init(device)),
            queries: normal([config.chunk, d], device),
            token_positions: normal([2 + config.chunk, d], device),
            flow,
            fusion: config.transformer(config.n_layers).init(device),
            out_norm: LayerNormConfig::new(d).init(device),
            out: LinearConfig::new(d, config.action_dim).init(device),
            chunk: config.chunk,
            action_dim: config.action_dim,
            d_model: d,
            flow_steps: config.flow_steps,
            perceived: config.perceived,
            pixel_targets: config.pixel_targets,
            pixel_cameras: config.pixel_cameras.clone(),
            lift_reads_arm: config.lift_reads_arm,
            images_perception_only: config.images_perception_only,
            keypoint_stage: config.keypoint_stage,
            perceived_share: 0.5,
            lifted_share: 0.5,
            perceived_cap: Vec::new(),
            oracle: Vec::new(),
            aux_select: config.aux_select.iter().map(|&i| i as i64).collect(),
            hand_eye: config.hand_eye.clone(),
            relative,
            relative_near: config.relative_near.map(|m| m * RELATIVE_PER_M),
        };
        seeded_init(&mut model, seed);
        Ok(model)
    }

    pub fn head(&self) -> Head {
        if self.flow.is_some() {
            Head::Flow
        } else {
            Head::L1
        }
    }

    /// The observation as tokens `[B, image_tokens (+ cameras keypoint tokens) + 2
    /// (+ objects), d]` (images, instruction, state, object tokens).
    pub fn encode(&self, input: VlaInput) -> Tensor<3> {
        self.encode_parts(input, Perception::Predicted).tokens
    }

    /// [`Self::encode`], plus the auxiliary head's predictions `[B, aux_dim]` when the model
    /// has one; the perceived state entries come from where `perception` says.
    fn encode_parts(&self, input: VlaInput, perception: Perception) -> Encoded {
        let (images, keypoints) = match (&self.image_proj, input.images) {
            (Some(proj), Some(images)) => self.encode_images(proj, images),
            // A control step ([`VlaConfig::images_perception_only`]): the perceived entries
            // of the state are given (true or cached predictions), nothing is perceived.
            (Some(_), None) if self.images_perception_only => (None, None),
            (Some(_), None) => panic!("a model with cameras gets images (built by the Batcher)"),
            (None, _) => (None, None),
        };

        let text = self.instruction_features(input.text);
        // Inference needs the aux head only when it supplies perceived state entries.
        let needed = perception == Perception::Mixed || self.perceived > 0;
        let aux = match (&self.aux, &keypoints) {
            (Some(head), Some(kp)) if needed => {
                let arm = self.lift_reads_arm.then(|| {
                    let [_, sd] = input.state.dims();
                    input.state.clone().narrow(1, 0, sd - self.perceived)
                });
                let (xy, labelled) = match &input.shift {
                    Some(shift) => {
                        let [b, n] = kp.xy.dims();
                        let cameras: Vec<usize> = (0..shift.dims()[1] / 2).collect();
                        let per = n / (2 * cameras.len().max(1));
                        let xy =
                            unshifted(kp.xy.clone().reshape([b, n / 2, 2]), shift, &cameras, per)
                                .reshape([b, n]);
                        let labelled = kp.labelled.as_ref().map(|l| Labelled {
                            heat: l.heat.clone(),
                            xy: unshifted(
                                l.xy.clone(),
                                shift,
                                &self.pixel_cameras,
                                self.pixel_targets,
                            ),
                            seen: l.seen.clone(),
                        });
                        (xy, labelled)
                    }
                    None => (kp.xy.clone(), None),
                };
                Some(head.forward(
                    xy,
                    labelled.as_ref().or(kp.labelled.as_ref()),
                    arm,
                    self.pixel_cameras.len(),
                    &self.aux_select,
                    self.hand_eye.as_ref(),
                ))
            }
            _ => None,
        };
        let mut state = input.state;
        if let (Some(pred), true) = (&aux, self.perceived > 0) {
            let [b, sd] = state.dims();
            let k = self.perceived;
            state = match perception {
                Perception::Predicted if self.oracle.len() == k => {
                    // Where the oracle says so, the given values stay: the predictions
                    // elsewhere.
                    let predicted: Vec<bool> = (0..b)
                        .flat_map(|_| self.oracle.iter().map(|o| !o))
                        .collect();
                    let mask = Tensor::<2, Bool>::from_data(
                        TensorData::new(predicted, [b, k]),
                        &state.device(),
                    );
                    let given = state.clone().narrow(1, sd - k, k);
                    let mixed = given.mask_where(mask, pred.clone().detach());
                    Tensor::cat(vec![state.narrow(1, 0, sd - k), mixed], 1)
                }
                Perception::Predicted => {
                    Tensor::cat(vec![state.narrow(1, 0, sd - k), pred.clone().detach()], 1)
                }
                _ => {
                    let mask = Tensor::<2, Bool>::from_data(
                        TensorData::new(self.perceived_mask(b), [b, k]),
                        &state.device(),
                    );
                    let truth = state.clone().narrow(1, sd - k, k);
                    let mut pred = pred.clone().detach();
                    if self.perceived_cap.len() == k {
                        let cap = Tensor::<2>::from_data(
                            TensorData::new(self.perceived_cap.clone(), [1, k]),
                            &state.device(),
                        )
                        .expand([b, k]);
                        pred = pred
                            .max_pair(truth.clone() - cap.clone())
                            .min_pair(truth.clone() + cap);
                    }
                    let mixed = truth.mask_where(mask, pred);
                    Tensor::cat(vec![state.narrow(1, 0, sd - k), mixed], 1)
                }
            };
        }
        let mut relative = self.hand_relative(&state);
        // From the ungated positions: a slot's softmax does its own choosing.
        let slots = relative.as_ref().and_then(|r| self.slots(&text, r.clone()));
        if let Some(gate) = &self.state_gate {
            let mut logits = gate.forward(text.clone());
            if let Some(from_state) = &self.state_gate_state {
                logits = logits + from_state.forward(state.clone());
            }
            let factors = self.gate_factors(logits);
            relative = relative.map(|r| {
                let entries: Vec<i64> = self
                    .relative
                    .iter()
                    .flat_map(|t| t.state.map(|i| i as i64))
                    .collect();
                let n = entries.len();
                let index =
                    Tensor::<1, Int>::from_data(TensorData::new(entries, [n]), &factors.device());
                r * factors.clone().select(1, index)
            });
            state = state * factors;
        }
        let relative = match (relative, slots) {
            (Some(r), Some(s)) => Some(Tensor::cat(vec![r, s], 1)),
            (r, _) => r,
        };
        // After the gate, so a gated-off thing stays 0 in both.
        let relative = relative.map(|r| self.with_near(r));
        let objects = self.object_tokens(&state);
        let arm = match &objects {
            Some((_, arm_dim)) => state.narrow(1, 0, *arm_dim),
            None => state,
        };
        let arm = match relative {
            Some(r) => Tensor::cat(vec![arm, r], 1),
            None => arm,
        };
        let state = self.state_proj.forward(arm);
        let pos = self.token_positions.val();
        let text = text.unsqueeze_dim::<3>(1) + pos.clone().narrow(0, 0, 1).unsqueeze_dim(0);
        let state = state.unsqueeze_dim::<3>(1) + pos.narrow(0, 1, 1).unsqueeze_dim(0);
        let mut tokens: Vec<Tensor<3>> = images.into_iter().collect();
        tokens.extend([text, state]);
        tokens.extend(objects.map(|(t, _)| t));
        Encoded {
            tokens: Tensor::cat(tokens, 1),
            aux,
            keypoints,
        }
    }

    /// `[B, 3·things]`: each [`Self::relative`] thing's position minus the hand's, in
    /// decimetres, from the (normalized) state; `None` when off.
    fn hand_relative(&self, state: &Tensor<2>) -> Option<Tensor<2>> {
        let h = self
            .hand_eye
            .as_ref()
            .filter(|_| !self.relative.is_empty())?;
        let metres =
            |i: usize, shift: f32, scale: f32| state.clone().narrow(1, i, 1) * scale + shift;
        let metres = &metres;
        let columns = self
            .relative
            .iter()
            .flat_map(|t| {
                (0..3).map(move |a| {
                    let thing = metres(t.state[a], t.shift[a], t.scale[a]);
                    let hand = metres(h.hand[a], h.hand_shift[a], h.hand_scale[a]);
                    (thing - hand) * RELATIVE_PER_M
                })
            })
            .collect();
        Some(Tensor::cat(columns, 1))
    }

    /// `[B, 3·slots]`: each slot's softmax-weighted mean of the things' relative positions
    /// `relative` `[B, 3·things]` ([`VlaConfig::slots`]), the weights from the instruction
    /// features `text` `[B, d]`; `None` without slots.
    fn slots(&self, text: &Tensor<2>, relative: Tensor<2>) -> Option<Tensor<2>> {
        let proj = self.slot_logits.as_ref()?;
        let [b, _] = text.dims();
        let things = self.relative.len();
        let slots = proj.weight.dims()[1] / things;
        let weights = burn::tensor::activation::softmax(
            proj.forward(text.clone()).reshape([b, slots, things]),
            2,
        );
        let positions = relative.reshape([b, things, 3]);
        Some(weights.matmul(positions).reshape([b, slots * 3]))
    }

    /// The state gate's factors from its logits ([`VlaConfig::state_gate_linear`],
    /// [`VlaConfig::state_gate_floor`]).
    fn gate_factors(&self, logits: Tensor<2>) -> Tensor<2> {
        let logits = self.per_thing_logits(logits);
        if self.state_gate_linear {
            logits + 1.0
        } else {
            let floor = self.state_gate_floor;
            burn::tensor::activation::sigmoid(logits) * (2.0 * (1.0 - floor)) + floor
        }
    }

    /// [`VlaConfig::state_gate_per_thing`]: each lifted thing's entries get the mean of
    /// their logits `[B, state_dim]`; other entries keep theirs.
    fn per_thing_logits(&self, logits: Tensor<2>) -> Tensor<2> {
        if !self.state_gate_per_thing || self.relative.is_empty() {
            return logits;
        }
        let n = logits.dims()[1];
        // One small matrix (state_dim², ~50²) applied to the logits: identity outside the
        // things, a 1/3 block within each.
        let mut mean = vec![0.0f32; n * n];
        let mut tied = vec![false; n];
        for t in &self.relative {
            for &i in &t.state {
                tied[i] = true;
                for &j in &t.state {
                    mean[j * n + i] = 1.0 / 3.0;
                }
            }
        }
        for (i, _) in tied.iter().enumerate().filter(|(_, t)| !**t) {
            mean[i * n + i] = 1.0;
        }
        let mean = Tensor::<2>::from_data(TensorData::new(mean, [n, n]), &logits.device());
        logits.matmul(mean)
    }

    /// What the model reads of the state for one instruction, from its features `[1, d]`
    /// ([`Self::encode_text`]): the gate and the slots' weights (`mulli policy explain`).
    pub fn read_instruction(&self, features: Tensor<2>) -> InstructionReading {
        let values = |t: Tensor<2>| -> Vec<f32> {
            t.into_data()
                .convert::<f32>()
                .try_into_vec()
                .unwrap_or_default()
        };
        // The state's part of a reading gate is 0 at the mean state: the text's alone.
        let gate = (self.state_gate.as_ref())
            .map(|g| values(self.gate_factors(g.forward(features.clone()))));
        let things = self.relative.len();
        let slots = match &self.slot_logits {
            Some(proj) if things > 0 => {
                let w = values(burn::tensor::activation::softmax(
                    proj.forward(features)
                        .reshape([proj.weight.dims()[1] / things, things]),
                    1,
                ));
                w.chunks(things).map(<[f32]>::to_vec).collect()
            }
            _ => Vec::new(),
        };
        InstructionReading {
            gate,
            slots,
            things: self.relative.iter().map(|t| t.thing).collect(),
        }
    }

    /// The relative columns `[B, n]` (decimetres), followed by their near encoding
    /// ([`VlaConfig::relative_near`]) when it is on: `[B, 2n]`.
    fn with_near(&self, relative: Tensor<2>) -> Tensor<2> {
        match self.relative_near {
            Some(near) => {
                let n = burn::tensor::activation::tanh(relative.clone() / near);
                Tensor::cat(vec![relative, n], 1)
            }
            None => relative,
        }
    }

    /// Each sample's instruction features `[B, d]`. An instruction encoded before
    /// ([`Self::encode_text`], [`TextInput::Encoded`]) is not encoded again.
    fn instruction_features(&self, text: TextInput) -> Tensor<2> {
        match text {
            TextInput::Encoded { features, index } => features.select(0, index),
            TextInput::Bytes { ref index, .. } | TextInput::Embeddings { ref index, .. } => {
                let index = index.clone();
                self.encode_text(text).select(0, index)
            }
        }
    }

    /// The features `[U, d]` of the distinct instructions of `text` (one row each, before
    /// `index` picks them per sample): what [`TextInput::Encoded`] carries.
    pub fn encode_text(&self, text: TextInput) -> Tensor<2> {
        match text {
            TextInput::Bytes { tokens, mask, .. } => {
                let enc = self
                    .bytes
                    .as_ref()
                    .expect("a byte-level model gets byte tokens (checked by the caller)");
                let [_, len] = tokens.dims();
                let mut e = enc.tokens.forward(tokens)
                    + enc.positions.val().narrow(0, 0, len).unsqueeze_dim(0);
                if let Some(layers) = &enc.layers {
                    let pad: Tensor<2, Bool> = mask.clone().lower_elem(0.5);
                    e = layers.forward(TransformerEncoderInput::new(e).mask_pad(pad));
                }
                let m = mask.unsqueeze_dim::<3>(2);
                let count = m.clone().sum_dim(1).clamp_min(1.0);
                (e * m).sum_dim(1).div(count).flatten(1, 2)
            }
            TextInput::Embeddings { features, .. } => self
                .text_proj
                .as_ref()
                .expect("a pretrained-text model gets embeddings (checked by the caller)")
                .forward(features),
            TextInput::Encoded { features, .. } => features,
        }
    }

    /// Image tokens `[B, image_tokens (+ cameras keypoint tokens), d]` of images
    /// `[B, cameras, 3, H, W]`, and the keypoints when the model has them.
    /// The image and keypoint tokens (none when the images feed perception only: a branch
    /// that no loss reaches stays out of the autodiff graph, where burn keeps it, and the
    /// steps slowed down threefold over a run) and the keypoints.
    fn encode_images(
        &self,
        proj: &Linear,
        images: Tensor<5>,
    ) -> (Option<Tensor<3>>, Option<KeypointOut>) {
        let [b, cams, ch, h, w] = images.dims();
        let d = self.d_model;
        // All cameras through the shared encoder at once.
        let x = images.reshape([b * cams, ch, h, w]) * 2.0 - 1.0;
        let with_keypoints = self.keypoints.is_some();
        let with_context = self
            .keypoints
            .as_ref()
            .is_some_and(|k| !k.context.is_empty());
        // The stride-4 map the keypoints read and the later stages' maps, channels-last.
        let mut keymap: Option<Tensor<4>> = None;
        let mut later: Vec<Tensor<4>> = Vec::new();
        let grid: Tensor<3> = if self.patches.is_empty() {
            let mut x = x;
            for (stage, block) in self.blocks.iter().enumerate() {
                if stage == self.keypoint_stage && with_keypoints {
                    keymap = Some(x.clone().permute([0, 2, 3, 1]));
                }
                x = block.forward(x);
                if stage >= self.keypoint_stage && with_context {
                    later.push(x.clone().permute([0, 2, 3, 1]));
                }
            }
            if keymap.is_none() && with_keypoints {
                keymap = Some(x.clone().permute([0, 2, 3, 1]));
            }
            let [_, c, gh, gw] = x.dims();
            x.reshape([b * cams, c, gh * gw]).swap_dims(1, 2)
        } else {
            let mut x = x.permute([0, 2, 3, 1]);
            for (stage, block) in self.patches.iter().enumerate() {
                if stage == self.keypoint_stage && with_keypoints {
                    keymap = Some(x.clone());
                }
                x = block.forward(x);
                if stage >= self.keypoint_stage && with_context {
                    later.push(x.clone());
                }
            }
            if keymap.is_none() && with_keypoints {
                keymap = Some(x.clone());
            }
            let [_, gh, gw, c] = x.dims();
            x.reshape([b * cams, gh * gw, c])
        };
        let per_camera = grid.dims()[1];
        let positions = self
            .image_positions
            .as_ref()
            .expect("built with image_proj")
            .val();
        let mut images = (!self.images_perception_only).then(|| {
            proj.forward(grid).reshape([b, cams * per_camera, d]) + positions.unsqueeze_dim(0)
        });
        let mut out = None;
        if let (Some(kp), Some(map)) = (&self.keypoints, keymap) {
            let side = map.dims()[1];
            let heat = kp.heat(map, later); // [B·cams, S·S, K]
            let k = heat.dims()[2];
            let xy = spatial_softmax(heat.clone(), side).reshape([b * cams, 2 * k]);
            images = images.map(|grid| {
                let tokens = kp.proj.forward(xy.clone()).reshape([b, cams, d])
                    + kp.positions.val().unsqueeze_dim(0);
                Tensor::cat(vec![grid, tokens], 1)
            });
            let labelled = kp.absent.as_ref().map(|absent| {
                let p = self.pixel_targets;
                let per_camera = heat.clone().reshape([b, cams, side * side, k]);
                let heat = Tensor::cat(
                    self.pixel_cameras
                        .iter()
                        .enumerate()
                        .map(|(j, &c)| {
                            per_camera
                                .clone()
                                .narrow(1, c, 1)
                                .narrow(3, j * p, p)
                                .reshape([b, side * side, p])
                        })
                        .collect(),
                    2,
                );
                let xy = peak_softmax(heat.clone(), side);
                let n = heat.dims()[2];
                let heat = Tensor::cat(
                    vec![heat, absent.val().unsqueeze_dim::<3>(0).repeat_dim(0, b)],
                    1,
                );
                let prob = burn::tensor::activation::softmax(heat.clone(), 1);
                let seen = prob.narrow(1, side * side, 1).reshape([b, n]).neg() + 1.0;
                Labelled { heat, xy, seen }
            });
            out = Some(KeypointOut {
                xy: xy.reshape([b, cams * 2 * k]),
                labelled,
            });
        }
        (images, out)
    }

    /// The object tokens `[B, objects, d]` of a (normalized, perception-applied) state
    /// `[B, state_dim]` and the width of the arm part before them; `None` without object
    /// tokens.
    fn object_tokens(&self, state: &Tensor<2>) -> Option<(Tensor<3>, usize)> {
        let ids = self.object_ids.as_ref()?;
        let sizes: Vec<usize> = self
            .object_proj
            .iter()
            .map(|p| p.weight.val().dims()[0])
            .collect();
        let [b, sd] = state.dims();
        let arm = sd - sizes.iter().sum::<usize>();
        let mut at = arm;
        let tokens: Vec<Tensor<3>> = self
            .object_proj
            .iter()
            .zip(&sizes)
            .map(|(proj, &n)| {
                let t = proj.forward(state.clone().narrow(1, at, n));
                at += n;
                t.reshape([b, 1, self.d_model])
            })
            .collect();
        Some((Tensor::cat(tokens, 1) + ids.val().unsqueeze_dim(0), arm))
    }

    /// Whether the model has an auxiliary head (see [`VlaConfig::aux_dim`]).
    pub fn has_aux(&self) -> bool {
        self.aux.is_some()
    }

    /// Run the fusion transformer on observation tokens plus `H` action tokens and read the
    /// action outputs `[B, H, action_dim]`.
    fn decode(&self, prefix: Tensor<3>, actions: Tensor<3>) -> Tensor<3> {
        let [b, p, d] = prefix.dims();
        let pos = self
            .token_positions
            .val()
            .narrow(0, 2, self.chunk)
            .unsqueeze_dim(0);
        let x = Tensor::cat(vec![prefix, actions + pos], 1);
        let y = self.fusion.forward(TransformerEncoderInput::new(x));
        let y = y.narrow(1, p, self.chunk).reshape([b * self.chunk, d]);
        self.out
            .forward(self.out_norm.forward(y))
            .reshape([b, self.chunk, self.action_dim])
    }

    fn queries(&self, b: usize) -> Tensor<3> {
        self.queries.val().unsqueeze_dim::<3>(0).repeat_dim(0, b)
    }

    /// L1 head: the normalized action chunk.
    pub fn forward_l1(&self, prefix: Tensor<3>) -> Tensor<3> {
        let b = prefix.dims()[0];
        let q = self.queries(b);
        self.decode(prefix, q)
    }

    /// Flow head: the velocity at noisy actions `x_t` `[B, H, A]` and times `t` `[B]`.
    pub fn velocity(&self, prefix: Tensor<3>, x_t: Tensor<3>, t: &[f32]) -> Tensor<3> {
        let flow = self
            .flow
            .as_ref()
            .expect("velocity() needs the flow head (checked by the caller)");
        let [b, h, a] = x_t.dims();
        let device = x_t.device();
        let temb = Tensor::<2>::from_data(
            TensorData::new(time_embedding(t, self.d_model), [b, self.d_model]),
            &device,
        );
        let temb = flow
            .time2
            .forward(flow.act.forward(flow.time1.forward(temb)));
        let tokens = flow
            .action_in
            .forward(x_t.reshape([b * h, a]))
            .reshape([b, h, self.d_model])
            + temb.unsqueeze_dim(1)
            + self.queries(b);
        self.decode(prefix, tokens)
    }

    /// The training loss on normalized `target` actions `[B, H, A]`, counting only steps whose
    /// `valid` mask `[B, H]` is 1 (chunks running past an episode's end are padded). The flow
    /// head needs `noise` `[B, H, A]` and times `t` in [0, 1] per sample, drawn by the caller
    /// from its seeded generator.
    pub fn loss(
        &self,
        input: VlaInput,
        target: Tensor<3>,
        valid: Tensor<2>,
        flow_sample: Option<(Tensor<3>, Vec<f32>)>,
    ) -> Tensor<1> {
        self.losses(input, target, valid, flow_sample, None, None)
            .action
    }

    /// [`Self::loss`], plus the auxiliary loss (mean L1 against normalized `aux_target`
    /// `[B, aux_dim]`) when both the target and the auxiliary head are there, and the pixel
    /// loss when both the labels and labelled keypoints are.
    pub fn losses(
        &self,
        input: VlaInput,
        target: Tensor<3>,
        valid: Tensor<2>,
        flow_sample: Option<(Tensor<3>, Vec<f32>)>,
        aux_target: Option<Tensor<2>>,
        pixels: Option<PixelTargets>,
    ) -> Losses {
        let Encoded {
            tokens: prefix,
            aux: pred,
            keypoints,
        } = self.encode_parts(input, Perception::Mixed);
        let aux = match (pred, aux_target) {
            (Some(pred), Some(t)) => Some((pred - t).abs().mean()),
            _ => None,
        };
        let pixel = match (keypoints, pixels) {
            (
                Some(KeypointOut {
                    labelled: Some(l), ..
                }),
                Some(t),
            ) => Some(pixel_loss(l.heat, l.xy, t, self.pixel_cameras.len())),
            _ => None,
        };
        let [b, h, a] = target.dims();
        let mask = valid.reshape([b, h, 1]);
        let denom = mask.clone().sum().clamp_min(1.0) * (a as f32);
        let err = match (self.head(), flow_sample) {
            (Head::L1, _) => (self.forward_l1(prefix) - target).abs(),
            (Head::Flow, Some((noise, t))) => {
                let tt = Tensor::<1>::from_data(TensorData::new(t.clone(), [b]), &target.device())
                    .reshape([b, 1, 1]);
                let x_t = noise.clone() * tt.clone() + target.clone() * (tt.neg() + 1.0);
                let u = noise - target;
                let v = self.velocity(prefix, x_t, &t);
                (v - u).powi_scalar(2)
            }
            (Head::Flow, None) => panic!("the flow head's loss needs noise and times"),
        };
        Losses {
            action: (err * mask).sum().div(denom),
            aux,
            pixel,
        }
    }

    /// The share of each training batch (the last samples) that is given the perception
    /// head's predictions in the perceived state entries instead of the true values
    /// ([`VlaConfig::perceived`]); 0.5 unless set.
    /// `lifted` is the share for the entries the lift places (the labelled things'
    /// positions; the same as `share` when `None`).
    pub fn with_perceived_share(mut self, share: f32, lifted: Option<f32>) -> Self {
        self.perceived_share = share.clamp(0.0, 1.0);
        self.lifted_share = lifted.unwrap_or(share).clamp(0.0, 1.0);
        self
    }

    /// Caps how far a prediction that replaces the truth in training may be from it: entry
    /// `j` of the perceived entries to `truth ± cap[j]` (normalized units; `f32::INFINITY`
    /// leaves an entry as predicted). Empty = no cap. Training only, like the shares.
    pub fn with_perceived_cap(mut self, cap: Vec<f32>) -> Self {
        self.perceived_cap = cap;
        self
    }

    /// At inference, keep the given values of the perceived entries flagged in `oracle`
    /// (one flag per entry, [`VlaConfig::perceived`] of them) instead of the perception's
    /// predictions; empty = off. Why: given the true positions of some things, an
    /// evaluation tells how much of the failures the perception of those things causes.
    pub fn with_oracle(mut self, oracle: Vec<bool>) -> Result<Self, PolicyError> {
        if !oracle.is_empty() && oracle.len() != self.perceived {
            return Err(PolicyError::Config(format!(
                "an oracle of {} entries for a model that perceives {}",
                oracle.len(),
                self.perceived
            )));
        }
        self.oracle = oracle;
        Ok(self)
    }

    /// Whether [`Self::with_oracle`] set any entry.
    pub fn has_oracle(&self) -> bool {
        !self.oracle.is_empty()
    }

    /// The cap of [`Self::with_perceived_cap`] (empty when off).
    pub fn perceived_cap(&self) -> &[f32] {
        &self.perceived_cap
    }

    /// Which perceived entries of a training batch of `b` samples get the predictions,
    /// `[b · perceived]` row-major: for the entries the lift places, those of the last
    /// `lifted_share` of the samples; for the others, of the last `perceived_share`.
    pub fn perceived_mask(&self, b: usize) -> Vec<bool> {
        let keep = |share: f32| b - ((b as f32 * share).round() as usize).min(b);
        let (rest, lifted) = (keep(self.perceived_share), keep(self.lifted_share));
        let k = self.perceived;
        let is_lifted = |j: usize| {
            self.aux_select
                .get(j)
                .is_some_and(|&i| i as usize >= self.aux_select.len())
        };
        (0..b)
            .flat_map(|i| (0..k).map(move |j| (i, j)))
            .map(|(i, j)| i >= if is_lifted(j) { lifted } else { rest })
            .collect()
    }

    /// The normalized action chunk `[B, H, A]`. The flow head integrates from `noise`
    /// (required for it, ignored by L1) at t = 1 to t = 0.
    pub fn predict(&self, input: VlaInput, noise: Option<Tensor<3>>) -> Tensor<3> {
        self.predict_perceiving(input, noise).0
    }

    /// [`Self::predict`], and the perceived state entries `[B, perceived]` (normalized) the
    /// chunk was predicted from, when the model perceives ([`VlaConfig::perceived`]).
    pub fn predict_perceiving(
        &self,
        input: VlaInput,
        noise: Option<Tensor<3>>,
    ) -> (Tensor<3>, Option<Tensor<2>>) {
        let encoded = self.encode_parts(input, Perception::Predicted);
        let perceived = encoded.aux.filter(|_| self.perceived > 0);
        let prefix = encoded.tokens;
        let chunk = match (self.head(), noise) {
            (Head::L1, _) => self.forward_l1(prefix),
            (Head::Flow, Some(mut x)) => {
                let b = x.dims()[0];
                let dt = 1.0 / self.flow_steps as f32;
                for k in 0..self.flow_steps {
                    let t = 1.0 - k as f32 * dt;
                    let v = self.velocity(prefix.clone(), x.clone(), &vec![t; b]);
                    x = x - v * dt;
                }
                x
            }
            (Head::Flow, None) => panic!("the flow head predicts from noise"),
        };
        (chunk, perceived)
    }

    /// Stops gradient tracking of the parameters no loss reaches in a step: with the images
    /// for perception only, the image and keypoint tokens' projections; in a control step
    /// (no images) also the stem, the keypoints and the auxiliary head. Why: each step's
    /// model fork makes every tracked parameter a new autodiff leaf, and burn keeps the
    /// leaves that no backward pass consumes — the steps slowed down over a run, 3× after a
    /// few thousand. Training calls it before every step (the flag is not saved).
    pub fn without_unused_grads(mut self, control_step: bool) -> Self {
        if !self.images_perception_only {
            return self;
        }
        self.image_proj = self.image_proj.map(Module::no_grad);
        self.image_positions = self.image_positions.map(Module::no_grad);
        self.keypoints = self.keypoints.map(|mut kp| {
            kp.proj = kp.proj.no_grad();
            kp.positions = kp.positions.no_grad();
            if control_step { kp.no_grad() } else { kp }
        });
        if control_step {
            self.blocks = self.blocks.no_grad();
            self.patches = self.patches.no_grad();
            self.aux = self.aux.map(Module::no_grad);
        }
        self
    }

    /// The state gate ([`VlaConfig::state_gate`]) back to its start: every factor 1 (its
    /// weights and biases zero, their parameter ids kept so the optimizer's state and a
    /// checkpoint still line up). Used where the control steps begin
    /// ([`crate::TrainConfig::reopen_gate`]). A model without a gate is returned as is.
    pub fn reopen_gate(mut self) -> Self {
        let open = |l: Linear| -> Linear {
            let zero = |t: Tensor<2>| t.zeros_like().require_grad();
            Linear {
                weight: l.weight.map(zero),
                bias: l
                    .bias
                    .map(|b| b.map(|t: Tensor<1>| t.zeros_like().require_grad())),
            }
        };
        self.state_gate = self.state_gate.map(open);
        self.state_gate_state = self.state_gate_state.map(open);
        self
    }

    /// The perceived state entries `[B, perceived]` (normalized) of a batch with images,
    /// without running the fusion; `None` when the model perceives nothing.
    pub fn perceive(&self, input: VlaInput) -> Option<Tensor<2>> {
        self.encode_parts(input, Perception::Predicted)
            .aux
            .filter(|_| self.perceived > 0)
    }

    pub fn chunk(&self) -> usize {
        self.chunk
    }

    pub fn action_dim(&self) -> usize {
        self.action_dim
    }
}

/// Re-draw every weight from our own seeded stream, so the same seed gives the same model
/// whatever else the process does (burn's generator is global: concurrent users would perturb
/// it). Distributions follow burn's and PyTorch's defaults: linear and conv weights and biases
/// uniform in ±1/sqrt(fan_in), embeddings N(0, 1), learned positions and queries N(0, 0.02);
/// norm scales and shifts keep their constant 1 and 0; the state gate starts at 0 (open).
fn seeded_init(model: &mut Vla, seed: u64) {
    use burn::store::{ModuleSnapshot, bridge};
    use mulli_core::rng::{self, RngExt};
    let snaps = model.collect(None, None, false);
    let shapes: std::collections::BTreeMap<String, Vec<usize>> = snaps
        .iter()
        .map(|t| (t.name.clone(), t.shape.to_vec()))
        .collect();
    let tensors = snaps
        .iter()
        .enumerate()
        .filter(|(_, t)| !(t.name.ends_with("gamma") || t.name.ends_with("beta")))
        .map(|(i, t)| {
            let shape = t.shape.to_vec();
            let n: usize = shape.iter().product();
            let mut r = rng::substream(seed, "vla-init", i as u64);
            // fan_in from the layer's weight: linear [in, out], conv [out, in, k, k].
            let fan_in = |w: &[usize]| match w.len() {
                2 => w[0],
                4 => w[1] * w[2] * w[3],
                _ => w.iter().product::<usize>().max(1),
            };
            let name = t.name.as_str();
            let values: Vec<f32> = if name.ends_with("ray_trust.bias") {
                // σ(2) = 0.88: the ray estimate starts nearly where it took over before.
                vec![2.0; n]
            } else if name.ends_with("ray_trust.weight") {
                vec![0.0; n]
            } else if name.starts_with("state_gate") || name.starts_with("slot_logits") {
                // The gate starts open (2σ(0) = 1): the model begins as the ungated one;
                // a slot starts as the mean of all things and learns whom to point at.
                vec![0.0; n]
            } else if name.ends_with("bias") {
                let w = shapes
                    .get(&format!(
                        "{}weight",
                        name.strip_suffix("bias").unwrap_or(name)
                    ))
                    .map_or(1, |w| fan_in(w));
                let b = 1.0 / (w as f32).sqrt();
                (0..n).map(|_| r.random_range(-b..=b)).collect()
            } else if name.ends_with("tokens.weight") {
                (0..n).map(|_| crate::data::normal(&mut r)).collect()
            } else if name.ends_with("weight") {
                let b = 1.0 / (fan_in(&shape) as f32).sqrt();
                (0..n).map(|_| r.random_range(-b..=b)).collect()
            } else {
                (0..n).map(|_| 0.02 * crate::data::normal(&mut r)).collect()
            };
            bridge::from_data(TensorData::new(values, shape), t.name.clone(), t.param_id)
        })
        .collect();
    model.apply(tensors, None, None, false);
}

/// Sinusoidal embedding of flow times, `[t.len() * d]` row-major (half sines, half cosines).
fn time_embedding(t: &[f32], d: usize) -> Vec<f32> {
    let half = d / 2;
    let mut out = Vec::with_capacity(t.len() * d);
    for &ti in t {
        let freqs = (0..half).map(|k| (-(10_000f32).ln() * k as f32 / half as f32).exp());
        let args: Vec<f32> = freqs.map(|f| ti * 1000.0 * f).collect();
        out.extend(args.iter().map(|a| a.sin()));
        out.extend(args.iter().map(|a| a.cos()));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ByteTokenizer;
    use burn::optim::{AdamWConfig, GradientsParams};

    /// Random test inputs from our own seeded stream: burn's generator is global and drawn
    /// only by `Vla::new` (under its lock), so concurrent tests cannot perturb a seeded init.
    fn random<const D: usize>(shape: [usize; D], uniform: bool, device: &Device) -> Tensor<D> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let mut r =
            mulli_core::rng::substream(7, "test-input", CALLS.fetch_add(1, Ordering::Relaxed));
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                if uniform {
                    mulli_core::rng::RngExt::random::<f32>(&mut r)
                } else {
                    crate::data::normal(&mut r)
                }
            })
            .collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    pub(crate) fn tiny() -> VlaConfig {
        VlaConfig {
            image_size: 32,
            chunk: 4,
            text_len: 16,
            d_model: 32,
            d_ff: 64,
            n_layers: 1,
            conv_channels: vec![8, 16, 16],
            ..VlaConfig::default()
        }
    }

    /// A tiny model whose last 3 of 5 state entries are perceived (4 keypoints).
    fn perceiving() -> VlaConfig {
        VlaConfig {
            keypoints: 4,
            aux_dim: 3,
            perceived: 3,
            state_dim: 5,
            ..tiny()
        }
    }

    fn batch(config: &VlaConfig, b: usize, device: &Device) -> VlaInput {
        let s = config.image_size;
        let tok = ByteTokenizer::new(config.text_len);
        let texts = ["open the drawer", "서랍을 열어줘"];
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        for t in texts {
            let (t, n) = tok.encode(t);
            ids.extend(t.iter().map(|&v| v as i64));
            mask.extend((0..config.text_len).map(|k| if k < n { 1.0f32 } else { 0.0 }));
        }
        let index: Vec<i64> = (0..b as i64).map(|i| i % 2).collect();
        VlaInput {
            images: (config.cameras > 0)
                .then(|| random([b, config.cameras, 3, s, s], true, device)),
            text: TextInput::Bytes {
                tokens: Tensor::from_data(TensorData::new(ids, [2, config.text_len]), device),
                mask: Tensor::from_data(TensorData::new(mask, [2, config.text_len]), device),
                index: Tensor::from_data(TensorData::new(index, [b]), device),
            },
            state: random([b, config.state_dim], false, device),
            shift: None,
        }
    }

    #[test]
    fn both_heads_give_an_action_chunk_per_sample() {
        let device = Device::flex();
        for head in [Head::L1, Head::Flow] {
            let config = VlaConfig { head, ..tiny() };
            let model = Vla::new(&config, 1, &device).unwrap();
            let noise = random([3, config.chunk, config.action_dim], false, &device);
            let out = model.predict(batch(&config, 3, &device), Some(noise));
            assert_eq!(out.dims(), [3, config.chunk, config.action_dim]);
            let values: Vec<f32> = out.into_data().try_to_vec().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{head:?}");
        }
    }

    #[test]
    fn the_patch_stem_gives_a_grid_of_the_configured_side() {
        let device = Device::flex();
        // 24 → 12 → 6 → 3 and, odd, 25 → 12 → 6 → 3 (the last row and column are dropped).
        for image_size in [24, 25] {
            let config = VlaConfig {
                image_size,
                stem: ImageStem::Patch,
                ..tiny()
            };
            assert_eq!(config.grid_side(), 3);
            let model = Vla::new(&config, 1, &device).unwrap();
            let tokens = model.encode(batch(&config, 2, &device));
            assert_eq!(
                tokens.dims(),
                [2, config.image_tokens() + 2, config.d_model],
                "{image_size}"
            );
            let out = model.predict(batch(&config, 2, &device), None);
            let values: Vec<f32> = out.into_data().try_to_vec().unwrap();
            assert!(values.iter().all(|v| v.is_finite()));
        }
        // Patches see only their own 2×2 block: moving one pixel changes exactly one token.
        let config = VlaConfig {
            image_size: 24,
            cameras: 1,
            stem: ImageStem::Patch,
            ..tiny()
        };
        let model = Vla::new(&config, 1, &device).unwrap();
        let input = batch(&config, 1, &device);
        let images = input.images.clone().unwrap();
        let mut pixels: Vec<f32> = images.clone().into_data().try_to_vec().unwrap();
        let before: Vec<f32> = model
            .encode(input.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        pixels[0] = 1.0 - pixels[0]; // camera 0, red, row 0, column 0: grid cell (0, 0)
        let moved = VlaInput {
            images: Some(Tensor::from_data(
                TensorData::new(pixels, images.dims()),
                &device,
            )),
            ..input
        };
        let after: Vec<f32> = model.encode(moved).into_data().try_to_vec().unwrap();
        let d = config.d_model;
        let changed: Vec<usize> = (0..before.len() / d)
            .filter(|t| (0..d).any(|k| (before[t * d + k] - after[t * d + k]).abs() > 1e-6))
            .collect();
        assert_eq!(changed, vec![0]);
    }

    #[test]
    fn spatial_softmax_finds_the_peak() {
        let device = Device::flex();
        // Two maps on a 4×4 grid: a sharp peak at row 3, column 1, and a flat map.
        let mut heat = vec![0.0f32; 16 * 2];
        heat[(3 * 4 + 1) * 2] = 60.0;
        let heat = Tensor::<3>::from_data(TensorData::new(heat, [1, 16, 2]), &device);
        let xy = spatial_softmax(heat, 4)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let close = |a: f32, b: f32| (a - b).abs() < 1e-4;
        assert!(close(xy[0], -0.25) && close(xy[1], 0.75), "{xy:?}");
        assert!(
            close(xy[2], 0.0) && close(xy[3], 0.0),
            "flat map → centre: {xy:?}"
        );
    }

    /// The keypoint map can be read after the first stem stage (stride 2): twice the side,
    /// the same outputs; stage 0 and stages past the stem are errors.
    #[test]
    fn keypoints_can_be_read_at_stride_two() {
        let device = Device::flex();
        for stem in [ImageStem::Conv, ImageStem::Patch] {
            let four = VlaConfig {
                stem,
                keypoints: 4,
                aux_dim: 3,
                ..tiny()
            };
            let two = VlaConfig {
                keypoint_stage: 1,
                ..four.clone()
            };
            assert!(two.keypoint_side() > four.keypoint_side(), "{stem:?}");
            let model = Vla::new(&two, 1, &device).unwrap();
            let input = batch(&two, 2, &device);
            assert_eq!(
                model.encode(input.clone()).dims(),
                [2, two.image_tokens() + two.cameras + 2, two.d_model]
            );
            assert_eq!(
                model.predict(input, None).dims(),
                [2, two.chunk, two.action_dim]
            );
        }
        for stage in [0, 9] {
            let err = VlaConfig {
                keypoints: 4,
                keypoint_stage: stage,
                ..tiny()
            }
            .rejection();
            assert!(err.contains("keypoint_stage"), "{err}");
        }
        let old: VlaConfig = serde_json::from_str(r#"{"keypoints": 4}"#).unwrap();
        assert_eq!(
            old.keypoint_stage, 2,
            "configs from before read at stride 4"
        );
        assert!(
            !serde_json::to_string(&old)
                .unwrap()
                .contains("keypoint_stage")
        );
    }

    /// With the images for perception only, the fusion reads the instruction and state
    /// tokens alone; given no images (a control step), the state's perceived entries are
    /// read as given; given images, perception fills them.
    #[test]
    fn images_for_perception_only_leave_two_tokens_and_may_be_absent() {
        let device = Device::flex();
        let config = VlaConfig {
            images_perception_only: true,
            ..perceiving()
        };
        let model = Vla::new(&config, 2, &device).unwrap();
        let input = batch(&config, 2, &device);
        assert_eq!(model.encode(input.clone()).dims(), [2, 2, config.d_model]);
        let blind = VlaInput {
            images: None,
            ..input.clone()
        };
        assert_eq!(model.encode(blind.clone()).dims(), [2, 2, config.d_model]);
        assert!(model.perceive(input.clone()).is_some());
        let out = |input: VlaInput| -> Vec<f32> {
            model.predict(input, None).into_data().try_to_vec().unwrap()
        };
        let mut v: Vec<f32> = blind.state.clone().into_data().try_to_vec().unwrap();
        v[4] += 3.0;
        let moved = VlaInput {
            state: Tensor::from_data(TensorData::new(v, [2, 5]), &device),
            ..blind.clone()
        };
        assert_ne!(
            out(moved),
            out(blind),
            "without images, perceived entries are read"
        );
        let err = VlaConfig {
            perceived: 0,
            aux_dim: 0,
            ..config
        }
        .rejection();
        assert!(err.contains("images_perception_only"), "{err}");
    }

    /// A perceiving model ignores the given values of its perceived state entries at
    /// inference (its aux head supplies them) but not the other entries; the config
    /// insists the perceived entries are exactly the auxiliary targets.
    #[test]
    fn perceived_state_entries_come_from_the_aux_head() {
        let device = Device::flex();
        let config = perceiving();
        let model = Vla::new(&config, 2, &device).unwrap();
        let input = batch(&config, 2, &device);
        let out = |state: Tensor<2>| -> Vec<f32> {
            let input = VlaInput {
                state,
                ..input.clone()
            };
            model.predict(input, None).into_data().try_to_vec().unwrap()
        };
        let base = out(input.state.clone());
        let shifted = |col: usize| {
            let mut v: Vec<f32> = input.state.clone().into_data().try_to_vec().unwrap();
            for row in 0..2 {
                v[row * 5 + col] += 3.0;
            }
            out(Tensor::from_data(TensorData::new(v, [2, 5]), &device))
        };
        for col in 2..5 {
            assert_eq!(shifted(col), base, "perceived entry {col} is not read");
        }
        assert_ne!(shifted(0), base, "proprioceptive entries are read");

        for (aux_dim, perceived, state_dim) in [(3, 2, 5), (0, 3, 5), (6, 6, 5)] {
            let bad = VlaConfig {
                keypoints: 4,
                aux_dim,
                perceived,
                state_dim,
                ..tiny()
            };
            let e = bad.rejection();
            assert!(e.contains("aux") || e.contains("perceived"), "{e}");
        }
    }

    /// With an oracle, the flagged perceived entries keep the given values (and are read);
    /// the others still come from the aux head. A flag list of the wrong length is an error.
    #[test]
    fn an_oracle_keeps_the_given_values_of_its_entries() {
        let device = Device::flex();
        let config = perceiving();
        let plain = Vla::new(&config, 2, &device).unwrap();
        let model = plain.clone().with_oracle(vec![false, true, false]).unwrap();
        let input = batch(&config, 2, &device);
        let out = |model: &Vla, shift: Option<usize>| -> Vec<f32> {
            let mut v: Vec<f32> = input.state.clone().into_data().try_to_vec().unwrap();
            if let Some(col) = shift {
                for row in 0..2 {
                    v[row * 5 + col] += 3.0;
                }
            }
            let input = VlaInput {
                state: Tensor::from_data(TensorData::new(v, [2, 5]), &device),
                ..input.clone()
            };
            model.predict(input, None).into_data().try_to_vec().unwrap()
        };
        let base = out(&model, None);
        assert_ne!(out(&model, Some(3)), base, "the oracle's entry is read");
        assert_eq!(
            out(&model, Some(2)),
            base,
            "the other perceived entries are not"
        );
        assert_eq!(out(&model, Some(4)), base);
        // All flags off is the plain model.
        let off = plain.clone().with_oracle(vec![false; 3]).unwrap();
        assert_eq!(out(&off, Some(3)), out(&plain, Some(3)));
        let e = plain.with_oracle(vec![true; 2]).unwrap_err().to_string();
        assert!(e.contains("2 entries") && e.contains("perceives 3"), "{e}");
    }

    #[test]
    fn lifted_entries_can_take_their_own_share_of_predictions() {
        let device = Device::flex();
        // Entries 0 and 2 from the lift of thing 0 (aux outputs 3 + 0, 3 + 2), 1 from the head.
        let config = VlaConfig {
            pixel_targets: 1,
            pixel_cameras: vec![0],
            aux_select: vec![3, 1, 5],
            ..perceiving()
        };
        let model = Vla::new(&config, 2, &device).unwrap();
        // Default: half the samples (the last) predicted, all entries alike.
        let half = model.clone().perceived_mask(4);
        let rows = |m: &[bool]| -> Vec<Vec<bool>> { m.chunks(3).map(<[bool]>::to_vec).collect() };
        assert_eq!(rows(&half), [[false; 3], [false; 3], [true; 3], [true; 3]]);
        // Lifted entries from the truth only; the head's in the last quarter.
        let split = model
            .with_perceived_share(0.25, Some(0.0))
            .perceived_mask(4);
        assert_eq!(
            rows(&split),
            [
                [false, false, false],
                [false, false, false],
                [false, false, false],
                [false, true, false]
            ]
        );
    }

    #[test]
    fn keypoints_add_one_token_per_camera_for_either_stem() {
        let device = Device::flex();
        for stem in [ImageStem::Conv, ImageStem::Patch] {
            let plain = VlaConfig { stem, ..tiny() };
            let config = VlaConfig {
                keypoints: 8,
                ..plain.clone()
            };
            let model = Vla::new(&config, 1, &device).unwrap();
            let tokens = model.encode(batch(&config, 2, &device));
            assert_eq!(
                tokens.dims(),
                [2, plain.image_tokens() + config.cameras + 2, config.d_model],
                "{stem:?}"
            );
            let out = model.predict(batch(&config, 2, &device), None);
            assert_eq!(out.dims(), [2, config.chunk, config.action_dim]);
        }
        // Too few stages for a stride-4 map.
        let bad = VlaConfig {
            keypoints: 8,
            conv_channels: vec![8],
            ..tiny()
        };
        let err = bad.rejection();
        assert!(err.contains("keypoints = 8"), "{err}");
        // Configs written before keypoints existed have none.
        let old: VlaConfig = serde_json::from_str(r#"{"stem": "patch"}"#).unwrap();
        assert_eq!(old.keypoints, 0);
    }

    #[test]
    fn a_model_without_cameras_has_no_stem_and_reads_text_and_state() {
        let device = Device::flex();
        let config = VlaConfig {
            cameras: 0,
            ..tiny()
        };
        let model = Vla::new(&config, 1, &device).unwrap();
        let with_cameras = Vla::new(&tiny(), 1, &device).unwrap();
        assert!(model.num_params() < with_cameras.num_params());
        let input = batch(&config, 3, &device);
        assert!(input.images.is_none());
        assert_eq!(
            model.encode(input.clone()).dims(),
            [3, 2, config.d_model],
            "instruction and state tokens"
        );
        for head in [Head::L1, Head::Flow] {
            let config = VlaConfig {
                head,
                ..config.clone()
            };
            let model = Vla::new(&config, 1, &device).unwrap();
            let noise = random([3, config.chunk, config.action_dim], false, &device);
            let out = model.predict(input.clone(), Some(noise));
            assert_eq!(out.dims(), [3, config.chunk, config.action_dim], "{head:?}");
        }
        // A model with cameras cannot be handed no images; a model without reads none.
        let images = batch(&tiny(), 3, &device).images;
        let ignored = VlaInput {
            images,
            ..input.clone()
        };
        assert_eq!(
            model
                .encode(ignored)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
            model.encode(input).into_data().try_to_vec::<f32>().unwrap()
        );
        let e = VlaConfig {
            keypoints: 4,
            ..config
        }
        .rejection();
        assert!(e.contains("no cameras"), "{e}");
    }

    #[test]
    fn object_tokens_split_the_end_of_the_state_into_one_token_per_object() {
        let device = Device::flex();
        // state_dim 15 in tiny(): 10 arm entries, then objects of 3 and 2 entries.
        let config = VlaConfig {
            object_tokens: vec![3, 2],
            ..tiny()
        };
        let plain = Vla::new(&tiny(), 1, &device).unwrap();
        let model = Vla::new(&config, 1, &device).unwrap();
        let input = batch(&config, 2, &device);
        let n = plain.encode(input.clone()).dims()[1];
        assert_eq!(
            model.encode(input.clone()).dims(),
            [2, n + 2, config.d_model]
        );
        let out = |input: VlaInput| -> Vec<f32> {
            model.predict(input, None).into_data().try_to_vec().unwrap()
        };
        let base = out(input.clone());
        for entry in 0..config.state_dim {
            let mut state: Vec<f32> = input.state.clone().into_data().try_to_vec().unwrap();
            state[entry] += 1.0;
            let moved = VlaInput {
                state: Tensor::from_data(TensorData::new(state, [2, config.state_dim]), &device),
                ..input.clone()
            };
            assert_ne!(out(moved), base, "state entry {entry} is read");
        }
        for bad in [vec![15], vec![3, 0], vec![8, 8]] {
            let e = VlaConfig {
                object_tokens: bad.clone(),
                ..tiny()
            }
            .rejection();
            assert!(e.contains("object_tokens"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let device = Device::flex();
        let input = batch(&tiny(), 2, &device);
        let predict = |seed| {
            Vla::new(&tiny(), seed, &device)
                .unwrap()
                .predict(input.clone(), None)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(predict(7), predict(7));
        assert_ne!(predict(7), predict(8));
    }

    #[test]
    fn bad_configs_are_errors() {
        let device = Device::flex();
        let err = |c: VlaConfig| Vla::new(&c, 0, &device).err().unwrap().to_string();
        let e = err(VlaConfig { chunk: 0, ..tiny() });
        assert!(e.contains("chunk = 0"), "{e}");
        let e = err(VlaConfig {
            conv_channels: vec![8, 12, 16],
            ..tiny()
        });
        assert!(e.contains("12"), "{e}");
        let e = err(VlaConfig {
            image_size: 9,
            ..tiny()
        });
        assert!(e.contains("too small"), "{e}");
        let e = err(VlaConfig {
            n_heads: 5,
            ..tiny()
        });
        assert!(e.contains("n_heads = 5"), "{e}");
    }

    #[test]
    fn padded_instruction_bytes_do_not_change_the_output() {
        // The mask must hide pad tokens from attention and pooling: the same text in a longer
        // token window gives the same prediction.
        let device = Device::flex();
        let config = tiny();
        let model = Vla::new(&config, 3, &device).unwrap();
        let make = |len: usize| {
            let tok = ByteTokenizer::new(len);
            let (ids, n) = tok.encode("open it");
            let mask: Vec<f32> = (0..len).map(|k| if k < n { 1.0 } else { 0.0 }).collect();
            TextInput::Bytes {
                tokens: Tensor::from_data(
                    TensorData::new(ids.iter().map(|&v| v as i64).collect(), [1, len]),
                    &device,
                ),
                mask: Tensor::from_data(TensorData::new(mask, [1, len]), &device),
                index: Tensor::from_data(TensorData::new(vec![0i64], [1]), &device),
            }
        };
        let base = batch(&config, 1, &device);
        let run = |text| {
            model
                .predict(
                    VlaInput {
                        text,
                        ..base.clone()
                    },
                    None,
                )
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (a, b) = (run(make(config.text_len)), run(make(10)));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }

    /// Images of camera 1 (camera 0 is noise) with a red and a green 4×4 square at random
    /// places on black, each left out one time in four, and the squares' centres as pixel
    /// labels `[B, 2, 2]` (off the image for a square left out).
    fn squares(b: usize, s: usize, r: &mut mulli_core::rng::Rng) -> (Vec<f32>, Vec<f32>) {
        use mulli_core::rng::RngExt;
        let mut images = Vec::with_capacity(b * 2 * 3 * s * s);
        let mut labels = Vec::with_capacity(b * 4);
        for _ in 0..b {
            images.extend((0..3 * s * s).map(|_| r.random::<f32>()));
            let mut img = vec![0.0f32; 3 * s * s];
            for ch in 0..2 {
                let (x0, y0) = (r.random_range(0..s - 4), r.random_range(0..s - 4));
                if r.random_range(0..4) == 0 {
                    labels.extend([-2.0, -2.0]);
                    continue;
                }
                for y in y0..y0 + 4 {
                    for x in x0..x0 + 4 {
                        img[(ch * s + y) * s + x] = 1.0;
                    }
                }
                let centre = |p: usize| 2.0 * (p as f32 + 2.0) / s as f32 - 1.0;
                labels.extend([centre(x0), centre(y0)]);
            }
            images.extend(img);
        }
        (images, labels)
    }

    /// Pixel labels train the first keypoints of the labelled camera onto the things: after
    /// a short training on random scenes, new scenes' squares are found to about a pixel,
    /// and the keypoints say which squares are not in the image.
    #[test]
    fn labelled_keypoints_learn_where_things_are() {
        let device = Device::flex().autodiff();
        let config = VlaConfig {
            cameras: 2,
            stem: ImageStem::Patch,
            keypoints: 3,
            pixel_targets: 2,
            pixel_cameras: vec![1],
            ..tiny()
        };
        let (s, side) = (config.image_size, config.keypoint_side());
        let mut model = Vla::new(&config, 3, &device).unwrap();
        let mut opt = AdamWConfig::new().init();
        let mut r = mulli_core::rng::substream(3, "squares", 0);
        let step = |model: &Vla, b: usize, r: &mut mulli_core::rng::Rng| {
            let (images, labels) = squares(b, s, r);
            let mut input = batch(&config, b, &device);
            input.images = Some(Tensor::from_data(
                TensorData::new(images, [b, 2, 3, s, s]),
                &device,
            ));
            let target = Tensor::zeros([b, config.chunk, config.action_dim], &device);
            let valid = Tensor::ones([b, config.chunk], &device);
            let pixels = PixelTargets::new(&labels, b, 2, side, &device);
            let l = model
                .losses(input, target, valid, None, None, Some(pixels))
                .pixel
                .expect("labelled keypoints");
            (l.loss, l.l1)
        };
        let before = step(&model, 32, &mut r).1.into_scalar::<f32>();
        for _ in 0..150 {
            let (loss, _) = step(&model, 16, &mut r);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(3e-3, model, grads);
        }
        let after = step(&model, 32, &mut r).1.into_scalar::<f32>();
        // Mean |error| per axis in pixels of the 32-px image.
        let px = |e: f32| e * s as f32 / 2.0;
        assert!(
            px(after) < 1.5 && after < 0.25 * before,
            "{:.2} px → {:.2} px",
            px(before),
            px(after)
        );
        // In view or not: the "not in view" cell decides for new scenes.
        let (images, labels) = squares(64, s, &mut r);
        let mut input = batch(&config, 64, &device);
        input.images = Some(Tensor::from_data(
            TensorData::new(images, [64, 2, 3, s, s]),
            &device,
        ));
        let seen: Vec<f32> = model
            .encode_parts(input, Perception::Predicted)
            .keypoints
            .and_then(|k| k.labelled)
            .expect("labelled keypoints")
            .seen
            .into_data()
            .try_to_vec()
            .unwrap();
        let right = seen
            .iter()
            .zip(labels.chunks_exact(2))
            .filter(|(p, uv)| (**p > 0.5) == (uv[0] > -1.5))
            .count();
        let absent = labels.chunks_exact(2).filter(|uv| uv[0] < -1.5).count();
        assert!(
            right >= 120 && absent >= 10,
            "{right}/128 right about being in view ({absent} not in view)"
        );
    }

    /// The near lift (hand + offset from the wrist keypoint) takes over exactly where the
    /// wrist sees the thing: elsewhere the arm's state cannot move the perceived position
    /// (the demos' "the thing is where the hand goes" shortcut), and where it sees it, it
    /// does.
    #[test]
    fn the_arm_moves_a_lifted_position_only_where_the_wrist_sees_the_thing() {
        let device = Device::flex();
        let config = VlaConfig {
            keypoints: 4,
            pixel_targets: 2,
            pixel_cameras: vec![0, 1],
            lift_reads_arm: true,
            aux_dim: 6,
            aux_select: (6..12).collect(),
            ..tiny()
        };
        let model = Vla::new(&config, 4, &device).unwrap();
        let head = model.aux.as_ref().expect("an aux head");
        let (b, p) = (3, 2);
        let xy = random([b, 2 * 2 * config.keypoints], false, &device);
        let labelled = |wrist_sees: f32| {
            let seen = Tensor::<2>::from_data(
                TensorData::new(
                    [1.0f32; 2]
                        .into_iter()
                        .chain([wrist_sees; 2])
                        .cycle()
                        .take(b * 2 * p)
                        .collect::<Vec<_>>(),
                    [b, 2 * p],
                ),
                &device,
            );
            Labelled {
                heat: random([b, 5, 2 * p], false, &device),
                xy: random([b, 2 * p, 2], true, &device),
                seen,
            }
        };
        let arm_dim = config.state_dim - config.perceived;
        let (arm1, arm2) = (
            random([b, arm_dim], false, &device),
            random([b, arm_dim], false, &device),
        );
        let select: Vec<i64> = config.aux_select.iter().map(|&i| i as i64).collect();
        let lifted = |l: &Labelled, arm: &Tensor<2>| -> Vec<f32> {
            head.forward(xy.clone(), Some(l), Some(arm.clone()), 2, &select, None)
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let unseen = labelled(0.0);
        assert_eq!(lifted(&unseen, &arm1), lifted(&unseen, &arm2));
        let seen = labelled(1.0);
        let (a, b) = (lifted(&seen, &arm1), lifted(&seen, &arm2));
        let moved = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            moved > 1e-3,
            "the arm's state does not reach the near lift: {a:?}"
        );
    }

    /// A hand camera 10 cm behind and 7 cm beside the hand looking along its z axis, as
    /// the lift's geometry (identity normalizations, the pose first in the state).
    fn hand_eye() -> HandEye {
        let eye = [0.07f32, 0.0, -0.10];
        let forward = {
            let d = [-0.07f32, 0.0, 0.18];
            let n = d.iter().map(|v| v * v).sum::<f32>().sqrt();
            d.map(|v| v / n)
        };
        let cross = |a: [f32; 3], b: [f32; 3]| {
            [
                a[1] * b[2] - a[2] * b[1],
                a[2] * b[0] - a[0] * b[2],
                a[0] * b[1] - a[1] * b[0],
            ]
        };
        let right = cross([1.0, 0.0, 0.0], forward);
        let n = right.iter().map(|v| v * v).sum::<f32>().sqrt();
        let right = right.map(|v| v / n);
        let down = cross(forward, right);
        let f = 1.0 / 37.5f32.to_radians().tan();
        let ray = [0, 1, 2].map(|r| [right[r] / f, down[r] / f, forward[r]]);
        HandEye {
            cameras: vec![HandCamera {
                ray,
                centre: eye,
                fit_px: 0.0,
                points: 0,
            }],
            hand: [0, 1, 2, 3, 4, 5, 6],
            hand_shift: [0.0; 7],
            hand_scale: [1.0; 7],
            thing_shift: vec![[0.0; 3]],
            thing_scale: vec![[1.0; 3]],
        }
    }

    #[test]
    fn the_ray_lift_places_a_thing_where_its_keypoint_points() {
        let device = Device::flex();
        let geometry = hand_eye();
        let camera = &geometry.cameras[0];
        // The hand upside down (z axis down, half a turn about x), 30 cm above a thing at
        // 3 cm, which the camera sees at (u, v): project it by hand.
        let hand = [0.5f32, 0.1, 0.33];
        let thing = [0.53f32, 0.06, 0.03];
        // World → hand frame of a half turn about x: (x, -y, -z).
        let local = [
            thing[0] - hand[0],
            -(thing[1] - hand[1]),
            -(thing[2] - hand[2]),
        ];
        let d = [0, 1, 2].map(|i| local[i] - camera.centre[i]);
        // Solve ray · (u, v, 1) ∥ d: with the orthonormal right/down/forward basis of
        // `hand_eye`, u = f·(d·right)/(d·forward) and likewise v.
        let f = 1.0 / 37.5f32.to_radians().tan();
        let col = |c: usize| [0, 1, 2].map(|r| camera.ray[r][c]);
        let dot = |a: [f32; 3], b: [f32; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let depth = dot(d, col(2));
        let (u, v) = (
            dot(d, col(0)) * f * f / depth,
            dot(d, col(1)) * f * f / depth,
        );
        assert!(u.abs() < 1.0 && v.abs() < 1.0, "({u}, {v}) in view");
        let xy = Tensor::<3>::from_data(TensorData::new(vec![u, v], [1, 1, 2]), &device);
        let pose = |q: [f32; 4]| {
            let v = vec![hand[0], hand[1], hand[2], q[0], q[1], q[2], q[3]];
            Tensor::<2>::from_data(TensorData::new(v, [1, 7]), &device)
        };
        let values =
            |t: Tensor<2>| -> Vec<f32> { t.into_data().convert::<f32>().try_to_vec().unwrap() };
        let arm = pose([1.0, 0.0, 0.0, 0.0]);
        // The fixed camera's estimate: far off in x and y, right in height.
        let far =
            Tensor::<3>::from_data(TensorData::new(vec![0.2, -0.2, 0.03], [1, 1, 3]), &device);
        let (near, valid, length) = lift_by_ray(&geometry, camera, xy.clone(), arm, &far);
        let near: Vec<f32> = near.into_data().convert::<f32>().try_into_vec().unwrap();
        for (a, b) in near.iter().zip(thing) {
            assert!((a - b).abs() < 1e-4, "lifted {near:?}, thing at {thing:?}");
        }
        assert_eq!(values(valid), [1.0]);
        // The ray's length is the camera's distance to the thing.
        let distance = dot(d, d).sqrt();
        assert!((values(length)[0] - distance).abs() < 1e-4, "{distance}");
        // The hand upright (identity): the same keypoint's ray goes up, never meeting the
        // height below; the lift gives way, and its output stays finite.
        let upright = pose([0.0, 0.0, 0.0, 1.0]);
        let (near, valid, _) = lift_by_ray(&geometry, camera, xy, upright, &far);
        assert_eq!(values(valid), [0.0]);
        let near: Vec<f32> = near.into_data().convert::<f32>().try_into_vec().unwrap();
        assert!(near.iter().all(|v| v.is_finite()), "{near:?}");
    }

    /// A two-camera model with the calibrated lift whose perceived entries are one thing's
    /// lifted x, y, z after the 7 arm entries.
    fn calibrated(hand_relative: bool) -> VlaConfig {
        VlaConfig {
            keypoints: 2,
            aux_dim: 3,
            perceived: 3,
            state_dim: 10,
            pixel_targets: 1,
            pixel_cameras: vec![0, 1],
            lift_reads_arm: true,
            aux_select: vec![3, 4, 5],
            hand_eye: Some(hand_eye()),
            state_gate: true,
            hand_relative,
            ..tiny()
        }
    }

    #[test]
    fn the_state_token_can_read_things_relative_to_the_hand() {
        let device = Device::flex();
        let model = Vla::new(&calibrated(true), 3, &device).unwrap();
        let state = Tensor::<2>::from_data(
            TensorData::new(
                vec![0.5f32, 0.1, 0.33, 1.0, 0.0, 0.0, 0.0, 0.53, 0.06, 0.03],
                [1, 10],
            ),
            &device,
        );
        let rel: Vec<f32> = model
            .hand_relative(&state)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        for (a, b) in rel.iter().zip([0.3f32, -0.4, -3.0]) {
            assert!((a - b).abs() < 1e-5, "{rel:?}: decimetres from the hand");
        }
        // The whole model runs with the wider state token, and without the option the
        // token is as before.
        let out = model.predict(batch(&calibrated(true), 2, &device), None);
        assert_eq!(out.dims(), [2, 4, 7]);
        // The near encoding: 2 cm is 0.2 dm, so 0.3 dm reads tanh(1.5).
        let near_config = VlaConfig {
            relative_near: Some(0.02),
            ..calibrated(true)
        };
        let near = Vla::new(&near_config, 3, &device).unwrap();
        let both: Vec<f32> = near
            .with_near(near.hand_relative(&state).unwrap())
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let want = [0.3f32, -0.4, -3.0, 1.5f32.tanh(), -(2.0f32.tanh()), -1.0];
        for (a, b) in both.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{both:?} against {want:?}");
        }
        assert_eq!(
            near.predict(batch(&near_config, 2, &device), None).dims(),
            [2, 4, 7]
        );
        assert_eq!(
            near.num_params() - model.num_params(),
            3 * near_config.d_model
        );
        assert_eq!(
            model.with_near(model.hand_relative(&state).unwrap()).dims(),
            [1, 3]
        );
        for bad in [Some(0.0), Some(-0.01), Some(f32::NAN)] {
            let e = VlaConfig {
                relative_near: bad,
                ..calibrated(true)
            }
            .rejection();
            assert!(
                e.contains("relative_near = ") && e.contains("positive"),
                "{e}"
            );
        }
        let e = VlaConfig {
            relative_near: Some(0.02),
            ..calibrated(false)
        }
        .rejection();
        assert!(e.contains("hand_relative = true (now false)"), "{e}");
        let plain = Vla::new(&calibrated(false), 3, &device).unwrap();
        assert!(plain.hand_relative(&state).is_none());
        assert!(plain.num_params() < model.num_params());
        // It needs the calibration, and a lifted thing among the perceived entries.
        let e = Vla::new(
            &VlaConfig {
                hand_eye: None,
                ..calibrated(true)
            },
            3,
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hand–eye calibration"), "{e}");
        let e = Vla::new(
            &VlaConfig {
                aux_select: vec![0, 1, 2],
                ..calibrated(true)
            },
            3,
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no lifted thing"), "{e}");
    }

    #[test]
    fn a_slot_points_at_the_thing_its_instruction_logits_name() {
        let device = Device::flex();
        // Two lifted things (entries 7..10 and 10..13), two slots.
        let config = VlaConfig {
            keypoints: 4,
            aux_dim: 6,
            perceived: 6,
            state_dim: 13,
            pixel_targets: 2,
            aux_select: vec![6, 7, 8, 9, 10, 11],
            hand_eye: Some(HandEye {
                thing_shift: vec![[0.0; 3]; 2],
                thing_scale: vec![[1.0; 3]; 2],
                ..hand_eye()
            }),
            slots: 2,
            ..calibrated(true)
        };
        let mut model = Vla::new(&config, 3, &device).unwrap();
        let state = Tensor::<2>::from_data(
            TensorData::new(
                vec![
                    0.5f32, 0.1, 0.33, 1.0, 0.0, 0.0, 0.0, 0.53, 0.06, 0.03, 0.3, -0.2, 0.1,
                ],
                [1, 13],
            ),
            &device,
        );
        let rel = model.hand_relative(&state).unwrap();
        let values =
            |t: Tensor<2>| -> Vec<f32> { t.into_data().convert::<f32>().try_to_vec().unwrap() };
        let things = values(rel.clone());
        assert_eq!(things.len(), 6);
        let text = Tensor::<2>::zeros([1, config.d_model], &device);
        // Zero-initialized: each slot starts as the mean of the things.
        let mean: Vec<f32> = (0..3).map(|a| (things[a] + things[3 + a]) / 2.0).collect();
        let start = values(model.slots(&text, rel.clone()).unwrap());
        for (got, want) in start.iter().zip(mean.iter().chain(mean.iter())) {
            assert!(
                (got - want).abs() < 1e-5,
                "{start:?} against the mean {mean:?}"
            );
        }
        // Logits [slot 0: thing 0, thing 1 | slot 1: thing 0, thing 1]: slot 0 names thing
        // 1, slot 1 thing 0, and each reads exactly that thing's three coordinates.
        let proj = model.slot_logits.as_mut().unwrap();
        proj.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.0f32, 30.0, 30.0, 0.0], [4]),
            &device,
        )));
        let pointed = values(model.slots(&text, rel).unwrap());
        let want: Vec<f32> = things[3..].iter().chain(&things[..3]).copied().collect();
        for (got, want) in pointed.iter().zip(&want) {
            assert!((got - want).abs() < 1e-4, "{pointed:?} against {want:?}");
        }
        // The whole model runs with them; without slots the state token is 6 inputs narrower.
        assert_eq!(
            model.predict(batch(&config, 2, &device), None).dims(),
            [2, 4, 7]
        );
        let plain = Vla::new(
            &VlaConfig {
                slots: 0,
                ..config.clone()
            },
            3,
            &device,
        )
        .unwrap();
        assert!(plain.slots(&text, Tensor::zeros([1, 6], &device)).is_none());
        let d = config.d_model;
        assert_eq!(model.num_params() - plain.num_params(), (d + 1) * 4 + 6 * d);
        // Bad configs name the field and what it needs.
        let e = VlaConfig {
            hand_relative: false,
            ..config.clone()
        }
        .rejection();
        assert!(
            e.contains("slots = 2") && e.contains("hand_relative = true"),
            "{e}"
        );
        let e = VlaConfig {
            slots: 17,
            ..config.clone()
        }
        .rejection();
        assert!(e.contains("slots = 17") && e.contains("at most 16"), "{e}");
        // Configs without the field (older checkpoints) read as no slots, and write none.
        let json = serde_json::to_string(&VlaConfig { slots: 0, ..config }).unwrap();
        assert!(!json.contains("slots"), "{json}");
        let back: VlaConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.slots, 0);
    }

    #[test]
    fn a_hand_eye_geometry_must_match_the_model() {
        let mut config = VlaConfig {
            cameras: 2,
            pixel_targets: 1,
            pixel_cameras: vec![0, 1],
            lift_reads_arm: true,
            keypoints: 2,
            state_dim: 8,
            hand_eye: Some(hand_eye()),
            ..VlaConfig::default()
        };
        config.validate().unwrap();
        let mut bad = config.clone();
        bad.hand_eye.as_mut().unwrap().hand[6] = 8;
        let e = bad.rejection();
        assert!(
            e.contains("hand entry 8") && e.contains("8 state entries"),
            "{e}"
        );
        let mut bad = config.clone();
        bad.hand_eye.as_mut().unwrap().cameras[0].centre[1] = f32::NAN;
        let e = bad.rejection();
        assert!(e.contains("not finite"), "{e}");
        config.pixel_cameras = vec![0, 1, 1];
        config.keypoints = 3;
        let e = config.rejection();
        assert!(
            e.contains("1 camera(s)") && e.contains("2 labelled camera(s)"),
            "{e}"
        );
        // Older configs have none.
        let json = serde_json::to_string(&VlaConfig::default()).unwrap();
        assert!(!json.contains("hand_eye"));
        let back: VlaConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.hand_eye, None);
    }

    /// Each labelled camera's keypoints move by that camera's own shift, whatever order the
    /// cameras are labelled in; a model given a shift perceives differently (its lift reads
    /// the moved keypoints), while its pixel loss stays on the shifted image's keypoints.
    #[test]
    fn keypoints_move_back_by_their_cameras_shift() {
        let device = Device::flex();
        let xy = Tensor::<3>::zeros([1, 4, 2], &device);
        let shift = Tensor::<2>::from_data(
            TensorData::new(vec![0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6], [1, 6]),
            &device,
        );
        let moved: Vec<f32> = unshifted(xy, &shift, &[2, 0], 2)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(moved, [0.5, 0.6, 0.5, 0.6, 0.1, 0.2, 0.1, 0.2]);

        let config = VlaConfig {
            cameras: 2,
            stem: ImageStem::Patch,
            keypoints: 4,
            pixel_targets: 2,
            pixel_cameras: vec![1, 0],
            aux_dim: 4,
            aux_select: vec![4, 5, 6, 7],
            perceived: 4,
            state_dim: 6,
            ..tiny()
        };
        let model = Vla::new(&config, 4, &device).unwrap();
        let input = batch(&config, 2, &device);
        let run = |shift: Option<Vec<f32>>| {
            let input = VlaInput {
                shift: shift.map(|v| Tensor::from_data(TensorData::new(v, [2, 4]), &device)),
                ..input.clone()
            };
            let e = model.encode_parts(input, Perception::Predicted);
            let aux: Vec<f32> = e.aux.unwrap().into_data().try_to_vec().unwrap();
            let kp = e.keypoints.unwrap();
            let xy: Vec<f32> = kp.labelled.unwrap().xy.into_data().try_to_vec().unwrap();
            (aux, xy)
        };
        let (plain, xy) = run(None);
        assert_eq!(run(Some(vec![0.0; 8])), (plain.clone(), xy.clone()));
        let (moved, moved_xy) = run(Some(vec![0.125, 0.0, 0.0, -0.125, 0.0, 0.0, 0.0, 0.0]));
        assert_eq!(
            moved_xy, xy,
            "the pixel loss reads the shifted image's keypoints"
        );
        assert_ne!(
            moved, plain,
            "the auxiliary head and the lift read the moved ones"
        );
    }

    #[test]
    fn the_peak_softmax_stays_on_the_higher_of_two_peaks() {
        let device = Device::flex();
        // A 4×4 map with a peak at (row 0, col 0) and a lower one at (row 3, col 3), where
        // the plain expectation lands between them; and a single peak shared with its
        // right-hand neighbour, where it interpolates.
        let mut heat = vec![0.0f32; 16 * 2];
        heat[0] = 10.0;
        heat[15 * 2] = 9.5;
        heat[(2 * 4 + 1) * 2 + 1] = 10.0;
        heat[(2 * 4 + 2) * 2 + 1] = 10.0;
        let heat = Tensor::<3>::from_data(TensorData::new(heat, [1, 16, 2]), &device);
        let plain: Vec<f32> = spatial_softmax(heat.clone(), 4)
            .into_data()
            .try_to_vec()
            .unwrap();
        let peak: Vec<f32> = peak_softmax(heat, 4).into_data().try_to_vec().unwrap();
        assert!(
            plain[0] > -0.3,
            "the plain expectation is pulled away: {plain:?}"
        );
        assert!(peak[0] < -0.74 && peak[1] < -0.74, "{peak:?}");
        let close = |a: f32, b: f32| (a - b).abs() < 1e-3;
        assert!(close(peak[2], 0.0) && close(peak[3], 0.25), "{peak:?}");
    }

    #[test]
    fn pixel_targets_mark_the_cell_and_drop_what_is_off_the_image() {
        let device = Device::flex();
        let t = PixelTargets::new(
            &[-1.0, -1.0, 0.99, 0.1, 1.5, 0.0, f32::NAN, 0.0],
            2,
            2,
            4,
            &device,
        );
        let cell: Vec<i64> = t.cell.into_data().convert::<i64>().try_to_vec().unwrap();
        let on: Vec<f32> = t.on_image.into_data().try_to_vec().unwrap();
        // (-1, -1) → row 0, col 0; (0.99, 0.1) → row 2, col 3; the rest are off the image,
        // the "not in view" cell after the 16 of the map.
        assert_eq!(cell, [0, 2 * 4 + 3, 16, 16]);
        assert_eq!(on, [1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn pixel_targets_need_keypoints_and_a_camera() {
        for (keypoints, pixel_cameras, field) in [
            (1, vec![0], "keypoints ≥ 2"),
            (3, vec![0, 1], "keypoints ≥ 4"),
            (4, vec![2], "pixel_cameras has camera 2"),
            (4, vec![], "pixel_cameras = []"),
        ] {
            let config = VlaConfig {
                keypoints,
                pixel_targets: 2,
                pixel_cameras,
                ..tiny()
            };
            let e = config.rejection();
            assert!(e.contains(field), "{e}");
        }
        let one = VlaConfig {
            keypoints: 2,
            pixel_targets: 2,
            pixel_cameras: vec![0],
            lift_reads_arm: true,
            ..tiny()
        };
        let e = one.rejection();
        assert!(e.contains("lift_reads_arm") && e.contains("[0]"), "{e}");
        let both = VlaConfig {
            pixel_cameras: vec![0, 1],
            keypoints: 4,
            ..one
        };
        assert!(both.validate().is_ok());
    }

    #[test]
    fn training_steps_fit_a_fixed_batch_with_either_head() {
        let device = Device::flex().autodiff();
        for head in [Head::L1, Head::Flow] {
            let config = VlaConfig { head, ..tiny() };
            let mut model = Vla::new(&config, 5, &device).unwrap();
            let mut opt = AdamWConfig::new().init();
            let target = random([4, config.chunk, config.action_dim], false, &device);
            let valid = Tensor::<2>::ones([4, config.chunk], &device);
            let input = batch(&config, 4, &device);
            let noise = random([4, config.chunk, config.action_dim], false, &device);
            let t = vec![0.9, 0.5, 0.3, 0.7];
            let mut losses = Vec::new();
            for _ in 0..40 {
                let loss = model.loss(
                    input.clone(),
                    target.clone(),
                    valid.clone(),
                    Some((noise.clone(), t.clone())),
                );
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = opt.step(3e-3, model, grads);
                losses.push(loss.into_scalar::<f32>());
            }
            let (first, last) = (losses[0], losses[losses.len() - 1]);
            assert!(
                last < 0.6 * first,
                "{head:?}: loss did not fall: {first} -> {last}"
            );
        }
    }

    #[test]
    fn the_state_gate_starts_open_and_learns() {
        use burn::store::ModuleSnapshot;
        let device = Device::flex().autodiff();
        // Text alone, and text + state (the state part is a second, bias-free matrix).
        for reads_state in [false, true] {
            let config = VlaConfig {
                state_gate: true,
                state_gate_reads_state: reads_state,
                ..tiny()
            };
            let gate = |model: &Vla, name: &str| param_values(model, name);
            let mut names = vec!["state_gate.weight"];
            if reads_state {
                names.push("state_gate_state.weight");
            }
            let mut model = Vla::new(&config, 5, &device).unwrap();
            let snap = model.collect(None, None, false);
            assert_eq!(
                snap.iter().any(|t| t.name.starts_with("state_gate_state")),
                reads_state
            );
            for name in &names {
                assert!(
                    gate(&model, name).iter().all(|&v| v == 0.0),
                    "2σ(0) = 1: open"
                );
            }
            let mut opt = AdamWConfig::new().init();
            let target = random([4, config.chunk, config.action_dim], false, &device);
            let valid = Tensor::<2>::ones([4, config.chunk], &device);
            let input = batch(&config, 4, &device);
            for _ in 0..3 {
                let loss = model.loss(input.clone(), target.clone(), valid.clone(), None);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = opt.step(3e-3, model, grads);
            }
            for name in &names {
                assert!(
                    gate(&model, name).iter().any(|&v| v != 0.0),
                    "gradients reach {name}"
                );
            }
        }
        // The state part extends the gate; alone it is a config error.
        let lone = VlaConfig {
            state_gate_reads_state: true,
            ..tiny()
        };
        let e = lone.rejection();
        assert!(e.contains("set state_gate = true too"), "{e}");
    }

    impl VlaConfig {
        /// The message `validate` refuses this config with.
        fn rejection(&self) -> String {
            self.validate().unwrap_err().to_string()
        }
    }

    /// The values of the parameter named `name` (its path in the module, e.g.
    /// `state_gate.weight`).
    fn param_values(model: &Vla, name: &str) -> Vec<f32> {
        use burn::store::ModuleSnapshot;
        let snap = model.collect(None, None, false);
        let t = snap
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let data = burn::store::bridge::to_data(t).unwrap();
        data.convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    /// Sets the state gate's bias (one logit per state entry), so a test can shut or open it.
    fn set_gate_bias(model: &mut Vla, bias: Vec<f32>) {
        let gate = model.state_gate.as_mut().expect("a state gate");
        let device = gate.weight.device();
        let n = bias.len();
        gate.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [n]),
            &device,
        )));
    }

    /// `state_gate_no_bias`: the gate's logits are the instruction's alone, so the same
    /// features give the same factors whatever the tasks pushed a shared bias to.
    #[test]
    fn a_gate_without_a_bias_reads_the_instruction_alone() {
        let device = Device::flex().autodiff();
        let config = VlaConfig {
            state_gate: true,
            state_gate_no_bias: true,
            ..tiny()
        };
        let model = Vla::new(&config, 5, &device).unwrap();
        let gate = model.state_gate.as_ref().expect("a state gate");
        assert!(gate.bias.is_none());
        assert_eq!(gate.weight.dims(), [config.d_model, config.state_dim]);
        let input = batch(&config, 2, &device);
        let text = model.encode_text(input.text).narrow(0, 0, 1);
        let open = model.read_instruction(text).gate.unwrap();
        assert!(open.iter().all(|&g| (g - 1.0).abs() < 1e-6), "{open:?}");
        let e = VlaConfig {
            state_gate_no_bias: true,
            ..tiny()
        }
        .rejection();
        assert!(
            e.contains("state_gate_no_bias = true") && e.contains("state_gate = true too"),
            "{e}"
        );
    }

    /// `reopen_gate` turns a shut gate back to its start (every factor 1) and keeps the
    /// parameters' ids and their gradients, so training goes on from there.
    #[test]
    fn a_reopened_gate_is_open_and_still_learns() {
        let device = Device::flex().autodiff();
        let config = VlaConfig {
            state_gate: true,
            ..tiny()
        };
        let mut model = Vla::new(&config, 5, &device).unwrap();
        let input = batch(&config, 4, &device);
        let text = model.encode_text(input.text.clone()).narrow(0, 0, 1);
        let bias = (0..config.state_dim)
            .map(|i| if i % 2 == 0 { -20.0 } else { 3.0 })
            .collect();
        set_gate_bias(&mut model, bias);
        let gate = model.state_gate.as_mut().unwrap();
        gate.weight = gate.weight.clone().map(|w| w.ones_like().require_grad());
        let shut = model.read_instruction(text.clone()).gate.unwrap();
        assert!(shut.iter().any(|&g| g < 1e-6), "{shut:?}");
        let ids = |m: &Vla| {
            let g = m.state_gate.as_ref().unwrap();
            (g.weight.id, g.bias.as_ref().unwrap().id)
        };
        let before = ids(&model);
        let model = model.reopen_gate();
        assert_eq!(ids(&model), before, "the optimizer's state stays attached");
        let open = model.read_instruction(text).gate.unwrap();
        assert!(
            open.iter().all(|&g| (g - 1.0).abs() < 1e-6),
            "reopened: {open:?}"
        );
        let target = random([4, config.chunk, config.action_dim], false, &device);
        let valid = Tensor::<2>::ones([4, config.chunk], &device);
        let loss = model.loss(input, target, valid, None);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let bias = |m: &Vla| m.state_gate.as_ref().unwrap().bias.as_ref().unwrap().val();
        let before = bias(&model);
        let model = burn::optim::SgdConfig::new().init().step(1.0, model, grads);
        let moved = (bias(&model) - before).abs().max().into_scalar::<f32>();
        assert!(moved > 1e-4, "a reopened gate moved only {moved}");
        // Without a gate, nothing to reopen.
        let plain = Vla::new(&tiny(), 5, &device).unwrap().reopen_gate();
        assert!(plain.state_gate.is_none());
    }

    /// A sigmoid gate that shut an entry gets no gradient to reopen it; the linear one does.
    #[test]
    fn a_linear_gate_can_reopen_what_it_shut() {
        let device = Device::flex().autodiff();
        let config = VlaConfig {
            state_gate: true,
            ..tiny()
        };
        let target = random([4, config.chunk, config.action_dim], false, &device);
        let valid = Tensor::<2>::ones([4, config.chunk], &device);
        let input = batch(&config, 4, &device);
        // How far one plain gradient step moves the gate's bias, from a shut gate
        // (sigmoid: logits -20 → 2σ = 4e-9; linear: logits -1 → 1 + -1 = 0).
        let moved = |linear: bool, shut: f32| -> f32 {
            let config = VlaConfig {
                state_gate_linear: linear,
                ..config.clone()
            };
            let mut model = Vla::new(&config, 5, &device).unwrap();
            let text = model.encode_text(input.text.clone()).narrow(0, 0, 1);
            let open = model.read_instruction(text.clone()).gate.unwrap();
            assert!(
                open.iter().all(|&g| (g - 1.0).abs() < 1e-6),
                "starts open: {open:?}"
            );
            set_gate_bias(&mut model, vec![shut; config.state_dim]);
            let shut_now = model.read_instruction(text).gate.unwrap();
            assert!(
                shut_now.iter().all(|&g| g.abs() < 1e-6),
                "shut: {shut_now:?}"
            );
            let before = model
                .state_gate
                .as_ref()
                .unwrap()
                .bias
                .as_ref()
                .unwrap()
                .val();
            let loss = model.loss(input.clone(), target.clone(), valid.clone(), None);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let model = burn::optim::SgdConfig::new().init().step(1.0, model, grads);
            let after = model
                .state_gate
                .as_ref()
                .unwrap()
                .bias
                .as_ref()
                .unwrap()
                .val();
            (after - before).abs().max().into_scalar::<f32>()
        };
        let sigmoid = moved(false, -20.0);
        let linear = moved(true, -1.0);
        assert!(sigmoid < 1e-6, "a shut sigmoid gate moved {sigmoid}");
        assert!(linear > 1e-4, "a shut linear gate moved only {linear}");
        let e = VlaConfig {
            state_gate_linear: true,
            ..tiny()
        }
        .rejection();
        assert!(
            e.contains("state_gate_linear = true") && e.contains("state_gate = true too"),
            "{e}"
        );
    }

    /// The ray trust blends the wrist's ray estimate into the fixed camera's: shut, the lift
    /// is the fixed camera's; wide open, the ray's (as without the trust); at its starting
    /// σ(2), 0.88 of the way between. Without a calibration there is nothing to weigh.
    #[test]
    fn the_ray_trust_blends_the_wrists_estimate_into_the_fixed_cameras() {
        use burn::store::ModuleSnapshot;
        let device = Device::flex();
        let config = VlaConfig {
            lift_ray_trust: true,
            ..calibrated(false)
        };
        let mut model = Vla::new(&config, 3, &device).unwrap();
        let init = |name: &str| param_values(&model, &format!("aux.lift.{name}"));
        assert_eq!(init("ray_trust.bias"), [2.0]);
        assert_eq!(
            init("ray_trust.weight"),
            [0.0; 4],
            "length, u², v², one thing"
        );
        // The hand upside down 30 cm above the table; the wrist sees the thing a little
        // ahead of it, the fixed camera somewhere.
        let arm = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, 0.1, 0.33, 1.0, 0.0, 0.0, 0.0], [1, 7]),
            &device,
        );
        let labelled = Labelled {
            heat: random([1, 5, 2], false, &device),
            xy: Tensor::from_data(
                TensorData::new(vec![0.3f32, -0.2, 0.1, 0.2], [1, 2, 2]),
                &device,
            ),
            seen: Tensor::ones([1, 2], &device),
        };
        let xy = random([1, 2 * 2 * config.keypoints], false, &device);
        let select = [3i64, 4, 5];
        let mut lifted = |bias: f32| -> Vec<f32> {
            let aux = model.aux.as_mut().unwrap();
            let trust = aux.lift.as_mut().unwrap().ray_trust.as_mut().unwrap();
            trust.bias = Some(Param::from_tensor(Tensor::full([1], bias, &device)));
            let head = model.aux.as_ref().unwrap();
            let out = head.forward(
                xy.clone(),
                Some(&labelled),
                Some(arm.clone()),
                2,
                &select,
                config.hand_eye.as_ref(),
            );
            out.into_data().convert::<f32>().try_into_vec().unwrap()
        };
        let (fixed, ray, start) = (lifted(-30.0), lifted(30.0), lifted(2.0));
        assert!(
            fixed.iter().zip(&ray).any(|(a, b)| (a - b).abs() > 1e-3),
            "the two estimates differ: {fixed:?} {ray:?}"
        );
        let s = 1.0 / (1.0 + (-2.0f32).exp());
        for i in 0..3 {
            let want = fixed[i] + s * (ray[i] - fixed[i]);
            assert!(
                (start[i] - want).abs() < 1e-4,
                "{i}: {start:?} against {want}"
            );
        }
        let bare = VlaConfig {
            lift_ray_trust: true,
            hand_eye: None,
            ..calibrated(false)
        };
        let snap = Vla::new(&bare, 3, &device)
            .unwrap()
            .collect(None, None, false);
        assert!(!snap.iter().any(|t| t.name.contains("ray_trust")));
    }

    /// A per-thing gate gives a thing's three coordinates one factor, from the mean of their
    /// logits; the arm's entries keep their own.
    #[test]
    fn a_per_thing_gate_opens_or_shuts_a_thing_as_a_whole() {
        let device = Device::flex();
        let config = VlaConfig {
            state_gate_per_thing: true,
            ..calibrated(true)
        };
        config.validate().unwrap();
        let mut model = Vla::new(&config, 3, &device).unwrap();
        let thing = model.relative[0].state;
        let bias: Vec<f32> = (0..config.state_dim).map(|i| i as f32 - 4.0).collect();
        set_gate_bias(&mut model, bias.clone());
        let input = batch(&config, 1, &device);
        let text = model.encode_text(input.text.clone()).narrow(0, 0, 1);
        let gate = model.read_instruction(text).gate.unwrap();
        assert_eq!(gate.len(), config.state_dim);
        let sigmoid2 = |x: f32| 2.0 / (1.0 + (-x).exp());
        let mean = thing.iter().map(|&i| bias[i]).sum::<f32>() / 3.0;
        for (i, g) in gate.iter().enumerate() {
            let want = if thing.contains(&i) {
                sigmoid2(mean)
            } else {
                sigmoid2(bias[i])
            };
            assert!((g - want).abs() < 1e-5, "entry {i}: {g} against {want}");
        }
        // The whole model runs with it; without a thing to tie it is a config error.
        assert_eq!(
            model.predict(batch(&config, 2, &device), None).dims(),
            [2, 4, 7]
        );
        let e = VlaConfig {
            state_gate_per_thing: true,
            ..calibrated(false)
        }
        .rejection();
        assert!(
            e.contains("state_gate_per_thing") && e.contains("hand_relative"),
            "{e}"
        );
    }

    /// A floored gate starts at 1 like the plain one, and a shut entry keeps its floor.
    #[test]
    fn a_floored_gate_keeps_what_it_shut_dimmed_not_dark() {
        let device = Device::flex();
        let config = VlaConfig {
            state_gate: true,
            state_gate_floor: 0.25,
            ..tiny()
        };
        config.validate().unwrap();
        let input = batch(&config, 1, &device);
        let mut model = Vla::new(&config, 5, &device).unwrap();
        let text = model.encode_text(input.text.clone());
        let open = model.read_instruction(text.clone()).gate.unwrap();
        assert!(open.iter().all(|&g| (g - 1.0).abs() < 1e-6), "{open:?}");
        for (bias, want) in [(-30.0, 0.25), (30.0, 1.75)] {
            set_gate_bias(&mut model, vec![bias; config.state_dim]);
            let g = model.read_instruction(text.clone()).gate.unwrap();
            assert!(g.iter().all(|&g| (g - want).abs() < 1e-5), "{bias}: {g:?}");
        }
        for (floor, linear, gate) in [
            (1.0, false, true),
            (-0.1, false, true),
            (0.25, true, true),
            (0.25, false, false),
        ] {
            let e = VlaConfig {
                state_gate: gate,
                state_gate_linear: linear,
                state_gate_floor: floor,
                ..tiny()
            }
            .rejection();
            assert!(
                e.contains("state_gate_floor") || e.contains("state_gate_linear"),
                "{e}"
            );
        }
    }

    /// A cap of 0 puts the truth back where predictions replace it; an infinite one leaves
    /// the predictions as they are.
    #[test]
    fn a_cap_keeps_replaced_predictions_near_the_truth() {
        let device = Device::flex();
        let config = perceiving();
        let model = Vla::new(&config, 3, &device).unwrap();
        let input = batch(&config, 4, &device);
        let target = random([4, config.chunk, config.action_dim], false, &device);
        let valid = Tensor::<2>::ones([4, config.chunk], &device);
        let loss = |m: Vla| {
            m.loss(input.clone(), target.clone(), valid.clone(), None)
                .into_scalar::<f32>()
        };
        let truth = loss(model.clone().with_perceived_share(0.0, None));
        let predicted = loss(model.clone().with_perceived_share(1.0, None));
        assert!((truth - predicted).abs() > 1e-4, "{truth} vs {predicted}");
        let all = model.clone().with_perceived_share(1.0, None);
        let zero = loss(all.clone().with_perceived_cap(vec![0.0; config.perceived]));
        assert!((zero - truth).abs() < 1e-5, "{zero} vs {truth}");
        let open = loss(all.with_perceived_cap(vec![f32::INFINITY; config.perceived]));
        assert!((open - predicted).abs() < 1e-5, "{open} vs {predicted}");
    }

    #[test]
    fn padded_action_steps_do_not_count() {
        let device = Device::flex();
        let config = tiny();
        let model = Vla::new(&config, 2, &device).unwrap();
        let input = batch(&config, 2, &device);
        let target = Tensor::<3>::zeros([2, config.chunk, config.action_dim], &device);
        let mut valid = vec![1.0f32; 2 * config.chunk];
        valid[config.chunk - 1] = 0.0;
        let valid = Tensor::<2>::from_data(TensorData::new(valid, [2, config.chunk]), &device);
        let base = model
            .loss(input.clone(), target.clone(), valid.clone(), None)
            .into_scalar::<f32>();
        // A huge error on the padded step changes nothing.
        let mut t = vec![0.0f32; 2 * config.chunk * config.action_dim];
        for v in &mut t[(config.chunk - 1) * config.action_dim..config.chunk * config.action_dim] {
            *v = 1e6;
        }
        let target = Tensor::<3>::from_data(
            TensorData::new(t, [2, config.chunk, config.action_dim]),
            &device,
        );
        let masked = model.loss(input, target, valid, None).into_scalar::<f32>();
        assert!((base - masked).abs() < 1e-4, "{base} vs {masked}");
    }
}
