//! "Put the apple in the basket" / "put the cube on the plate": pick an object and release it
//! in or on a receptacle.

use super::pick::TopDownGrasp;
use super::{FailureReason, Phrasings, Task};
use crate::expert::{
    CLOSE, Expert, FUNNEL_WIDE, OPEN, Phases, SPEED, Target, funnel_height, funnel_speed, reached,
    servo, tool,
};
use crate::objects::{ObjectKind, Receptacle, ko_object_particle};
use crate::scene::Scene;
use glam::{DQuat, DVec3};

pub struct Place {
    object: ObjectKind,
    target: Receptacle,
    id: String,
    phrasings: Phrasings,
}

impl Place {
    pub fn new(object: ObjectKind, target: Receptacle) -> Self {
        let o = object.name_en();
        let syn = object.synonyms_en()[0];
        let r = target.id();
        let ko = object.name_ko();
        let p = ko_object_particle(ko);
        let rk = target.name_ko();
        let (id, phrasings) = if target == Receptacle::Plate {
            (
                format!("put_{}_on_plate", object.id()),
                Phrasings {
                    en_train: vec![
                        format!("put the {o} on the plate"),
                        format!("place the {o} onto the plate"),
                        format!("set the {syn} on the plate"),
                        format!("move the {o} to the plate"),
                    ],
                    en_held_out: vec![
                        format!("the {syn} belongs on the plate"),
                        format!("could you stack the {o} on top of the plate?"),
                    ],
                    ko_train: vec![
                        format!("{ko}{p} 접시 위에 올려줘"),
                        format!("{ko}{p} 접시에 놓아줘"),
                    ],
                    ko_held_out: vec![format!("접시에 {ko} 좀 올려 줄래?")],
                },
            )
        } else {
            (
                format!("put_{}_in_{r}", object.id()),
                Phrasings {
                    en_train: vec![
                        format!("put the {o} in the {r}"),
                        format!("place the {o} into the {r}"),
                        format!("drop the {syn} in the {r}"),
                        format!("move the {o} to the {r}"),
                    ],
                    en_held_out: vec![
                        format!("the {syn} goes in the {r}"),
                        format!("could you stow the {o} inside the {r}?"),
                    ],
                    ko_train: vec![
                        format!("{ko}{p} {rk}에 넣어줘"),
                        format!("{ko}{p} {rk}에 담아"),
                    ],
                    ko_held_out: vec![format!("{rk}에 {ko} 좀 넣어 줄래?")],
                },
            )
        };
        Self {
            object,
            target,
            id,
            phrasings,
        }
    }
}

/// Whether `object` rests in/on `target` (not held by the gripper).
pub fn is_in(scene: &Scene, object: ObjectKind, target: Receptacle) -> bool {
    let (Some(o), Some(r)) = (scene.object_pose(object), scene.receptacle_pose(target)) else {
        return false;
    };
    let local = r.inverse_transform_point(o.translation);
    let bottom = local.z - object.shape().half_height();
    let inner = target.inner_radius();
    let inside = match target {
        Receptacle::Basket => local.x.abs() < inner && local.y.abs() < inner,
        _ => local.x.hypot(local.y) < inner,
    };
    let height_ok = bottom > -0.01 && bottom < target.rim_height() + 0.03;
    inside && height_ok && !scene.touches(object)
}

impl Task for Place {
    fn id(&self) -> &str {
        &self.id
    }
    fn phrasings(&self) -> &Phrasings {
        &self.phrasings
    }
    fn success(&self, scene: &Scene) -> bool {
        is_in(scene, self.object, self.target)
    }
    fn diagnose(&self, scene: &Scene, lifted: &[ObjectKind]) -> FailureReason {
        let wrong_receptacle = Receptacle::ALL
            .into_iter()
            .any(|r| r != self.target && is_in(scene, self.object, r));
        let wrong_object = ObjectKind::ALL
            .into_iter()
            .any(|o| o != self.object && is_in(scene, o, self.target));
        if wrong_receptacle || wrong_object || lifted.iter().any(|&o| o != self.object) {
            FailureReason::WrongTarget
        } else if lifted.contains(&self.object) {
            FailureReason::DroppedObject
        } else {
            FailureReason::Timeout
        }
    }
    fn target_object(&self) -> Option<ObjectKind> {
        Some(self.object)
    }
    fn place_target(&self, scene: &Scene) -> Option<glam::Vec3> {
        scene.receptacle_pose(self.target).map(|p| p.translation)
    }
    fn max_steps(&self) -> usize {
        240
    }
    fn expert(&self) -> Box<dyn Expert> {
        Box::new(PlaceExpert::new(self.object, self.target))
    }
    fn expert_resumes(&self) -> bool {
        true
    }
    /// Nothing held: a fresh expert (its grasp phase is a function of the scene). The
    /// object held low, away from the receptacle: the lift, as after the demos' grasp.
    /// Held up at carrying height, or over the receptacle: the carry-and-lower phase, whose
    /// funnel is a function of the scene. (The demos pass from one to the other within
    /// [`RESUME_CARRY_BELOW`] of the lift height, where the two differ for a step or two.)
    fn expert_from(&self, scene: &Scene) -> Box<dyn Expert> {
        let mut expert = PlaceExpert::new(self.object, self.target);
        if scene.holds(self.object) {
            let (p, _) = tool(scene);
            let over_receptacle = scene.receptacle_pose(self.target).is_some_and(|r| {
                let c = r.translation.as_dvec3();
                (p.x - c.x).hypot(p.y - c.y) < FUNNEL_WIDE
            });
            if over_receptacle || p.z > LIFT_TO - RESUME_CARRY_BELOW {
                expert.phases.goto(1);
            } else {
                expert.grasp = TopDownGrasp::resumed(self.object, scene);
                expert.grasp.lift_to = LIFT_TO;
            }
        }
        Box::new(expert)
    }
}

