//! Scripted experts: closed-loop controllers with privileged access to the scene that turn a
//! sequence of targets (tool pose + gripper) into bounded end-effector delta actions. They
//! stand in for teleoperated demonstrations; [`NoisyExpert`] adds human-like jitter.

use crate::env::{MAX_DPOS, MAX_DROT};
use crate::robot;
use crate::scene::Scene;
use glam::{DMat3, DQuat, DVec3};
use mulli_core::rng::{self, RngExt};

/// Gripper command values.
pub const OPEN: f32 = -1.0;
pub const CLOSE: f32 = 1.0;

/// An expert proposes the next action (end-effector delta mode) from the privileged scene.
pub trait Expert: Send {
    fn act(&mut self, scene: &Scene) -> [f32; 7];
}

/// A tool pose to reach and the gripper command to hold meanwhile.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub pos: DVec3,
    pub rot: DQuat,
    pub gripper: f32,
}

/// Expert motion speed limits (below the env's action clip so noise has room).
pub const SPEED: f64 = 0.022;
pub const TURN: f64 = 0.15;

/// Current tool pose.
pub fn tool(scene: &Scene) -> (DVec3, DQuat) {
    let t = scene.tcp();
    (t.translation, DQuat::from_mat3(&t.matrix3))
}

/// Action moving towards `target` at bounded speed.
pub fn servo(scene: &Scene, target: &Target, speed: f64) -> [f32; 7] {
    let (p, r) = tool(scene);
    let mut dp = target.pos - p;
    if dp.length() > speed {
        dp = dp.normalize() * speed;
    }
    let mut dr = robot::rotation_error(r, target.rot);
    if dr.length() > TURN {
        dr = dr.normalize() * TURN;
    }
    [
        dp.x as f32,
        dp.y as f32,
        dp.z as f32,
        dr.x as f32,
        dr.y as f32,
        dr.z as f32,
        target.gripper,
    ]
}

/// Horizontal distance from a target within which [`funnel_height`] is at its bottom, and
/// beyond which it is at its top.
pub const FUNNEL_NARROW: f64 = 0.006;
pub const FUNNEL_WIDE: f64 = 0.03;

/// Height to aim for above a grasp or release point at horizontal distance `lateral` from
/// it: `high` beyond [`FUNNEL_WIDE`], `low` within [`FUNNEL_NARROW`], linear between.
///
/// Why a funnel: the experts used to stop at a point above the target and descend once
/// within 1.2 cm of it. A policy sees the target a centimetre or so off, so in what it sees
/// "stop here" and "go down now" are the same state, and it learned to hover at the stop
/// (the commonest failure of the flywheel's grasps). Along a funnel the way down is a
/// function of where the hand is relative to the target, which such a policy can imitate.
pub fn funnel_height(lateral: f64, low: f64, high: f64) -> f64 {
    low + funnel_share(lateral) * (high - low)
}

/// Speed along the funnel: full speed up high, 60 % near the bottom (careful insertions).
pub fn funnel_speed(lateral: f64) -> f64 {
    SPEED * (0.6 + 0.4 * funnel_share(lateral))
}

/// 0 within [`FUNNEL_NARROW`] of the target, 1 beyond [`FUNNEL_WIDE`].
fn funnel_share(lateral: f64) -> f64 {
    ((lateral - FUNNEL_NARROW) / (FUNNEL_WIDE - FUNNEL_NARROW)).clamp(0.0, 1.0)
}

/// Whether the tool is within `tol` metres (and ~3°) of the target.
pub fn reached(scene: &Scene, target: &Target, tol: f64) -> bool {
    let (p, r) = tool(scene);
    (target.pos - p).length() < tol && robot::rotation_error(r, target.rot).length() < 0.06
}

/// Tool orientation pointing straight down with the fingers moving along `yaw` (rad, world).
pub fn top_down(yaw: f64) -> DQuat {
    let z = DVec3::NEG_Z;
    let y = DVec3::new(yaw.cos(), yaw.sin(), 0.0);
    let x = y.cross(z);
    DQuat::from_mat3(&DMat3::from_cols(x, y, z)).normalize()
}

