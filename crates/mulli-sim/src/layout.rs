//! Randomized scene layouts: where everything stands, what it looks like, how heavy and
//! slippery it is, the lighting and the camera jitter — all drawn from one seed.

use crate::objects::{ObjectKind, Receptacle};
use crate::render::{Lighting, Material, Pattern};
use glam::Vec3;
use mulli_core::rng::{self, RngExt};
use serde::{Deserialize, Serialize};

/// Where a thing stands on the table (metres, radians about +z).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub x: f32,
    pub y: f32,
    pub yaw: f32,
}

/// How much the look of the scene changes between layouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisualVariation {
    /// Nominal colours, lighting and camera.
    None,
    /// Small colour, lighting and camera jitter (training default).
    #[default]
    Standard,
    /// Large changes: other colours, stripes and checkers, strong lighting changes (the
    /// "visual changes" generalization split).
    Strong,
}

/// Knobs of layout sampling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayoutOptions {
    /// Inclusive range of distractor objects to add.
    pub distractors: (usize, usize),
    pub visual: VisualVariation,
    /// Scale masses and frictions within ±20 % / ±25 %.
    pub physics_variation: bool,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        Self {
            distractors: (0, 1),
            visual: VisualVariation::Standard,
            physics_variation: true,
        }
    }
}

/// Physical parameters of one object.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Physical {
    pub mass: f32,
    pub friction: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectLayout {
    pub kind: ObjectKind,
    pub placement: Placement,
    pub physical: Physical,
    #[serde(skip, default = "default_material")]
    pub material: Material,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceptacleLayout {
    pub kind: Receptacle,
    pub placement: Placement,
    #[serde(skip, default = "default_material")]
    pub material: Material,
}

fn default_material() -> Material {
    Material {
        color: [0.5, 0.5, 0.5],
        pattern: Pattern::Solid,
    }
}

/// Materials of the fixed furniture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Palette {
    pub table: Material,
    pub floor: [f32; 3],
    pub fridge: Material,
    pub fridge_door: Material,
    pub cabinet: Material,
    pub drawer: Material,
    pub handle: Material,
    pub robot: Material,
    pub robot_joint: Material,
    pub finger: Material,
}

/// One sampled scene.
#[derive(Clone, Debug)]
pub struct Layout {
    pub seed: u64,
    pub objects: Vec<ObjectLayout>,
    pub receptacles: Vec<ReceptacleLayout>,
    /// Fridge centre on the table (its opening faces the robot, -x).
    pub fridge: Placement,
    /// Drawer cabinet centre (its drawer slides towards the robot).
    pub cabinet: Placement,
    /// Initial fridge door angle (rad, 0 = closed) and drawer opening (m, 0 = closed).
    pub fridge_door: f32,
    pub drawer_opening: f32,
    pub palette: Palette,
    pub lighting: Lighting,
    /// Agent-view camera eye offset (m) and target offset (m).
    pub camera_eye_jitter: Vec3,
    pub camera_target_jitter: Vec3,
}

/// Region of the table where loose objects and receptacles are placed.
pub const PLACE_X: (f32, f32) = (0.27, 0.72);
pub const PLACE_Y: (f32, f32) = (-0.32, 0.32);
const CLEARANCE: f32 = 0.02;
/// Receptacle slot centres (x, y).
const RECEPTACLE_SLOTS: [(f32, f32); 4] = [(0.38, -0.2), (0.38, 0.2), (0.6, -0.2), (0.6, 0.2)];

fn jitter_color(c: [f32; 3], amount: f32, rng: &mut rng::Rng) -> [f32; 3] {
    let mut out = c;
    for v in &mut out {
        *v = (*v * (1.0 + rng.random_range(-amount..=amount)) + rng.random_range(-0.02..=0.02))
            .clamp(0.0, 1.0);
    }
    out
}

fn random_color(rng: &mut rng::Rng) -> [f32; 3] {
    [
        rng.random_range(0.02..0.9),
        rng.random_range(0.02..0.9),
        rng.random_range(0.02..0.9),
    ]
}

fn material(color: [f32; 3], visual: VisualVariation, rng: &mut rng::Rng) -> Material {
    match visual {
        VisualVariation::None => Material {
            color,
            pattern: Pattern::Solid,
        },
        VisualVariation::Standard => Material {
            color: jitter_color(color, 0.12, rng),
            pattern: Pattern::Solid,
        },
        VisualVariation::Strong => {
            let color = if rng.random_bool(0.5) {
                random_color(rng)
            } else {
                jitter_color(color, 0.4, rng)
            };
            let pattern = match rng.random_range(0..3) {
                0 => Pattern::Solid,
                1 => Pattern::Stripes {
                    color: random_color(rng),
                    period: rng.random_range(0.02..0.06),
                    axis: rng.random_range(0..3),
                },
                _ => Pattern::Checker {
                    color: random_color(rng),
                    size: rng.random_range(0.01..0.04),
                },
            };
            Material { color, pattern }
        }
    }
}

