//! "Pick up the apple": lift an object off the table and hold it. Also home of the top-down
//! grasp routine the place and store experts reuse.

use super::{Phrasings, Task, bottom_height};
use crate::expert::{
    CLOSE, Expert, OPEN, Phases, SPEED, Target, closest_yaw, funnel_height, funnel_speed, home_yaw,
    reached, servo, tool, top_down,
};
use crate::objects::{ObjectKind, Shape, ko_object_particle};
use crate::scene::Scene;
use glam::DVec3;

/// Height the object's bottom must reach above the table, while held.
pub const LIFT_HEIGHT: f32 = 0.08;

pub struct PickUp {
    object: ObjectKind,
    id: String,
    phrasings: Phrasings,
}

impl PickUp {
    pub fn new(object: ObjectKind) -> Self {
        let o = object.name_en();
        let syn = object.synonyms_en()[0];
        let ko = object.name_ko();
        let p = ko_object_particle(ko);
        let phrasings = Phrasings {
            en_train: vec![
                format!("pick up the {o}"),
                format!("lift the {o}"),
                format!("grab the {o} and lift it"),
                format!("pick the {syn} up off the table"),
            ],
            en_held_out: vec![
                format!("could you raise the {syn} into the air?"),
                format!("take hold of the {o} and hold it up"),
            ],
            ko_train: vec![
                format!("{ko}{p} 집어 올려줘"),
                format!("{ko}{p} 들어 올려"),
                format!("{ko}{p} 집어줘"),
            ],
            ko_held_out: vec![format!("{ko} 좀 들어 줄래?")],
        };
        Self {
            object,
            id: format!("pick_up_{}", object.id()),
            phrasings,
        }
    }
}

impl Task for PickUp {
    fn id(&self) -> &str {
        &self.id
    }
    fn phrasings(&self) -> &Phrasings {
        &self.phrasings
    }
    fn success(&self, scene: &Scene) -> bool {
        bottom_height(scene, self.object) > LIFT_HEIGHT && scene.is_grasped(self.object)
    }
    fn diagnose(&self, _scene: &Scene, lifted: &[ObjectKind]) -> super::FailureReason {
        if lifted.contains(&self.object) {
            super::FailureReason::DroppedObject
        } else if !lifted.is_empty() {
            super::FailureReason::WrongTarget
        } else {
            super::FailureReason::Timeout
        }
    }
    fn target_object(&self) -> Option<ObjectKind> {
        Some(self.object)
    }
    fn max_steps(&self) -> usize {
        160
    }
    fn expert(&self) -> Box<dyn Expert> {
        Box::new(PickExpert {
            grasp: TopDownGrasp::new(self.object),
            done: false,
        })
    }
    fn expert_resumes(&self) -> bool {
        true
    }
    fn expert_from(&self, scene: &Scene) -> Box<dyn Expert> {
        Box::new(PickExpert {
            grasp: TopDownGrasp::resumed(self.object, scene),
            done: false,
        })
    }
}

/// Height of the approach point above the grasp.
const APPROACH_HEIGHT: f64 = 0.1;
/// [`TopDownGrasp`]'s phases: down the funnel, close, then lift.
const LIFT_PHASE: usize = 2;

/// Where the top-down grasp puts the tool for `object` as it lies now: over its centre,
/// 4.5 cm below its top (or 1.2 cm below the centre for flat things), never into the table.
pub fn grasp_point(scene: &Scene, object: ObjectKind) -> Option<DVec3> {
    let c = scene.object_pose(object)?.translation.as_dvec3();
    let top = c.z + object.shape().half_height() as f64;
    let z = (top - 0.045).max(c.z - 0.012).max(0.014);
    Some(DVec3::new(c.x, c.y, z))
}

/// How far (m) the tool is below the grasp expert's funnel over `object`, and how far
/// beside the grasp point it is horizontally: `(depth, lateral)`, depth negative above the
/// funnel. Why: the experts never go under their funnel, so a hand there (low beside the
/// object, the policy's commonest way to miss a grasp) is a state no demo shows; the
/// correction stage (`mulli_eval::correct`) can take over there.
pub fn under_funnel(scene: &Scene, object: ObjectKind) -> Option<(f64, f64)> {
    let grasp = grasp_point(scene, object)?;
    let (p, _) = tool(scene);
    let lateral = (p.x - grasp.x).hypot(p.y - grasp.y);
    let funnel = grasp.z + funnel_height(lateral, 0.0, APPROACH_HEIGHT);
    Some((funnel - p.z, lateral))
}