/// Tool orientation approaching horizontally along `dir` (tilted down by `pitch` rad) with
/// the fingers moving horizontally.
pub fn side(dir: DVec3, pitch: f64) -> DQuat {
    let d = DVec3::new(dir.x, dir.y, 0.0).normalize();
    let z = (d * pitch.cos() - DVec3::Z * pitch.sin()).normalize();
    let y = DVec3::Z.cross(d).normalize();
    let x = y.cross(z);
    DQuat::from_mat3(&DMat3::from_cols(x, y, z)).normalize()
}

/// [`side`], with the finger axis' sign chosen closest to `reference_y` (the current tool y):
/// fingers are symmetric, and rolling the wrist half a turn would run into joint limits.
pub fn side_near(dir: DVec3, pitch: f64, reference_y: DVec3) -> DQuat {
    let q = side(dir, pitch);
    if (q * DVec3::Y).dot(reference_y) >= 0.0 {
        q
    } else {
        (q * DQuat::from_rotation_z(std::f64::consts::PI)).normalize()
    }
}

/// The finger-axis yaw of the tool now.
pub fn tool_yaw(scene: &Scene) -> f64 {
    let y = scene.tcp().matrix3.y_axis;
    y.y.atan2(y.x)
}

/// Of the grasp yaws `yaw + k·period`, the one closest to `reference` (fingers are symmetric,
/// and the wrist has limited range, so never turn further than needed).
pub fn closest_yaw(yaw: f64, period: f64, reference: f64) -> f64 {
    let k = ((reference - yaw) / period).round();
    yaw + k * period
}

/// Yaw of the hand at the home pose: the reference that keeps joint 7 mid-range.
pub fn home_yaw() -> f64 {
    let y = robot::forward(&robot::HOME).tcp.matrix3.y_axis;
    y.y.atan2(y.x)
}

/// A sequence of phases driven by a closure per phase. Each phase returns the target and
/// whether it is complete; the runner advances, counts time in phase, and gives up a phase
/// after `timeout` steps (moving on rather than freezing, like a human retrying).
pub struct Phases {
    pub phase: usize,
    pub in_phase: usize,
}

impl Phases {
    pub fn new() -> Self {
        Self {
            phase: 0,
            in_phase: 0,
        }
    }
    pub fn next(&mut self) {
        self.phase += 1;
        self.in_phase = 0;
    }
    pub fn goto(&mut self, phase: usize) {
        self.phase = phase;
        self.in_phase = 0;
    }
    pub fn tick(&mut self) {
        self.in_phase += 1;
    }

    /// Servo towards `target`; move on to the next phase once within `tol` metres or after
    /// `timeout` steps in this phase (never freeze on an unreachable target).
    pub fn reach(
        &mut self,
        scene: &Scene,
        target: &Target,
        tol: f64,
        timeout: usize,
        speed: f64,
    ) -> [f32; 7] {
        if reached(scene, target, tol) || self.in_phase > timeout {
            self.next();
        }
        servo(scene, target, speed)
    }
}

impl Default for Phases {
    fn default() -> Self {
        Self::new()
    }
}

/// Wraps an expert with temporally correlated (Ornstein–Uhlenbeck) action noise and rare
/// short hesitations, like a human teleoperator. The noise is signal-dependent, as human motor
/// noise is (Harris & Wolpert 1998): it scales with the commanded speed, so fast transfers
/// wobble and slow, careful insertions stay precise. Noise never touches the gripper command.
pub struct NoisyExpert {
    inner: Box<dyn Expert>,
    rng: rng::Rng,
    state: [f64; 6],
    sigma: f64,
    pause: usize,
}

impl NoisyExpert {
    /// `sigma` is the stationary standard deviation of the translation noise (m per step);
    /// rotation noise is 4× that in radians.
    pub fn new(inner: Box<dyn Expert>, sigma: f64, seed: u64) -> Self {
        Self {
            inner,
            rng: rng::substream(seed, "expert-noise", 0),
            state: [0.0; 6],
            sigma,
            pause: 0,
        }
    }
}

