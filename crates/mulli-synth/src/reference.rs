//! Reference objects of subtasks and their frames, read from the privileged environment
//! state the kitchen records as `observation.environment_state` (see
//! [`mulli_sim::env::environment_state_names`]). The same function reads the source demos and
//! the live scene during generation, so both sides of a re-targeting use one definition.

use crate::pose::{ObjectFrame, Symmetry};
use glam::{DQuat, DVec3};
use mulli_sim::objects::{ObjectKind, Receptacle, Shape};
use mulli_sim::scene::{door_handle_at, drawer_handle_at};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::f64::consts::PI;
use std::sync::OnceLock;

/// The thing a subtask's motion is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    Object(ObjectKind),
    Receptacle(Receptacle),
    /// The drawer (and its handle), moving with the drawer.
    DrawerHandle,
    /// The drawer cabinet's carcass (fixed).
    Cabinet,
    /// The fridge door (and its handle), turning with the door.
    DoorHandle,
    /// The fridge's body (fixed).
    Fridge,
}

impl Reference {
    /// Every reference object, in a fixed order.
    pub fn all() -> Vec<Reference> {
        let mut all: Vec<Reference> = mulli_sim::env::STATE_OBJECTS
            .into_iter()
            .map(Reference::Object)
            .collect();
        all.extend(Receptacle::ALL.into_iter().map(Reference::Receptacle));
        all.extend([
            Reference::DrawerHandle,
            Reference::Cabinet,
            Reference::DoorHandle,
            Reference::Fridge,
        ]);
        all
    }

    /// Name used in annotation files and reports (`apple`, `basket`, `drawer_handle`, ...).
    pub fn id(&self) -> &'static str {
        match self {
            Reference::Object(o) => o.id(),
            Reference::Receptacle(r) => r.id(),
            Reference::DrawerHandle => "drawer_handle",
            Reference::Cabinet => "cabinet",
            Reference::DoorHandle => "door_handle",
            Reference::Fridge => "fridge",
        }
    }

    pub fn from_id(id: &str) -> Option<Reference> {
        Self::all().into_iter().find(|r| r.id() == id)
    }

    /// Names of all references, for error messages.
    pub fn known() -> String {
        Self::all()
            .iter()
            .map(|r| r.id())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Something the gripper closes on: a loose object or a handle.
    pub fn graspable(&self) -> bool {
        matches!(
            self,
            Reference::Object(_) | Reference::DrawerHandle | Reference::DoorHandle
        )
    }

    /// The fixed body an articulated part moves against (drawer → cabinet, door → fridge).
    pub fn parent(&self) -> Option<Reference> {
        match self {
            Reference::DrawerHandle => Some(Reference::Cabinet),
            Reference::DoorHandle => Some(Reference::Fridge),
            _ => None,
        }
    }

    /// The articulated part that moves against this fixed body (cabinet → drawer, fridge →
    /// door); the inverse of [`Reference::parent`].
    pub fn child(&self) -> Option<Reference> {
        match self {
            Reference::Cabinet => Some(Reference::DrawerHandle),
            Reference::Fridge => Some(Reference::DoorHandle),
            _ => None,
        }
    }

    /// Joint coordinate of an articulated part (drawer opening in m, door angle in rad).
    pub fn articulation(&self, state: &[f32]) -> Option<f32> {
        match self {
            Reference::DrawerHandle => value(state, "drawer.opening"),
            Reference::DoorHandle => value(state, "fridge_door.angle"),
            _ => None,
        }
    }

    /// The object's frame in this environment state; `None` when it is not in the scene.
    pub fn frame(&self, state: &[f32]) -> Option<ObjectFrame> {
        let (pos, yaw, symmetry) = match *self {
            Reference::Object(kind) => {
                let (pos, yaw) = object_pose(state, kind.id())?;
                let symmetry = match kind.shape() {
                    Shape::Cuboid { half } if (half[0] - half[1]).abs() < 1e-4 => {
                        Symmetry::Period(PI / 2.0)
                    }
                    Shape::Cuboid { .. } => Symmetry::Period(PI),
                    Shape::Cylinder { .. } | Shape::Fruit { .. } => Symmetry::Round,
                };
                (pos, yaw, symmetry)
            }
            Reference::Receptacle(r) => {
                let (pos, yaw) = object_pose(state, r.id())?;
                // The basket is square; plate and bowl are round.
                let symmetry = match r {
                    Receptacle::Basket => Symmetry::Period(PI / 2.0),
                    _ => Symmetry::Round,
                };
                (pos, yaw, symmetry)
            }
            Reference::DrawerHandle => {
                let c = [value(state, "cabinet.x")?, value(state, "cabinet.y")?];
                let h = drawer_handle_at(c, value(state, "drawer.opening")?);
                (h.as_dvec3(), 0.0, Symmetry::None)
            }
            Reference::Cabinet => {
                let c = DVec3::new(
                    value(state, "cabinet.x")? as f64,
                    value(state, "cabinet.y")? as f64,
                    0.0,
                );
                (c, 0.0, Symmetry::None)
            }
            Reference::DoorHandle => {
                let f = [value(state, "fridge.x")?, value(state, "fridge.y")?];
                let angle = value(state, "fridge_door.angle")?;
                // Opening turns the door about -z.
                (
                    door_handle_at(f, angle).as_dvec3(),
                    -angle as f64,
                    Symmetry::None,
                )
            }
            Reference::Fridge => {
                let f = DVec3::new(
                    value(state, "fridge.x")? as f64,
                    value(state, "fridge.y")? as f64,
                    0.0,
                );
                (f, 0.0, Symmetry::None)
            }
        };
        Some(ObjectFrame { pos, yaw, symmetry })
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        Reference::from_id(&id).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown reference object '{id}'; known: {}",
                Reference::known()
            ))
        })
    }
}

