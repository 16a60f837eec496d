//! What body a dataset or policy is about: a robot arm, a car, ...

use serde::{Deserialize, Serialize};

/// A description of the robot (or vehicle) that produced or will consume the data.
/// Stored in datasets as LeRobot's `robot_type` plus mulli's richer description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embodiment {
    /// LeRobot's `robot_type`, e.g. `"franka"`, `"so101_follower"`, `"car"`.
    pub robot_type: String,
    /// Names of the action dimensions, in order (e.g. `["dx","dy","dz","drx","dry","drz","gripper"]`).
    pub action_names: Vec<String>,
    /// Names of the proprioceptive state dimensions, in order.
    pub state_names: Vec<String>,
    /// Camera feature keys this body carries (e.g. `observation.images.front`).
    pub cameras: Vec<String>,
    /// Control frequency in Hz.
    pub control_hz: u32,
}

impl Embodiment {
    pub fn action_dim(&self) -> usize {
        self.action_names.len()
    }
    pub fn state_dim(&self) -> usize {
        self.state_names.len()
    }
}