impl NoisyExpert {
    /// The wrapped expert's own action and the noisy one to execute. Recording the first
    /// while executing the second gives DART's demos (Laskey et al. 2017): states pushed
    /// off the expert's path, each labelled with the expert's way back.
    pub fn act_both(&mut self, scene: &Scene) -> ([f32; 7], [f32; 7]) {
        let clean = self.inner.act(scene);
        (clean, self.perturb(clean))
    }

    fn perturb(&mut self, clean: [f32; 7]) -> [f32; 7] {
        let mut a = clean;
        if self.sigma <= 0.0 {
            return a;
        }
        if self.pause > 0 {
            self.pause -= 1;
            return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, a[6]];
        }
        if self.rng.random_bool(0.01) {
            self.pause = self.rng.random_range(1..4);
        }
        let theta = 0.3;
        let speed = (a[0] as f64).hypot(a[1] as f64).hypot(a[2] as f64);
        let gain = 0.25 + 0.75 * (speed / SPEED).min(1.0);
        for (k, s) in self.state.iter_mut().enumerate() {
            let scale = gain * if k < 3 { self.sigma } else { 4.0 * self.sigma };
            let n: f64 = gaussian(&mut self.rng);
            *s += -theta * *s + scale * (2.0 * theta).sqrt() * n;
            let lim = if k < 3 { MAX_DPOS } else { MAX_DROT };
            a[k] = (a[k] + *s as f32).clamp(-lim, lim);
        }
        a
    }
}

impl Expert for NoisyExpert {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        self.act_both(scene).1
    }
}

/// Standard normal sample (Box–Muller).
pub fn gaussian(rng: &mut rng::Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientations_are_what_they_say() {
        let q = top_down(0.3);
        let m = DMat3::from_quat(q);
        assert!((m.z_axis - DVec3::NEG_Z).length() < 1e-9);
        assert!((m.y_axis - DVec3::new(0.3f64.cos(), 0.3f64.sin(), 0.0)).length() < 1e-9);
        assert!((m.determinant() - 1.0).abs() < 1e-9);
        let s = DMat3::from_quat(side(DVec3::X, 0.0));
        assert!((s.z_axis - DVec3::X).length() < 1e-9);
        assert!(s.y_axis.z.abs() < 1e-9);
    }

    #[test]
    fn the_funnel_narrows_from_the_approach_height_to_the_target() {
        let (low, high) = (0.02, 0.12);
        assert_eq!(funnel_height(0.0, low, high), low);
        assert_eq!(funnel_height(FUNNEL_NARROW, low, high), low);
        assert_eq!(funnel_height(FUNNEL_WIDE, low, high), high);
        assert_eq!(funnel_height(1.0, low, high), high);
        let mid = funnel_height((FUNNEL_NARROW + FUNNEL_WIDE) / 2.0, low, high);
        assert!((mid - (low + high) / 2.0).abs() < 1e-12);
        // Monotone: the closer over the target, the lower; never faster than the experts.
        let mut last = (low, 0.0);
        for i in 0..=100 {
            let lateral = i as f64 * 0.0005;
            let (h, v) = (funnel_height(lateral, low, high), funnel_speed(lateral));
            assert!(
                h >= last.0 && v >= last.1 && v <= SPEED,
                "at {lateral}: {h}, {v}"
            );
            last = (h, v);
        }
        assert!((funnel_speed(0.0) - 0.6 * SPEED).abs() < 1e-12);
    }

    #[test]
    fn closest_yaw_picks_the_nearest_equivalent() {
        let pi = std::f64::consts::PI;
        assert!((closest_yaw(0.1, pi, 3.0) - (0.1 + pi)).abs() < 1e-12);
        assert!((closest_yaw(0.1, pi / 2.0, -1.4) - (0.1 - pi / 2.0)).abs() < 1e-12);
    }
}
