//! Source demonstrations: kitchen episodes read from any LeRobot dataset mulli can open.
//! What re-targeting needs from each frame is the hand pose, the commanded target pose, the
//! gripper command and the object poses; everything else (cameras) is left on disk.

use crate::error::SynthError;
use crate::pose::Pose;
use glam::{DQuat, DVec3};
use mulli_data::Dataset;
use mulli_data::table::Column;
use mulli_sim::env::{ActionMode, MAX_DPOS, MAX_DROT, MIN_TCP_Z, environment_state_names};
use mulli_sim::tasks::Task;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One source episode, as arrays over its frames.
#[derive(Clone, Debug)]
pub struct SourceDemo {
    /// `episode_index` in the source dataset.
    pub episode: usize,
    /// Kitchen task id the instruction belongs to.
    pub task: String,
    pub instruction: String,
    /// Tool pose at each frame, before its action.
    pub eef: Vec<Pose>,
    /// The pose the frame's action commanded (MimicGen's `target_pose`): the tool pose plus
    /// the clipped end-effector delta, as the controller interprets it.
    pub targets: Vec<Pose>,
    /// Gripper command of each frame (-1 open … +1 closed).
    pub gripper: Vec<f32>,
    /// Environment state at each frame.
    pub env: Vec<Vec<f32>>,
}

impl SourceDemo {
    pub fn len(&self) -> usize {
        self.eef.len()
    }
    pub fn is_empty(&self) -> bool {
        self.eef.is_empty()
    }
}

/// The usable demos of a source dataset, and what was left out.
#[derive(Clone, Debug)]
pub struct SourceSet {
    pub root: PathBuf,
    pub fps: u32,
    /// Camera size `(width, height)` of the source, reused for generated episodes.
    pub camera: Option<(usize, usize)>,
    pub demos: Vec<SourceDemo>,
    /// `(episode_index, why)` of episodes not used.
    pub skipped: Vec<(usize, String)>,
}

impl SourceSet {
    /// Demos per task id.
    pub fn by_task(&self) -> BTreeMap<String, Vec<&SourceDemo>> {
        let mut m: BTreeMap<String, Vec<&SourceDemo>> = BTreeMap::new();
        for d in &self.demos {
            m.entry(d.task.clone()).or_default().push(d);
        }
        m
    }
}

const ENV_STATE: &str = "observation.environment_state";
const STATE: &str = "observation.state";
const ACTION: &str = "action";

