//! Tasks: what "success" means (a predicate on physical state), how the task is phrased in
//! English and Korean, its initial conditions and its scripted expert. One file per task
//! family; [`registry`] lists every task and [`Suite`] groups them with their splits.

mod drawer;
mod fridge;
mod pick;
mod place;
mod store;

use crate::env::EnvConfig;
use crate::error::SimError;
use crate::expert::Expert;
use crate::layout::{Layout, LayoutOptions, VisualVariation};
use crate::objects::ObjectKind;
use crate::scene::Scene;
use mulli_core::rng::{self, RngExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use drawer::{CloseDrawer, OpenDrawer};
pub use fridge::{CloseFridge, OpenFridge};
pub use pick::{PickUp, under_funnel};
pub use place::Place;
pub use store::StoreInFridge;

/// Why an episode ended without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Ran out of steps without a more specific cause.
    Timeout,
    /// A grasping task ran out of steps after the hand closed at least once without
    /// lifting the target: it tried and missed (the reach diagnostics say how near).
    MissedGrasp,
    /// The target object was lifted and then lost.
    DroppedObject,
    /// The wrong object or the wrong receptacle was used.
    WrongTarget,
    /// The physics state became invalid (NaN).
    PhysicsFault,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::MissedGrasp => "missed_grasp",
            FailureReason::DroppedObject => "dropped_object",
            FailureReason::WrongTarget => "wrong_target",
            FailureReason::PhysicsFault => "physics_fault",
        }
    }
}

/// Instruction language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    En,
    Ko,
}

/// The phrasings of one task, split into those used for training and those held out to
/// test generalization to new wording.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phrasings {
    pub en_train: Vec<String>,
    pub en_held_out: Vec<String>,
    pub ko_train: Vec<String>,
    pub ko_held_out: Vec<String>,
}

impl Phrasings {
    pub fn get(&self, language: Language, held_out: bool) -> &[String] {
        match (language, held_out) {
            (Language::En, false) => &self.en_train,
            (Language::En, true) => &self.en_held_out,
            (Language::Ko, false) => &self.ko_train,
            (Language::Ko, true) => &self.ko_held_out,
        }
    }
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.en_train
            .iter()
            .chain(&self.en_held_out)
            .chain(&self.ko_train)
            .chain(&self.ko_held_out)
    }
}

/// A kitchen task.
pub trait Task: Send + Sync {
    /// Stable identifier, e.g. `put_apple_in_basket`.
    fn id(&self) -> &str;
    /// Canonical English instruction (the dataset's task string by default).
    fn canonical(&self) -> String {
        self.phrasings().en_train[0].clone()
    }
    fn phrasings(&self) -> &Phrasings;
    /// Set the task's initial conditions (e.g. the drawer starts open for "close the drawer").
    fn prepare(&self, _layout: &mut Layout, _seed: u64) {}
    /// The success predicate, from physical state only.
    fn success(&self, scene: &Scene) -> bool;
    /// Best explanation of a failed episode's end state.
    fn diagnose(&self, _scene: &Scene, _lifted: &[ObjectKind]) -> FailureReason {
        FailureReason::Timeout
    }
    /// The object the hand must grasp, for tasks that grasp one (reach diagnostics).
    fn target_object(&self) -> Option<ObjectKind> {
        None
    }
    /// Where the target object must be let go, for tasks that place it (the release
    /// diagnostic, [`crate::env::Reach::released_m`]): a world point whose horizontal
    /// distance to the object at a release is measured.
    fn place_target(&self, _scene: &Scene) -> Option<glam::Vec3> {
        None
    }
    /// Step budget at 20 Hz.
    fn max_steps(&self) -> usize;
    /// A fresh scripted expert for one episode.
    fn expert(&self) -> Box<dyn Expert>;
    /// Whether [`Self::expert_from`] can take over an episode midway.
    fn expert_resumes(&self) -> bool {
        false
    }
    /// An expert taking over mid-episode, from the scene as it is (nothing held, or the
    /// task's own object held): its actions must be the same function of the state as the
    /// scripted demos' there, or the corrections contradict the demos. The default, a fresh expert, is that where the
    /// script's first phases are functions of the scene (the grasping tasks' funnel, see
    /// [`crate::expert::funnel_height`]); a script that restarts with a hidden phase (let go
    /// of the handle, go back to an approach point) is not. Only where
    /// [`Self::expert_resumes`].
    fn expert_from(&self, _scene: &Scene) -> Box<dyn Expert> {
        self.expert()
    }
}

