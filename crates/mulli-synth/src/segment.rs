//! Subtask segmentation: split a demo into object-centric pieces, each moving relative to
//! one reference object (MimicGen's subtasks).
//!
//! Automatic rules, from the gripper command and the object poses:
//! - a gripper close near something graspable (within [`GRASP_RADIUS`]) starts a grasp; the
//!   grasp subtask (reference: that thing) ends once the grasp is established — a loose
//!   object lifted by [`LIFT`], a handle whose drawer/door starts moving (or a few steps
//!   after closing). Grasps that never lift (slips, retries) stay inside their subtask.
//! - opening the gripper while holding ends the manipulation subtask a few steps later; its
//!   reference is where the object went (the nearest receptacle or the fridge), or for a
//!   handle the fixed body it moves against (drawer → cabinet, door → fridge).
//! - a drawer or door that starts moving while nothing is held is being pushed: the approach
//!   (reference: the part) ends just before the contact, the push is relative to the part's
//!   fixed body.
//! - a trailing piece with nothing new (a lift, a retreat) joins the subtask before it.
//!
//! An [`Annotations`] file overrides the rules per episode or per task.

use crate::error::SynthError;
use crate::reference::Reference;
use crate::source::SourceDemo;
use glam::DVec3;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest tool-to-object distance (m) at which closing the gripper counts as a grasp.
pub const GRASP_RADIUS: f64 = 0.06;
/// Rise (m) of the tool after closing that establishes a grasp of a loose object.
pub const LIFT: f64 = 0.05;
/// Steps after closing on a handle at which the grasp counts as established at the latest.
const HANDLE_GRASP_STEPS: usize = 8;
/// Steps after opening the gripper that still belong to the release.
const RELEASE_STEPS: usize = 6;
/// Steps before a push contact where the approach ends.
const CONTACT_LEAD: usize = 2;
/// Farthest (m, horizontal) a released object may be from a receptacle to be "placed" there.
const PLACE_RADIUS: f64 = 0.25;

/// Frames `[start, end)` of a demo moving relative to `reference`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtask {
    pub start: usize,
    pub end: usize,
    pub reference: Reference,
}

/// Movement of an articulated part that counts as a contact (drawer m, door rad).
pub(crate) fn moved(r: Reference, a0: f32, a: f32) -> bool {
    let threshold = match r {
        Reference::DrawerHandle => 0.004,
        _ => 0.02,
    };
    (a - a0).abs() > threshold
}

enum Mode {
    Free,
    Holding(Reference),
    Pushing(Reference),
}

/// Segment a demo with the automatic rules (see the module documentation).
pub fn segment(demo: &SourceDemo) -> Vec<Subtask> {
    let n = demo.len();
    let closed: Vec<bool> = demo.gripper.iter().map(|&g| g > 0.0).collect();
    let mut out: Vec<Subtask> = Vec::new();
    let mut start = 0;
    let mut mode = Mode::Free;
    let mut pending: Option<(Reference, usize)> = None;
    let articulated = [Reference::DrawerHandle, Reference::DoorHandle];
    let mut baseline: Vec<Option<f32>> = articulated
        .iter()
        .map(|r| r.articulation(&demo.env[0]))
        .collect();
    let push = |out: &mut Vec<Subtask>, start: &mut usize, end: usize, reference| {
        if end > *start {
            out.push(Subtask {
                start: *start,
                end,
                reference,
            });
            *start = end;
        }
    };
    for t in 0..n {
        if t < start {
            continue;
        }
        let was_closed = t > 0 && closed[t - 1];
        let state = &demo.env[t];
        let tcp = demo.eef[t].pos;
        if closed[t] && !was_closed && matches!(mode, Mode::Free) {
            pending = nearest_graspable(state, tcp).map(|r| (r, t));
        }
        if !closed[t] && was_closed {
            pending = None;
            if let Mode::Holding(held) = mode {
                let end = (t + RELEASE_STEPS).min(n);
                push(&mut out, &mut start, end, release_target(held, state));
                mode = Mode::Free;
                baseline = articulated
                    .iter()
                    .map(|r| r.articulation(&demo.env[end.min(n - 1)]))
                    .collect();
                continue;
            }
        }
        if let Some((r, tc)) = pending
            && closed[t]
        {
            let established = match r {
                Reference::Object(_) => tcp.z - demo.eef[tc].pos.z >= LIFT,
                _ => {
                    let a0 = r.articulation(&demo.env[tc]).unwrap_or(0.0);
                    let a = r.articulation(state).unwrap_or(0.0);
                    moved(r, a0, a) || t - tc >= HANDLE_GRASP_STEPS
                }
            };
            if established {
                push(&mut out, &mut start, t, r);
                mode = Mode::Holding(r);
                pending = None;
                continue;
            }
        }
        if matches!(mode, Mode::Free) && pending.is_none() {
            for (k, r) in articulated.iter().enumerate() {
                if let (Some(a0), Some(a)) = (baseline[k], r.articulation(state))
                    && moved(*r, a0, a)
                {
                    let end = t.saturating_sub(CONTACT_LEAD).max(start + 1);
                    push(&mut out, &mut start, end, *r);
                    mode = Mode::Pushing(*r);
                    break;
                }
            }
        }
    }
    if start < n {
        let trailing = match mode {
            Mode::Holding(r) | Mode::Pushing(r) => r.parent().or(Some(r)),
            Mode::Free => None,
        };
        match (trailing, out.last_mut()) {
            (Some(r), _) => out.push(Subtask {
                start,
                end: n,
                reference: r,
            }),
            (None, Some(last)) => last.end = n,
            (None, None) => {
                // No grasp, release or contact at all: relative to whatever the hand ends near.
                let last = &demo.env[n - 1];
                let r = nearest_graspable(last, demo.eef[n - 1].pos)
                    .or_else(|| nearest_any(last, demo.eef[n - 1].pos))
                    .unwrap_or(Reference::Fridge);
                out.push(Subtask {
                    start: 0,
                    end: n,
                    reference: r,
                });
            }
        }
    }
    merge_same(out)
}

