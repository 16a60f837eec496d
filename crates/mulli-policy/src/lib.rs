//! mulli-policy: vision-language-action policies.
//!
//! It owns the model ([`model::Vla`]: per-camera CNN, byte-level language encoder, proprio,
//! fusion, action-chunk head), the tokenizer that makes any language work without a
//! vocabulary file ([`ByteTokenizer`]), and state/action normalization ([`Normalizer`]).
//! Training, checkpoints and the `Policy` inference API are being built (issue 4). Tensors run
//! on burn's pure-Rust `flex` CPU backend (`Device::flex()`); this crate never sees the
//! simulator.

pub mod model;
pub mod normalize;
pub mod tokenizer;

pub use model::{Vla, VlaConfig, VlaInput};
pub use normalize::{NormMode, Normalizer};
pub use tokenizer::ByteTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy config: {0}")]
    Config(String),
}
