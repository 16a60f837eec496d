//! mulli-policy: vision-language-action policies, from training to inference.
//!
//! It owns the model ([`Vla`]: per-camera CNN, byte-level language encoder, proprio, a fusion
//! transformer, an L1 action-chunk head or a flow-matching head), the tokenizer that makes any
//! language work without a vocabulary file ([`ByteTokenizer`]), state/action normalization
//! ([`Normalizer`]), training data in memory ([`data::TrainData`]), the training loop
//! ([`train::train`]), checkpoints ([`checkpoint`]) and the inference side of the
//! [`mulli_core::Policy`] trait ([`VlaPolicy`]). Tensors run on burn's pure-Rust `flex` CPU
//! backend (`Device::flex()`) by default, on CUDA with the `cuda` feature ([`device`]); this
//! crate never sees the simulator.

pub mod checkpoint;
pub mod data;
pub mod model;
pub mod normalize;
pub mod policy;
pub mod pretrained;
pub mod tokenizer;
pub mod train;

pub use checkpoint::PolicySpec;
pub use model::{Head, ImageStem, TextEncoderKind, Vla, VlaConfig, VlaInput};
pub use normalize::{NormMode, Normalizer};
pub use policy::VlaPolicy;
pub use pretrained::PretrainedTextEncoder;
pub use tokenizer::ByteTokenizer;
pub use train::{EnvState, TrainConfig, train};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy config: {0}")]
    Config(String),
    #[error("pretrained text encoder: {0}")]
    Pretrained(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Io(String),
    #[error("bad observation: {0}")]
    Observation(String),
    #[error("training diverged at step {step}: loss is {loss}; lower lr or raise grad_clip")]
    Diverged { step: u64, loss: f32 },
    #[error("device `{0}`: {1}")]
    Device(String, String),
}

/// The compute device named on the command line: `cpu` (burn-flex, pure Rust, all cores) or
/// `cuda:N` (needs the `cuda` feature; kernels are compiled at run time, no toolkit to build).
pub fn device(name: &str) -> Result<burn::tensor::Device, PolicyError> {
    match name {
        "cpu" => Ok(burn::tensor::Device::flex()),
        n if n.starts_with("cuda") => {
            let index: usize = match n.strip_prefix("cuda").unwrap_or("") {
                "" => 0,
                s => s
                    .strip_prefix(':')
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| PolicyError::Device(n.into(), "expected cuda:N".into()))?,
            };
            cuda_device(n, index)
        }
        other => Err(PolicyError::Device(
            other.into(),
            "unknown device; use cpu or cuda:N".into(),
        )),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(_name: &str, index: usize) -> Result<burn::tensor::Device, PolicyError> {
    Ok(burn::tensor::Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(name: &str, _index: usize) -> Result<burn::tensor::Device, PolicyError> {
    Err(PolicyError::Device(
        name.into(),
        "this build has no CUDA support; rebuild with `--features cuda`".into(),
    ))
}