/// Every task of the kitchen, in a fixed order.
pub fn registry() -> Vec<Arc<dyn Task>> {
    use crate::objects::Receptacle::*;
    vec![
        Arc::new(PickUp::new(ObjectKind::Apple)),
        Arc::new(PickUp::new(ObjectKind::Cube)),
        Arc::new(OpenDrawer::new()),
        Arc::new(CloseDrawer::new()),
        Arc::new(OpenFridge::new()),
        Arc::new(CloseFridge::new()),
        Arc::new(Place::new(ObjectKind::Apple, Basket)),
        Arc::new(Place::new(ObjectKind::Mustard, Basket)),
        Arc::new(Place::new(ObjectKind::Cube, Plate)),
        Arc::new(Place::new(ObjectKind::Ketchup, Plate)),
        Arc::new(Place::new(ObjectKind::Apple, Bowl)),
        Arc::new(StoreInFridge::new(ObjectKind::Ketchup)),
    ]
}

/// Look a task up by id.
pub fn task(id: &str) -> Result<Arc<dyn Task>, SimError> {
    let all = registry();
    all.iter()
        .find(|t| t.id() == id)
        .cloned()
        .ok_or_else(|| SimError::UnknownTask {
            name: id.to_string(),
            known: all
                .iter()
                .map(|t| t.id().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A generalization split of a suite: which layouts, phrasings and scene variations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training layouts and phrasings (English and Korean) — what demos are recorded on.
    Train,
    /// Layouts from the training pool, English training phrasings.
    SeenLayouts,
    /// Layouts never used for training, English training phrasings.
    HeldOutLayouts,
    /// Training layouts, English phrasings never used for training.
    HeldOutPhrasings,
    /// Training layouts, Korean phrasings (training ones).
    Korean,
    /// Training layouts plus 2–3 distractor objects (training has 0–1).
    Distractors,
    /// Training layouts with strong colour, texture and lighting changes.
    VisualChanges,
}

impl Split {
    pub const EVAL: [Split; 6] = [
        Split::SeenLayouts,
        Split::HeldOutLayouts,
        Split::HeldOutPhrasings,
        Split::Korean,
        Split::Distractors,
        Split::VisualChanges,
    ];
    pub fn id(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::SeenLayouts => "seen_layouts",
            Split::HeldOutLayouts => "held_out_layouts",
            Split::HeldOutPhrasings => "held_out_phrasings",
            Split::Korean => "korean",
            Split::Distractors => "distractors",
            Split::VisualChanges => "visual_changes",
        }
    }
    pub fn from_id(id: &str) -> Result<Split, SimError> {
        std::iter::once(Split::Train)
            .chain(Split::EVAL)
            .find(|s| s.id() == id)
            .ok_or_else(|| {
                SimError::Config(format!(
                    "unknown split '{id}'; known: train, {}",
                    Split::EVAL
                        .iter()
                        .map(|s| s.id())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

/// One episode's setting: task, layout seed, instruction and scene options.
#[derive(Clone)]
pub struct EpisodeSpec {
    pub task: Arc<dyn Task>,
    pub seed: u64,
    pub instruction: String,
    pub layout: LayoutOptions,
    pub split: Split,
}

impl EpisodeSpec {
    /// `base` with this episode's layout options (the split's distractors or visual changes).
    pub fn env_config(&self, base: &EnvConfig) -> EnvConfig {
        EnvConfig {
            layout: self.layout,
            ..base.clone()
        }
    }
}

/// A named group of tasks with a pool of training layouts.
pub struct Suite {
    pub name: String,
    pub tasks: Vec<Arc<dyn Task>>,
    /// Number of layouts in the training pool per task; held-out layouts come from a
    /// disjoint seed stream.
    pub train_layouts: u64,
    /// Seed of the suite (fixes which layouts are "train").
    pub seed: u64,
}

impl Suite {
    pub const NAMES: [&'static str; 2] = ["kitchen-v1", "kitchen-v1-single"];

    /// `kitchen-v1`: all twelve tasks; `kitchen-v1-single`: the one-step tasks (no long horizon).
    pub fn named(name: &str) -> Result<Suite, SimError> {
        let tasks = registry();
        let tasks = match name {
            "kitchen-v1" => tasks,
            "kitchen-v1-single" => tasks
                .into_iter()
                .filter(|t| t.id() != "put_ketchup_in_fridge_and_close_it")
                .collect(),
            _ => {
                return Err(SimError::UnknownSuite {
                    name: name.to_string(),
                    known: Self::NAMES.join(", "),
                });
            }
        };
        Ok(Suite {
            name: name.to_string(),
            tasks,
            train_layouts: 10_000,
            seed: 0x6b69_7463_6865_6e31,
        })
    }

    /// Restrict to the given task ids (errors name the unknown one).
    pub fn with_tasks(mut self, ids: &[String]) -> Result<Suite, SimError> {
        if ids.is_empty() {
            return Ok(self);
        }
        let mut picked = Vec::new();
        for id in ids {
            match self.tasks.iter().find(|t| t.id() == id) {
                Some(t) => picked.push(t.clone()),
                None => {
                    return Err(SimError::UnknownTask {
                        name: id.clone(),
                        known: self
                            .tasks
                            .iter()
                            .map(|t| t.id().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        self.tasks = picked;
        Ok(self)
    }

    /// The `index`-th episode of `split` (tasks round-robin), deterministic in `seed`.
    pub fn episode(&self, split: Split, index: u64, seed: u64) -> EpisodeSpec {
        let n = self.tasks.len() as u64;
        let task = self.tasks[(index % n) as usize].clone();
        let mut rng = rng::substream(seed, split.id(), index);
        let slot = rng.random_range(0..self.train_layouts);
        let layout_seed = match split {
            Split::HeldOutLayouts => rng::derive_seed(
                self.seed,
                "held-out-layout",
                rng.random_range(0..u64::MAX / 2),
            ),
            _ => rng::derive_seed(self.seed, "train-layout", slot),
        };
        let (language, held_out) = match split {
            Split::Train => (
                if rng.random_bool(0.25) {
                    Language::Ko
                } else {
                    Language::En
                },
                false,
            ),
            Split::HeldOutPhrasings => (Language::En, true),
            Split::Korean => (Language::Ko, false),
            _ => (Language::En, false),
        };
        let phrasings = task.phrasings().get(language, held_out);
        let instruction = phrasings[rng.random_range(0..phrasings.len())].clone();
        let mut layout = LayoutOptions::default();
        match split {
            Split::Distractors => layout.distractors = (2, 3),
            Split::VisualChanges => layout.visual = VisualVariation::Strong,
            _ => {}
        }
        EpisodeSpec {
            task,
            seed: layout_seed,
            instruction,
            layout,
            split,
        }
    }
}

/// Instruction helpers shared by the task files.
pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Height of an object's bottom above the table.
pub(crate) fn bottom_height(scene: &Scene, kind: ObjectKind) -> f32 {
    scene
        .object_pose(kind)
        .map(|p| p.translation.z - kind.shape().half_height())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_at_least_ten_tasks_with_phrasings_in_both_languages() {
        let all = registry();
        assert!(all.len() >= 10);
        let mut ids: Vec<&str> = all.iter().map(|t| t.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "task ids must be unique");
        for t in &all {
            let p = t.phrasings();
            assert!(
                p.en_train.len() >= 2 && !p.en_held_out.is_empty(),
                "{}",
                t.id()
            );
            assert!(
                !p.ko_train.is_empty() && !p.ko_held_out.is_empty(),
                "{}",
                t.id()
            );
            for held in p.en_held_out.iter().chain(&p.ko_held_out) {
                assert!(
                    !p.en_train.contains(held) && !p.ko_train.contains(held),
                    "{}: '{held}' is in both splits",
                    t.id()
                );
            }
            for s in p.ko_train.iter().chain(&p.ko_held_out) {
                assert!(
                    s.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)),
                    "{}: '{s}' is not Korean",
                    t.id()
                );
            }
        }
    }

    #[test]
    fn unknown_names_are_errors_that_list_the_known_ones() {
        let e = task("make_coffee").err().unwrap().to_string();
        assert!(
            e.contains("make_coffee") && e.contains("open_drawer"),
            "{e}"
        );
        let e = Suite::named("kitchen-v9").err().unwrap().to_string();
        assert!(e.contains("kitchen-v1"), "{e}");
        assert!(Split::from_id("nope").is_err());
    }

    #[test]
    fn splits_use_disjoint_layouts_and_phrasings() {
        let suite = Suite::named("kitchen-v1").unwrap();
        for i in 0..50 {
            let train = suite.episode(Split::Train, i, 7);
            let held = suite.episode(Split::HeldOutLayouts, i, 7);
            assert_ne!(train.seed, held.seed);
            let ph = suite.episode(Split::HeldOutPhrasings, i, 7);
            assert!(ph.task.phrasings().en_held_out.contains(&ph.instruction));
            let ko = suite.episode(Split::Korean, i, 7);
            assert!(ko.task.phrasings().ko_train.contains(&ko.instruction));
        }
        // Deterministic.
        let a = suite.episode(Split::Train, 3, 1);
        let b = suite.episode(Split::Train, 3, 1);
        assert_eq!((a.seed, a.instruction), (b.seed, b.instruction));
    }
}
