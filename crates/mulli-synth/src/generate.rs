//! Generation by replay-and-filter: for each attempt, a new kitchen scene; for each subtask,
//! a source segment re-targeted into the new reference object's frame, bridged from the
//! current hand pose by interpolation, executed as end-effector targets with small action
//! noise; the episode is kept only if the task's success predicate holds.
//!
//! Attempts run in parallel (rayon) and are consumed in index order, so the written dataset
//! depends only on the source, the options and the seed — never on the thread count.

use crate::error::SynthError;
use crate::pose::Pose;
use crate::reference::Reference;
use crate::segment::{self, Annotations, Subtask};
use crate::source::{SourceDemo, SourceSet};
use glam::DQuat;
use mulli_core::Frame;
use mulli_core::rng::{self, RngExt};
use mulli_data::{DatasetWriter, WriteMode, WriterOptions};
use mulli_sim::env::{MAX_DPOS, MAX_DROT};
use mulli_sim::expert::OPEN;
use mulli_sim::tasks::{FailureReason, Split, Suite, Task};
use mulli_sim::{EnvConfig, KitchenEnv, StepResult, VisualVariation};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// How a source segment is chosen for a subtask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Uniformly among the `nearest_k` demos whose reference object stood closest to where
    /// it stands now (MimicGen's nearest-neighbour selection, per subtask).
    #[default]
    Nearest,
    /// Uniformly among all demos.
    Random,
}

/// Knobs of generation. Defaults follow MimicGen's (σ = 0.05, 5 interpolation steps,
/// nearest-neighbour selection with k = 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthOptions {
    /// Accepted episodes to write per task.
    pub per_task: usize,
    pub seed: u64,
    /// Give a task up after `ceil(per_task × factor)` attempts.
    pub max_attempts_factor: f64,
    /// Only these task ids (empty: every task with source demos).
    pub tasks: Vec<String>,
    pub selection: Selection,
    pub nearest_k: usize,
    /// Gaussian action noise, as a fraction of the action limits (0.05 → σ 1.5 mm, 0.7°).
    pub action_noise: f64,
    /// Fewest interpolation steps bridging to a segment (more when the gap is larger than
    /// the hand moves in that many steps).
    pub interpolation_steps: usize,
    /// Replay a grasp's approach only from where the hand came within this distance (m) of
    /// the object; the bridge covers the rest in a straight line. 0 replays all of it.
    pub approach_radius: f64,
    /// Share of generated scenes with strong visual randomization (other colours, stripes
    /// and checkers, strong lighting); the rest get the standard colour, lighting and camera
    /// jitter of training layouts.
    pub strong_visual_fraction: f64,
    /// Steps to wait after the last segment for the success predicate (objects settle).
    pub settle_steps: usize,
    /// Camera `(width, height)`; default: the source dataset's.
    pub camera: Option<(usize, usize)>,
    /// Keep recording this many steps after the task first succeeds, as the source demos
    /// may (see `mulli_sim::EnvConfig::success_tail`): the rest of the source's segment,
    /// its retreat, is replayed; an attempt is kept only if the task still holds after
    /// them. 0: an attempt ends at its first success.
    pub success_tail: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            per_task: 10,
            seed: 0,
            max_attempts_factor: 4.0,
            tasks: Vec::new(),
            selection: Selection::Nearest,
            nearest_k: 3,
            action_noise: 0.05,
            interpolation_steps: 5,
            approach_radius: 0.12,
            strong_visual_fraction: 0.25,
            settle_steps: 15,
            camera: None,
            success_tail: 0,
        }
    }
}

impl SynthOptions {
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        if self.per_task == 0 {
            return bad("per_task = 0: ask for at least one episode per task".into());
        }
        if !(self.max_attempts_factor.is_finite() && self.max_attempts_factor >= 1.0) {
            return bad(format!(
                "max_attempts_factor = {}: must be a number >= 1",
                self.max_attempts_factor
            ));
        }
        if self.nearest_k == 0 {
            return bad("nearest_k = 0: must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.action_noise) {
            return bad(format!(
                "action_noise = {}: must be between 0 and 1 (a fraction of the action limits)",
                self.action_noise
            ));
        }
        if !(0.0..=1.0).contains(&self.strong_visual_fraction) {
            return bad(format!(
                "strong_visual_fraction = {}: must be between 0 and 1",
                self.strong_visual_fraction
            ));
        }
        if !(0.0..=1.0).contains(&self.approach_radius) {
            return bad(format!(
                "approach_radius = {}: must be between 0 and 1 m",
                self.approach_radius
            ));
        }
        Ok(())
    }