/// Adjacent subtasks with the same reference are one subtask.
fn merge_same(subtasks: Vec<Subtask>) -> Vec<Subtask> {
    let mut out: Vec<Subtask> = Vec::with_capacity(subtasks.len());
    for s in subtasks {
        match out.last_mut() {
            Some(last) if last.reference == s.reference && last.end == s.start => last.end = s.end,
            _ => out.push(s),
        }
    }
    out
}

fn nearest_graspable(state: &[f32], tcp: DVec3) -> Option<Reference> {
    Reference::all()
        .into_iter()
        .filter(Reference::graspable)
        .filter_map(|r| Some((r, (r.frame(state)?.pos - tcp).length())))
        .filter(|&(_, d)| d < GRASP_RADIUS)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
}

fn nearest_any(state: &[f32], p: DVec3) -> Option<Reference> {
    Reference::all()
        .into_iter()
        .filter_map(|r| Some((r, (r.frame(state)?.pos - p).length())))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
}

/// Where a held thing was let go: a handle's fixed body, or the receptacle (or fridge)
/// nearest to the released object.
fn release_target(held: Reference, state: &[f32]) -> Reference {
    if let Some(parent) = held.parent() {
        return parent;
    }
    let Some(at) = held.frame(state).map(|f| f.pos) else {
        return held;
    };
    let flat = |p: DVec3| DVec3::new(p.x, p.y, 0.0);
    Reference::all()
        .into_iter()
        .filter(|r| matches!(r, Reference::Receptacle(_) | Reference::Fridge))
        .filter_map(|r| Some((r, (flat(r.frame(state)?.pos) - flat(at)).length())))
        .filter(|&(_, d)| d < PLACE_RADIUS)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(held, |(r, _)| r)
}

/// One subtask of an annotation: it ends at frame `end` (exclusive; the last subtask may
/// leave it out and runs to the episode's end) and moves relative to `reference`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubtaskAnnotation {
    #[serde(default)]
    pub end: Option<usize>,
    pub reference: Reference,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeAnnotation {
    /// `episode_index` in the source dataset.
    pub episode: usize,
    pub subtasks: Vec<SubtaskAnnotation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskAnnotation {
    /// Kitchen task id (`open_drawer`, ...).
    pub task: String,
    pub subtasks: Vec<SubtaskAnnotation>,
}

/// Hand-made segmentation, overriding the automatic one: per episode first, then per task.
///
/// ```toml
/// [[tasks]]
/// task = "put_apple_in_basket"
/// subtasks = [{ end = 60, reference = "apple" }, { reference = "basket" }]
///
/// [[episodes]]
/// episode = 3
/// subtasks = [{ end = 41, reference = "apple" }, { reference = "basket" }]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotations {
    #[serde(default)]
    pub tasks: Vec<TaskAnnotation>,
    #[serde(default)]
    pub episodes: Vec<EpisodeAnnotation>,
}