fn palette(visual: VisualVariation, rng: &mut rng::Rng) -> Palette {
    let mut m = |c: [f32; 3]| material(c, visual, rng);
    let table = m([0.42, 0.27, 0.14]);
    let fridge = m([0.8, 0.82, 0.85]);
    let fridge_door = Material {
        color: fridge.color.map(|v| v * 0.93),
        pattern: Pattern::Solid,
    };
    let cabinet = m([0.55, 0.4, 0.25]);
    let drawer = Material {
        color: cabinet.color.map(|v| v * 0.85),
        pattern: Pattern::Solid,
    };
    let handle = Material {
        color: [0.12, 0.12, 0.13],
        pattern: Pattern::Solid,
    };
    // The robot keeps its look: policies must not have to relearn their own arm.
    let robot = Material {
        color: [0.88, 0.88, 0.88],
        pattern: Pattern::Solid,
    };
    let robot_joint = Material {
        color: [0.1, 0.1, 0.1],
        pattern: Pattern::Solid,
    };
    let finger = Material {
        color: [0.2, 0.2, 0.22],
        pattern: Pattern::Solid,
    };
    let floor = match visual {
        VisualVariation::None => [0.25, 0.25, 0.27],
        _ => jitter_color([0.25, 0.25, 0.27], 0.3, rng),
    };
    Palette {
        table,
        floor,
        fridge,
        fridge_door,
        cabinet,
        drawer,
        handle,
        robot,
        robot_joint,
        finger,
    }
}

fn lighting(visual: VisualVariation, rng: &mut rng::Rng) -> Lighting {
    let nominal = Vec3::new(-0.3, -0.4, 1.0).normalize();
    match visual {
        VisualVariation::None => Lighting {
            direction: nominal,
            color: [0.75, 0.75, 0.72],
            ambient: [0.3, 0.3, 0.32],
        },
        VisualVariation::Standard | VisualVariation::Strong => {
            let strong = visual == VisualVariation::Strong;
            let spread = if strong { 0.8 } else { 0.25 };
            let dir = (nominal
                + Vec3::new(
                    rng.random_range(-spread..=spread),
                    rng.random_range(-spread..=spread),
                    0.0,
                ))
            .normalize();
            let (lo, hi) = if strong { (0.35, 1.0) } else { (0.6, 0.85) };
            let k = rng.random_range(lo..=hi);
            let tint = if strong { 0.25 } else { 0.05 };
            let color = [
                k * (1.0 + rng.random_range(-tint..=tint)),
                k,
                k * (1.0 + rng.random_range(-tint..=tint)),
            ];
            let a = rng.random_range(if strong { 0.15..=0.45 } else { 0.25..=0.35 });
            Lighting {
                direction: dir,
                color,
                ambient: [a, a, a * 1.05],
            }
        }
    }
}

fn overlaps(x: f32, y: f32, r: f32, taken: &[(f32, f32, f32)]) -> bool {
    taken
        .iter()
        .any(|&(tx, ty, tr)| (x - tx).hypot(y - ty) < r + tr + CLEARANCE)
}

/// Rejection-sample a free spot for a footprint of radius `r` in the placement region.
fn free_spot(r: f32, taken: &[(f32, f32, f32)], rng: &mut rng::Rng) -> Option<(f32, f32)> {
    for _ in 0..400 {
        let x = rng.random_range(PLACE_X.0 + r..=PLACE_X.1 - r);
        let y = rng.random_range(PLACE_Y.0 + r..=PLACE_Y.1 - r);
        if !overlaps(x, y, r, taken) {
            return Some((x, y));
        }
    }
    None
}

impl Layout {
    /// Sample a layout. Deterministic in `seed`; a seed whose objects do not fit is
    /// re-drawn from a derived stream (bounded tries), so every seed yields a layout.
    pub fn sample(seed: u64, options: &LayoutOptions) -> Layout {
        for attempt in 0..64 {
            let mut rng = rng::substream(seed, "layout", attempt);
            if let Some(layout) = Self::try_sample(seed, options, &mut rng) {
                return layout;
            }
        }
        // Unreachable in practice (the region fits everything with room to spare); fall back
        // to a layout without distractors rather than failing.
        let mut rng = rng::substream(seed, "layout-fallback", 0);
        let opts = LayoutOptions {
            distractors: (0, 0),
            ..*options
        };
        Self::try_sample(seed, &opts, &mut rng).unwrap_or_else(|| Self::nominal(seed))
    }