    fn max_attempts(&self) -> usize {
        (self.per_task as f64 * self.max_attempts_factor).ceil() as usize
    }
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The success predicate held: the episode is kept.
    Success,
    /// Every segment ran (and the settling wait) without success.
    TaskFailed,
    /// The task's step budget ran out mid-plan.
    Timeout,
    /// The budget ran out after the hand closed without lifting the object.
    MissedGrasp,
    /// The object was lifted and lost.
    DroppedObject,
    /// Another object or receptacle was used.
    WrongTarget,
    /// The physics state became invalid.
    PhysicsFault,
    /// A subtask's reference object is not in the new scene.
    ReferenceMissing,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::TaskFailed => "task_failed",
            Outcome::Timeout => "timeout",
            Outcome::MissedGrasp => "missed_grasp",
            Outcome::DroppedObject => "dropped_object",
            Outcome::WrongTarget => "wrong_target",
            Outcome::PhysicsFault => "physics_fault",
            Outcome::ReferenceMissing => "reference_missing",
        }
    }

    fn from_failure(f: Option<FailureReason>) -> Outcome {
        match f {
            Some(FailureReason::DroppedObject) => Outcome::DroppedObject,
            Some(FailureReason::WrongTarget) => Outcome::WrongTarget,
            Some(FailureReason::PhysicsFault) => Outcome::PhysicsFault,
            Some(FailureReason::MissedGrasp) => Outcome::MissedGrasp,
            Some(FailureReason::Timeout) | None => Outcome::Timeout,
        }
    }
}

/// Per-task results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskReport {
    /// Source demos of the task, and how many share the segmentation used.
    pub source_demos: usize,
    pub usable_demos: usize,
    /// The subtasks' reference objects, e.g. `apple → basket`.
    pub subtasks: String,
    pub attempts: usize,
    pub accepted: usize,
    /// accepted / attempts.
    #[serde(rename = "yield")]
    pub yield_rate: f64,
    /// accepted / source demos.
    pub multiplication: f64,
    pub frames: usize,
    /// Outcome → attempts.
    pub reasons: BTreeMap<String, usize>,
    /// Source episode → accepted episodes that replayed a segment of it.
    pub source_usage: BTreeMap<usize, usize>,
    /// Whether `per_task` episodes were accepted before the attempt limit.
    pub complete: bool,
    pub seconds: f64,
}

/// What a generation run did: written to `synth_report.json` by the CLI.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SynthReport {
    pub source: String,
    pub out: String,
    pub options: Option<SynthOptions>,
    pub source_episodes: usize,
    /// `(episode_index, why)` of source episodes not used.
    pub skipped_source: Vec<(usize, String)>,
    pub per_task: BTreeMap<String, TaskReport>,
    pub attempts: usize,
    pub accepted: usize,
    pub frames: usize,
    pub seconds: f64,
    pub episodes_per_s: f64,
    pub threads: usize,
    /// Tasks that fell short of `per_task`, in words.
    pub warnings: Vec<String>,
}

/// One task's generation plan: its segmented demos sharing one subtask sequence.
struct TaskPlan {
    task: Arc<dyn Task>,
    /// `(index into SourceSet::demos, subtasks)`.
    demos: Vec<(usize, Vec<Subtask>)>,
    source_demos: usize,
    signature: String,
}