impl Annotations {
    /// Read a `.toml` or `.json` annotation file and check it.
    pub fn load(path: &Path) -> Result<Annotations, SynthError> {
        let err = |message: String| SynthError::Annotation {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let a: Annotations = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text).map_err(|e| err(e.to_string()))?,
            Some("json") => serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
            _ => return Err(err("expected a .toml or .json file".into())),
        };
        a.check().map_err(err)?;
        Ok(a)
    }

    /// Every list non-empty with increasing ends, only the last end left out, known tasks.
    pub fn check(&self) -> Result<(), String> {
        let lists = self
            .tasks
            .iter()
            .map(|t| (format!("task {}", t.task), &t.subtasks))
            .chain(
                self.episodes
                    .iter()
                    .map(|e| (format!("episode {}", e.episode), &e.subtasks)),
            );
        for (what, subtasks) in lists {
            if subtasks.is_empty() {
                return Err(format!("{what}: `subtasks` is empty"));
            }
            let mut prev = 0;
            for (i, s) in subtasks.iter().enumerate() {
                match s.end {
                    Some(end) if end <= prev => {
                        return Err(format!(
                            "{what}: subtask {i} ends at frame {end}, not after the previous end {prev}"
                        ));
                    }
                    Some(end) => prev = end,
                    None if i + 1 < subtasks.len() => {
                        return Err(format!(
                            "{what}: subtask {i} has no `end`; only the last may leave it out"
                        ));
                    }
                    None => {}
                }
            }
        }
        for t in &self.tasks {
            mulli_sim::tasks::task(&t.task).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The annotated subtasks of `demo`, if any; an annotation that does not fit the
    /// episode's length is an error naming both.
    pub fn subtasks(&self, demo: &SourceDemo) -> Result<Option<Vec<Subtask>>, String> {
        let list = self
            .episodes
            .iter()
            .find(|e| e.episode == demo.episode)
            .map(|e| &e.subtasks)
            .or_else(|| {
                self.tasks
                    .iter()
                    .find(|t| t.task == demo.task)
                    .map(|t| &t.subtasks)
            });
        let Some(list) = list else {
            return Ok(None);
        };
        let n = demo.len();
        let mut out = Vec::with_capacity(list.len());
        let mut start = 0;
        for (i, s) in list.iter().enumerate() {
            let end = if i + 1 == list.len() {
                n
            } else {
                s.end.unwrap_or(n)
            };
            if end >= n && i + 1 < list.len() {
                return Err(format!(
                    "episode {} ({} frames): subtask {i} ends at frame {end}, past the episode",
                    demo.episode, n
                ));
            }
            out.push(Subtask {
                start,
                end,
                reference: s.reference,
            });
            start = end;
        }
        Ok(Some(out))
    }
}

/// Names of a segmentation's references, e.g. `apple → basket`.
pub fn signature(subtasks: &[Subtask]) -> String {
    subtasks
        .iter()
        .map(|s| s.reference.id())
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pose::Pose;
    use glam::DQuat;
    use mulli_sim::objects::{ObjectKind, Receptacle};

    fn names() -> Vec<String> {
        mulli_sim::env::environment_state_names()
    }

    /// An environment state with the named values set and the rest zero.
    pub(crate) fn state(values: &[(&str, f32)]) -> Vec<f32> {
        let n = names();
        let mut s = vec![0.0; n.len()];
        for (k, v) in values {
            s[n.iter().position(|x| x == k).unwrap()] = *v;
        }
        s
    }

    /// A synthetic pick-and-place: approach the apple at (0.5, 0), close, lift, carry to the
    /// basket at (0.4, 0.2), open, retreat.
    fn pick_place() -> SourceDemo {
        let mut eef = Vec::new();
        let mut gripper = Vec::new();
        let mut env = Vec::new();
        let apple_at = |t: usize, p: DVec3| -> DVec3 {
            if t < 20 {
                DVec3::new(0.5, 0.0, 0.03)
            } else {
                p - DVec3::Z * 0.02
            }
        };
        for t in 0..60 {
            let p = match t {
                0..10 => {
                    DVec3::new(0.3, 0.0, 0.3).lerp(DVec3::new(0.5, 0.0, 0.05), t as f64 / 10.0)
                }
                10..20 => DVec3::new(0.5, 0.0, 0.05),
                20..30 => DVec3::new(0.5, 0.0, 0.05 + 0.02 * (t - 20) as f64),
                30..45 => DVec3::new(0.5, 0.0, 0.25)
                    .lerp(DVec3::new(0.4, 0.2, 0.1), (t - 30) as f64 / 15.0),
                _ => DVec3::new(0.4, 0.2, 0.1 + 0.01 * (t - 45) as f64),
            };
            let closed = (15..48).contains(&t);
            let a = apple_at(t, p);
            eef.push(Pose::new(p, DQuat::IDENTITY));
            gripper.push(if closed { 1.0 } else { -1.0 });
            env.push(state(&[
                ("apple.x", a.x as f32),
                ("apple.y", a.y as f32),
                ("apple.z", a.z as f32),
                ("apple.qw", 1.0),
                ("basket.x", 0.4),
                ("basket.y", 0.2),
                ("basket.qw", 1.0),
                ("cabinet.x", 0.6),
                ("cabinet.y", -0.48),
                ("fridge.x", 0.6),
                ("fridge.y", 0.48),
            ]));
        }
        SourceDemo {
            episode: 0,
            task: "put_apple_in_basket".into(),
            instruction: "put the apple in the basket".into(),
            targets: eef.clone(),
            eef,
            gripper,
            env,
        }
    }

    #[test]
    fn pick_and_place_splits_at_the_lift_and_ends_at_the_basket() {
        let demo = pick_place();
        let s = segment(&demo);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].reference, Reference::Object(ObjectKind::Apple));
        assert_eq!(s[1].reference, Reference::Receptacle(Receptacle::Basket));
        // The grasp is established once the tool rose 5 cm after closing at frame 15.
        assert_eq!((s[0].start, s[0].end), (0, 23));
        assert_eq!((s[1].start, s[1].end), (23, 60));
    }

    #[test]
    fn a_lift_without_release_stays_one_subtask() {
        let mut demo = pick_place();
        demo.gripper.iter_mut().skip(15).for_each(|g| *g = 1.0);
        let s = segment(&demo);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].reference, Reference::Object(ObjectKind::Apple));
        assert_eq!((s[0].start, s[0].end), (0, 60));
    }

    #[test]
    fn a_push_splits_at_the_contact_and_continues_against_the_cabinet() {
        // Closed fist from the start (no grasp), drawer pushed shut from frame 30.
        let mut demo = pick_place();
        for t in 0..60 {
            demo.gripper[t] = 1.0;
            let opening = if t < 30 {
                0.12
            } else {
                0.12 - 0.004 * (t - 29) as f32
            };
            demo.env[t] = state(&[
                ("cabinet.x", 0.6),
                ("cabinet.y", -0.48),
                ("drawer.opening", opening.max(0.0)),
                ("fridge.x", 0.6),
                ("fridge.y", 0.48),
            ]);
            demo.eef[t] = Pose::new(DVec3::new(0.3, -0.3, 0.3), DQuat::IDENTITY);
        }
        let s = segment(&demo);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].reference, Reference::DrawerHandle);
        assert_eq!(s[1].reference, Reference::Cabinet);
        assert!((27..=29).contains(&s[0].end), "{s:?}");
    }

    #[test]
    fn annotations_override_and_are_checked() {
        let demo = pick_place();
        let a: Annotations = toml::from_str(
            "[[tasks]]\ntask = \"put_apple_in_basket\"\nsubtasks = [{ end = 30, reference = \"apple\" }, { reference = \"basket\" }]\n",
        )
        .unwrap();
        a.check().unwrap();
        let s = a.subtasks(&demo).unwrap().unwrap();
        assert_eq!((s[0].end, s[1].start, s[1].end), (30, 30, 60));
        let bad: Result<Annotations, _> = toml::from_str(
            "[[tasks]]\ntask = \"x\"\nsubtasks = [{ end = 3, reference = \"spaceship\" }]\n",
        );
        assert!(bad.unwrap_err().to_string().contains("spaceship"));
        let unknown_field: Result<Annotations, _> =
            toml::from_str("[[tasks]]\ntask = \"open_drawer\"\nsubtask = []\n");
        assert!(unknown_field.is_err());
        let order: Annotations = toml::from_str(
            "[[episodes]]\nepisode = 0\nsubtasks = [{ end = 30, reference = \"apple\" }, { end = 20, reference = \"basket\" }]\n",
        )
        .unwrap();
        assert!(order.check().unwrap_err().contains("not after"));
        let too_long: Annotations = toml::from_str(
            "[[episodes]]\nepisode = 0\nsubtasks = [{ end = 90, reference = \"apple\" }, { reference = \"basket\" }]\n",
        )
        .unwrap();
        assert!(
            too_long
                .subtasks(&demo)
                .unwrap_err()
                .contains("past the episode")
        );
    }
}
