//! The arm: Franka-Panda kinematics (modified DH), joint limits, forward kinematics, the
//! geometric Jacobian and damped-least-squares inverse kinematics.
//!
//! Kinematics run in f64: IK iterates on small differences and f32 round-off shows up as
//! millimetre jitter in the end-effector.

// Small dense linear algebra reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use glam::{DAffine3, DMat3, DQuat, DVec3};

/// Number of arm joints.
pub const DOF: usize = 7;

/// Panda modified-DH parameters per joint: (a_{i-1}, d_i, alpha_{i-1}). From Franka's
/// published robot description.
const DH: [(f64, f64, f64); DOF] = [
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -std::f64::consts::FRAC_PI_2),
    (0.0, 0.316, std::f64::consts::FRAC_PI_2),
    (0.0825, 0.0, std::f64::consts::FRAC_PI_2),
    (-0.0825, 0.384, -std::f64::consts::FRAC_PI_2),
    (0.0, 0.0, std::f64::consts::FRAC_PI_2),
    (0.088, 0.0, std::f64::consts::FRAC_PI_2),
];
/// Flange offset along joint 7's axis.
const FLANGE_D: f64 = 0.107;
/// Tool centre point (between the fingertips) below the flange.
pub const TCP_OFFSET: f64 = 0.1034;

/// Panda joint limits (rad).
pub const JOINT_LOWER: [f64; DOF] = [
    -2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973,
];
pub const JOINT_UPPER: [f64; DOF] = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973];
/// Panda joint velocity limits (rad/s).
pub const JOINT_VEL: [f64; DOF] = [2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61];
/// The ready pose: hand pointing down in front of the base.
pub const HOME: [f64; DOF] = [0.0, -0.6, 0.0, -2.4, 0.0, 1.8, std::f64::consts::FRAC_PI_4];
/// Maximum distance between the fingers (m).
pub const GRIPPER_MAX_WIDTH: f64 = 0.08;

pub type Joints = [f64; DOF];

/// World poses of every link frame (base-relative), the flange and the tool centre point.
#[derive(Clone, Debug)]
pub struct ArmPose {
    /// Frame i is the frame of joint i+1 (its z axis is the joint's axis).
    pub links: [DAffine3; DOF],
    pub flange: DAffine3,
    /// Tool frame: z points out of the hand (approach), y along the finger motion.
    pub tcp: DAffine3,
}

fn dh_transform(a: f64, d: f64, alpha: f64, theta: f64) -> DAffine3 {
    DAffine3::from_rotation_x(alpha)
        * DAffine3::from_translation(DVec3::new(a, 0.0, 0.0))
        * DAffine3::from_rotation_z(theta)
        * DAffine3::from_translation(DVec3::new(0.0, 0.0, d))
}

/// The hand is mounted rotated -45° about the flange axis (as on the real Panda).
fn flange_to_tcp() -> DAffine3 {
    DAffine3::from_rotation_z(-std::f64::consts::FRAC_PI_4)
        * DAffine3::from_translation(DVec3::new(0.0, 0.0, TCP_OFFSET))
}

/// Forward kinematics relative to the arm base.
pub fn forward(q: &Joints) -> ArmPose {
    let mut t = DAffine3::IDENTITY;
    let mut links = [DAffine3::IDENTITY; DOF];
    for (i, &(a, d, alpha)) in DH.iter().enumerate() {
        t *= dh_transform(a, d, alpha, q[i]);
        links[i] = t;
    }
    let flange = t * DAffine3::from_translation(DVec3::new(0.0, 0.0, FLANGE_D));
    let tcp = flange * flange_to_tcp();
    ArmPose { links, flange, tcp }
}