/// Segment every demo of every task and keep, per task, the demos sharing the most common
/// subtask sequence (re-targeting needs the same sequence of reference objects).
fn plan(
    source: &SourceSet,
    annotations: Option<&Annotations>,
    only: &[String],
    skipped: &mut Vec<(usize, String)>,
) -> Result<Vec<TaskPlan>, SynthError> {
    for id in only {
        if !source.demos.iter().any(|d| &d.task == id) {
            mulli_sim::tasks::task(id)?;
            return Err(SynthError::Task {
                task: id.clone(),
                message: format!("no source demos of it in {}", source.root.display()),
            });
        }
    }
    let mut plans = Vec::new();
    // Registry order: deterministic and the same as `mulli sim tasks`.
    for task in mulli_sim::tasks::registry() {
        if !only.is_empty() && !only.iter().any(|t| t == task.id()) {
            continue;
        }
        let mut groups: BTreeMap<String, Vec<(usize, Vec<Subtask>)>> = BTreeMap::new();
        let mut count = 0;
        for (i, demo) in source.demos.iter().enumerate() {
            if demo.task != task.id() {
                continue;
            }
            count += 1;
            let annotated = match annotations {
                Some(a) => a.subtasks(demo).map_err(|message| SynthError::Annotation {
                    path: source.root.clone(),
                    message,
                })?,
                None => None,
            };
            let subtasks = annotated.unwrap_or_else(|| segment::segment(demo));
            groups
                .entry(segment::signature(&subtasks))
                .or_default()
                .push((i, subtasks));
        }
        if count == 0 {
            continue;
        }
        // Most demos first; ties by signature text, for determinism.
        let best = groups
            .iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)))
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        for (sig, members) in &groups {
            if sig != &best {
                for (i, _) in members {
                    skipped.push((
                        source.demos[*i].episode,
                        format!(
                            "segmented as {sig}, the other demos of {} as {best}",
                            task.id()
                        ),
                    ));
                }
            }
        }
        plans.push(TaskPlan {
            task,
            demos: groups.remove(&best).unwrap_or_default(),
            source_demos: count,
            signature: best,
        });
    }
    if plans.is_empty() {
        return Err(SynthError::Config(format!(
            "{}: no usable source demos",
            source.root.display()
        )));
    }
    Ok(plans)
}

/// One attempt's result.
struct Attempt {
    outcome: Outcome,
    frames: Vec<Frame>,
    /// Source episodes replayed.
    sources: Vec<usize>,
}

/// Everything an attempt reads.
struct Context<'a> {
    source: &'a SourceSet,
    plan: &'a TaskPlan,
    suite: Suite,
    env: EnvConfig,
    opts: &'a SynthOptions,
    task_seed: u64,
}

