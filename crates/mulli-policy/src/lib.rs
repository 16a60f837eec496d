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

pub mod calibrate;
pub mod checkpoint;
pub mod data;
pub mod model;
pub mod normalize;
pub mod policy;
pub mod pretrained;
pub mod tokenizer;
pub mod train;

pub use checkpoint::PolicySpec;
pub use model::{Head, ImageStem, InstructionReading, TextEncoderKind, Vla, VlaConfig, VlaInput};
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

/// The compute device named on the command line: `cpu` (burn-flex, pure Rust, all cores),
/// `cuda:N` (the `cuda` feature) or `vulkan:N` (the `vulkan` feature: any Vulkan GPU through
/// wgpu, kernels compiled to SPIR-V at run time). `N` is the GPU's index, 0 when left out.
pub fn device(name: &str) -> Result<burn::tensor::Device, PolicyError> {
    if name == "cpu" {
        return Ok(burn::tensor::Device::flex());
    }
    let (kind, index) = match name.split_once(':') {
        Some((kind, i)) => (kind, i.parse::<usize>().ok()),
        None => (name, Some(0)),
    };
    let Some(index) = index else {
        return Err(PolicyError::Device(
            name.into(),
            format!("expected {kind}:N with N a GPU index (0, 1, ...)"),
        ));
    };
    match kind {
        "cuda" => cuda_device(name, index),
        "vulkan" => vulkan_device(name, index),
        _ => Err(PolicyError::Device(
            name.into(),
            "unknown device; use cpu, cuda:N or vulkan:N".into(),
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

#[cfg(feature = "vulkan")]
fn vulkan_device(name: &str, index: usize) -> Result<burn::tensor::Device, PolicyError> {
    let device = burn::tensor::Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(index));
    // burn opens the adapter lazily, and a missing one panics on its device thread at the
    // first tensor: open it here, so a machine without that GPU gets an error, not a crash.
    // Quiet while probing: the panic is expected and answered by the error below.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        burn::tensor::Tensor::<1>::zeros([1], &device)
            .into_data()
            .try_to_vec::<f32>()
            .is_ok()
    }));
    std::panic::set_hook(hook);
    match opened {
        Ok(true) => Ok(device),
        _ => Err(PolicyError::Device(
            name.into(),
            format!(
                "no discrete Vulkan GPU number {index} could be opened (needs the Vulkan \
                 loader and a GPU driver; `vulkaninfo --summary` lists the devices)"
            ),
        )),
    }
}

#[cfg(not(feature = "vulkan"))]
fn vulkan_device(name: &str, _index: usize) -> Result<burn::tensor::Device, PolicyError> {
    Err(PolicyError::Device(
        name.into(),
        "this build has no Vulkan support; rebuild with `--features vulkan`".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(name: &str) -> String {
        match device(name) {
            Ok(_) => panic!("{name} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn device_names_are_parsed_and_bad_ones_explained() {
        assert!(device("cpu").is_ok());
        assert!(error("tpu:0").contains("unknown device; use cpu, cuda:N or vulkan:N"));
        assert!(error("cuda:first").contains("expected cuda:N with N a GPU index"));
        assert!(error("vulkan:-1").contains("expected vulkan:N"));
        #[cfg(not(feature = "cuda"))]
        assert!(error("cuda:0").contains("rebuild with `--features cuda`"));
        #[cfg(not(feature = "vulkan"))]
        assert!(error("vulkan").contains("rebuild with `--features vulkan`"));
    }
}
