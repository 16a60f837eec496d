//! "Open the drawer" / "close the drawer": drive the cabinet's prismatic drawer.

use super::{Phrasings, Task};
use crate::expert::{
    CLOSE, Expert, OPEN, Phases, SPEED, Target, closest_yaw, home_yaw, servo, tool, top_down,
};
use crate::layout::Layout;
use crate::scene::{CABINET_HALF, DRAWER_TRAVEL, Scene};
use glam::DVec3;
use mulli_core::rng::{self, RngExt};

/// Opening (m) at which the drawer counts as open / closed.
pub const OPEN_AT: f32 = 0.12;
pub const CLOSED_AT: f32 = 0.01;

pub struct OpenDrawer {
    phrasings: Phrasings,
}

impl OpenDrawer {
    pub fn new() -> Self {
        Self {
            phrasings: Phrasings {
                en_train: super::strings(&[
                    "open the drawer",
                    "pull the drawer open",
                    "open the drawer of the cabinet",
                    "slide the drawer out",
                ]),
                en_held_out: super::strings(&[
                    "could you get the drawer open?",
                    "pull out the drawer all the way",
                ]),
                ko_train: super::strings(&["서랍을 열어줘", "서랍을 당겨서 열어", "서랍 열어"]),
                ko_held_out: super::strings(&["서랍 좀 열어 줄래?"]),
            },
        }
    }
}

impl Default for OpenDrawer {
    fn default() -> Self {
        Self::new()
    }
}

impl Task for OpenDrawer {
    fn id(&self) -> &str {
        "open_drawer"
    }
    fn phrasings(&self) -> &Phrasings {
        &self.phrasings
    }
    fn success(&self, scene: &Scene) -> bool {
        scene.drawer_opening() >= OPEN_AT
    }
    fn max_steps(&self) -> usize {
        180
    }
    fn expert(&self) -> Box<dyn Expert> {
        Box::new(PullDrawer {
            phases: Phases::new(),
            target: 0.145,
        })
    }
}

pub struct CloseDrawer {
    phrasings: Phrasings,
}

impl CloseDrawer {
    pub fn new() -> Self {
        Self {
            phrasings: Phrasings {
                en_train: super::strings(&[
                    "close the drawer",
                    "push the drawer shut",
                    "shut the drawer",
                    "slide the drawer closed",
                ]),
                en_held_out: super::strings(&[
                    "could you push that drawer back in?",
                    "the drawer should be closed",
                ]),
                ko_train: super::strings(&["서랍을 닫아줘", "서랍을 밀어서 닫아", "서랍 닫아"]),
                ko_held_out: super::strings(&["서랍 좀 닫아 줄래?"]),
            },
        }
    }
}

impl Default for CloseDrawer {
    fn default() -> Self {
        Self::new()
    }
}

impl Task for CloseDrawer {
    fn id(&self) -> &str {
        "close_drawer"
    }
    fn phrasings(&self) -> &Phrasings {
        &self.phrasings
    }
    fn prepare(&self, layout: &mut Layout, seed: u64) {
        let mut r = rng::substream(seed, "close-drawer", 0);
        layout.drawer_opening = r.random_range(0.1..=DRAWER_TRAVEL - 0.005);
    }
    fn success(&self, scene: &Scene) -> bool {
        scene.drawer_opening() <= CLOSED_AT
    }
    fn max_steps(&self) -> usize {
        160
    }
    fn expert(&self) -> Box<dyn Expert> {
        Box::new(PushDrawer {
            phases: Phases::new(),
        })
    }
}

/// Pull direction of the drawer (world, horizontal unit vector).
fn pull_dir(scene: &Scene) -> DVec3 {
    scene
        .cabinet_pose()
        .transform_vector(glam::Vec3::NEG_X)
        .as_dvec3()
}

/// Grasp the handle from above (fingers across the bar) and pull until `target` opening.
pub struct PullDrawer {
    phases: Phases,
    target: f32,
}

