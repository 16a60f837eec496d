//! Typed errors of the dataset layer. Every variant names the file (and where it can, the
//! field, row or value) and what was expected, so a user can fix their data without a debugger.

use std::path::PathBuf;

use thiserror::Error;

use crate::video::VideoError;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("{path}: column `{column}`: {message}")]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(
        "{path}: unsupported dataset version `{version}` (mulli reads v2.1 and v3.0, writes v3.0)"
    )]
    Version { path: PathBuf, version: String },
    #[error("{path}: missing file (expected by {expected_by})")]
    Missing { path: PathBuf, expected_by: String },
    #[error("index {index} is out of range: the dataset has {len} frames")]
    IndexOutOfRange { index: usize, len: usize },
    #[error("episode {episode} is out of range: the dataset has {len} episodes")]
    EpisodeOutOfRange { episode: usize, len: usize },
    #[error(
        "{path}: refusing to write into a non-empty directory; use --force to replace it or open it in append mode"
    )]
    NotEmpty { path: PathBuf },
    #[error("{0}")]
    Feature(#[from] mulli_core::CoreError),
    #[error("{path}: image `{feature}` row {row}: {message}")]
    Image {
        path: PathBuf,
        feature: String,
        row: usize,
        message: String,
    },
    #[error("invalid argument: {0}")]
    Invalid(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Attach the path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}
