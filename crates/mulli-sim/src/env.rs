//! The `Env` API: reset a kitchen from a seed, a task and an instruction; step it with an
//! action; get observations (two cameras + proprio), rewards and success.

use crate::error::SimError;
use crate::layout::{Layout, LayoutOptions};
use crate::objects::ObjectKind;
use crate::render::{Camera, Image, Rasterizer};
use crate::robot::{self, DOF, IkSettings, Joints};
use crate::scene::{PHYSICS_HZ, Scene};
use crate::tasks::{FailureReason, Task};
use glam::{DAffine3, DMat3, DQuat, DVec3, Vec3};
use mulli_core::{CameraImage, Embodiment, Observation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Maximum end-effector translation per control step (m) and rotation (rad) in
/// [`ActionMode::EndEffectorDelta`]; larger commands are clipped.
pub const MAX_DPOS: f32 = 0.03;
pub const MAX_DROT: f32 = 0.25;
/// Lowest the tool centre point may go (m above the table top).
pub const MIN_TCP_Z: f64 = 0.012;

/// How actions are interpreted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionMode {
    /// `[dx, dy, dz, drx, dry, drz, gripper]`: world-frame end-effector translation (m),
    /// rotation as an axis-angle vector (rad), gripper in [-1 open, +1 closed]. (LIBERO/OpenVLA.)
    #[default]
    EndEffectorDelta,
    /// `[q1..q7, gripper]`: absolute joint position targets (rad), gripper as above.
    JointPosition,
}

impl ActionMode {
    pub fn dim(self) -> usize {
        match self {
            ActionMode::EndEffectorDelta => 7,
            ActionMode::JointPosition => DOF + 1,
        }
    }
    pub fn names(self) -> Vec<String> {
        match self {
            ActionMode::EndEffectorDelta => ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
                .map(String::from)
                .to_vec(),
            ActionMode::JointPosition => (1..=DOF)
                .map(|i| format!("q{i}"))
                .chain(["gripper".to_string()])
                .collect(),
        }
    }
}

/// Camera settings shared by both cameras.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CameraConfig {
    pub width: usize,
    pub height: usize,
    /// Vertical field of view of the agent-view camera (degrees).
    pub agent_fov_deg: f32,
    /// Vertical field of view of the wrist camera (degrees).
    pub wrist_fov_deg: f32,
    /// Agent-view eye and look-at point (world, m), before layout jitter.
    pub agent_eye: [f32; 3],
    pub agent_target: [f32; 3],
    /// Also produce metric depth images.
    pub depth: bool,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            width: 96,
            height: 96,
            agent_fov_deg: 55.0,
            wrist_fov_deg: 75.0,
            agent_eye: [0.0, -0.72, 0.9],
            agent_target: [0.48, 0.08, 0.05],
            depth: true,
        }
    }
}

/// Environment configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvConfig {
    /// Control frequency (Hz); must divide the physics rate ([`PHYSICS_HZ`]).
    pub control_hz: u32,
    pub action_mode: ActionMode,
    pub cameras: CameraConfig,
    /// Render camera images (turn off for fast expert rollouts).
    pub render: bool,
    pub layout: LayoutOptions,
    /// Override of the task's step budget.
    pub max_steps: Option<usize>,
    /// Steps an episode keeps running after the task first succeeds, so that recorded
    /// demos show what comes after it (the hand moving away from a placed object, which
    /// a policy must learn too); the episode then ends, a success if the task still
    /// holds. 0 (the default, and what evaluation uses): it ends at the first success.
    #[serde(default)]
    pub success_tail: usize,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            control_hz: 20,
            action_mode: ActionMode::EndEffectorDelta,
            cameras: CameraConfig::default(),
            render: true,
            layout: LayoutOptions::default(),
            max_steps: None,
            success_tail: 0,
        }
    }
}

