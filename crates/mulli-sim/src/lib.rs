//! mulli-sim: the built-in kitchen world.
//!
//! It owns everything a robot experiences in simulation: rapier3d physics ([`scene`]), the
//! 7-DOF arm's kinematics and IK ([`robot`]), the CPU rasterizer for RGB + depth cameras
//! ([`render`]), seeded scene randomization ([`layout`]), tasks with success predicates and
//! English/Korean instructions ([`tasks`]), scripted experts ([`expert`]), the `Env` API
//! ([`env`]), parallel rollouts ([`vec_env`]), recording to LeRobot datasets ([`record`])
//! and keyboard teleoperation ([`teleop`]).
//! Policies never see this crate: they get [`mulli_core::Observation`]s.

pub mod env;
pub mod error;
pub mod expert;
pub mod layout;
pub mod objects;
pub mod record;
pub mod render;
pub mod robot;
pub mod scene;
pub mod tasks;
pub mod teleop;
pub mod vec_env;

pub use env::{ActionMode, CameraConfig, Env, EnvConfig, KitchenEnv, Reach, StepInfo, StepResult};
pub use error::SimError;
pub use layout::{Layout, LayoutOptions, VisualVariation};
pub use objects::{ObjectKind, Receptacle};
pub use tasks::{FailureReason, Split, Suite, Task};
pub use vec_env::VecEnv;
