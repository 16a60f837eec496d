//! Rigid poses and object frames. MimicGen keeps the hand's pose relative to the subtask's
//! reference object: a source pose `C` becomes `T_new · T_src⁻¹ · C` in the new scene.
//! Kitchen objects stand upright on the table, so object frames are position + yaw; yaw is
//! reduced by the object's rotational symmetry (a round apple has no preferred heading, a
//! cube repeats every quarter turn), so the hand never turns further than the shape needs.

use glam::{DQuat, DVec3};
use std::f64::consts::PI;

/// A rigid transform: rotation then translation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    pub pos: DVec3,
    pub rot: DQuat,
}

impl Pose {
    pub const IDENTITY: Pose = Pose {
        pos: DVec3::ZERO,
        rot: DQuat::IDENTITY,
    };

    pub fn new(pos: DVec3, rot: DQuat) -> Self {
        Self { pos, rot }
    }

    /// A pose turned by `yaw` (rad) about +z.
    pub fn from_yaw(pos: DVec3, yaw: f64) -> Self {
        Self::new(pos, DQuat::from_rotation_z(yaw))
    }

    /// `self · other`: `other` expressed in the frame `self`.
    pub fn compose(&self, other: &Pose) -> Pose {
        Pose {
            pos: self.pos + self.rot * other.pos,
            rot: (self.rot * other.rot).normalize(),
        }
    }

    pub fn inverse(&self) -> Pose {
        let inv = self.rot.inverse();
        Pose {
            pos: -(inv * self.pos),
            rot: inv,
        }
    }

    pub fn transform_point(&self, p: DVec3) -> DVec3 {
        self.pos + self.rot * p
    }

    /// Straight-line position and shortest-arc rotation between `self` (t = 0) and `to`.
    pub fn lerp(&self, to: &Pose, t: f64) -> Pose {
        let mut r = to.rot;
        if self.rot.dot(r) < 0.0 {
            r = -r;
        }
        Pose {
            pos: self.pos.lerp(to.pos, t),
            rot: self.rot.slerp(r, t).normalize(),
        }
    }

    /// Heading of the frame's x axis about +z (rad).
    pub fn yaw(&self) -> f64 {
        let x = self.rot * DVec3::X;
        x.y.atan2(x.x)
    }

    /// Translation distance and rotation angle (rad) to `other`.
    pub fn distance(&self, other: &Pose) -> (f64, f64) {
        let d = (self.pos - other.pos).length();
        let a = self.rot.angle_between(other.rot);
        (d, if a.is_finite() { a } else { 0.0 })
    }
}

/// How an object's heading repeats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Symmetry {
    /// Every heading is different (a door, a drawer).
    None,
    /// The same shape every `period` rad (a box: π, a square box: π/2).
    Period(f64),
    /// Round about z: heading carries no information.
    Round,
}

/// Where a reference object is: position, heading about +z and the heading's symmetry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObjectFrame {
    pub pos: DVec3,
    pub yaw: f64,
    pub symmetry: Symmetry,
}

/// `a` wrapped into `(-period/2, period/2]`.
pub fn wrap(a: f64, period: f64) -> f64 {
    let w = a - period * (a / period).round();
    if w <= -period / 2.0 { w + period } else { w }
}

impl ObjectFrame {
    pub fn pose(&self) -> Pose {
        Pose::from_yaw(self.pos, self.yaw)
    }

    /// Smallest heading change from `self` to `other` that the symmetry allows.
    pub fn yaw_change(&self, other: &ObjectFrame) -> f64 {
        let d = other.yaw - self.yaw;
        match self.symmetry {
            Symmetry::None => wrap(d, 2.0 * PI),
            Symmetry::Period(p) => wrap(d, p),
            Symmetry::Round => 0.0,
        }
    }

    /// The transform `T` that carries poses relative to `self` (the source object) to the
    /// same relative poses about `to` (the object in the new scene): `T · C` for a source
    /// hand pose `C`.
    pub fn transfer(&self, to: &ObjectFrame) -> Pose {
        let src = self.pose();
        let dst = Pose::from_yaw(to.pos, self.yaw + self.yaw_change(to));
        dst.compose(&src.inverse())
    }