impl EnvConfig {
    pub fn validate(&self) -> Result<(), SimError> {
        let hz = self.control_hz;
        if hz == 0 || !PHYSICS_HZ.is_multiple_of(hz) {
            return Err(SimError::Config(format!(
                "control_hz = {hz}: must divide the physics rate of {PHYSICS_HZ} Hz (e.g. 10, 20, 25, 50)"
            )));
        }
        let c = &self.cameras;
        if c.width == 0 || c.height == 0 || c.width > 4096 || c.height > 4096 {
            return Err(SimError::Config(format!(
                "camera size {}x{}: must be between 1 and 4096 pixels per side",
                c.width, c.height
            )));
        }
        for (name, fov) in [
            ("agent_fov_deg", c.agent_fov_deg),
            ("wrist_fov_deg", c.wrist_fov_deg),
        ] {
            if !(fov > 1.0 && fov < 170.0) {
                return Err(SimError::Config(format!(
                    "cameras.{name} = {fov}: must be between 1 and 170 degrees"
                )));
            }
        }
        let (lo, hi) = self.layout.distractors;
        if lo > hi || hi > 6 {
            return Err(SimError::Config(format!(
                "layout.distractors = ({lo}, {hi}): need min <= max <= 6"
            )));
        }
        if self.max_steps == Some(0) {
            return Err(SimError::Config("max_steps = 0: must be at least 1".into()));
        }
        Ok(())
    }

    pub fn substeps(&self) -> usize {
        (PHYSICS_HZ / self.control_hz.max(1)) as usize
    }
}

/// Step information.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepInfo {
    /// The task's success predicate holds now.
    pub success: bool,
    /// Why the episode ended without success (set when terminated/truncated and not success).
    pub failure: Option<FailureReason>,
    /// Steps taken so far in the episode.
    pub step: usize,
}

/// How close the hand came to the task's target object (tasks that grasp one): the
/// diagnostic that tells a policy that never found the object from one that found it and
/// fumbled the grasp. Distances are from the tool centre point to the object's centre (m).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    /// Closest approach over the episode.
    pub closest_m: f64,
    /// The nearest the hand was when commanded to close (over every open→close command;
    /// `None`: it never closed). Far from the object: it never found it; near: it found
    /// it and the grasp failed.
    pub at_close_m: Option<f64>,
    /// Tasks that place the object: the nearest, horizontally, the target object was to
    /// where it must go (the receptacle's centre) when the hand opened while holding it
    /// (m; `None`: it never let go of it). Far: carried to the wrong place or dropped on
    /// the way; within the receptacle: let go there, and it did not stay.
    pub released_m: Option<f64>,
}

#[derive(Debug)]
pub struct StepResult {
    pub observation: Observation,
    pub reward: f32,
    pub terminated: bool,
    pub truncated: bool,
    pub info: StepInfo,
}

/// LeRobot `robot_type` of the kitchen arm.
pub const ROBOT_TYPE: &str = "mulli_panda";

/// What every mulli world offers a policy or a data generator: the kitchen now, roads later.
/// Observations are the only thing that crosses to policies.
pub trait Env {
    /// Start an episode of task `task` (an id, e.g. `open_drawer`) on the layout of `seed`,
    /// phrased as `instruction`; returns the first observation.
    fn reset(&mut self, seed: u64, task: &str, instruction: &str) -> Result<Observation, SimError>;
    /// Apply one action for one control period.
    fn step(&mut self, action: &[f32]) -> Result<StepResult, SimError>;
    /// The body being controlled: action/state names, cameras, control rate.
    fn embodiment(&self) -> Embodiment;
}

impl Env for KitchenEnv {
    fn reset(&mut self, seed: u64, task: &str, instruction: &str) -> Result<Observation, SimError> {
        let task = crate::tasks::task(task)?;
        self.reset_with(seed, task, instruction)
    }
    fn step(&mut self, action: &[f32]) -> Result<StepResult, SimError> {
        KitchenEnv::step(self, action)
    }
    fn embodiment(&self) -> Embodiment {
        Embodiment {
            robot_type: ROBOT_TYPE.into(),
            action_names: self.config.action_mode.names(),
            state_names: state_names(),
            cameras: KitchenEnv::CAMERAS
                .iter()
                .map(|c| format!("observation.images.{c}"))
                .collect(),
            control_hz: self.config.control_hz,
        }
    }
}

