//! What a policy sees at one control step: camera images, proprioceptive state and the
//! instruction. Simulators produce it, robots send it over the wire, policies consume it.

use std::collections::BTreeMap;

/// One camera image: RGB8 in HWC order, with optional metric depth (metres, row-major).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CameraImage {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    pub depth: Option<Vec<f32>>,
}

/// A policy's input at one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Camera name (e.g. `agentview`, `wrist`) → image.
    pub images: BTreeMap<String, CameraImage>,
    /// Proprioceptive state, in the embodiment's `state_names` order.
    pub state: Vec<f32>,
    /// The instruction being carried out, in any language.
    pub instruction: String,
}