    fn try_sample(seed: u64, options: &LayoutOptions, rng: &mut rng::Rng) -> Option<Layout> {
        let visual = options.visual;
        let mut taken: Vec<(f32, f32, f32)> = Vec::new();
        let mut receptacles = Vec::new();
        // Receptacles take three of four jittered slots in the corners of the region, which
        // leaves the middle free for objects (fully random placement jams the region).
        let mut slots = RECEPTACLE_SLOTS.to_vec();
        rng::shuffle(&mut slots, rng);
        for (kind, (sx, sy)) in Receptacle::ALL.into_iter().zip(slots) {
            let r = kind.footprint_radius();
            let x = (sx + rng.random_range(-0.03..=0.03)).clamp(PLACE_X.0 + r, PLACE_X.1 - r);
            let y = (sy + rng.random_range(-0.03..=0.03)).clamp(PLACE_Y.0 + r, PLACE_Y.1 - r);
            if overlaps(x, y, r, &taken) {
                return None;
            }
            taken.push((x, y, r));
            let yaw = rng.random_range(-0.4..=0.4);
            let material = material(kind.color(), visual, rng);
            receptacles.push(ReceptacleLayout {
                kind,
                placement: Placement { x, y, yaw },
                material,
            });
        }
        let (lo, hi) = options.distractors;
        let n_distractors = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let mut kinds: Vec<ObjectKind> = ObjectKind::MAIN.to_vec();
        let mut pool = ObjectKind::DISTRACTORS.to_vec();
        rng::shuffle(&mut pool, rng);
        kinds.extend(pool.into_iter().cycle().take(n_distractors));
        let mut objects = Vec::new();
        for kind in kinds {
            let shape = kind.shape();
            let r = shape.footprint_radius();
            let (x, y) = free_spot(r, &taken, rng)?;
            taken.push((x, y, r));
            let yaw = rng.random_range(-std::f32::consts::PI..std::f32::consts::PI);
            let physical = if options.physics_variation {
                Physical {
                    mass: kind.mass() * rng.random_range(0.8..=1.2),
                    friction: rng.random_range(0.6..=1.0),
                }
            } else {
                Physical {
                    mass: kind.mass(),
                    friction: 0.8,
                }
            };
            let material = material(kind.color(), visual, rng);
            objects.push(ObjectLayout {
                kind,
                placement: Placement { x, y, yaw },
                physical,
                material,
            });
        }
        let fridge = Placement {
            x: 0.6 + rng.random_range(-0.02..=0.02),
            y: 0.48 + rng.random_range(-0.02..=0.02),
            yaw: 0.0,
        };
        let cabinet = Placement {
            x: 0.6 + rng.random_range(-0.02..=0.02),
            y: -0.48 + rng.random_range(-0.02..=0.02),
            yaw: 0.0,
        };
        let palette = palette(visual, rng);
        let lighting = lighting(visual, rng);
        let cam = match visual {
            VisualVariation::None => 0.0,
            VisualVariation::Standard => 0.02,
            VisualVariation::Strong => 0.05,
        };
        let mut v3 = |s: f32| {
            if s == 0.0 {
                Vec3::ZERO
            } else {
                Vec3::new(
                    rng.random_range(-s..=s),
                    rng.random_range(-s..=s),
                    rng.random_range(-s..=s),
                )
            }
        };
        let camera_eye_jitter = v3(cam);
        let camera_target_jitter = v3(cam * 0.5);
        Some(Layout {
            seed,
            objects,
            receptacles,
            fridge,
            cabinet,
            fridge_door: 0.0,
            drawer_opening: 0.0,
            palette,
            lighting,
            camera_eye_jitter,
            camera_target_jitter,
        })
    }

    fn nominal(seed: u64) -> Layout {
        let mut rng = rng::seeded(seed);
        let opts = LayoutOptions {
            distractors: (0, 0),
            visual: VisualVariation::None,
            physics_variation: false,
        };
        let mut layout = None;
        for _ in 0..1000 {
            layout = Self::try_sample(seed, &opts, &mut rng);
            if layout.is_some() {
                break;
            }
        }
        layout.expect("nominal layout always fits")
    }

    pub fn object(&self, kind: ObjectKind) -> Option<&ObjectLayout> {
        self.objects.iter().find(|o| o.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_deterministic_and_non_overlapping() {
        let opts = LayoutOptions {
            distractors: (2, 3),
            ..LayoutOptions::default()
        };
        for seed in 0..200 {
            let a = Layout::sample(seed, &opts);
            let b = Layout::sample(seed, &opts);
            assert_eq!(a.objects, b.objects);
            assert!(a.objects.len() >= 7);
            let mut circles: Vec<(f32, f32, f32)> = a
                .receptacles
                .iter()
                .map(|r| (r.placement.x, r.placement.y, r.kind.footprint_radius()))
                .collect();
            circles.extend(a.objects.iter().map(|o| {
                (
                    o.placement.x,
                    o.placement.y,
                    o.kind.shape().footprint_radius(),
                )
            }));
            for i in 0..circles.len() {
                for j in 0..i {
                    let (x1, y1, r1) = circles[i];
                    let (x2, y2, r2) = circles[j];
                    assert!(
                        (x1 - x2).hypot(y1 - y2) >= r1 + r2,
                        "seed {seed}: {i} overlaps {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn different_seeds_give_different_layouts() {
        let opts = LayoutOptions::default();
        let a = Layout::sample(1, &opts);
        let b = Layout::sample(2, &opts);
        assert_ne!(a.objects, b.objects);
    }
}