/// Names of the proprioceptive state vector.
pub fn state_names() -> Vec<String> {
    let mut n: Vec<String> = (1..=DOF).map(|i| format!("joint_{i}")).collect();
    n.extend(
        [
            "ee_x",
            "ee_y",
            "ee_z",
            "ee_qx",
            "ee_qy",
            "ee_qz",
            "ee_qw",
            "gripper_width",
        ]
        .map(String::from),
    );
    n
}

/// Objects whose poses are in the privileged environment state.
pub const STATE_OBJECTS: [ObjectKind; 5] = ObjectKind::MAIN;

/// Names of the privileged environment-state vector.
pub fn environment_state_names() -> Vec<String> {
    let mut n = Vec::new();
    let pose = ["x", "y", "z", "qx", "qy", "qz", "qw"];
    for o in STATE_OBJECTS {
        n.extend(pose.iter().map(|p| format!("{}.{p}", o.id())));
    }
    for r in crate::objects::Receptacle::ALL {
        n.extend(pose.iter().map(|p| format!("{}.{p}", r.id())));
    }
    n.extend(
        [
            "fridge.x",
            "fridge.y",
            "cabinet.x",
            "cabinet.y",
            "fridge_door.angle",
            "drawer.opening",
        ]
        .map(String::from),
    );
    n.extend(pose.iter().map(|p| format!("ee.{p}")));
    n.push("gripper.width".into());
    for camera in KitchenEnv::CAMERAS {
        for thing in pixel_label_things() {
            n.extend(["u", "v"].map(|a| format!("{thing}.{camera}.{a}")));
        }
    }
    n
}

/// The things whose image position in each camera is in the environment state
/// (`<thing>.<camera>.u|v`): the objects and receptacles a policy grasps or places on.
fn pixel_label_things() -> impl Iterator<Item = &'static str> {
    STATE_OBJECTS
        .iter()
        .map(|o| o.id())
        .chain(crate::objects::Receptacle::ALL.iter().map(|r| r.id()))
}

/// Image coordinate of an absent or unprojectable thing: outside [-1, 1], so a consumer that
/// keeps only on-image labels drops it.
pub const OFF_IMAGE: f32 = -2.0;

/// One kitchen environment. Not `Sync`; run many in parallel with [`crate::VecEnv`].
pub struct KitchenEnv {
    config: EnvConfig,
    task: Arc<dyn Task>,
    scene: Scene,
    instruction: String,
    raster: Rasterizer,
    images: [Image; 2],
    steps: usize,
    max_steps: usize,
    /// The step at which the task first succeeded (for [`EnvConfig::success_tail`]).
    succeeded_at: Option<usize>,
    done: bool,
    ever_lifted: Vec<ObjectKind>,
    reach: Option<Reach>,
    /// Whether the last gripper command was "close" (to find the first open→close edge).
    closing: bool,
    ik: IkSettings,
}

impl KitchenEnv {
    /// Create and reset an environment.
    pub fn new(
        config: EnvConfig,
        task: Arc<dyn Task>,
        seed: u64,
        instruction: &str,
    ) -> Result<Self, SimError> {
        config.validate()?;
        let mut layout = Layout::sample(seed, &config.layout);
        task.prepare(&mut layout, seed);
        // Coarser round meshes for small images: same look, fewer tiny triangles.
        let side = config.cameras.width.max(config.cameras.height);
        let detail = if side <= 128 { 0.67 } else { 1.0 };
        let scene = Scene::build_with_detail(&layout, robot::HOME, detail);
        let max_steps = config.max_steps.unwrap_or_else(|| task.max_steps());
        let mut env = KitchenEnv {
            config,
            task,
            scene,
            instruction: instruction.to_string(),
            raster: Rasterizer::default(),
            images: [Image::new(0, 0), Image::new(0, 0)],
            steps: 0,
            max_steps,
            succeeded_at: None,
            done: false,
            ever_lifted: Vec::new(),
            reach: None,
            closing: false,
            ik: IkSettings::default(),
        };
        env.settle();
        Ok(env)
    }