/// Index of each name in the environment-state vector.
fn names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(mulli_sim::env::environment_state_names)
}

/// One named value of an environment-state vector.
pub fn value(state: &[f32], name: &str) -> Option<f32> {
    let i = names().iter().position(|n| n == name)?;
    state.get(i).copied().filter(|v| v.is_finite())
}

/// Tool-centre-point position recorded in the environment state.
pub fn tcp(state: &[f32]) -> Option<DVec3> {
    Some(DVec3::new(
        value(state, "ee.x")? as f64,
        value(state, "ee.y")? as f64,
        value(state, "ee.z")? as f64,
    ))
}

/// Position and heading of `<id>.{x,y,z,qx,qy,qz,qw}`; `None` when absent (all zeros).
fn object_pose(state: &[f32], id: &str) -> Option<(DVec3, f64)> {
    let g = |k: &str| value(state, &format!("{id}.{k}")).map(f64::from);
    let q = DQuat::from_xyzw(g("qx")?, g("qy")?, g("qz")?, g("qw")?);
    if q.length() < 0.5 {
        return None;
    }
    let x = q.normalize() * DVec3::X;
    Some((DVec3::new(g("x")?, g("y")?, g("z")?), x.y.atan2(x.x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        let all = Reference::all();
        for r in &all {
            assert_eq!(Reference::from_id(r.id()), Some(*r));
        }
        let mut ids: Vec<&str> = all.iter().map(|r| r.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        assert!(Reference::from_id("spaceship").is_none());
    }

    #[test]
    fn frames_come_from_the_named_values() {
        let n = names();
        let mut s = vec![0.0f32; n.len()];
        let set = |s: &mut Vec<f32>, k: &str, v: f32| {
            let i = n.iter().position(|x| x == k).unwrap();
            s[i] = v;
        };
        set(&mut s, "cube.x", 0.5);
        set(&mut s, "cube.qz", (0.25f32).sin());
        set(&mut s, "cube.qw", (0.25f32).cos());
        set(&mut s, "cabinet.x", 0.6);
        set(&mut s, "cabinet.y", -0.48);
        let cube = Reference::Object(ObjectKind::Cube).frame(&s).unwrap();
        assert!((cube.pos.x - 0.5).abs() < 1e-6 && (cube.yaw - 0.5).abs() < 1e-5);
        assert_eq!(cube.symmetry, Symmetry::Period(PI / 2.0));
        // Absent objects (all-zero pose) have no frame.
        assert!(Reference::Object(ObjectKind::Apple).frame(&s).is_none());
        let closed = Reference::DrawerHandle.frame(&s).unwrap();
        set(&mut s, "drawer.opening", 0.1);
        let open = Reference::DrawerHandle.frame(&s).unwrap();
        assert!(((closed.pos - open.pos) - DVec3::new(0.1, 0.0, 0.0)).length() < 1e-6);
    }
}