/// Tool height the place expert lifts a grasped object to before carrying it.
const LIFT_TO: f64 = 0.22;
/// A held object whose tool is within this of [`LIFT_TO`] has been lifted: an expert
/// taking over carries it (the demos carry at 0.2 m or higher).
const RESUME_CARRY_BELOW: f64 = 0.04;

/// Pick with [`TopDownGrasp`], carry over the receptacle and down a funnel into it
/// ([`funnel_height`]), release, retreat.
pub struct PlaceExpert {
    object: ObjectKind,
    target: Receptacle,
    grasp: TopDownGrasp,
    phases: Phases,
}

impl PlaceExpert {
    pub fn new(object: ObjectKind, target: Receptacle) -> Self {
        let mut grasp = TopDownGrasp::new(object);
        grasp.lift_to = LIFT_TO;
        Self {
            object,
            target,
            grasp,
            phases: Phases::new(),
        }
    }
}

impl Expert for PlaceExpert {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        if self.phases.phase == 0 {
            match self.grasp.act(scene) {
                Some(a) => return a,
                None => self.phases.next(),
            }
        }
        self.phases.tick();
        let (p, r) = tool(scene);
        let rot: DQuat = r;
        let Some(rec) = scene.receptacle_pose(self.target) else {
            return [0.0; 7];
        };
        let Some(obj) = scene.object_pose(self.object) else {
            return [0.0; 7];
        };
        let c = rec.translation.as_dvec3();
        // Tool height above the object's bottom, measured now (the grasp may have slipped).
        let bottom = obj.translation.z as f64 - self.object.shape().half_height() as f64;
        let offset = p.z - bottom;
        let release_bottom = match self.target {
            Receptacle::Plate => 0.03,
            _ => 0.025,
        };
        let carry_z = (self.target.rim_height() as f64 + 0.06 + offset).max(0.2);
        // Correct for where the object hangs relative to the tool.
        let hang = DVec3::new(
            obj.translation.x as f64 - p.x,
            obj.translation.y as f64 - p.y,
            0.0,
        );
        let over = DVec3::new(c.x - hang.x, c.y - hang.y, carry_z);
        match self.phases.phase {
            1 => {
                if !scene.is_grasped(self.object) && self.phases.in_phase > 3 {
                    self.restart();
                    return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, OPEN];
                }
                // Carry over the receptacle and down the funnel to the release height:
                // lowering is a function of where the hand is over the receptacle, not of
                // a hidden "above it" switch (see `funnel_height`).
                let lateral = (p.x - over.x).hypot(p.y - over.y);
                let release_z = release_bottom + offset;
                let t = Target {
                    pos: DVec3::new(over.x, over.y, funnel_height(lateral, release_z, carry_z)),
                    rot,
                    gripper: CLOSE,
                };
                let at_release = Target {
                    pos: DVec3::new(over.x, over.y, release_z),
                    ..t
                };
                if reached(scene, &at_release, 0.006) || self.phases.in_phase > 160 {
                    self.phases.next();
                }
                servo(scene, &t, funnel_speed(lateral))
            }
            2 => {
                if self.phases.in_phase > 8 {
                    self.phases.next();
                }
                servo(
                    scene,
                    &Target {
                        pos: p,
                        rot,
                        gripper: OPEN,
                    },
                    SPEED,
                )
            }
            _ => {
                let t = Target {
                    pos: DVec3::new(p.x, p.y, 0.25),
                    rot,
                    gripper: OPEN,
                };
                servo(scene, &t, SPEED)
            }
        }
    }
}

impl PlaceExpert {
    fn restart(&mut self) {
        self.grasp = TopDownGrasp::new(self.object);
        self.grasp.lift_to = LIFT_TO;
        self.phases = Phases::new();
    }
}