/// Generate `opts.per_task` episodes of every task in `source` into a new dataset at `out`.
/// `progress(accepted, target)` is called as episodes are written.
pub fn synthesize(
    source: &SourceSet,
    annotations: Option<&Annotations>,
    out: &Path,
    opts: &SynthOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<SynthReport, SynthError> {
    opts.validate()?;
    let start = Instant::now();
    let mut report = SynthReport {
        source: source.root.display().to_string(),
        out: out.display().to_string(),
        options: Some(opts.clone()),
        source_episodes: source.demos.len() + source.skipped.len(),
        skipped_source: source.skipped.clone(),
        threads: rayon::current_num_threads(),
        ..SynthReport::default()
    };
    let plans = plan(source, annotations, &opts.tasks, &mut report.skipped_source)?;
    let mut env = EnvConfig {
        control_hz: source.fps,
        render: true,
        success_tail: opts.success_tail,
        ..EnvConfig::default()
    };
    if let Some((w, h)) = opts.camera.or(source.camera) {
        env.cameras.width = w;
        env.cameras.height = h;
    }
    env.validate()?;
    let existed = out.exists();
    let wopts = WriterOptions {
        fps: env.control_hz,
        robot_type: Some(mulli_sim::env::ROBOT_TYPE.into()),
        mode: WriteMode::Create,
        ..WriterOptions::default()
    };
    let data_err = |source| SynthError::Data {
        path: out.to_path_buf(),
        source,
    };
    let mut writer =
        DatasetWriter::create(out, &mulli_sim::record::features(&env), wopts).map_err(data_err)?;
    let target = opts.per_task * plans.len();
    let batch = (rayon::current_num_threads() * 2).max(2);
    for plan in &plans {
        let task_start = Instant::now();
        let id = plan.task.id().to_string();
        let mut tally = TaskReport {
            source_demos: plan.source_demos,
            usable_demos: plan.demos.len(),
            subtasks: plan.signature.clone(),
            ..TaskReport::default()
        };
        let ctx = Context {
            source,
            plan,
            suite: Suite::named("kitchen-v1")?.with_tasks(std::slice::from_ref(&id))?,
            env: env.clone(),
            opts,
            task_seed: rng::derive_seed(opts.seed, &id, 0),
        };
        let max_attempts = if plan.demos.is_empty() {
            0
        } else {
            opts.max_attempts()
        };
        let mut next = 0;
        while tally.accepted < opts.per_task && next < max_attempts {
            let end = (next + batch).min(max_attempts);
            let results: Vec<Result<Attempt, SynthError>> = (next..end)
                .into_par_iter()
                .map(|i| attempt(&ctx, i as u64))
                .collect();
            next = end;
            for r in results {
                if tally.accepted >= opts.per_task {
                    break;
                }
                let r = r?;
                tally.attempts += 1;
                *tally
                    .reasons
                    .entry(r.outcome.as_str().to_string())
                    .or_default() += 1;
                if r.outcome != Outcome::Success {
                    continue;
                }
                for frame in &r.frames {
                    writer.add_frame(frame).map_err(data_err)?;
                }
                writer.save_episode().map_err(data_err)?;
                tally.accepted += 1;
                tally.frames += r.frames.len();
                for s in r.sources {
                    *tally.source_usage.entry(s).or_default() += 1;
                }
                report.accepted += 1;
                report.frames += r.frames.len();
                progress(report.accepted, target);
            }
        }
        tally.complete = tally.accepted >= opts.per_task;
        tally.yield_rate = ratio(tally.accepted, tally.attempts);
        tally.multiplication = ratio(tally.accepted, plan.source_demos);
        tally.seconds = task_start.elapsed().as_secs_f64();
        if !tally.complete {
            let msg = format!(
                "{id}: {} of {} episodes accepted after {} attempts (subtasks {}; outcomes {:?})",
                tally.accepted, opts.per_task, tally.attempts, tally.subtasks, tally.reasons
            );
            tracing::warn!("{msg}");
            report.warnings.push(msg);
        }
        report.attempts += tally.attempts;
        report.per_task.insert(id, tally);
    }
    if report.accepted == 0 {
        drop(writer);
        // Nothing worth keeping: leave no half-made dataset behind (Create mode guarantees
        // the directory was absent or empty).
        if !existed {
            let _ = std::fs::remove_dir_all(out);
        } else if let Ok(entries) = std::fs::read_dir(out) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        return Err(SynthError::NothingAccepted {
            attempts: report.attempts,
            per_task: report
                .per_task
                .iter()
                .map(|(k, t)| format!("{k}: {}/{} ({})", t.accepted, t.attempts, t.subtasks))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    writer.finalize().map_err(data_err)?;
    report.seconds = start.elapsed().as_secs_f64();
    report.episodes_per_s = report.accepted as f64 / report.seconds.max(1e-9);
    Ok(report)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Standard normal sample (Box–Muller).
fn gaussian(rng: &mut rng::Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A running attempt: the environment, what it recorded and the attempt's randomness.
struct Rollout {
    env: KitchenEnv,
    obs: mulli_core::Observation,
    frames: Vec<Frame>,
    rng: rng::Rng,
    noise: f64,
    gripper: f32,
    instruction: String,
}

impl Rollout {
    fn tcp(&self) -> Pose {
        let t = self.env.scene().tcp();
        Pose::new(t.translation, DQuat::from_mat3(&t.matrix3).normalize())
    }

    /// One control step towards `target`; `Some(outcome)` once the episode is over.
    fn step_to(&mut self, target: &Pose, gripper: f32) -> Result<Option<Outcome>, SynthError> {
        let cur = self.tcp();
        let dp = target.pos - cur.pos;
        let dr = mulli_sim::robot::rotation_error(cur.rot, target.rot);
        let mut action = [
            dp.x as f32,
            dp.y as f32,
            dp.z as f32,
            dr.x as f32,
            dr.y as f32,
            dr.z as f32,
            gripper,
        ];
        if self.noise > 0.0 {
            for (k, a) in action.iter_mut().take(6).enumerate() {
                let limit = if k < 3 { MAX_DPOS } else { MAX_DROT } as f64;
                *a += (gaussian(&mut self.rng) * self.noise * limit) as f32;
            }
        }
        self.gripper = gripper;
        let env_state = self.env.environment_state();
        let result: StepResult = self.env.step(&action)?;
        self.frames.push(mulli_sim::record::frame(
            &self.instruction,
            &mut self.obs,
            env_state,
            &action,
            &result,
        ));
        let info = result.info.clone();
        let over = result.terminated || result.truncated;
        self.obs = result.observation;
        // The episode is over at the first success, or after the success tail.
        Ok(over.then(|| {
            if info.success {
                Outcome::Success
            } else {
                Outcome::from_failure(info.failure)
            }
        }))
    }
}

/// Pick the source demo for subtask `k` given where its reference object stands now.
/// Returns the demo, its subtask (for a held part's motion, `start` moved to the first frame
/// to replay: see [`articulated_start`]) and the reference frame at the subtask's start.
fn choose<'a>(
    ctx: &'a Context,
    k: usize,
    now: &crate::pose::ObjectFrame,
    live: &Live,
    rng: &mut rng::Rng,
) -> Option<(&'a SourceDemo, Subtask, crate::pose::ObjectFrame)> {
    let mut candidates: Vec<(f64, usize)> = Vec::new();
    for (pos, (i, subtasks)) in ctx.plan.demos.iter().enumerate() {
        let s = subtasks.get(k)?;
        let demo = &ctx.source.demos[*i];
        if let Some(f) = s.reference.frame(&demo.env[s.start]) {
            // A held part's motion: also how far the hand would have to jump (and turn) to
            // the segment's first replayed pose, which the part must follow.
            let jump = articulated_start(demo, s, live.state).map_or(0.0, |start| {
                let (d, angle) = live
                    .tcp
                    .distance(&f.transfer(now).compose(&demo.targets[start]));
                d + 0.1 * angle
            });
            candidates.push((f.distance(now) + jump, pos));
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let pick = match ctx.opts.selection {
        Selection::Random => candidates[rng.random_range(0..candidates.len())].1,
        Selection::Nearest => {
            candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let k = ctx.opts.nearest_k.min(candidates.len());
            candidates[rng.random_range(0..k)].1
        }
    };
    let (i, subtasks) = &ctx.plan.demos[pick];
    let demo = &ctx.source.demos[*i];
    let mut s = subtasks[k];
    let f = s.reference.frame(&demo.env[s.start])?;
    if let Some(start) = articulated_start(demo, &s, live.state) {
        s.start = start;
    }
    Some((demo, s, f))
}

/// The live scene as a subtask starts: environment state and tool pose.
struct Live<'a> {
    state: &'a [f32],
    tcp: Pose,
}

/// For a subtask that moves an articulated part against its fixed body (the held door swung
/// relative to the fridge, the drawer slid relative to the cabinet): the first source frame
/// at which the source's part had reached where the live part stands now. Why: the live
/// drawer or door starts elsewhere than the source's; replaying the whole source motion would
/// first drag the part along a straight bridge to the source's start (for a door a chord,
/// not its arc). `None` for every other subtask.
fn articulated_start(demo: &SourceDemo, s: &Subtask, state: &[f32]) -> Option<usize> {
    let part = s.reference.child()?;
    if s.end <= s.start || s.end > demo.len() {
        return None;
    }
    let now = part.articulation(state)?;
    let at = |t: usize| part.articulation(&demo.env[t]);
    let (a0, a1) = (at(s.start)?, at(s.end - 1)?);
    if !segment::moved(part, a0, a1) {
        return None;
    }
    let dir = (a1 - a0).signum();
    Some(
        (s.start..s.end)
            .find(|&t| at(t).is_some_and(|a| (a - now) * dir >= 0.0))
            .unwrap_or(s.start),
    )
}

/// Run attempt `index` of a task: new scene, re-targeted segments, success check.
fn attempt(ctx: &Context, index: u64) -> Result<Attempt, SynthError> {
    let task_id = ctx.plan.task.id();
    let mut rng = rng::substream(ctx.opts.seed, &format!("synth/{task_id}"), index);
    let spec = ctx.suite.episode(Split::Train, index, ctx.task_seed);
    let mut layout = spec.layout;
    if rng.random_bool(ctx.opts.strong_visual_fraction) {
        layout.visual = VisualVariation::Strong;
    }
    let config = EnvConfig {
        layout,
        ..ctx.env.clone()
    };
    let mut env = KitchenEnv::new(config, spec.task.clone(), spec.seed, &spec.instruction)?;
    let obs = env.observe();
    let mut run = Rollout {
        env,
        obs,
        frames: Vec::new(),
        rng,
        noise: ctx.opts.action_noise,
        gripper: OPEN,
        instruction: spec.instruction.clone(),
    };
    let mut sources = Vec::new();
    let subtasks = ctx.plan.demos.first().map_or(0, |d| d.1.len());
    let mut last = run.tcp();
    let done = |outcome: Outcome, run: Rollout, sources: Vec<usize>| Attempt {
        outcome,
        frames: if outcome == Outcome::Success {
            run.frames
        } else {
            Vec::new()
        },
        sources,
    };
    for k in 0..subtasks {
        let state = run.env.environment_state();
        let reference = ctx.plan.demos[0].1[k].reference;
        let Some(now) = reference.frame(&state) else {
            return Ok(done(Outcome::ReferenceMissing, run, sources));
        };
        let mut rng = std::mem::replace(&mut run.rng, rng::seeded(0));
        let live = Live {
            state: &state,
            tcp: run.tcp(),
        };
        let chosen = choose(ctx, k, &now, &live, &mut rng);
        run.rng = rng;
        let Some((demo, s, then)) = chosen else {
            return Ok(done(Outcome::ReferenceMissing, run, sources));
        };
        sources.push(demo.episode);
        tracing::debug!(
            attempt = index,
            subtask = k,
            source = demo.episode,
            start = s.start,
            end = s.end,
            door = ?Reference::DoorHandle.articulation(&state),
            src_door = ?Reference::DoorHandle.articulation(&demo.env[s.start]),
            "segment"
        );
        let transfer = then.transfer(&now);
        let first = approach_start(demo, &s, &then, ctx.opts.approach_radius);
        let targets: Vec<(Pose, f32)> = (first..s.end)
            .map(|t| (transfer.compose(&demo.targets[t]), demo.gripper[t]))
            .collect();
        let Some(&(goal, _)) = targets.first() else {
            continue;
        };
        // Bridge: straight from where the hand is to the segment's first pose, holding the
        // gripper as it is, at no more than the hand's comfortable speed.
        let from = run.tcp();
        let (dist, angle) = from.distance(&goal);
        let n = ctx
            .opts
            .interpolation_steps
            .max((dist / 0.02).ceil() as usize)
            .max((angle / 0.12).ceil() as usize)
            .max(1);
        let hold = run.gripper;
        for j in 1..=n {
            let waypoint = from.lerp(&goal, j as f64 / n as f64);
            if let Some(o) = run.step_to(&waypoint, hold)? {
                return Ok(done(o, run, sources));
            }
        }
        for (target, g) in &targets {
            if let Some(o) = run.step_to(target, *g)? {
                return Ok(done(o, run, sources));
            }
            last = *target;
        }
    }
    // Let the scene settle (a released object drops and comes to rest).
    for _ in 0..ctx.opts.settle_steps {
        let g = run.gripper;
        if let Some(o) = run.step_to(&last, g)? {
            return Ok(done(o, run, sources));
        }
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let end = run.env.environment_state();
        tracing::debug!(
            attempt = index,
            door = ?Reference::DoorHandle.articulation(&end),
            drawer = ?Reference::DrawerHandle.articulation(&end),
            "task failed"
        );
    }
    Ok(done(Outcome::TaskFailed, run, sources))
}

/// First frame of subtask `s` to replay: for a grasp approach (gripper open at the start,
/// a graspable reference) the first frame within `radius` of the object; the free-space
/// motion before it is left to the bridge. An approach with the gripper already closed is a
/// push on its way (the fridge door shut from outside) and is replayed whole: its path goes
/// round the part it will push, where a straight bridge would run into it (a bridge into an
/// open door swung it to its stop in four of five attempts).
fn approach_start(
    demo: &SourceDemo,
    s: &Subtask,
    then: &crate::pose::ObjectFrame,
    radius: f64,
) -> usize {
    let grasping = demo.gripper.get(s.start).is_some_and(|&g| g <= 0.0);
    if radius <= 0.0 || !s.reference.graspable() || !grasping {
        return s.start;
    }
    (s.start..s.end)
        .find(|&t| (demo.eef[t].pos - then.pos).length() < radius)
        .unwrap_or(s.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::state;
    use glam::DVec3;

    /// A door swung shut relative to the fridge: the angle goes 1.4 → 0 over frames 10..50.
    fn close_door() -> SourceDemo {
        let angle = |t: usize| 1.4 * (1.0 - (t.clamp(10, 50) - 10) as f32 / 40.0);
        let eef = vec![Pose::new(DVec3::new(0.5, 0.3, 0.8), DQuat::IDENTITY); 60];
        SourceDemo {
            episode: 0,
            task: "close_fridge".into(),
            instruction: "close the fridge".into(),
            targets: eef.clone(),
            eef,
            gripper: vec![1.0; 60],
            env: (0..60)
                .map(|t| {
                    state(&[
                        ("fridge.x", 0.6),
                        ("fridge.y", 0.48),
                        ("fridge_door.angle", angle(t)),
                    ])
                })
                .collect(),
        }
    }

    #[test]
    fn a_grasp_approach_starts_near_the_handle_but_a_push_approach_is_replayed_whole() {
        // The hand comes down on the handle at (0.5, 0.3, 0.3) from 0.8 m above it.
        let mut demo = close_door();
        for (t, p) in demo.eef.iter_mut().enumerate() {
            p.pos = DVec3::new(0.5, 0.3, 0.8 - 0.5 * (t.min(10) as f64 / 10.0));
        }
        let approach = Subtask {
            start: 0,
            end: 10,
            reference: Reference::DoorHandle,
        };
        let handle = crate::pose::ObjectFrame {
            pos: DVec3::new(0.5, 0.3, 0.3),
            yaw: 0.0,
            symmetry: crate::pose::Symmetry::None,
        };
        // Gripper closed from the start (a push on its way): every frame is replayed.
        assert_eq!(approach_start(&demo, &approach, &handle, 0.12), 0);
        // Gripper open (a grasp): the bridge takes the hand to within 12 cm.
        demo.gripper = vec![OPEN; 60];
        assert_eq!(approach_start(&demo, &approach, &handle, 0.12), 8);
        // A part that cannot be grasped, or no radius: replayed whole.
        let fridge = Subtask {
            reference: Reference::Fridge,
            ..approach
        };
        assert_eq!(approach_start(&demo, &fridge, &handle, 0.12), 0);
        assert_eq!(approach_start(&demo, &approach, &handle, 0.0), 0);
    }

    #[test]
    fn a_swing_resumes_where_the_live_door_stands() {
        let demo = close_door();
        let swing = Subtask {
            start: 10,
            end: 50,
            reference: Reference::Fridge,
        };
        let live = |angle: f32| {
            state(&[
                ("fridge.x", 0.7),
                ("fridge.y", 0.4),
                ("fridge_door.angle", angle),
            ])
        };
        // Live door less open than the source's start: skip the part of the sweep it has
        // already done.
        assert_eq!(
            articulated_start(&demo, &swing, &live(0.7)),
            Some(30),
            "the source's door passes 0.7 rad at frame 30"
        );
        // Live door more open than the source's ever was: replay it all.
        assert_eq!(articulated_start(&demo, &swing, &live(1.6)), Some(10));
        // Other subtasks are left alone: a loose object, a door that does not move.
        let pick = Subtask {
            reference: Reference::Object(mulli_sim::objects::ObjectKind::Apple),
            ..swing
        };
        assert!(articulated_start(&demo, &pick, &live(0.7)).is_none());
        let still = Subtask {
            start: 50,
            end: 60,
            ..swing
        };
        assert!(articulated_start(&demo, &still, &live(0.7)).is_none());
        let past_the_end = Subtask { end: 61, ..swing };
        assert!(articulated_start(&demo, &past_the_end, &live(0.7)).is_none());
    }
}