/// Top-down grasp-and-lift, closed-loop on the object's pose: down a funnel onto the grasp
/// ([`funnel_height`]), close, lift; retrying when the object slips.
pub struct TopDownGrasp {
    pub object: ObjectKind,
    phases: Phases,
    yaw: Option<f64>,
    /// Tool height above the object's centre when grasped (kept while carrying).
    pub lift_to: f64,
}

impl TopDownGrasp {
    pub fn new(object: ObjectKind) -> Self {
        Self {
            object,
            phases: Phases::new(),
            yaw: None,
            lift_to: 0.2,
        }
    }

    /// Taking over from the scene as it is: down the funnel if the hand does not hold the
    /// object (that phase is a function of the scene), else straight to the lift, which is
    /// what a demo does once its hand has closed on the object. Why: a fresh expert would
    /// open a hand that holds the object, a label no demo gives.
    pub fn resumed(object: ObjectKind, scene: &Scene) -> Self {
        let mut grasp = Self::new(object);
        if scene.holds(object) {
            grasp.phases.goto(LIFT_PHASE);
        }
        grasp
    }

    /// Tool target for grasping the object where it is now.
    fn grasp_pose(&mut self, scene: &Scene) -> Option<(DVec3, f64)> {
        let p = scene.object_pose(self.object)?;
        let grasp = grasp_point(scene, self.object)?;
        let shape = self.object.shape();
        let yaw = *self.yaw.get_or_insert_with(|| {
            // Fingers across the object's narrow side for boxes; any side for round things.
            let (axis_yaw, period) = match shape {
                Shape::Cuboid { half } => {
                    let (_, _, obj_yaw) = p.rotation.to_euler(glam::EulerRot::XYZ);
                    let base = obj_yaw as f64
                        + if half[0] <= half[1] {
                            0.0
                        } else {
                            std::f64::consts::FRAC_PI_2
                        };
                    (base, std::f64::consts::FRAC_PI_2 * 2.0)
                }
                _ => (home_yaw(), std::f64::consts::PI),
            };
            closest_yaw(axis_yaw, period, home_yaw())
        });
        Some((grasp, yaw))
    }

    /// Next action; returns `None` once the object is held at carrying height.
    pub fn act(&mut self, scene: &Scene) -> Option<[f32; 7]> {
        self.phases.tick();
        let Some((grasp, yaw)) = self.grasp_pose(scene) else {
            return Some([0.0; 7]);
        };
        let rot = top_down(yaw);
        match self.phases.phase {
            0 => {
                // Down the funnel onto the grasp: over the object the hand descends, off
                // it the hand rises to the approach height. No hidden "approach reached"
                // switch, so the action is a function of the scene (see `funnel_height`).
                let (p, _) = tool(scene);
                let lateral = (p.x - grasp.x).hypot(p.y - grasp.y);
                let t = Target {
                    pos: DVec3::new(
                        grasp.x,
                        grasp.y,
                        grasp.z + funnel_height(lateral, 0.0, APPROACH_HEIGHT),
                    ),
                    rot,
                    gripper: OPEN,
                };
                let at_grasp = Target { pos: grasp, ..t };
                if reached(scene, &at_grasp, 0.005) || self.phases.in_phase > 130 {
                    self.phases.next();
                }
                Some(servo(scene, &t, funnel_speed(lateral)))
            }
            1 => {
                let t = Target {
                    pos: grasp,
                    rot,
                    gripper: CLOSE,
                };
                if self.phases.in_phase > 6 {
                    self.phases.next();
                }
                Some(servo(scene, &t, SPEED * 0.3))
            }
            _ => {
                if !scene.is_grasped(self.object) && self.phases.in_phase > 3 {
                    // Slipped or missed: open and start over from above the object.
                    self.phases.goto(0);
                    self.yaw = None;
                    let above = Target {
                        pos: grasp + DVec3::Z * APPROACH_HEIGHT,
                        rot,
                        gripper: OPEN,
                    };
                    return Some(servo(scene, &above, SPEED));
                }
                let (p, _) = tool(scene);
                let t = Target {
                    pos: DVec3::new(p.x, p.y, self.lift_to),
                    rot,
                    gripper: CLOSE,
                };
                if reached(scene, &t, 0.02) {
                    return None;
                }
                // Lift straight up.
                let t = Target {
                    pos: DVec3::new(grasp.x, grasp.y, self.lift_to),
                    rot,
                    gripper: CLOSE,
                };
                Some(servo(scene, &t, SPEED))
            }
        }
    }
}

struct PickExpert {
    grasp: TopDownGrasp,
    done: bool,
}

impl Expert for PickExpert {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        if !self.done {
            match self.grasp.act(scene) {
                Some(a) => return a,
                None => self.done = true,
            }
        }
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, CLOSE]
    }
}