/// Read and check a kitchen dataset. Errors name the file and feature that do not fit.
pub fn load(root: &Path) -> Result<SourceSet, SynthError> {
    let ds = Dataset::open(root).map_err(|source| SynthError::Data {
        path: root.to_path_buf(),
        source,
    })?;
    let info = root.join("meta/info.json");
    let bad = |feature: &str, message: String| SynthError::NotKitchen {
        path: info.clone(),
        feature: feature.to_string(),
        message,
    };
    // The world's signature: the privileged state layout and the action layout.
    let expected = environment_state_names();
    let spec = ds.feature(ENV_STATE).ok_or_else(|| {
        bad(
            ENV_STATE,
            "missing: demo multiplication needs the object poses the kitchen records there \
             (record with `mulli sim record` or `mulli sim teleop`)"
                .into(),
        )
    })?;
    let names = spec.axis_names();
    if names != expected {
        let first = names
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(names.len().min(expected.len()));
        return Err(bad(
            ENV_STATE,
            format!(
                "names do not match the kitchen's: {} values, expected {}; first difference at \
                 {first}: got '{}', expected '{}' (a dataset from another world?)",
                names.len(),
                expected.len(),
                names.get(first).map_or("(none)", String::as_str),
                expected.get(first).map_or("(none)", String::as_str),
            ),
        ));
    }
    let action_names = ActionMode::EndEffectorDelta.names();
    let spec = ds
        .feature(ACTION)
        .ok_or_else(|| bad(ACTION, "missing".into()))?;
    if spec.axis_names() != action_names {
        return Err(bad(
            ACTION,
            format!(
                "names {:?}: expected end-effector deltas {:?} (joint-position datasets cannot \
                 be re-targeted)",
                spec.axis_names(),
                action_names
            ),
        ));
    }
    let state_spec = ds
        .feature(STATE)
        .ok_or_else(|| bad(STATE, "missing".into()))?;
    let state_names = state_spec.axis_names();
    let ee_at = |n: &str| state_names.iter().position(|x| x == n);
    let ee_idx: Vec<usize> = ["ee_x", "ee_y", "ee_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw"]
        .iter()
        .map(|n| ee_at(n).ok_or_else(|| bad(STATE, format!("no '{n}' among its names"))))
        .collect::<Result<_, _>>()?;
    let rest = mulli_sim::robot::forward(&mulli_sim::robot::HOME)
        .tcp
        .translation;
    let fps = ds.fps();
    if fps == 0 || !mulli_sim::scene::PHYSICS_HZ.is_multiple_of(fps) {
        return Err(bad(
            "fps",
            format!(
                "{fps}: the kitchen controls at rates dividing {} Hz",
                mulli_sim::scene::PHYSICS_HZ
            ),
        ));
    }
    let camera = ds
        .feature("observation.images.agentview")
        .and_then(|f| f.image_hwc().ok())
        .map(|(h, w, _)| (w, h));

    let data = |name: &str| -> Result<(&[f32], usize), SynthError> {
        match ds.table.column(name) {
            Some(Column::F32(v, w)) => Ok((v.as_slice(), *w)),
            _ => Err(bad(
                name,
                "expected a float32 column in the data files".into(),
            )),
        }
    };
    let (env, env_w) = data(ENV_STATE)?;
    let (state, state_w) = data(STATE)?;
    let (action, action_w) = data(ACTION)?;
    let success = match ds.table.column("next.success") {
        Some(Column::Bool(v, 1)) => Some(v.as_slice()),
        _ => None,
    };
    let tasks = TaskIndex::new();
    let mut demos = Vec::new();
    let mut skipped = Vec::new();
    for (pos, ep) in ds.episodes.iter().enumerate() {
        let (from, to) = ds.episode_rows(pos).map_err(|source| SynthError::Data {
            path: root.to_path_buf(),
            source,
        })?;
        if to <= from + 1 {
            skipped.push((ep.index, "fewer than 2 frames".into()));
            continue;
        }
        let instruction = ds.task_of_row(from).to_string();
        let Some(task) = tasks.lookup(&instruction) else {
            return Err(SynthError::UnknownInstruction {
                path: root.to_path_buf(),
                episode: ep.index,
                instruction,
                known: tasks.ids(),
            });
        };
        if let Some(s) = success
            && !s[from..to].iter().any(|&b| b)
        {
            skipped.push((ep.index, "the demo did not succeed (next.success)".into()));
            continue;
        }
        let mut demo = SourceDemo {
            episode: ep.index,
            task: task.id().to_string(),
            instruction,
            eef: Vec::with_capacity(to - from),
            targets: Vec::with_capacity(to - from),
            gripper: Vec::with_capacity(to - from),
            env: Vec::with_capacity(to - from),
        };
        let mut finite = true;
        for row in from..to {
            let s = &state[row * state_w..(row + 1) * state_w];
            let a = &action[row * action_w..(row + 1) * action_w];
            let e = &env[row * env_w..(row + 1) * env_w];
            finite &= s.iter().chain(a).chain(e).all(|v| v.is_finite());
            let g = |i: usize| s[ee_idx[i]] as f64;
            let eef = Pose::new(
                DVec3::new(g(0), g(1), g(2)),
                DQuat::from_xyzw(g(3), g(4), g(5), g(6)).normalize(),
            );
            demo.targets.push(commanded(&eef, a));
            demo.eef.push(eef);
            demo.gripper.push(a[6]);
            demo.env.push(e.to_vec());
        }
        if !finite {
            skipped.push((ep.index, "non-finite values".into()));
            continue;
        }
        let away = demo.eef[0].pos.distance(rest);
        if away > STARTS_AT_REST {
            skipped.push((
                ep.index,
                format!(
                    "it starts {:.0} cm from the rest pose (a demo that starts mid-task, such \
                     as `recover`, `off_centre` or `wander`): re-targeting starts every demo from the \
                     rest pose",
                    100.0 * away
                ),
            ));
            continue;
        }
        if let Some((name, frame, d)) = first_jump(&demo.env, &expected) {
            skipped.push((
                ep.index,
                format!(
                    "{name} jumped {:.1} cm between frames {frame} and {} (a perturbation such \
                     as `slip`): re-targeting assumes objects move only with the hand",
                    100.0 * d,
                    frame + 1
                ),
            ));
            continue;
        }
        demos.push(demo);
    }
    Ok(SourceSet {
        root: root.to_path_buf(),
        fps,
        camera,
        demos,
        skipped,
    })
}

/// A source demo must start with the tool within this distance (m) of the rest pose
/// (`mulli sim record --recover`, `--off-centre` and `--wander` demos start elsewhere).
const STARTS_AT_REST: f64 = 0.05;

