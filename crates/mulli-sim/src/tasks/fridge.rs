//! "Open the fridge" / "close the fridge": swing the hinged door by its handle.

use super::{Phrasings, Task};
use crate::expert::{
    CLOSE, Expert, OPEN, Phases, SPEED, Target, closest_yaw, home_yaw, servo, tool, top_down,
};
use crate::layout::Layout;
use crate::scene::{FRIDGE_HALF, Scene};

/// Height of the door's top edge (m).
const DOOR_TOP: f64 = 2.0 * FRIDGE_HALF[2] as f64;
use glam::{DQuat, DVec3};
use mulli_core::rng::{self, RngExt};

/// Door angle (rad) at which the fridge counts as open / closed.
pub const OPEN_AT: f32 = 1.2;
pub const CLOSED_AT: f32 = 0.05;

pub struct OpenFridge {
    phrasings: Phrasings,
}

impl OpenFridge {
    pub fn new() -> Self {
        Self {
            phrasings: Phrasings {
                en_train: super::strings(&[
                    "open the fridge",
                    "open the refrigerator",
                    "open the fridge door",
                    "swing the fridge door open",
                ]),
                en_held_out: super::strings(&[
                    "could you get the refrigerator open?",
                    "pull the fridge door wide open",
                ]),
                ko_train: super::strings(&[
                    "냉장고를 열어줘",
                    "냉장고 문을 열어",
                    "냉장고 문 열어줘",
                ]),
                ko_held_out: super::strings(&["냉장고 좀 열어 줄래?"]),
            },
        }
    }
}

impl Default for OpenFridge {
    fn default() -> Self {
        Self::new()
    }
}

impl Task for OpenFridge {
    fn id(&self) -> &str {
        "open_fridge"
    }
    fn phrasings(&self) -> &Phrasings {
        &self.phrasings
    }
    fn success(&self, scene: &Scene) -> bool {
        scene.door_angle() >= OPEN_AT
    }
    fn max_steps(&self) -> usize {
        220
    }
    fn expert(&self) -> Box<dyn Expert> {
        Box::new(SwingDoor::new(1.3))
    }
}

pub struct CloseFridge {
    phrasings: Phrasings,
}

impl CloseFridge {
    pub fn new() -> Self {
        Self {
            phrasings: Phrasings {
                en_train: super::strings(&[
                    "close the fridge",
                    "close the refrigerator",
                    "shut the fridge door",
                    "swing the fridge door closed",
                ]),
                en_held_out: super::strings(&[
                    "could you shut the refrigerator?",
                    "the fridge door should be closed",
                ]),
                ko_train: super::strings(&[
                    "냉장고를 닫아줘",
                    "냉장고 문을 닫아",
                    "냉장고 문 닫아줘",
                ]),
                ko_held_out: super::strings(&["냉장고 좀 닫아 줄래?"]),
            },
        }
    }
}

impl Default for CloseFridge {
    fn default() -> Self {
        Self::new()
    }
}

impl Task for CloseFridge {
    fn id(&self) -> &str {
        "close_fridge"
    }
    fn phrasings(&self) -> &Phrasings {
        &self.phrasings
    }
    fn prepare(&self, layout: &mut Layout, seed: u64) {
        let mut r = rng::substream(seed, "close-fridge", 0);
        layout.fridge_door = r.random_range(1.1..=1.5);
    }
    fn success(&self, scene: &Scene) -> bool {
        scene.door_angle() <= CLOSED_AT
    }
    fn max_steps(&self) -> usize {
        220
    }
    fn expert(&self) -> Box<dyn Expert> {
        Box::new(PushDoorShut::new())
    }
}

/// Grasp the door handle from above and carry it along its arc about the hinge to `goal`
/// (rad), then let go and rise. Regrasps when the handle slips out of the fingers.
pub struct SwingDoor {
    goal: f32,
    phases: Phases,
    /// Grasp yaw chosen at the start and the door angle then; later yaws follow the door.
    yaw_ref: Option<f64>,
    angle_ref: f32,
    risen: bool,
    /// Best door angle reached while swinging, and when (stall detection).
    best: (f32, usize),
}