    /// Reset to a new seed, task and instruction; returns the first observation.
    pub fn reset_with(
        &mut self,
        seed: u64,
        task: Arc<dyn Task>,
        instruction: &str,
    ) -> Result<Observation, SimError> {
        *self = KitchenEnv::new(self.config.clone(), task, seed, instruction)?;
        Ok(self.observe())
    }

    /// Let objects come to rest before the first observation.
    fn settle(&mut self) {
        let q = self.scene.arm.q;
        for _ in 0..30 {
            self.scene.drive_arm(&q);
            self.scene.step();
        }
    }

    pub fn config(&self) -> &EnvConfig {
        &self.config
    }
    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    /// Perturbs the scene: slides the loose object `kind` away from the hand (see
    /// [`Scene::slip_object`]); returns whether it moved.
    pub fn slip_object(&mut self, kind: crate::objects::ObjectKind, distance: f32) -> bool {
        self.scene.slip_object(kind, distance)
    }
    pub fn task(&self) -> &Arc<dyn Task> {
        &self.task
    }
    pub fn instruction(&self) -> &str {
        &self.instruction
    }
    pub fn steps(&self) -> usize {
        self.steps
    }
    pub fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// Apply one action for one control period.
    pub fn step(&mut self, action: &[f32]) -> Result<StepResult, SimError> {
        let dim = self.config.action_mode.dim();
        if action.len() != dim {
            return Err(SimError::Action(format!(
                "expected {dim} values ({}), got {}",
                self.config.action_mode.names().join(", "),
                action.len()
            )));
        }
        if let Some(i) = action.iter().position(|v| !v.is_finite()) {
            return Err(SimError::Action(format!(
                "value {i} ({}) is {}",
                self.config.action_mode.names()[i],
                action[i]
            )));
        }
        if self.done {
            return Err(SimError::Action(
                "episode is over (terminated or truncated); call reset".into(),
            ));
        }
        let control_dt = 1.0 / self.config.control_hz as f64;
        let q0 = self.scene.arm.q;
        let target_q = match self.config.action_mode {
            ActionMode::EndEffectorDelta => self.ee_delta_to_joints(&action[..6]),
            ActionMode::JointPosition => std::array::from_fn(|k| {
                (action[k] as f64).clamp(robot::JOINT_LOWER[k], robot::JOINT_UPPER[k])
            }),
        };
        let q1 = robot::limit_step(&q0, &target_q, control_dt);
        let g = action[dim - 1].clamp(-1.0, 1.0);
        self.track_reach(g > 0.0);
        self.scene
            .set_gripper((1.0 - g) / 2.0 * robot::GRIPPER_MAX_WIDTH as f32);
        let n = self.config.substeps();
        for s in 1..=n {
            let t = s as f64 / n as f64;
            let q: Joints = std::array::from_fn(|k| q0[k] + (q1[k] - q0[k]) * t);
            self.scene.drive_arm(&q);
            self.scene.step();
        }
        self.steps += 1;
        self.track_progress();

        let finite = self.scene.is_finite();
        let success = finite && self.task.success(&self.scene);
        if success && self.succeeded_at.is_none() {
            self.succeeded_at = Some(self.steps);
        }
        let tail_over = self
            .succeeded_at
            .is_some_and(|at| self.steps >= at + self.config.success_tail);
        let terminated = !finite || (success && tail_over);
        let truncated = !terminated && self.steps >= self.max_steps;
        let failure = if !finite {
            Some(FailureReason::PhysicsFault)
        } else if truncated && !success {
            let reason = self.task.diagnose(&self.scene, &self.ever_lifted);
            // Nothing lifted, but the hand closed: the commonest way a policy fails a grasp
            // (it goes down beside the object), worth telling apart from never trying.
            let closed = self.reach.is_some_and(|r| r.at_close_m.is_some());
            Some(if reason == FailureReason::Timeout && closed {
                FailureReason::MissedGrasp
            } else {
                reason
            })
        } else {
            None
        };
        self.done = terminated || truncated;
        let observation = if finite {
            self.observe()
        } else {
            self.blank_observation()
        };
        Ok(StepResult {
            observation,
            reward: if success { 1.0 } else { 0.0 },
            terminated,
            truncated,
            info: StepInfo {
                success,
                failure,
                step: self.steps,
            },
        })
    }

