//! mulli-data: datasets on disk in LeRobot's format, and the fast path from disk to a batch.
//!
//! It owns LeRobot v3.0 reading and writing and v2.1 reading ([`Dataset`], [`DatasetWriter`]),
//! the video codecs behind camera features ([`video`]), statistics ([`stats`]), validation,
//! merge/split/convert ([`ops`]) and the training loader ([`loader`]). It knows nothing about
//! simulators or models; its vocabulary comes from `mulli-core`.

pub mod dataset;
pub mod demo;
pub mod error;
pub mod info;
pub mod loader;
pub mod ops;
pub mod stats;
pub mod table;
pub mod validate;
pub mod video;
pub mod writer;

pub(crate) mod fsutil;
pub(crate) mod png_codec;

pub use dataset::{Dataset, EpisodeMeta, VideoSegment};
pub use error::{DataError, Result};
pub use info::{DatasetInfo, Version};
pub use loader::{Batch, DeltaTimestamps, Loader, LoaderConfig};
pub use png_codec::encode as encode_png;
pub use stats::FeatureStats;
pub use writer::{DatasetWriter, WriteMode, WriterOptions};