/// Where link i+1's origin sits in link i's frame; constant because it does not depend on
/// joint i+1's angle. Used to size the link collision capsules.
pub fn link_segment(i: usize) -> DVec3 {
    if i + 1 < DOF {
        let (a, d, alpha) = DH[i + 1];
        DVec3::new(a, 0.0, 0.0) + DMat3::from_rotation_x(alpha) * DVec3::new(0.0, 0.0, d)
    } else {
        DVec3::new(0.0, 0.0, FLANGE_D)
    }
}

/// 6×7 geometric Jacobian of the TCP (rows: linear xyz, angular xyz), base frame.
pub fn jacobian(q: &Joints) -> [[f64; DOF]; 6] {
    let pose = forward(q);
    let p = pose.tcp.translation;
    let mut j = [[0.0; DOF]; 6];
    for i in 0..DOF {
        let z = pose.links[i].matrix3.z_axis;
        let o = pose.links[i].translation;
        let lin = z.cross(p - o);
        for r in 0..3 {
            j[r][i] = lin[r];
            j[r + 3][i] = z[r];
        }
    }
    j
}

/// Orientation error as a rotation vector (axis × angle) taking `from` to `to`.
pub fn rotation_error(from: DQuat, to: DQuat) -> DVec3 {
    let mut d = to * from.inverse();
    if d.w < 0.0 {
        d = -d;
    }
    let (axis, angle) = d.to_axis_angle();
    if angle.is_finite() && axis.is_finite() {
        axis * angle
    } else {
        DVec3::ZERO
    }
}

/// Solve the 6×6 symmetric positive-definite system `a x = b` by Cholesky. Returns None if
/// `a` is not positive definite (cannot happen with damping > 0 and finite inputs).
fn solve_spd6(a: &[[f64; 6]; 6], b: &[f64; 6]) -> Option<[f64; 6]> {
    let mut l = [[0.0; 6]; 6];
    for i in 0..6 {
        for k in 0..=i {
            let mut s = a[i][k];
            for m in 0..k {
                s -= l[i][m] * l[k][m];
            }
            if i == k {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][k] = s / l[k][k];
            }
        }
    }
    let mut y = [0.0; 6];
    for i in 0..6 {
        let mut s = b[i];
        for m in 0..i {
            s -= l[i][m] * y[m];
        }
        y[i] = s / l[i][i];
    }
    let mut x = [0.0; 6];
    for i in (0..6).rev() {
        let mut s = y[i];
        for m in i + 1..6 {
            s -= l[m][i] * x[m];
        }
        x[i] = s / l[i][i];
    }
    Some(x)
}

/// Settings of the IK solver.
#[derive(Clone, Copy, Debug)]
pub struct IkSettings {
    pub iterations: usize,
    /// Damping of the least-squares step; keeps steps bounded near singularities.
    pub damping: f64,
    /// Gain of the null-space pull towards [`HOME`] (keeps the elbow up, away from limits).
    pub posture_gain: f64,
    /// Weight of orientation error relative to position error (m per rad).
    pub rotation_weight: f64,
}

impl Default for IkSettings {
    fn default() -> Self {
        Self {
            iterations: 8,
            damping: 0.03,
            posture_gain: 0.05,
            rotation_weight: 0.3,
        }
    }
}