    /// Update [`Reach`] with the hand where it is as this step's command arrives.
    fn track_reach(&mut self, closing: bool) {
        let target = self.task.target_object();
        if let (Some(object), Some(pose)) = (target, target.and_then(|o| self.scene.object_pose(o)))
        {
            let d = (self.scene.tcp().translation - pose.translation.as_dvec3()).length();
            // Called before the new gripper command acts: at an opening edge the object
            // is still in the hand if it was held.
            let released = (!closing && self.closing && self.scene.is_grasped(object))
                .then(|| self.task.place_target(&self.scene))
                .flatten()
                .map(|at| f64::from((pose.translation - at).truncate().length()));
            let r = self.reach.get_or_insert(Reach {
                closest_m: d,
                at_close_m: None,
                released_m: None,
            });
            r.closest_m = r.closest_m.min(d);
            if closing && !self.closing {
                r.at_close_m = Some(r.at_close_m.map_or(d, |c| c.min(d)));
            }
            if let Some(x) = released {
                r.released_m = Some(r.released_m.map_or(x, |c| c.min(x)));
            }
        }
        self.closing = closing;
    }

    /// How close the hand has come to the target object so far (`None` for tasks without
    /// one, or before the first step).
    pub fn reach(&self) -> Option<Reach> {
        self.reach
    }

    fn track_progress(&mut self) {
        for o in &self.scene.objects {
            let z = self.scene.body_pose(o.body).translation.z - o.kind.shape().half_height();
            if z > 0.05 && !self.ever_lifted.contains(&o.kind) && self.scene.is_grasped(o.kind) {
                self.ever_lifted.push(o.kind);
            }
        }
    }

    /// Resolve an end-effector delta into joint targets with IK.
    fn ee_delta_to_joints(&self, delta: &[f32]) -> Joints {
        let q = self.scene.arm.q;
        let tcp = robot::forward(&q).tcp;
        let mut dp = DVec3::new(delta[0] as f64, delta[1] as f64, delta[2] as f64);
        let lim = MAX_DPOS as f64;
        dp = dp.clamp(DVec3::splat(-lim), DVec3::splat(lim));
        let mut dr = DVec3::new(delta[3] as f64, delta[4] as f64, delta[5] as f64);
        let lim = MAX_DROT as f64;
        dr = dr.clamp(DVec3::splat(-lim), DVec3::splat(lim));
        let mut pos = tcp.translation + dp;
        pos.z = pos.z.max(MIN_TCP_Z);
        let rot = if dr.length() > 1e-9 {
            DQuat::from_scaled_axis(dr) * DQuat::from_mat3(&tcp.matrix3)
        } else {
            DQuat::from_mat3(&tcp.matrix3)
        };
        let target = DAffine3 {
            matrix3: DMat3::from_quat(rot.normalize()),
            translation: pos,
        };
        robot::inverse(&q, &target, &self.ik).0
    }

    /// The agent-view camera: fixed for an episode, jittered per layout.
    fn agent_camera(&self) -> Camera {
        let c = &self.config.cameras;
        let l = &self.scene.layout;
        let eye = Vec3::from(c.agent_eye) + l.camera_eye_jitter;
        let target = Vec3::from(c.agent_target) + l.camera_target_jitter;
        Camera::look_at(
            eye,
            target,
            Vec3::Z,
            c.agent_fov_deg.to_radians(),
            c.width,
            c.height,
        )
    }

