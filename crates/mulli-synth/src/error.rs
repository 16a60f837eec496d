//! Errors of demo multiplication, naming the file, feature, episode or option at fault.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SynthError {
    #[error("{path}: {source}")]
    Data {
        path: PathBuf,
        #[source]
        source: mulli_data::DataError,
    },
    #[error("{path}: feature `{feature}`: {message}")]
    NotKitchen {
        path: PathBuf,
        feature: String,
        message: String,
    },
    #[error(
        "{path}: episode {episode}: instruction '{instruction}' is not a kitchen task's (no success predicate to filter on); known tasks: {known}"
    )]
    UnknownInstruction {
        path: PathBuf,
        episode: usize,
        instruction: String,
        known: String,
    },
    #[error("annotation file {path}: {message}")]
    Annotation { path: PathBuf, message: String },
    #[error("invalid option: {0}")]
    Config(String),
    #[error("task {task}: {message}")]
    Task { task: String, message: String },
    #[error(
        "no episode was accepted after {attempts} attempts (per task: {per_task}); check the source demos and their segmentation"
    )]
    NothingAccepted { attempts: usize, per_task: String },
    #[error(transparent)]
    Sim(#[from] mulli_sim::SimError),
}