impl Expert for PullDrawer {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        self.phases.tick();
        let h = scene.drawer_handle().as_dvec3();
        let pull = pull_dir(scene);
        let yaw = closest_yaw(pull.y.atan2(pull.x), std::f64::consts::PI, home_yaw());
        let rot = top_down(yaw);
        let grasp = DVec3::new(h.x, h.y, h.z - 0.012);
        match self.phases.phase {
            0 => {
                let t = Target {
                    pos: grasp + DVec3::Z * 0.1,
                    rot,
                    gripper: OPEN,
                };
                self.phases.reach(scene, &t, 0.012, 90, SPEED)
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
                if scene.drawer_opening() >= self.target || self.phases.in_phase > 80 {
                    self.phases.next();
                }
                let (p, _) = tool(scene);
                // Lead the handle along the pull direction; stay at the handle's height.
                let t = Target {
                    pos: DVec3::new(p.x, p.y, grasp.z)
                        + pull * 0.03
                        + (grasp - p) * DVec3::new(1.0, 1.0, 0.0) * 0.5,
                    rot,
                    gripper: CLOSE,
                };
                servo(scene, &t, SPEED * 0.7)
            }
            4 => {
                if self.phases.in_phase > 6 {
                    self.phases.next();
                }
                let (p, _) = tool(scene);
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
                let (p, _) = tool(scene);
                servo(
                    scene,
                    &Target {
                        pos: DVec3::new(p.x, p.y, 0.3),
                        rot,
                        gripper: OPEN,
                    },
                    SPEED,
                )
            }
        }
    }
}

/// Push the drawer front with the closed gripper until the drawer is shut.
pub struct PushDrawer {
    phases: Phases,
}

impl Expert for PushDrawer {
    fn act(&mut self, scene: &Scene) -> [f32; 7] {
        self.phases.tick();
        let pull = pull_dir(scene);
        let cab = scene.cabinet_pose();
        let side = cab.transform_vector(glam::Vec3::Y).as_dvec3();
        let yaw = closest_yaw(side.y.atan2(side.x), std::f64::consts::PI, home_yaw());
        let rot = top_down(yaw);
        // Drawer front face centre at the pushing height.
        let front = scene.drawer_handle().as_dvec3() - pull * 0.045;
        // Low enough that the palm passes under the handle.
        let push_z = 0.03;
        let start = DVec3::new(front.x, front.y, push_z) + pull * 0.06;
        let cab_front = cab
            .transform_point(glam::Vec3::new(-CABINET_HALF[0], 0.0, 0.0))
            .as_dvec3();
        match self.phases.phase {
            0 => {
                let t = Target {
                    pos: DVec3::new(start.x, start.y, 0.22),
                    rot,
                    gripper: CLOSE,
                };
                self.phases.reach(scene, &t, 0.015, 90, SPEED)
            }
            1 => {
                let t = Target {
                    pos: start,
                    rot,
                    gripper: CLOSE,
                };
                self.phases.reach(scene, &t, 0.008, 40, SPEED)
            }
            2 => {
                if scene.drawer_opening() <= CLOSED_AT * 0.3 || self.phases.in_phase > 80 {
                    self.phases.next();
                }
                // Push until the palm (3 cm ahead of the tool) reaches the closed front face.
                let goal = DVec3::new(cab_front.x, cab_front.y, push_z) + pull * 0.042;
                servo(
                    scene,
                    &Target {
                        pos: goal,
                        rot,
                        gripper: CLOSE,
                    },
                    SPEED * 0.7,
                )
            }
            _ => {
                let (p, _) = tool(scene);
                let t = Target {
                    pos: DVec3::new(p.x, p.y, 0.25) + pull * 0.03,
                    rot,
                    gripper: CLOSE,
                };
                servo(scene, &t, SPEED)
            }
        }
    }
}