    fn cameras(&self) -> [Camera; 2] {
        let c = &self.config.cameras;
        let agent = self.agent_camera();
        // Wrist camera: on the hand, behind and beside the fingers, looking along the approach axis.
        let tcp = robot::forward(&self.scene.arm.q).tcp;
        let at = |p: DVec3| (tcp.transform_point3(p)).as_vec3();
        let w_eye = at(DVec3::new(0.07, 0.0, -0.10));
        let w_target = at(DVec3::new(0.0, 0.0, 0.08));
        let w_up = tcp.transform_vector3(DVec3::X).as_vec3();
        let wrist = Camera::look_at(
            w_eye,
            w_target,
            w_up,
            c.wrist_fov_deg.to_radians(),
            c.width,
            c.height,
        );
        [agent, wrist]
    }

    /// Render both cameras into the env's image buffers.
    fn render(&mut self) {
        let cams = self.cameras();
        let all = self.scene.draw_items();
        let bg = self.scene.floor_color.map(|c| c * 0.6);
        let (mut fixed, mut moving) =
            (Vec::with_capacity(all.len()), Vec::with_capacity(all.len()));
        for (k, cam) in cams.iter().enumerate() {
            // Skip whole objects outside the view (the wrist camera sees few).
            fixed.clear();
            moving.clear();
            for s in all.iter().filter(|s| cam.sees_sphere(s.center, s.radius)) {
                // The agent view never moves within an episode: its furniture layer is
                // rasterized once and reused. The wrist camera moves every step.
                if k == 0 && s.fixed {
                    fixed.push(s.item)
                } else {
                    moving.push(s.item)
                }
            }
            let lighting = &self.scene.layout.lighting;
            self.raster
                .render_layered(cam, &fixed, &moving, lighting, bg, &mut self.images[k]);
        }
    }