/// Damped-least-squares IK from `q0` towards the TCP pose `target` (base frame). Joint limits
/// are enforced by clamping each iterate. Returns the joints and the remaining position error.
pub fn inverse(q0: &Joints, target: &DAffine3, settings: &IkSettings) -> (Joints, f64) {
    let target_rot = DQuat::from_mat3(&target.matrix3);
    let mut q = *q0;
    let mut pos_err = f64::INFINITY;
    for _ in 0..settings.iterations {
        let pose = forward(&q);
        let dp = target.translation - pose.tcp.translation;
        pos_err = dp.length();
        let dr = rotation_error(DQuat::from_mat3(&pose.tcp.matrix3), target_rot);
        let w = settings.rotation_weight;
        let e = [dp.x, dp.y, dp.z, dr.x * w, dr.y * w, dr.z * w];
        if pos_err < 1e-5 && dr.length() < 1e-4 {
            break;
        }
        let mut jac = jacobian(&q);
        for row in jac.iter_mut().skip(3) {
            for v in row.iter_mut() {
                *v *= w;
            }
        }
        let mut jjt = [[0.0; 6]; 6];
        for (r, row) in jjt.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = (0..DOF).map(|k| jac[r][k] * jac[c][k]).sum();
            }
            row[r] += settings.damping * settings.damping;
        }
        let Some(y) = solve_spd6(&jjt, &e) else { break };
        let mut dq = [0.0; DOF];
        for (k, d) in dq.iter_mut().enumerate() {
            *d = (0..6).map(|r| jac[r][k] * y[r]).sum();
        }
        // Null-space posture term: (I - J⁺J) g, with J⁺ the damped pseudo-inverse.
        let g: [f64; DOF] = std::array::from_fn(|k| settings.posture_gain * (HOME[k] - q[k]));
        let jg: [f64; 6] = std::array::from_fn(|r| (0..DOF).map(|k| jac[r][k] * g[k]).sum());
        if let Some(yg) = solve_spd6(&jjt, &jg) {
            for (k, d) in dq.iter_mut().enumerate() {
                *d += g[k] - (0..6).map(|r| jac[r][k] * yg[r]).sum::<f64>();
            }
        }
        for k in 0..DOF {
            q[k] = (q[k] + dq[k]).clamp(JOINT_LOWER[k], JOINT_UPPER[k]);
        }
    }
    let pose = forward(&q);
    pos_err = pos_err.min((target.translation - pose.tcp.translation).length());
    (q, pos_err)
}