/// Largest horizontal distance (m) a thing moves between two frames by itself: one step
/// of the hand (`MAX_DPOS`) with margin.
pub const MAX_JUMP: f64 = 1.5 * MAX_DPOS as f64;
/// Horizontal motion (m) between two frames below which a thing counts as at rest.
const AT_REST: f64 = 0.01;

/// The first thing (by its `.x`/`.y` entries in `names`) that *jumps*: moves more than
/// [`MAX_JUMP`] horizontally between two consecutive frames of `env` while at rest in the
/// frame pairs before and after — its name, the frame and the distance. Why that shape: a
/// perturbation (`mulli sim record --slip`) moves a resting object in one step and leaves
/// it at rest, which no re-targeted trajectory reproduces; a knocked or falling object also
/// moves fast, but over several frames, and stays a source as before.
pub fn first_jump(env: &[Vec<f32>], names: &[String]) -> Option<(String, usize, f64)> {
    let pairs: Vec<(&str, usize, usize)> = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let thing = n.strip_suffix(".x")?;
            let j = names.iter().position(|m| *m == format!("{thing}.y"))?;
            Some((thing, i, j))
        })
        .collect();
    let moved = |f: usize, i: usize, j: usize| -> f64 {
        match (env.get(f), env.get(f + 1)) {
            (Some(a), Some(b)) => f64::from(b[i] - a[i]).hypot(f64::from(b[j] - a[j])),
            _ => 0.0,
        }
    };
    (0..env.len().saturating_sub(1)).find_map(|f| {
        pairs.iter().find_map(|&(thing, i, j)| {
            let d = moved(f, i, j);
            let before = if f == 0 { 0.0 } else { moved(f - 1, i, j) };
            (d > MAX_JUMP && before < AT_REST && moved(f + 1, i, j) < AT_REST)
                .then(|| (thing.to_string(), f, d))
        })
    })
}

/// The tool pose an end-effector delta action commands from `eef`, clipped as the
/// controller clips it (see `KitchenEnv::step`).
pub fn commanded(eef: &Pose, a: &[f32]) -> Pose {
    let lim = MAX_DPOS as f64;
    let dp = DVec3::new(a[0] as f64, a[1] as f64, a[2] as f64);
    let dp = dp.clamp(DVec3::splat(-lim), DVec3::splat(lim));
    let lim = MAX_DROT as f64;
    let dr = DVec3::new(a[3] as f64, a[4] as f64, a[5] as f64)
        .clamp(DVec3::splat(-lim), DVec3::splat(lim));
    let mut pos = eef.pos + dp;
    pos.z = pos.z.max(MIN_TCP_Z);
    let rot = if dr.length() > 1e-9 {
        (DQuat::from_scaled_axis(dr) * eef.rot).normalize()
    } else {
        eef.rot
    };
    Pose::new(pos, rot)
}

/// Instruction → task, over every phrasing of every kitchen task.
struct TaskIndex {
    tasks: Vec<Arc<dyn Task>>,
}

impl TaskIndex {
    fn new() -> Self {
        Self {
            tasks: mulli_sim::tasks::registry(),
        }
    }
    fn lookup(&self, instruction: &str) -> Option<&Arc<dyn Task>> {
        let text = instruction.trim();
        self.tasks
            .iter()
            .find(|t| t.id() == text || t.phrasings().all().any(|p| p == text))
    }
    fn ids(&self) -> String {
        self.tasks
            .iter()
            .map(|t| t.id().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_is_found_and_carrying_is_not() {
        let names: Vec<String> = ["cube.x", "cube.y", "cube.z", "fridge.x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // One hand step a frame (3 cm, diagonally 4.2 cm): carrying.
        let carried: Vec<Vec<f32>> = (0..5)
            .map(|i| vec![0.03 * i as f32, 0.03 * i as f32, 0.1, 1.0])
            .collect();
        assert_eq!(first_jump(&carried, &names), None);
        // Knocked flying: 6 cm a frame over three frames.
        let flung: Vec<Vec<f32>> = (0..6)
            .map(|i| vec![0.06 * i.clamp(1, 4) as f32, 0.0, 0.1, 1.0])
            .collect();
        assert_eq!(first_jump(&flung, &names), None);
        // At rest, 6 cm in one frame, at rest again: a slip.
        let mut slipped = vec![vec![0.4, 0.1, 0.02, 1.0]; 6];
        for row in &mut slipped[3..] {
            row[1] += 0.06;
        }
        let (thing, frame, d) = first_jump(&slipped, &names).unwrap();
        assert_eq!((thing.as_str(), frame), ("cube", 2));
        assert!((d - 0.06).abs() < 1e-4, "{d}");
    }
}
