//! Checkpoints: what a trained policy is on disk, and how a run resumes.
//!
//! ```text
//! RUN/checkpoint/
//!   policy.json        PolicySpec: model config, cameras, normalization, training summary
//!   model.safetensors  EMA weights, the ones inference uses (HF safetensors, f32)
//!   weights.bpk        raw training weights with parameter ids (burnpack), for --resume
//!   optimizer.bpk      AdamW moments keyed by parameter id, for --resume
//!   state.json         step, elapsed time
//! ```
//!
//! A checkpoint is written whole into `checkpoint.tmp/`, then swapped in by two renames
//! (`checkpoint` → `checkpoint.old`, `checkpoint.tmp` → `checkpoint`); a kill at any moment
//! leaves either the new or the previous checkpoint complete, and [`checkpoint_dir`] finds it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use mulli_core::Execution;
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::data::EnvStateInput;
use crate::model::{Vla, VlaConfig};
use crate::normalize::Normalizer;

pub const FORMAT: &str = "mulli-vla/1";

/// Everything needed to run a trained policy besides its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub format: String,
    pub model: VlaConfig,
    /// Camera names, in the model's camera order (`observation.images.<name>`).
    pub cameras: Vec<String>,
    /// Cameras of the training data the policy does not read; an observation may carry
    /// them (they are ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unused_cameras: Vec<String>,
    pub fps: u32,
    pub robot_type: Option<String>,
    pub state_names: Option<Vec<String>>,
    pub action_names: Option<Vec<String>>,
    pub state_norm: Normalizer,
    pub action_norm: Normalizer,
    /// Directory of a frozen pretrained text encoder, if the model uses one.
    #[serde(default)]
    pub text_encoder_dir: Option<PathBuf>,
    /// Auxiliary training targets (environment-state names) and their normalization, when
    /// the model was trained with them; not needed at inference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_norm: Option<Normalizer>,
    /// The things whose image positions the first keypoints were trained on
    /// ([`crate::VlaConfig::pixel_targets`]), in keypoint order; not needed at inference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pixel_things: Vec<String>,
    /// The environment-state entries the policy observes (appended to the state, whose
    /// last `index.len()` names they are); `None` = it observes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_state: Option<EnvStateInput>,
    /// How chunks should be executed unless the caller chooses otherwise.
    pub execution: Execution,
    pub params: usize,
    pub training: TrainingSummary,
}

impl PolicySpec {
    /// Length of the proprioceptive state an observation must carry (the model's state
    /// minus the environment-state entries it appends).
    pub fn proprio_dim(&self) -> usize {
        self.model.state_dim - self.env_state.as_ref().map_or(0, |e| e.index.len())
    }

    /// The environment-state entries an observation must carry: those the policy observes,
    /// unless it perceives them itself ([`VlaConfig::perceived`]).
    pub fn required_env_state(&self) -> Option<&EnvStateInput> {
        self.env_state
            .as_ref()
            .filter(|_| self.model.perceived == 0)
    }

    /// Names of the proprioceptive state entries, when the data had names.
    pub fn proprio_names(&self) -> Option<&[String]> {
        self.state_names
            .as_ref()
            .map(|n| &n[..self.proprio_dim().min(n.len())])
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub datasets: Vec<String>,
    pub tasks: Vec<String>,
    pub train_episodes: usize,
    pub val_episodes: usize,
    pub train_frames: usize,
    pub step: u64,
    pub steps: u64,
    pub batch_size: usize,
    pub seed: u64,
    pub last_loss: Option<f32>,
    pub last_val_loss: Option<f32>,
}

/// Progress of a run, saved with each checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub step: u64,
    pub elapsed_s: f64,
}

fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Checkpoint(format!("{}: {e}", path.display()))
}

/// The complete checkpoint of a run directory (or the directory itself if it is one), if any.
pub fn checkpoint_dir(run: &Path) -> Option<PathBuf> {
    if run.join("policy.json").is_file() {
        return Some(run.to_path_buf());
    }
    ["checkpoint", "checkpoint.old"]
        .iter()
        .map(|d| run.join(d))
        .find(|d| d.join("policy.json").is_file() && d.join("state.json").is_file())
}

pub fn read_spec(dir: &Path) -> Result<PolicySpec, PolicyError> {
    let path = dir.join("policy.json");
    let text = fs::read_to_string(&path).map_err(|e| ckpt_err(&path, e))?;
    let spec: PolicySpec = serde_json::from_str(&text).map_err(|e| ckpt_err(&path, e))?;
    if spec.format != FORMAT {
        return Err(ckpt_err(
            &path,
            format!(
                "format `{}` is not `{FORMAT}` (a checkpoint of another program or version)",
                spec.format
            ),
        ));
    }
    spec.model.validate()?;
    let norms = [
        ("state_norm", spec.state_norm.dim(), spec.model.state_dim),
        ("action_norm", spec.action_norm.dim(), spec.model.action_dim),
        ("cameras", spec.cameras.len(), spec.model.cameras),
    ];
    for (what, got, want) in norms {
        if got != want {
            return Err(ckpt_err(
                &path,
                format!("{what} has {got} entries but the model expects {want}"),
            ));
        }
    }
    Ok(spec)
}

