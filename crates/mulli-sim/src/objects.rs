//! The kitchen's catalogue: movable objects and receptacles, with their sizes, masses,
//! colours and names in English and Korean.

use serde::{Deserialize, Serialize};

/// A movable object on the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Ketchup,
    Mustard,
    Milk,
    Apple,
    Cube,
    // Distractors: never named by a task, there to make language matter.
    Can,
    Orange,
    JuiceBox,
}

/// Collision/visual shape of an object, standing upright; z is up, origin at the centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// Upright cylinder (bottles, cans).
    Cylinder { radius: f32, half_height: f32 },
    /// Box with half extents.
    Cuboid { half: [f32; 3] },
    /// Round fruit: a rounded cylinder that rests stably instead of rolling away.
    Fruit { radius: f32, half_height: f32 },
}

impl Shape {
    pub fn half_height(&self) -> f32 {
        match *self {
            Shape::Cylinder { half_height, .. } | Shape::Fruit { half_height, .. } => half_height,
            Shape::Cuboid { half } => half[2],
        }
    }
    /// Radius of the footprint's bounding circle (used to keep objects apart when placing).
    pub fn footprint_radius(&self) -> f32 {
        match *self {
            Shape::Cylinder { radius, .. } | Shape::Fruit { radius, .. } => radius,
            Shape::Cuboid { half } => (half[0] * half[0] + half[1] * half[1]).sqrt(),
        }
    }
    /// Width the gripper has to close around when grasping from above across the narrow side.
    pub fn grasp_width(&self) -> f32 {
        match *self {
            Shape::Cylinder { radius, .. } | Shape::Fruit { radius, .. } => 2.0 * radius,
            Shape::Cuboid { half } => 2.0 * half[0].min(half[1]),
        }
    }
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 8] = [
        ObjectKind::Ketchup,
        ObjectKind::Mustard,
        ObjectKind::Milk,
        ObjectKind::Apple,
        ObjectKind::Cube,
        ObjectKind::Can,
        ObjectKind::Orange,
        ObjectKind::JuiceBox,
    ];
    /// Objects every kitchen scene contains.
    pub const MAIN: [ObjectKind; 5] = [
        ObjectKind::Ketchup,
        ObjectKind::Mustard,
        ObjectKind::Milk,
        ObjectKind::Apple,
        ObjectKind::Cube,
    ];
    pub const DISTRACTORS: [ObjectKind; 3] =
        [ObjectKind::Can, ObjectKind::Orange, ObjectKind::JuiceBox];

    /// Identifier used in state names and configs.
    pub fn id(self) -> &'static str {
        match self {
            ObjectKind::Ketchup => "ketchup",
            ObjectKind::Mustard => "mustard",
            ObjectKind::Milk => "milk",
            ObjectKind::Apple => "apple",
            ObjectKind::Cube => "cube",
            ObjectKind::Can => "can",
            ObjectKind::Orange => "orange",
            ObjectKind::JuiceBox => "juice_box",
        }
    }

    /// English noun phrase (without article).
    pub fn name_en(self) -> &'static str {
        match self {
            ObjectKind::Ketchup => "ketchup",
            ObjectKind::Mustard => "mustard",
            ObjectKind::Milk => "milk carton",
            ObjectKind::Apple => "apple",
            ObjectKind::Cube => "cube",
            ObjectKind::Can => "can",
            ObjectKind::Orange => "orange",
            ObjectKind::JuiceBox => "juice box",
        }
    }

    /// English synonyms for paraphrases.
    pub fn synonyms_en(self) -> &'static [&'static str] {
        match self {
            ObjectKind::Ketchup => &["ketchup bottle", "ketchup"],
            ObjectKind::Mustard => &["mustard bottle", "mustard"],
            ObjectKind::Milk => &["milk", "carton of milk"],
            ObjectKind::Apple => &["apple", "red apple"],
            ObjectKind::Cube => &["block", "cube"],
            ObjectKind::Can => &["can"],
            ObjectKind::Orange => &["orange"],
            ObjectKind::JuiceBox => &["juice box"],
        }
    }

    /// Korean noun.
    pub fn name_ko(self) -> &'static str {
        match self {
            ObjectKind::Ketchup => "케첩",
            ObjectKind::Mustard => "머스터드",
            ObjectKind::Milk => "우유",
            ObjectKind::Apple => "사과",
            ObjectKind::Cube => "큐브",
            ObjectKind::Can => "캔",
            ObjectKind::Orange => "오렌지",
            ObjectKind::JuiceBox => "주스 팩",
        }
    }

    pub fn shape(self) -> Shape {
        match self {
            ObjectKind::Ketchup => Shape::Cylinder {
                radius: 0.026,
                half_height: 0.065,
            },
            ObjectKind::Mustard => Shape::Cylinder {
                radius: 0.024,
                half_height: 0.06,
            },
            ObjectKind::Milk => Shape::Cuboid {
                half: [0.03, 0.03, 0.07],
            },
            ObjectKind::Apple => Shape::Fruit {
                radius: 0.034,
                half_height: 0.031,
            },
            ObjectKind::Cube => Shape::Cuboid {
                half: [0.0225, 0.0225, 0.0225],
            },
            ObjectKind::Can => Shape::Cylinder {
                radius: 0.033,
                half_height: 0.05,
            },
            ObjectKind::Orange => Shape::Fruit {
                radius: 0.036,
                half_height: 0.032,
            },
            ObjectKind::JuiceBox => Shape::Cuboid {
                half: [0.025, 0.018, 0.05],
            },
        }
    }

    /// Nominal mass (kg); randomization scales it.
    pub fn mass(self) -> f32 {
        match self {
            ObjectKind::Ketchup => 0.35,
            ObjectKind::Mustard => 0.3,
            ObjectKind::Milk => 0.4,
            ObjectKind::Apple => 0.18,
            ObjectKind::Cube => 0.1,
            ObjectKind::Can => 0.35,
            ObjectKind::Orange => 0.2,
            ObjectKind::JuiceBox => 0.2,
        }
    }

    /// Nominal colour (linear RGB); randomization perturbs it.
    pub fn color(self) -> [f32; 3] {
        match self {
            ObjectKind::Ketchup => [0.62, 0.03, 0.02],
            ObjectKind::Mustard => [0.85, 0.62, 0.02],
            ObjectKind::Milk => [0.85, 0.85, 0.88],
            ObjectKind::Apple => [0.45, 0.02, 0.03],
            ObjectKind::Cube => [0.05, 0.25, 0.7],
            ObjectKind::Can => [0.45, 0.47, 0.5],
            ObjectKind::Orange => [0.9, 0.3, 0.02],
            ObjectKind::JuiceBox => [0.1, 0.5, 0.08],
        }
    }

    pub fn from_id(id: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }
}

