//! mulli-core: the vocabulary every other mulli crate speaks.
//!
//! It owns the shape of data, not how it is stored: [`FeatureSpec`] (name, dtype, shape, axis
//! names), [`Frame`] and [`Episode`] (what a recorder produces), task strings ([`Task`]), what a policy
//! sees ([`Observation`]) and offers ([`Policy`], with chunk execution),
//! [`Embodiment`] descriptions, seeded randomness ([`rng`]), and the errors these raise.
//! Nothing here knows about files, simulators or models.

pub mod embodiment;
pub mod error;
pub mod feature;
pub mod frame;
pub mod observation;
pub mod policy;
pub mod rng;
pub mod stats;

pub use embodiment::Embodiment;
pub use error::CoreError;
pub use feature::{DType, FeatureKind, FeatureSpec, Features, ImageLayout};
pub use frame::{Episode, Frame, Task, Value};
pub use observation::{CameraImage, Observation, resize_rgb};
pub use policy::{ActionChunk, ChunkExecutor, Execution, Perceived, Policy};