impl SwingDoor {
    pub fn new(goal: f32) -> Self {
        Self {
            goal,
            phases: Phases::new(),
            yaw_ref: None,
            angle_ref: 0.0,
            risen: false,
            best: (f32::NAN, 0),
        }
    }

    /// Grasp yaw for the current door angle: chosen once (see [`handle_yaw`]), then turned
    /// with the door (opening turns it about -z).
    fn yaw(&mut self, scene: &Scene, opening: bool) -> f64 {
        let angle = scene.door_angle();
        if self.yaw_ref.is_none() {
            self.yaw_ref = Some(handle_yaw(scene, opening));
            self.angle_ref = angle;
        }
        self.yaw_ref.unwrap_or_default() - (angle - self.angle_ref) as f64
    }

    /// Let go and risen clear of the door's top edge.
    pub fn done(&self) -> bool {
        self.phases.phase >= 5 && (self.risen || self.phases.in_phase > 60)
    }

    fn arrived(&mut self, scene: &Scene) -> bool {
        let a = scene.door_angle();
        // Progress towards the goal; at the wrist's range limit the door stops short of it.
        let progress = if self.goal > 0.5 { a } else { -a };
        if self.phases.in_phase <= 1 {
            self.best = (f32::NAN, 0);
        }
        if self.best.0.is_nan() || progress > self.best.0 + 0.01 {
            self.best = (progress, self.phases.in_phase);
        }
        let stalled = self.phases.in_phase > self.best.1 + 20;
        let good_enough = if self.goal > 0.5 {
            a >= OPEN_AT + 0.03
        } else {
            a <= CLOSED_AT * 0.5
        };
        if stalled && good_enough {
            return true;
        }
        if self.goal > 0.5 {
            a >= self.goal - 0.03
        } else {
            a <= self.goal + 0.02
        }
    }
}

/// Grasp yaw for the handle. Opening: fingers across the bar along the door's surface, a
/// friction grasp that pulls. Closing: fingers along the door's normal, one finger hooked
/// between bar and door, so the hand (and its palm) push the door shut geometrically. Of the
/// two equivalent yaws, take the one that leaves the wrist room to turn with the door.
fn handle_yaw(scene: &Scene, opening: bool) -> f64 {
    let (_, normal) = scene.door_handle();
    let axis = if opening {
        glam::Vec3::Z.cross(normal)
    } else {
        normal
    }
    .as_dvec3();
    let bias = if opening { 0.8 } else { -0.8 };
    closest_yaw(
        axis.y.atan2(axis.x),
        std::f64::consts::PI,
        home_yaw() + bias,
    )
}

