//! Errors raised when values do not match their declared features.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    #[error("feature `{feature}`: expected dtype {expected}, got {got}")]
    DType {
        feature: String,
        expected: String,
        got: String,
    },
    #[error("feature `{feature}`: expected {expected} values (shape {shape:?}), got {got}")]
    Len {
        feature: String,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("feature `{0}` is not declared in the dataset's features")]
    UnknownFeature(String),
    #[error("feature `{0}` is declared but missing from the frame")]
    MissingFeature(String),
    #[error("feature `{feature}`: {message}")]
    Invalid { feature: String, message: String },
}
