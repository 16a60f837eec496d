//! mulli-synth: demo multiplication, MimicGen-style.
//!
//! It owns turning a few kitchen demonstrations into many: reading source demos from any
//! LeRobot dataset of kitchen episodes ([`source`]), splitting them into object-centric
//! subtasks ([`segment`], automatic or from an annotation file), re-targeting each subtask's
//! hand poses into the frame of its reference object in a freshly sampled scene ([`pose`],
//! [`reference`]), and replaying them in the simulator with small action noise, keeping only
//! the episodes whose task succeeds ([`generate`]). Generated episodes are written through
//! the same dataset writer and features as `mulli sim record`.
//!
//! It knows the kitchen (mulli-sim) and datasets (mulli-data); policies never see it.

pub mod error;
pub mod generate;
pub mod pose;
pub mod reference;
pub mod segment;
pub mod source;

pub use error::SynthError;
pub use generate::{Outcome, Selection, SynthOptions, SynthReport, TaskReport, synthesize};
pub use segment::{Annotations, Subtask, segment};
pub use source::{SourceDemo, SourceSet, load};