impl Expert for SwingDoor {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        self.phases.tick();
        let (top, _) = scene.door_handle();
        let grasp = top.as_dvec3() - DVec3::Z * 0.03;
        let opening = self.goal > scene.door_angle();
        let rot = top_down(self.yaw(scene, opening));
        match self.phases.phase {
            0 => {
                let (p, _) = tool(scene);
                let far = (DVec3::new(p.x - grasp.x, p.y - grasp.y, 0.0)).length() > 0.05;
                // Coming from elsewhere: pass over the door, never through it.
                let t = if far && p.z < DOOR_TOP + 0.06 {
                    Target {
                        pos: DVec3::new(p.x, p.y, DOOR_TOP + 0.08),
                        rot,
                        gripper: OPEN,
                    }
                } else {
                    Target {
                        pos: grasp + DVec3::Z * 0.08,
                        rot,
                        gripper: OPEN,
                    }
                };
                self.phases.reach(scene, &t, 0.012, 100, SPEED)
            }
            1 => {
                let t = Target {
                    pos: grasp,
                    rot,
                    gripper: OPEN,
                };
                self.phases.reach(scene, &t, 0.005, 40, SPEED * 0.6)
            }
            2 => {
                if self.phases.in_phase > 6 {
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
            3 => {
                if self.arrived(scene) || self.phases.in_phase > 140 {
                    self.phases.next();
                    return servo(
                        scene,
                        &Target {
                            pos: tool(scene).0,
                            rot: tool(scene).1,
                            gripper: CLOSE,
                        },
                        SPEED,
                    );
                }
                let (p, _) = tool(scene);
                if (p - grasp).length() > 0.03 {
                    // The handle got away: go back above it and regrasp.
                    self.phases.goto(0);
                    return servo(
                        scene,
                        &Target {
                            pos: p + DVec3::Z * 0.03,
                            rot,
                            gripper: OPEN,
                        },
                        SPEED,
                    );
                }
                // Rotate the handle point about the hinge by a small step towards the goal.
                let angle = scene.door_angle();
                let step = (self.goal - angle).clamp(-0.12, 0.12) as f64;
                let hinge = scene.door_hinge().as_dvec3();
                // Opening is a rotation about -z.
                let turn = DQuat::from_rotation_z(-step);
                let rel = grasp - DVec3::new(hinge.x, hinge.y, grasp.z);
                let next = DVec3::new(hinge.x, hinge.y, grasp.z) + turn * rel;
                let t = Target {
                    pos: next,
                    rot: turn * rot,
                    gripper: CLOSE,
                };
                servo(scene, &t, SPEED)
            }
            4 => {
                if self.phases.in_phase > 6 {
                    self.phases.next();
                }
                let (p, r) = tool(scene);
                servo(
                    scene,
                    &Target {
                        pos: p,
                        rot: r,
                        gripper: OPEN,
                    },
                    SPEED,
                )
            }
            _ => {
                let (p, r) = tool(scene);
                servo(
                    scene,
                    &Target {
                        pos: DVec3::new(p.x, p.y, DOOR_TOP + 0.08),
                        rot: r,
                        gripper: OPEN,
                    },
                    SPEED,
                )
            }
        }
    }
}

/// Close the door the way a person does: come down beside its handle on the outside and
/// sweep the hand along the handle's arc about the hinge until the door shuts, fingers
/// closed into one pusher.
///
/// Why not [`SwingDoor`] backwards: a hooked handle must first be grasped, and with the door
/// wide open the hand descending onto the bar pushed it wider (to the 1.9-rad stop in some
/// demos), chased it, and shut the door by accident half-way through the approach. Policies
/// trained on those demos (and on demos re-targeted from them) never learned to close it;
/// a push has one contact, one direction and no grasp to lose.
pub struct PushDoorShut {
    phases: Phases,
    /// Pushing yaw chosen at the start and the door angle then; later yaws turn with the door.
    yaw_ref: Option<(f64, f32)>,
    /// Best door angle reached while pushing, and when (stall detection).
    best: (f32, usize),
    /// Risen clear of the door's top edge after the push.
    risen: bool,
}

/// How far outside the handle bar the hand comes down (m, along the door's outward normal).
const PUSH_STANDOFF: f64 = 0.06;
/// The hand's centre when its closed fingers touch the bar (m outside the bar's axis).
const PUSH_CONTACT: f64 = 0.015;
/// Height of the push above the handle's top end (m; negative = below): the fingertips meet
/// the bar's middle.
const PUSH_DZ: f64 = -0.06;
/// Per-step rotation of the pushing hand about the hinge (rad).
const PUSH_STEP: f64 = 0.1;

impl PushDoorShut {
    pub fn new() -> Self {
        Self {
            phases: Phases::new(),
            yaw_ref: None,
            best: (f32::NAN, 0),
            risen: false,
        }
    }

    /// Shut, or pushed as far as it goes, and risen clear of the door's top edge (or given
    /// up rising).
    pub fn done(&self) -> bool {
        self.phases.phase >= 4 && (self.risen || self.phases.in_phase > 40)
    }

    /// Finger axis along the door's surface (the closed fingers' broad side against the bar),
    /// chosen once from the two equivalent yaws with room for the wrist to turn as the door
    /// closes (closing turns the hand about +z), then turned with the door.
    fn yaw(&mut self, scene: &Scene) -> f64 {
        let angle = scene.door_angle();
        let (yaw0, angle0) = *self.yaw_ref.get_or_insert_with(|| {
            let (_, normal) = scene.door_handle();
            let along = glam::Vec3::Z.cross(normal).as_dvec3();
            let yaw = closest_yaw(
                along.y.atan2(along.x),
                std::f64::consts::PI,
                home_yaw() - 0.6,
            );
            (yaw, angle)
        });
        yaw0 + (angle0 - angle) as f64
    }