/// Limit a joint step to what the velocity limits allow in `dt` seconds. The whole step is
/// scaled uniformly, so the arm moves in the direction IK asked for, only slower.
pub fn limit_step(from: &Joints, to: &Joints, dt: f64) -> Joints {
    let mut scale: f64 = 1.0;
    for k in 0..DOF {
        let d = (to[k] - from[k]).abs();
        let max = JOINT_VEL[k] * dt;
        if d > max {
            scale = scale.min(max / d);
        }
    }
    std::array::from_fn(|k| {
        (from[k] + (to[k] - from[k]) * scale).clamp(JOINT_LOWER[k], JOINT_UPPER[k])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_pose_points_down_in_front() {
        let pose = forward(&HOME);
        let p = pose.tcp.translation;
        assert!(p.x > 0.3 && p.x < 0.6, "{p}");
        assert!(p.y.abs() < 1e-9, "{p}");
        assert!(p.z > 0.15 && p.z < 0.6, "{p}");
        // Approach axis points down.
        assert!(
            pose.tcp.matrix3.z_axis.z < -0.99,
            "{:?}",
            pose.tcp.matrix3.z_axis
        );
    }

    #[test]
    fn zero_pose_matches_panda_reference() {
        // With all joints at zero the Panda flange sits at x = 0.088, z = 0.333+0.316+0.384-0.107.
        let p = forward(&[0.0; DOF]).flange.translation;
        assert!((p - DVec3::new(0.088, 0.0, 0.926)).length() < 1e-9, "{p}");
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        let q = [0.1, -0.4, 0.2, -2.0, 0.3, 1.6, 0.5];
        let j = jacobian(&q);
        let h = 1e-6;
        for k in 0..DOF {
            let mut qp = q;
            qp[k] += h;
            let dp = (forward(&qp).tcp.translation - forward(&q).tcp.translation) / h;
            for r in 0..3 {
                assert!((j[r][k] - dp[r]).abs() < 1e-4, "joint {k} row {r}");
            }
        }
    }

    #[test]
    fn ik_reaches_targets_around_the_table() {
        let settings = IkSettings {
            iterations: 60,
            ..IkSettings::default()
        };
        let down = forward(&HOME).tcp.matrix3;
        for &(x, y, z) in &[
            (0.5, 0.0, 0.1),
            (0.4, 0.3, 0.05),
            (0.6, -0.3, 0.2),
            (0.35, 0.0, 0.4),
        ] {
            let target = DAffine3 {
                matrix3: down,
                translation: DVec3::new(x, y, z),
            };
            let (q, err) = inverse(&HOME, &target, &settings);
            assert!(err < 1e-3, "target ({x},{y},{z}) error {err}");
            for k in 0..DOF {
                assert!(q[k] >= JOINT_LOWER[k] && q[k] <= JOINT_UPPER[k]);
            }
            let rot = rotation_error(
                DQuat::from_mat3(&forward(&q).tcp.matrix3),
                DQuat::from_mat3(&down),
            );
            assert!(rot.length() < 1e-2, "orientation error {rot}");
        }
    }

    #[test]
    fn step_limit_respects_velocity() {
        let from = HOME;
        let to = [3.0; DOF];
        let q = limit_step(&from, &to, 0.05);
        for k in 0..DOF {
            assert!((q[k] - from[k]).abs() <= JOINT_VEL[k] * 0.05 + 1e-12);
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn joints() -> impl Strategy<Value = Joints> {
        proptest::array::uniform7(0.0f64..1.0).prop_map(|u| {
            std::array::from_fn(|k| {
                // Stay 0.2 rad inside the limits: IK clamps to them, so a target at the very
                // edge is not a fair round-trip.
                let (lo, hi) = (JOINT_LOWER[k] + 0.2, JOINT_UPPER[k] - 0.2);
                lo + u[k] * (hi - lo)
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// IK started near a configuration recovers that configuration's tool pose.
        #[test]
        fn ik_recovers_poses_from_nearby_starts(q in joints(), nudge in proptest::array::uniform7(-0.1f64..0.1)) {
            let target = forward(&q).tcp;
            let start: Joints = std::array::from_fn(|k| (q[k] + nudge[k]).clamp(JOINT_LOWER[k], JOINT_UPPER[k]));
            let settings = IkSettings { iterations: 100, posture_gain: 0.0, ..IkSettings::default() };
            let (solved, err) = inverse(&start, &target, &settings);
            prop_assert!(err < 2e-3, "position error {err}");
            let rot = rotation_error(DQuat::from_mat3(&forward(&solved).tcp.matrix3), DQuat::from_mat3(&target.matrix3));
            prop_assert!(rot.length() < 1e-2, "orientation error {}", rot.length());
        }

        /// Rotation errors are antisymmetric and bounded by π.
        #[test]
        fn rotation_error_is_antisymmetric(a in proptest::array::uniform3(-3.0f64..3.0), b in proptest::array::uniform3(-3.0f64..3.0)) {
            let qa = DQuat::from_scaled_axis(DVec3::from(a));
            let qb = DQuat::from_scaled_axis(DVec3::from(b));
            let e1 = rotation_error(qa, qb);
            let e2 = rotation_error(qb, qa);
            prop_assert!(e1.length() <= std::f64::consts::PI + 1e-9);
            // Applying the error to `a` gives `b`.
            let back = DQuat::from_scaled_axis(e1) * qa;
            prop_assert!(back.dot(qb).abs() > 1.0 - 1e-9);
            prop_assert!((e1.length() - e2.length()).abs() < 1e-9);
        }

        /// Velocity-limited steps never exceed any joint's limit and keep the direction.
        #[test]
        fn limited_steps_are_bounded(from in joints(), to in joints()) {
            let q = limit_step(&from, &to, 0.05);
            for k in 0..DOF {
                prop_assert!((q[k] - from[k]).abs() <= JOINT_VEL[k] * 0.05 + 1e-12);
                prop_assert!((q[k] - from[k]) * (to[k] - from[k]) >= 0.0);
            }
        }
    }
}
