//! "Put the ketchup in the fridge and close it": the long-horizon task. Open the door, grasp
//! the bottle from the side, slide it onto the fridge floor, let go, close the door.

use super::fridge::{CLOSED_AT, PushDoorShut, SwingDoor};
use super::{FailureReason, Phrasings, Task};
use crate::expert::{CLOSE, Expert, OPEN, Phases, SPEED, Target, reached, servo, side_near, tool};
use crate::layout::{Layout, Placement};
use crate::objects::{ObjectKind, ko_object_particle};
use crate::scene::{FRIDGE_HALF, FRIDGE_SHELF_Z, FRIDGE_WALL, Scene};
use glam::{DVec3, Vec3};

pub struct StoreInFridge {
    object: ObjectKind,
    id: String,
    phrasings: Phrasings,
}

impl StoreInFridge {
    pub fn new(object: ObjectKind) -> Self {
        let o = object.name_en();
        let syn = object.synonyms_en()[0];
        let ko = object.name_ko();
        let p = ko_object_particle(ko);
        Self {
            object,
            id: format!("put_{}_in_fridge_and_close_it", object.id()),
            phrasings: Phrasings {
                en_train: vec![
                    format!("put the {o} in the fridge and close it"),
                    format!("store the {o} in the refrigerator and shut the door"),
                    format!("open the fridge, put the {syn} inside, and close the door"),
                ],
                en_held_out: vec![
                    format!("the {syn} needs to go in the fridge, door closed afterwards"),
                    format!("could you refrigerate the {o}?"),
                ],
                ko_train: vec![
                    format!("{ko}{p} 냉장고에 넣고 문을 닫아줘"),
                    format!("{ko}{p} 냉장고에 넣어줘"),
                ],
                ko_held_out: vec![format!("냉장고에 {ko} 좀 넣고 닫아 줄래?")],
            },
        }
    }
}

/// Whether `object` is inside the fridge's cabinet volume.
pub fn in_fridge(scene: &Scene, object: ObjectKind) -> bool {
    let Some(o) = scene.object_pose(object) else {
        return false;
    };
    let local = scene.fridge_pose().inverse_transform_point(o.translation);
    let r = object.shape().footprint_radius();
    let [hx, hy, hz] = FRIDGE_HALF;
    local.x > -hx + r * 0.5
        && local.x < hx - FRIDGE_WALL
        && local.y.abs() < hy - FRIDGE_WALL
        && local.z > 0.0
        && local.z < 2.0 * hz
}

impl Task for StoreInFridge {
    fn id(&self) -> &str {
        &self.id
    }
    fn phrasings(&self) -> &Phrasings {
        &self.phrasings
    }
    /// The side grasp needs the bottle out of the arm's close range: give it the farthest
    /// spot on the fridge's side of the table (swapping with the object standing there;
    /// layouts keep 2 cm clearance, more than any two footprints differ).
    fn prepare(&self, layout: &mut Layout, _seed: u64) {
        let score = |p: &Placement| p.x.hypot(p.y) + 0.3 * p.y;
        let Some(me) = layout.objects.iter().position(|o| o.kind == self.object) else {
            return;
        };
        let best = (0..layout.objects.len())
            .max_by(|&a, &b| {
                score(&layout.objects[a].placement).total_cmp(&score(&layout.objects[b].placement))
            })
            .unwrap_or(me);
        let (a, b) = (layout.objects[me].placement, layout.objects[best].placement);
        layout.objects[me].placement = b;
        layout.objects[best].placement = a;
    }
    fn success(&self, scene: &Scene) -> bool {
        in_fridge(scene, self.object)
            && scene.door_angle() <= CLOSED_AT
            && !scene.touches(self.object)
    }
    fn diagnose(&self, scene: &Scene, lifted: &[ObjectKind]) -> FailureReason {
        if lifted.iter().any(|&o| o != self.object) {
            FailureReason::WrongTarget
        } else if lifted.contains(&self.object) && !in_fridge(scene, self.object) {
            FailureReason::DroppedObject
        } else {
            FailureReason::Timeout
        }
    }
    fn target_object(&self) -> Option<ObjectKind> {
        Some(self.object)
    }
    fn max_steps(&self) -> usize {
        700
    }
    fn expert(&self) -> Box<dyn Expert> {
        Box::new(StoreExpert {
            object: self.object,
            open: SwingDoor::new(1.3),
            close: PushDoorShut::new(),
            phases: Phases::new(),
            grip_offset: DVec3::ZERO,
            finger_axis: None,
        })
    }
}

/// Downward tilt of the side grasp (rad): the Panda cannot hold its hand level this low.
const PITCH: f64 = 1.0;
/// Carrying height: above the door and every object.
const HIGH: f64 = 0.45;
/// Door angle (rad) the arm needs to reach into the fridge without touching the door.
const OPEN_ENOUGH: f32 = 1.15;

struct StoreExpert {
    object: ObjectKind,
    open: SwingDoor,
    close: PushDoorShut,
    phases: Phases,
    /// Tool position minus object centre at the moment of grasping.
    grip_offset: DVec3,
    /// Finger axis when the side grasp began (keeps the wrist from rolling half a turn).
    finger_axis: Option<DVec3>,
}