/// Load weights from a safetensors or burnpack file into `model`, refusing a file that does
/// not hold exactly this architecture's tensors.
fn load_into<S: burn::store::ModuleStore>(
    model: &mut Vla,
    store: &mut S,
    path: &Path,
) -> Result<(), PolicyError>
where
    S::Error: std::fmt::Display,
{
    if !path.is_file() {
        return Err(ckpt_err(path, "missing"));
    }
    let result = model.load_from(store).map_err(|e| ckpt_err(path, e))?;
    let mut problems = Vec::new();
    if !result.missing.is_empty() {
        let names: Vec<&str> = result
            .missing
            .iter()
            .take(5)
            .map(|(p, _)| p.as_str())
            .collect();
        problems.push(format!("missing tensors {names:?}"));
    }
    if !result.unused.is_empty() {
        problems.push(format!(
            "unexpected tensors {:?}",
            result.unused.iter().take(5).collect::<Vec<_>>()
        ));
    }
    if !result.errors.is_empty() {
        problems.push(
            result
                .errors
                .iter()
                .take(3)
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ckpt_err(
            path,
            format!(
                "does not match the architecture in policy.json ({})",
                problems.join("; ")
            ),
        ))
    }
}

/// A reader that reports mismatches in its result instead of failing on the first, so
/// [`load_into`] can say briefly what differs.
fn safetensors_in(path: &Path) -> SafetensorsStore {
    SafetensorsStore::from_file(path)
        .validate(false)
        .allow_partial(true)
}

/// The inference model of a checkpoint directory: its spec and EMA weights.
pub fn load_policy_model(dir: &Path, device: &Device) -> Result<(PolicySpec, Vla), PolicyError> {
    let spec = read_spec(dir)?;
    let mut model = Vla::new(&spec.model, 0, device)?;
    let path = dir.join("model.safetensors");
    load_into(&mut model, &mut safetensors_in(&path), &path)?;
    Ok((spec, model))
}

/// Training state to resume from: raw weights (with parameter ids, so the optimizer state
/// matches), EMA weights, optimizer, progress.
pub struct Resumed {
    pub model: Vla,
    pub ema: Vla,
    pub optimizer: ModuleOptimizer,
    pub state: TrainState,
}

pub fn load_resume(
    dir: &Path,
    spec: &PolicySpec,
    optimizer: ModuleOptimizer,
    device: &Device,
) -> Result<Resumed, PolicyError> {
    let mut model = Vla::new(&spec.model, 0, device)?;
    let path = dir.join("weights.bpk");
    load_into(
        &mut model,
        &mut BurnpackStore::from_file(&path)
            .validate(false)
            .allow_partial(true),
        &path,
    )?;
    let mut ema = Vla::new(&spec.model, 0, &device.clone().inner())?;
    let path = dir.join("model.safetensors");
    load_into(&mut ema, &mut safetensors_in(&path), &path)?;
    let path = dir.join("optimizer.bpk");
    if !path.is_file() {
        return Err(ckpt_err(&path, "missing"));
    }
    let optimizer = optimizer.load(&path).map_err(|e| ckpt_err(&path, e))?;
    let path = dir.join("state.json");
    let text = fs::read_to_string(&path).map_err(|e| ckpt_err(&path, e))?;
    let state = serde_json::from_str(&text).map_err(|e| ckpt_err(&path, e))?;
    Ok(Resumed {
        model,
        ema,
        optimizer,
        state,
    })
}

/// Write a complete checkpoint under `run/checkpoint`, replacing the previous one atomically.
pub fn save(
    run: &Path,
    spec: &PolicySpec,
    model: &Vla,
    ema: &Vla,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
) -> Result<PathBuf, PolicyError> {
    let tmp = run.join("checkpoint.tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| ckpt_err(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| ckpt_err(&tmp, e))?;
    let json = |v: &dyn erased::Json, name: &str| -> Result<(), PolicyError> {
        let path = tmp.join(name);
        fs::write(&path, v.to_json()).map_err(|e| ckpt_err(&path, e))
    };
    json(spec, "policy.json")?;
    json(state, "state.json")?;
    let path = tmp.join("model.safetensors");
    ema.save_into(
        // One metadata key only: the default set is a hash map whose order varies, and the
        // same weights should give the same bytes.
        &mut SafetensorsStore::from_file(&path)
            .overwrite(true)
            .clear_metadata()
            .metadata("format", FORMAT),
    )
    .map_err(|e| ckpt_err(&path, e))?;
    let path = tmp.join("weights.bpk");
    model
        .save_into(&mut BurnpackStore::from_file(&path).overwrite(true))
        .map_err(|e| ckpt_err(&path, e))?;
    let path = tmp.join("optimizer.bpk");
    optimizer.save(&path).map_err(|e| ckpt_err(&path, e))?;
    for entry in fs::read_dir(&tmp).map_err(|e| ckpt_err(&tmp, e))? {
        let p = entry.map_err(|e| ckpt_err(&tmp, e))?.path();
        fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(|e| ckpt_err(&p, e))?;
    }
    let dst = run.join("checkpoint");
    let old = run.join("checkpoint.old");
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| ckpt_err(&old, e))?;
    }
    if dst.exists() {
        fs::rename(&dst, &old).map_err(|e| ckpt_err(&dst, e))?;
    }
    fs::rename(&tmp, &dst).map_err(|e| ckpt_err(&tmp, e))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| ckpt_err(&old, e))?;
    }
    Ok(dst)
}

/// Trainable parameters of a model.
pub fn param_count(model: &Vla) -> usize {
    model.num_params()
}

mod erased {
    /// Pretty JSON of any serializable value, without making `save` generic per file.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        }
    }
}