    /// The camera names, in image order.
    pub const CAMERAS: [&'static str; 2] = ["agentview", "wrist"];

    /// Current observation.
    pub fn observe(&mut self) -> Observation {
        let mut obs = Observation {
            state: self.state(),
            instruction: self.instruction.clone(),
            environment_state: self.environment_state(),
            ..Default::default()
        };
        if self.config.render {
            self.render();
            for (k, name) in Self::CAMERAS.iter().enumerate() {
                let img = &self.images[k];
                obs.images.insert(
                    name.to_string(),
                    CameraImage {
                        width: img.width,
                        height: img.height,
                        rgb: img.rgb.clone(),
                        depth: self.config.cameras.depth.then(|| img.depth.clone()),
                    },
                );
            }
        }
        obs
    }

    fn blank_observation(&self) -> Observation {
        let c = &self.config.cameras;
        let mut obs = Observation {
            state: vec![0.0; state_names().len()],
            instruction: self.instruction.clone(),
            environment_state: vec![0.0; environment_state_names().len()],
            ..Default::default()
        };
        if self.config.render {
            for name in Self::CAMERAS {
                obs.images.insert(
                    name.into(),
                    CameraImage {
                        width: c.width,
                        height: c.height,
                        rgb: vec![0; c.width * c.height * 3],
                        depth: None,
                    },
                );
            }
        }
        obs
    }

    /// Proprioceptive state (see [`state_names`]).
    pub fn state(&self) -> Vec<f32> {
        let q = self.scene.arm.q;
        let tcp = robot::forward(&q).tcp;
        let rot = canonical_quat(DQuat::from_mat3(&tcp.matrix3));
        let mut s: Vec<f32> = q.iter().map(|&v| v as f32).collect();
        s.extend([tcp.translation.x, tcp.translation.y, tcp.translation.z].map(|v| v as f32));
        s.extend([rot.x, rot.y, rot.z, rot.w].map(|v| v as f32));
        s.push(self.scene.gripper_width());
        s
    }

    /// Privileged scene state (see [`environment_state_names`]).
    pub fn environment_state(&self) -> Vec<f32> {
        let scene = &self.scene;
        let mut s = Vec::with_capacity(80);
        let push_pose = |p: Option<rapier3d::math::Pose>, s: &mut Vec<f32>| match p {
            Some(p) => {
                let mut q = p.rotation;
                if q.w < 0.0 {
                    q = -q;
                }
                s.extend([
                    p.translation.x,
                    p.translation.y,
                    p.translation.z,
                    q.x,
                    q.y,
                    q.z,
                    q.w,
                ]);
            }
            None => s.extend([0.0; 7]),
        };
        for o in STATE_OBJECTS {
            push_pose(scene.object_pose(o), &mut s);
        }
        for r in crate::objects::Receptacle::ALL {
            push_pose(scene.receptacle_pose(r), &mut s);
        }
        let f = scene.fridge_pose().translation;
        let c = scene.cabinet_pose().translation;
        s.extend([
            f.x,
            f.y,
            c.x,
            c.y,
            scene.door_angle(),
            scene.drawer_opening(),
        ]);
        let tcp = scene.tcp();
        let rot = canonical_quat(DQuat::from_mat3(&tcp.matrix3));
        s.extend([tcp.translation.x, tcp.translation.y, tcp.translation.z].map(|v| v as f32));
        s.extend([rot.x, rot.y, rot.z, rot.w].map(|v| v as f32));
        s.push(scene.gripper_width());
        // Where each object's centre lands in each camera's image, in [-1, 1] per axis
        // (pixel centres at (2i + 1) / side - 1, row 0 on top; the convention of the policy's
        // spatial softmax): dense supervision for a policy that must find the objects in its
        // camera images (docs/benchmarks.md, "Finding objects in pixels"). The wrist view
        // matters for the grasp: a pixel there is a few millimetres at the final approach,
        // against 2-3 cm in the agent view.
        let centres: Vec<_> = STATE_OBJECTS
            .iter()
            .map(|&o| scene.object_pose(o))
            .chain(
                crate::objects::Receptacle::ALL
                    .iter()
                    .map(|&r| scene.receptacle_pose(r)),
            )
            .collect();
        for camera in self.cameras() {
            let (w, h) = (camera.width as f32, camera.height as f32);
            for pose in &centres {
                let uv = pose
                    .and_then(|p| {
                        camera.project(Vec3::new(p.translation.x, p.translation.y, p.translation.z))
                    })
                    .map_or([OFF_IMAGE; 2], |(x, y, _)| {
                        [2.0 * x / w - 1.0, 2.0 * y / h - 1.0]
                    });
                s.extend(uv);
            }
        }
        s
    }

    /// Success predicate now (without stepping).
    pub fn is_success(&self) -> bool {
        self.task.success(&self.scene)
    }
}

/// Quaternion with w >= 0 (q and -q are the same rotation; keep the dataset continuous).
fn canonical_quat(q: DQuat) -> DQuat {
    if q.w < 0.0 { -q } else { q }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_physics_blow_up_ends_the_episode_as_a_failure_not_a_panic() {
        let task = crate::tasks::task("pick_up_apple").unwrap();
        let config = EnvConfig {
            render: true,
            ..EnvConfig::default()
        };
        let mut env = KitchenEnv::new(config, task, 1, "pick up the apple").unwrap();
        let apple = env.scene.object(ObjectKind::Apple).unwrap().body;
        env.scene.world.bodies[apple].set_linvel(Vec3::splat(f32::NAN), true);
        let r = env.step(&[0.0; 7]).unwrap();
        assert!(r.terminated && !r.info.success);
        assert_eq!(r.info.failure, Some(FailureReason::PhysicsFault));
        assert!(r.observation.state.iter().all(|v| v.is_finite()));
        assert!(env.step(&[0.0; 7]).is_err());
    }
}