    /// Dissimilarity for nearest-neighbour source selection: metres, plus 0.1 m per radian
    /// of heading (a 10° turn weighs like 1.7 cm).
    pub fn distance(&self, other: &ObjectFrame) -> f64 {
        (self.pos - other.pos).length() + 0.1 * self.yaw_change(other).abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pose(p: [f64; 3], axis_angle: [f64; 3]) -> Pose {
        Pose::new(
            DVec3::from(p),
            DQuat::from_scaled_axis(DVec3::from(axis_angle)),
        )
    }

    fn close(a: &Pose, b: &Pose) -> bool {
        let (d, r) = a.distance(b);
        d < 1e-9 && r < 1e-6
    }

    fn frame(p: [f64; 3], yaw: f64, symmetry: Symmetry) -> ObjectFrame {
        ObjectFrame {
            pos: DVec3::from(p),
            yaw,
            symmetry,
        }
    }

    proptest! {
        #[test]
        fn transform_then_inverse_is_identity(
            p in proptest::array::uniform3(-2.0f64..2.0),
            r in proptest::array::uniform3(-3.0f64..3.0),
            c in proptest::array::uniform3(-2.0f64..2.0),
            cr in proptest::array::uniform3(-3.0f64..3.0),
        ) {
            let t = pose(p, r);
            let x = pose(c, cr);
            prop_assert!(close(&t.inverse().compose(&t.compose(&x)), &x));
            prop_assert!(close(&t.compose(&t.inverse()), &Pose::IDENTITY));
        }

        #[test]
        fn transfer_keeps_the_hand_to_object_relation(
            a in proptest::array::uniform3(-1.0f64..1.0),
            b in proptest::array::uniform3(-1.0f64..1.0),
            ya in -3.1f64..3.1,
            yb in -3.1f64..3.1,
            c in proptest::array::uniform3(-1.0f64..1.0),
            cr in proptest::array::uniform3(-3.0f64..3.0),
        ) {
            let hand = pose(c, cr);
            let src = frame(a, ya, Symmetry::None);
            let dst = frame(b, yb, Symmetry::None);
            let moved = src.transfer(&dst).compose(&hand);
            // Hand relative to the object: the same before and after.
            let before = src.pose().inverse().compose(&hand);
            let after = dst.pose().inverse().compose(&moved);
            prop_assert!(close(&before, &after), "{before:?} vs {after:?}");
            // The way back undoes it.
            prop_assert!(close(&dst.transfer(&src).compose(&moved), &hand));
        }

        #[test]
        fn symmetric_objects_turn_the_hand_at_most_half_a_period(
            ya in -3.1f64..3.1,
            yb in -3.1f64..3.1,
        ) {
            let src = frame([0.5, 0.0, 0.0], ya, Symmetry::Period(PI / 2.0));
            let dst = frame([0.4, 0.1, 0.0], yb, Symmetry::Period(PI / 2.0));
            let t = src.transfer(&dst);
            prop_assert!(t.yaw().abs() <= PI / 4.0 + 1e-9);
            // The object's centre still maps onto the new centre.
            prop_assert!((t.transform_point(src.pos) - dst.pos).length() < 1e-9);
            let round = frame([0.5, 0.0, 0.0], ya, Symmetry::Round);
            let t = round.transfer(&frame([0.4, 0.1, 0.0], yb, Symmetry::Round));
            prop_assert!(t.rot.angle_between(DQuat::IDENTITY) < 1e-6);
        }
    }

    #[test]
    fn wrap_stays_in_the_half_open_interval() {
        assert!((wrap(3.0 * PI / 4.0, PI / 2.0) - (PI / 4.0)).abs() < 1e-12);
        assert!((wrap(-PI / 4.0 - 0.01, PI / 2.0) - (PI / 4.0 - 0.01)).abs() < 1e-12);
        assert!((wrap(PI, 2.0 * PI) - PI).abs() < 1e-12);
    }
}