/// A container or surface objects are put in or on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Receptacle {
    Basket,
    Plate,
    Bowl,
}

impl Receptacle {
    pub const ALL: [Receptacle; 3] = [Receptacle::Basket, Receptacle::Plate, Receptacle::Bowl];

    pub fn id(self) -> &'static str {
        match self {
            Receptacle::Basket => "basket",
            Receptacle::Plate => "plate",
            Receptacle::Bowl => "bowl",
        }
    }
    pub fn name_ko(self) -> &'static str {
        match self {
            Receptacle::Basket => "바구니",
            Receptacle::Plate => "접시",
            Receptacle::Bowl => "그릇",
        }
    }
    /// Inner half size of the footprint objects must land in (square for the basket,
    /// radius for plate and bowl), and the outer footprint radius for placement.
    pub fn inner_radius(self) -> f32 {
        match self {
            Receptacle::Basket => 0.072,
            Receptacle::Plate => 0.085,
            Receptacle::Bowl => 0.07,
        }
    }
    pub fn footprint_radius(self) -> f32 {
        match self {
            Receptacle::Basket => 0.115,
            Receptacle::Plate => 0.09,
            Receptacle::Bowl => 0.085,
        }
    }
    /// Height of the rim above the table.
    pub fn rim_height(self) -> f32 {
        match self {
            Receptacle::Basket => 0.06,
            Receptacle::Plate => 0.012,
            Receptacle::Bowl => 0.045,
        }
    }
    pub fn mass(self) -> f32 {
        match self {
            Receptacle::Basket => 0.8,
            Receptacle::Plate => 0.4,
            Receptacle::Bowl => 0.35,
        }
    }
    pub fn color(self) -> [f32; 3] {
        match self {
            Receptacle::Basket => [0.35, 0.2, 0.07],
            Receptacle::Plate => [0.8, 0.8, 0.75],
            Receptacle::Bowl => [0.15, 0.35, 0.55],
        }
    }
    pub fn from_id(id: &str) -> Option<Receptacle> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }
}

/// Korean object particle (을/를) chosen by whether the noun ends in a final consonant.
pub fn ko_object_particle(noun: &str) -> &'static str {
    if ends_with_batchim(noun) {
        "을"
    } else {
        "를"
    }
}

/// Korean topic/location particle for "in/into" (에) is invariant; subject particle 이/가:
pub fn ko_subject_particle(noun: &str) -> &'static str {
    if ends_with_batchim(noun) {
        "이"
    } else {
        "가"
    }
}

fn ends_with_batchim(noun: &str) -> bool {
    match noun.chars().last() {
        Some(c @ '\u{AC00}'..='\u{D7A3}') => !(c as u32 - 0xAC00).is_multiple_of(28),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_particles_follow_the_final_consonant() {
        assert_eq!(ko_object_particle("케첩"), "을");
        assert_eq!(ko_object_particle("사과"), "를");
        assert_eq!(ko_object_particle("우유"), "를");
        assert_eq!(ko_object_particle("큐브"), "를");
        assert_eq!(ko_subject_particle("서랍"), "이");
        assert_eq!(ko_subject_particle("냉장고"), "가");
    }

    #[test]
    fn ids_round_trip_and_objects_fit_the_gripper() {
        for k in ObjectKind::ALL {
            assert_eq!(ObjectKind::from_id(k.id()), Some(k));
            assert!(
                k.shape().grasp_width() < 0.075,
                "{k:?} too wide for the gripper"
            );
        }
        for r in Receptacle::ALL {
            assert_eq!(Receptacle::from_id(r.id()), Some(r));
        }
    }
}