impl StoreExpert {
    fn inward(scene: &Scene) -> DVec3 {
        scene.fridge_pose().transform_vector(Vec3::X).as_dvec3()
    }
}

impl Expert for StoreExpert {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        // 0: open the door.
        if self.phases.phase == 0 {
            if !self.open.done() {
                return self.open.act(scene);
            }
            if scene.door_angle() < OPEN_ENOUGH {
                // The handle slipped before the door was wide open: try again.
                self.open = SwingDoor::new(1.3);
                return self.open.act(scene);
            }
            self.phases.next();
        }
        if self.phases.phase >= 9 {
            if self.close.done() && scene.door_angle() > CLOSED_AT {
                self.close = PushDoorShut::new();
            }
            return self.close.act(scene);
        }
        self.phases.tick();
        let (p, _) = tool(scene);
        let Some(obj) = scene.object_pose(self.object) else {
            return [0.0; 7];
        };
        let c = obj.translation.as_dvec3();
        let hh = self.object.shape().half_height() as f64;
        // Grasp along the line from the arm's base (the Panda reaches best radially), tilted
        // down; carry it to the fridge and slide it in horizontally onto the shelf.
        let reference = *self
            .finger_axis
            .get_or_insert_with(|| scene.tcp().matrix3.y_axis);
        let radial = DVec3::new(c.x, c.y, 0.0).normalize_or(DVec3::X);
        let inward = Self::inward(scene);
        let carrying = self.phases.phase >= 5;
        let rot = side_near(if carrying { inward } else { radial }, PITCH, reference);
        let approach = rot * DVec3::Z;
        let grasp = c + approach * 0.02 + DVec3::Z * 0.01;
        let inside = scene
            .fridge_pose()
            .transform_point(Vec3::new(
                -FRIDGE_HALF[0] + 0.08,
                0.0,
                FRIDGE_SHELF_Z + hh as f32 + 0.012,
            ))
            .as_dvec3()
            + self.grip_offset;
        let pre = inside - inward * 0.15;
        match self.phases.phase {
            1 => {
                let over = grasp - approach * 0.1;
                // Straight up first: the open door stands between the handle and the table.
                let (x, y) = if p.z < HIGH - 0.03 {
                    (p.x, p.y)
                } else {
                    (over.x, over.y)
                };
                let t = Target {
                    pos: DVec3::new(x, y, HIGH),
                    rot,
                    gripper: OPEN,
                };
                self.phases.reach(scene, &t, 0.02, 120, SPEED)
            }
            2 => {
                let t = Target {
                    pos: grasp - approach * 0.1,
                    rot,
                    gripper: OPEN,
                };
                self.phases.reach(scene, &t, 0.008, 60, SPEED)
            }
            3 => {
                let t = Target {
                    pos: grasp,
                    rot,
                    gripper: OPEN,
                };
                self.phases.reach(scene, &t, 0.005, 50, SPEED * 0.6)
            }
            4 => {
                if self.phases.in_phase > 6 {
                    self.grip_offset = p - c;
                    self.phases.next();
                }
                servo(
                    scene,
                    &Target {
                        pos: grasp,
                        rot,
                        gripper: CLOSE,
                    },
                    SPEED,
                )
            }
            5 => {
                if !scene.is_grasped(self.object) && self.phases.in_phase > 3 {
                    self.phases.goto(1);
                    return servo(
                        scene,
                        &Target {
                            pos: p - approach * 0.05,
                            rot,
                            gripper: OPEN,
                        },
                        SPEED,
                    );
                }
                // Straight up, then across at carrying height to above the fridge's front.
                let lifted = p.z > HIGH - 0.03;
                let t = if lifted {
                    Target {
                        pos: DVec3::new(pre.x, pre.y, HIGH),
                        rot,
                        gripper: CLOSE,
                    }
                } else {
                    Target {
                        pos: DVec3::new(p.x, p.y, HIGH),
                        rot,
                        gripper: CLOSE,
                    }
                };
                if lifted && reached(scene, &t, 0.015) {
                    self.phases.next();
                }
                servo(scene, &t, SPEED)
            }
            6 => {
                let t = Target {
                    pos: pre,
                    rot,
                    gripper: CLOSE,
                };
                self.phases.reach(scene, &t, 0.008, 60, SPEED)
            }
            7 => {
                let t = Target {
                    pos: inside,
                    rot,
                    gripper: CLOSE,
                };
                self.phases.reach(scene, &t, 0.006, 60, SPEED * 0.6)
            }
            _ => {
                // Let go, slide back out of the fridge, then close the door.
                let t = if self.phases.in_phase <= 8 {
                    Target {
                        pos: p,
                        rot,
                        gripper: OPEN,
                    }
                } else {
                    Target {
                        pos: inside - inward * 0.17,
                        rot,
                        gripper: OPEN,
                    }
                };
                if (self.phases.in_phase > 8 && reached(scene, &t, 0.015))
                    || self.phases.in_phase > 70
                {
                    self.phases.next();
                }
                servo(scene, &t, SPEED)
            }
        }
    }
}