    /// Next phase once the hand is within `tol` m of the target's position, or after
    /// `timeout` steps. Position only: near the wrist's limits the last few degrees of yaw
    /// come slowly, and a push does not need them.
    fn arrive(&mut self, p: DVec3, target: &Target, tol: f64, timeout: usize) {
        if (target.pos - p).length() < tol || self.phases.in_phase > timeout {
            self.phases.next();
        }
    }

    /// Whether the door stopped moving towards shut for 15 steps while pushing.
    fn stalled(&mut self, angle: f32) -> bool {
        if self.phases.in_phase <= 1 || self.best.0.is_nan() || angle < self.best.0 - 0.01 {
            self.best = (angle, self.phases.in_phase);
        }
        self.phases.in_phase > self.best.1 + 15
    }
}

impl Default for PushDoorShut {
    fn default() -> Self {
        Self::new()
    }
}

impl Expert for PushDoorShut {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        self.phases.tick();
        let (top, normal) = scene.door_handle();
        let normal = normal.as_dvec3();
        let push = top.as_dvec3() + normal * PUSH_STANDOFF + DVec3::Z * PUSH_DZ;
        let rot = top_down(self.yaw(scene));
        let (p, r) = tool(scene);
        let angle = scene.door_angle();
        match self.phases.phase {
            // Above the push point, clear of the door's top edge: the hand may start on the
            // door's far side, and must never come down through it.
            0 => {
                let t = Target {
                    pos: DVec3::new(push.x, push.y, DOOR_TOP + 0.08),
                    rot,
                    gripper: CLOSE,
                };
                if p.z < DOOR_TOP + 0.05
                    && (DVec3::new(p.x - push.x, p.y - push.y, 0.0)).length() > 0.03
                {
                    // Straight up first.
                    return servo(
                        scene,
                        &Target {
                            pos: DVec3::new(p.x, p.y, DOOR_TOP + 0.08),
                            ..t
                        },
                        SPEED,
                    );
                }
                // The closed fingers are 2 cm wide and 8 cm long: a hand still turning as it
                // comes down can put a fingertip between the bar and the door.
                let turned = crate::robot::rotation_error(r, rot).length() < 0.2;
                if turned || self.phases.in_phase > 60 {
                    self.arrive(p, &t, 0.015, 60);
                }
                servo(scene, &t, SPEED)
            }
            // Down beside the handle, outside it.
            1 => {
                let t = Target {
                    pos: push,
                    rot,
                    gripper: CLOSE,
                };
                self.arrive(p, &t, 0.01, 40);
                servo(scene, &t, SPEED)
            }
            // Sweep along the arc about the hinge, pressing slightly inwards.
            2 => {
                if angle <= CLOSED_AT * 0.4 || self.stalled(angle) || self.phases.in_phase > 120 {
                    self.phases.next();
                }
                let hinge = scene.door_hinge().as_dvec3();
                let step = (angle as f64).min(PUSH_STEP);
                // Closing is a rotation about +z.
                let turn = DQuat::from_rotation_z(step);
                let pivot = DVec3::new(hinge.x, hinge.y, push.z);
                // The contact: the closed fingers' face against the bar's outer side.
                let contact = push - normal * (PUSH_STANDOFF - PUSH_CONTACT);
                let next = pivot + turn * (contact - pivot);
                servo(
                    scene,
                    &Target {
                        pos: next,
                        rot: turn * rot,
                        gripper: CLOSE,
                    },
                    SPEED,
                )
            }
            // Back off along the normal, then up.
            3 => {
                if self.phases.in_phase > 6 {
                    self.phases.next();
                }
                servo(
                    scene,
                    &Target {
                        pos: p + normal * 0.03,
                        rot: r,
                        gripper: CLOSE,
                    },
                    SPEED,
                )
            }
            _ => {
                self.risen |= p.z > DOOR_TOP + 0.05;
                servo(
                    scene,
                    &Target {
                        pos: DVec3::new(p.x, p.y, DOOR_TOP + 0.08),
                        rot: r,
                        gripper: CLOSE,
                    },
                    SPEED,
                )
            }
        }
    }
}
