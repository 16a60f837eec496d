//! Errors of the simulator, in the user's words.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("unknown task '{name}'; known tasks: {known}")]
    UnknownTask { name: String, known: String },
    #[error("unknown suite '{name}'; known suites: {known}")]
    UnknownSuite { name: String, known: String },
    #[error("invalid action: {0}")]
    Action(String),
    #[error("invalid environment config: {0}")]
    Config(String),
    #[error("instructions file {path}: {message}")]
    Instructions { path: String, message: String },
    #[error(transparent)]
    Data(#[from] mulli_data::DataError),
    #[error("{0}")]
    Io(String),
}
