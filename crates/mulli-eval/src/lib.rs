//! Closed-loop evaluation of any [`Policy`] in the kitchen — mulli's honest success numbers.
//!
//! This crate owns: which episodes an evaluation runs (per task, per generalization split,
//! plus a user's own instructions), running them in parallel on worker threads, scoring them
//! (success with Wilson 95% intervals, failure reasons), rollout videos for a sample of
//! successes and failures, and `eval_info.json` in LeRobot's field names ([`info`]). It also
//! records corrections ([`correct`]): the same closed-loop rollouts, with the scripted
//! expert taking over midway and its steps written as new demos.
//!
//! Episodes are the same for every policy given the seed (task `t`'s episode `i` of split `s`
//! is `Suite::episode` of a one-task suite), so two policies, or one policy in process and
//! behind a server, are compared on identical scenes and instructions. Results do not depend
//! on the number of workers: every episode reseeds the policy ([`Policy::reseed`]) from its own
//! seed and results are ordered by episode, not by completion.

pub mod correct;
pub mod info;
pub mod instructions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use mulli_core::stats::median;
use mulli_core::{ChunkExecutor, Execution, Observation, Policy, rng};
use mulli_data::video::{EncodedPacket, Mp4H264Writer};
use mulli_sim::{EnvConfig, KitchenEnv, SimError, Split, Suite, Task};
use serde::Serialize;

pub use correct::{CorrectOptions, CorrectReport, Trigger, correct};
pub use info::{EvalInfo, write_eval_dir};
pub use instructions::{CustomInstruction, load_instructions};

/// Split id of the episodes run with a user's own instructions (`--instructions FILE`).
pub const CUSTOM_SPLIT: &str = "custom_instructions";

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub suite: String,
    /// Task ids (empty = the whole suite).
    pub tasks: Vec<String>,
    pub splits: Vec<Split>,
    /// A user's own (task, instruction) pairs, each run on the seen layouts as split
    /// [`CUSTOM_SPLIT`], `episodes_per_task` episodes per pair.
    pub instructions: Vec<CustomInstruction>,
    pub episodes_per_task: usize,
    pub seed: u64,
    pub env: EnvConfig,
    pub execution: Execution,
    /// Worker threads, each with its own policy instance (0 = one per core).
    pub workers: usize,
    /// Keep rollout videos of up to this many successes and this many failures per task and
    /// split (0 = no videos).
    pub videos_per_outcome: usize,
    /// Keep a [`QueryTrace`] of every policy query ([`EvalReport::traces`], `trace.jsonl`).
    pub trace: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            suite: "kitchen-v1".into(),
            tasks: Vec::new(),
            splits: vec![Split::SeenLayouts],
            instructions: Vec::new(),
            episodes_per_task: 10,
            seed: 1,
            env: EnvConfig::default(),
            execution: Execution::default(),
            workers: 1,
            videos_per_outcome: 0,
            trace: false,
        }
    }
}

/// One evaluated episode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpisodeResult {
    pub task: String,
    pub split: String,
    /// Episode index within its task and split (and instruction, for custom instructions).
    pub index: u64,
    pub layout_seed: u64,
    pub instruction: String,
    pub success: bool,
    pub failure: Option<String>,
    pub steps: usize,
    pub policy_queries: usize,
    /// Sum and maximum of the per-step reward (1 on the step the task succeeds, else 0).
    pub sum_reward: f64,
    pub max_reward: f64,
    /// Grasping tasks: how close the hand came to the target object (m), overall and when
    /// it closed (see [`mulli_sim::Reach`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_close_m: Option<f64>,
    /// Placing tasks: how far, horizontally, the object was from where it had to go when
    /// the hand let go of it (m; see [`mulli_sim::Reach::released_m`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_m: Option<f64>,
    /// Policies that perceive object positions from their cameras: the median distance
    /// (m) between where the policy saw the target object and where it was, over the
    /// episode's queries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perceived_err_m: Option<f64>,
}

/// Success of one task on one split (and one instruction, for custom instructions).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskScore {
    pub task: String,
    pub split: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    pub episodes: usize,
    pub successes: usize,
    pub rate: f64,
    /// Wilson 95% interval.
    pub ci: (f64, f64),
    pub failures: BTreeMap<String, usize>,
    /// Grasping tasks: medians over the episodes of [`EpisodeResult::closest_m`] and of
    /// [`EpisodeResult::at_close_m`] (over the episodes that closed the hand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_closest_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_at_close_m: Option<f64>,
    /// Median of [`EpisodeResult::released_m`] over the episodes that let go of the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_released_m: Option<f64>,
    /// Median over the episodes of [`EpisodeResult::perceived_err_m`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_perceived_err_m: Option<f64>,
}

/// Success over all tasks of one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitScore {
    pub split: String,
    pub episodes: usize,
    pub successes: usize,
    pub rate: f64,
    pub ci: (f64, f64),
}

/// The rollout video of one episode: both cameras side by side, H.264 packets in memory.
#[derive(Clone, Debug)]
pub struct EpisodeVideo {
    /// Position of the episode in [`EvalReport::episodes`].
    pub episode: usize,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub packets: Vec<EncodedPacket>,
    /// The last frame, RGB8 HWC (a poster image for reports).
    pub poster: Vec<u8>,
}

/// One policy query: where the hand was and what the policy perceived, next to the truth.
/// Why: whether a failed grasp was the perception's fault or the control's is read from
/// these (docs/benchmarks.md, session 21), not from the success rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryTrace {
    /// Index of the episode in [`EvalReport::episodes`].
    pub episode: usize,
    /// Control step of the query (0 = the episode's first observation).
    pub step: usize,
    /// Tool centre (m, world frame) and the fingers' opening (m).
    pub tool: [f32; 3],
    pub gripper_m: f32,
    /// Each environment-state entry the policy perceived (`cube.x`, …): `[perceived,
    /// true]`, the truth `null` when the observation did not carry it. Empty for a policy
    /// that perceives nothing.
    pub perceived: BTreeMap<String, [Option<f32>; 2]>,
}

#[derive(Clone, Debug, Default)]
pub struct EvalReport {
    /// In a fixed order: split, then task, then (custom) instruction, then index.
    pub episodes: Vec<EpisodeResult>,
    pub scores: Vec<TaskScore>,
    pub split_scores: Vec<SplitScore>,
    pub videos: Vec<EpisodeVideo>,
    /// Every policy query of every episode, in episode order, when
    /// [`EvalOptions::trace`] is set.
    pub traces: Vec<QueryTrace>,
    /// Wall-clock seconds of the whole evaluation.
    pub eval_s: f64,
    pub workers: usize,
}

impl EvalReport {
    /// Overall success rate over all episodes.
    pub fn success_rate(&self) -> f64 {
        let n = self.episodes.len().max(1);
        self.successes() as f64 / n as f64
    }

    pub fn successes(&self) -> usize {
        self.episodes.iter().filter(|e| e.success).count()
    }

    /// The tasks of `split` against a success rate of `share`: each score row meets it,
    /// falls short by less than its 95% interval can tell, or falls short for certain.
    /// Why: a task's rate from 10 episodes has a standard error of ~16 points, so at a
    /// true 50% a task shows 4 of 10 or fewer 38% of the time; "below half" on 10
    /// episodes is often the evaluation's noise, not the policy (docs/benchmarks.md,
    /// session 31).
    pub fn task_verdict(&self, split: &str, share: f64) -> TaskVerdict<'_> {
        let mut v = TaskVerdict::default();
        for sc in self.scores.iter().filter(|s| s.split == split) {
            if sc.rate >= share {
                v.met.push(sc);
            } else if sc.ci.1 >= share {
                v.undecided.push(sc);
            } else {
                v.below.push(sc);
            }
        }
        v
    }
}

/// [`EvalReport::task_verdict`]: the score rows of one split, sorted by how they compare
/// with a success rate (each list in the report's order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskVerdict<'a> {
    /// At least the rate.
    pub met: Vec<&'a TaskScore>,
    /// Below it, but the 95% interval reaches it: more episodes would tell.
    pub undecided: Vec<&'a TaskScore>,
    /// Below it with the whole 95% interval.
    pub below: Vec<&'a TaskScore>,
}

impl TaskVerdict<'_> {
    /// Score rows in all three lists.
    pub fn tasks(&self) -> usize {
        self.met.len() + self.undecided.len() + self.below.len()
    }
}

/// Wilson score interval (95%) for `successes` of `n`.
pub fn wilson(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (z, n_f) = (1.96f64, n as f64);
    let p = successes as f64 / n_f;
    let denom = 1.0 + z * z / n_f;
    let centre = (p + z * z / (2.0 * n_f)) / denom;
    let half = z * ((p * (1.0 - p) + z * z / (4.0 * n_f)) / n_f).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("invalid evaluation options: {0}")]
    Options(String),
    #[error("policy failed in {task} ({split}) episode {index}: {source}")]
    Policy {
        task: String,
        split: String,
        index: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot create the policy for evaluation worker {worker}: {source}")]
    PolicyInit {
        worker: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode a rollout video: {0}")]
    Video(String),
    #[error("instructions file {path}: {message}")]
    Instructions { path: String, message: String },
    /// Every correction attempt ended without an episode to write (the policy succeeded
    /// before the takeover, held another object, or the expert failed). The report says which.
    #[error(
        "none of the {attempts} attempts gave a corrected episode (per task: {per_task}); nothing written to {out}",
        attempts = report.attempts,
        per_task = serde_json::to_string(&report.per_task).unwrap_or_default()
    )]
    NothingCorrected {
        report: Box<crate::correct::CorrectReport>,
        out: String,
    },
}

/// One episode to run.
struct Job {
    split: Split,
    split_id: &'static str,
    task: Arc<dyn Task>,
    index: u64,
    /// Custom instruction (replaces the split's phrasing).
    instruction: Option<String>,
}

/// Every episode of an evaluation, in report order.
fn jobs(opts: &EvalOptions) -> Result<Vec<Job>, EvalError> {
    let suite = Suite::named(&opts.suite)?.with_tasks(&opts.tasks)?;
    if opts.episodes_per_task == 0 {
        return Err(EvalError::Options(
            "evaluation needs at least one episode per task".into(),
        ));
    }
    if opts.splits.is_empty() && opts.instructions.is_empty() {
        return Err(EvalError::Options(
            "evaluation needs at least one split or one custom instruction".into(),
        ));
    }
    if let Some(bad) = opts.splits.iter().find(|s| **s == Split::Train) {
        return Err(EvalError::Options(format!(
            "split '{}' is the training pool, not an evaluation split; use seen_layouts",
            bad.id()
        )));
    }
    let episodes = opts.episodes_per_task as u64;
    let mut out = Vec::new();
    for &split in &opts.splits {
        for task in &suite.tasks {
            for index in 0..episodes {
                out.push(Job {
                    split,
                    split_id: split.id(),
                    task: task.clone(),
                    index,
                    instruction: None,
                });
            }
        }
    }
    for ci in &opts.instructions {
        let Some(task) = suite.tasks.iter().find(|t| t.id() == ci.task) else {
            return Err(EvalError::Options(format!(
                "custom instruction '{}' names task '{}', which is not in suite {} (tasks: {})",
                ci.instruction,
                ci.task,
                suite.name,
                suite
                    .tasks
                    .iter()
                    .map(|t| t.id())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        for index in 0..episodes {
            out.push(Job {
                // Custom phrasings run on the layouts of the seen split, so every phrasing of
                // a task is tested on the same scenes.
                split: Split::SeenLayouts,
                split_id: CUSTOM_SPLIT,
                task: task.clone(),
                index,
                instruction: Some(ci.instruction.clone()),
            });
        }
    }
    Ok(out)
}

/// Evaluate a policy. `make_policy(worker)` builds one policy per worker thread (a policy
/// need not be `Send`); `progress(done, total, episode)` is called on this thread after every
/// episode, in completion order.
pub fn evaluate<P, E, F>(
    make_policy: F,
    opts: &EvalOptions,
    mut progress: impl FnMut(usize, usize, &EpisodeResult),
) -> Result<EvalReport, EvalError>
where
    P: Policy,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(usize) -> Result<P, E> + Sync,
{
    let start = Instant::now();
    let jobs = jobs(opts)?;
    let env_config = EnvConfig {
        render: true,
        ..opts.env.clone()
    };
    env_config.validate()?;
    let total = jobs.len();
    let mut slots: Vec<Option<Rollout>> = (0..total).map(|_| None).collect();
    let record_video = opts.videos_per_outcome > 0;
    let mut done = 0;
    let workers = run_pool(
        make_policy,
        opts.execution,
        opts.workers,
        &jobs,
        |exec, job| run_episode(exec, job, opts, &env_config, record_video),
        |j, rollout: Rollout| {
            done += 1;
            progress(done, total, &rollout.result);
            slots[j] = Some(rollout);
            Ok(())
        },
    )?;
    let rollouts: Vec<Rollout> = slots
        .into_iter()
        .map(|s| s.expect("every job ran: workers stop early only on an error"))
        .collect();
    let mut report = score(rollouts, opts.videos_per_outcome);
    report.eval_s = start.elapsed().as_secs_f64();
    report.workers = workers;
    Ok(report)
}

/// Runs `run` on every job on worker threads (`workers`, 0 = one per core), each with its
/// own policy from `make_policy(worker)` behind a [`ChunkExecutor`]; `done(job index,
/// result)` is called on this thread in completion order. The first error (from a job,
/// a policy's creation or `done`) stops every worker and is returned. Returns the number
/// of workers used.
pub(crate) fn run_pool<P, E, F, J, R>(
    make_policy: F,
    execution: Execution,
    workers: usize,
    jobs: &[J],
    run: impl Fn(&mut ChunkExecutor<P>, &J) -> Result<R, EvalError> + Sync,
    mut done: impl FnMut(usize, R) -> Result<(), EvalError>,
) -> Result<usize, EvalError>
where
    P: Policy,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(usize) -> Result<P, E> + Sync,
    J: Sync,
    R: Send,
{
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(jobs.len())
    .max(1);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let mut first_error: Option<EvalError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<R, EvalError>)>();
        for worker in 0..workers {
            let tx = tx.clone();
            let (next, abort, make_policy, run) = (&next, &abort, &make_policy, &run);
            scope.spawn(move || {
                let policy = match make_policy(worker) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send((
                            usize::MAX,
                            Err(EvalError::PolicyInit {
                                worker,
                                source: Box::new(e),
                            }),
                        ));
                        return;
                    }
                };
                let mut exec = ChunkExecutor::new(policy, execution);
                while !abort.load(Ordering::Relaxed) {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(j) else { break };
                    let r = run(&mut exec, job);
                    let failed = r.is_err();
                    if tx.send((j, r)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (j, r) in rx {
            if first_error.is_some() {
                continue;
            }
            if let Err(e) = r.and_then(|r| done(j, r)) {
                abort.store(true, Ordering::Relaxed);
                first_error = Some(e);
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(workers),
    }
}

/// A finished episode with its frames, before videos are selected.
struct Rollout {
    result: EpisodeResult,
    video: Option<(Mp4H264Writer, Vec<u8>)>,
    trace: Vec<QueryTrace>,
}

fn run_episode<P: Policy>(
    exec: &mut ChunkExecutor<P>,
    job: &Job,
    opts: &EvalOptions,
    env_config: &EnvConfig,
    record_video: bool,
) -> Result<Rollout, EvalError> {
    let one = Suite {
        tasks: vec![job.task.clone()],
        ..Suite::named(&opts.suite)?
    };
    let mut spec = one.episode(job.split, job.index, opts.seed);
    if let Some(instruction) = &job.instruction {
        spec.instruction = instruction.clone();
    }
    let mut env = KitchenEnv::new(
        spec.env_config(env_config),
        spec.task.clone(),
        spec.seed,
        &spec.instruction,
    )?;
    let policy_err = |source: Box<dyn std::error::Error + Send + Sync>| EvalError::Policy {
        task: job.task.id().to_string(),
        split: job.split_id.to_string(),
        index: job.index,
        source,
    };
    // The episode's own seed: its results do not depend on what the worker ran before.
    let label = format!(
        "eval/{}/{}/{}",
        job.split_id,
        job.task.id(),
        job.instruction.as_deref().unwrap_or("")
    );
    exec.policy_mut()
        .reseed(rng::derive_seed(opts.seed, &label, job.index));
    exec.reset();
    let mut obs = env.observe();
    let mut video = if record_video {
        Some(VideoRecorder::new(&obs, env_config.control_hz)?)
    } else {
        None
    };
    let (mut sum_reward, mut max_reward) = (0.0f64, 0.0f64);
    let target_kind = spec.task.target_object();
    let target = target_kind.map(|o| o.id());
    let mut perception_errors = Vec::new();
    let mut trace = Vec::new();
    let (success, failure, steps) = loop {
        if let Some(v) = &mut video {
            v.push(&obs)?;
        }
        let queries = exec.queries();
        let action = exec
            .next_action(&obs)
            .map_err(|e| policy_err(Box::new(e)))?;
        if let Some(target) = target
            && exec.queries() > queries
            && let Some(e) = target_error(&exec.policy().perceived(), target)
        {
            // The field is evaluated only when debug logging is on.
            tracing::debug!(task = %job.task.id(), index = job.index, step = env.steps(), err_cm = 100.0 * e, hand_cm = ?hand_to_target_cm(&env, target_kind), "perceived the target");
            perception_errors.push(e);
        }
        if opts.trace && exec.queries() > queries {
            let scene = env.scene();
            let t = scene.tcp().translation;
            trace.push(QueryTrace {
                episode: 0, // set in `score`, which knows the episode's place
                step: env.steps(),
                tool: [t.x as f32, t.y as f32, t.z as f32],
                gripper_m: scene.gripper_width(),
                perceived: exec
                    .policy()
                    .perceived()
                    .into_iter()
                    .map(|p| (p.name, [Some(p.value), p.truth]))
                    .collect(),
            });
        }
        let r = env.step(&action).map_err(|e| policy_err(Box::new(e)))?;
        sum_reward += f64::from(r.reward);
        max_reward = max_reward.max(f64::from(r.reward));
        if r.terminated || r.truncated {
            if let Some(v) = &mut video {
                v.push(&r.observation)?;
            }
            break (r.info.success, r.info.failure, r.info.step);
        }
        obs = r.observation;
    };
    Ok(Rollout {
        result: EpisodeResult {
            task: job.task.id().to_string(),
            split: job.split_id.to_string(),
            index: job.index,
            layout_seed: spec.seed,
            instruction: spec.instruction.clone(),
            success,
            failure: failure.map(|f| f.as_str().to_string()),
            steps,
            policy_queries: exec.queries(),
            sum_reward,
            max_reward,
            closest_m: env.reach().map(|r| r.closest_m),
            at_close_m: env.reach().and_then(|r| r.at_close_m),
            released_m: env.reach().and_then(|r| r.released_m),
            perceived_err_m: median(perception_errors),
        },
        video: video.map(|v| (v.writer, v.last)),
        trace,
    })
}

/// How far (cm) the tool centre is from the target object now (`None` without one): with the
/// perception error, it says whether a grasp failed because of where the object was seen.
fn hand_to_target_cm(
    env: &KitchenEnv,
    target: Option<mulli_sim::objects::ObjectKind>,
) -> Option<f64> {
    let pose = env.scene().object_pose(target?)?;
    Some(100.0 * (env.scene().tcp().translation - pose.translation.as_dvec3()).length())
}

/// The distance (m) between where a policy perceived `target` (its `.x`, `.y`, `.z`
/// entries) and where it was; `None` unless all three were perceived with a truth.
fn target_error(perceived: &[mulli_core::Perceived], target: &str) -> Option<f64> {
    let mut sq = 0.0;
    for axis in ["x", "y", "z"] {
        let name = format!("{target}.{axis}");
        let p = perceived.iter().find(|p| p.name == name)?;
        sq += f64::from(p.value - p.truth?).powi(2);
    }
    Some(sq.sqrt())
}

/// Encodes every camera of each observation side by side (in camera-name order).
struct VideoRecorder {
    writer: Mp4H264Writer,
    width: usize,
    height: usize,
    frame: Vec<u8>,
    last: Vec<u8>,
}

impl VideoRecorder {
    fn new(obs: &Observation, fps: u32) -> Result<Self, EvalError> {
        if obs.images.is_empty() {
            return Err(EvalError::Video(
                "the observation has no camera images".into(),
            ));
        }
        // H.264 4:2:0 wants even sizes: pad by a black column/row when needed.
        let even = |n: usize| n + n % 2;
        let width = even(obs.images.values().map(|i| i.width).sum());
        let height = even(obs.images.values().map(|i| i.height).max().unwrap_or(0));
        let writer = Mp4H264Writer::new(width as u32, height as u32, fps.max(1), 2 * fps.max(1))
            .map_err(|e| EvalError::Video(e.to_string()))?;
        Ok(VideoRecorder {
            writer,
            width,
            height,
            frame: vec![0; width * height * 3],
            last: Vec::new(),
        })
    }

    fn push(&mut self, obs: &Observation) -> Result<(), EvalError> {
        self.frame.fill(0);
        let mut x0 = 0;
        for img in obs.images.values() {
            if img.rgb.len() != img.width * img.height * 3 || x0 + img.width > self.width {
                return Err(EvalError::Video(format!(
                    "camera image {}x{} ({} bytes) does not fit the {}x{} video",
                    img.width,
                    img.height,
                    img.rgb.len(),
                    self.width,
                    self.height
                )));
            }
            for y in 0..img.height.min(self.height) {
                let src = &img.rgb[y * img.width * 3..(y + 1) * img.width * 3];
                let dst = (y * self.width + x0) * 3;
                self.frame[dst..dst + src.len()].copy_from_slice(src);
            }
            x0 += img.width;
        }
        self.writer
            .push_rgb(&self.frame)
            .map_err(|e| EvalError::Video(e.to_string()))?;
        self.last.clone_from(&self.frame);
        Ok(())
    }
}

/// Group key of a score: split, task, and the instruction for custom instructions.
fn group_key(e: &EpisodeResult) -> (String, String, Option<String>) {
    let instruction = (e.split == CUSTOM_SPLIT).then(|| e.instruction.clone());
    (e.split.clone(), e.task.clone(), instruction)
}

/// Scores per task and split, and the videos: per group, the first `per_outcome` successes
/// and failures by episode index (deterministic, whatever the workers' timing).
fn score(rollouts: Vec<Rollout>, per_outcome: usize) -> EvalReport {
    let mut report = EvalReport::default();
    let mut kept: BTreeMap<(String, String, Option<String>, bool), usize> = BTreeMap::new();
    for (i, r) in rollouts.into_iter().enumerate() {
        if let Some((writer, poster)) = r.video {
            let (s, t, ins) = group_key(&r.result);
            let n = kept.entry((s, t, ins, r.result.success)).or_default();
            if *n < per_outcome {
                *n += 1;
                report.videos.push(EpisodeVideo {
                    episode: i,
                    width: writer.width(),
                    height: writer.height(),
                    fps: writer.fps(),
                    packets: writer.into_packets(),
                    poster,
                });
            }
        }
        report
            .traces
            .extend(r.trace.into_iter().map(|t| QueryTrace { episode: i, ..t }));
        report.episodes.push(r.result);
    }
    // Groups in first-appearance order: the order the options listed splits and tasks.
    let mut order: Vec<(String, String, Option<String>)> = Vec::new();
    let mut groups: BTreeMap<(String, String, Option<String>), Vec<&EpisodeResult>> =
        BTreeMap::new();
    for e in &report.episodes {
        let k = group_key(e);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(e);
    }
    for key in order {
        let eps = &groups[&key];
        let successes = eps.iter().filter(|e| e.success).count();
        let mut failures = BTreeMap::new();
        for e in eps {
            if let Some(f) = &e.failure {
                *failures.entry(f.clone()).or_default() += 1;
            }
        }
        let (split, task, instruction) = key;
        report.scores.push(TaskScore {
            task,
            split,
            instruction,
            episodes: eps.len(),
            successes,
            rate: successes as f64 / eps.len() as f64,
            ci: wilson(successes, eps.len()),
            failures,
            median_closest_m: median(eps.iter().filter_map(|e| e.closest_m)),
            median_at_close_m: median(eps.iter().filter_map(|e| e.at_close_m)),
            median_released_m: median(eps.iter().filter_map(|e| e.released_m)),
            median_perceived_err_m: median(eps.iter().filter_map(|e| e.perceived_err_m)),
        });
    }
    let mut split_order: Vec<String> = Vec::new();
    for e in &report.episodes {
        if !split_order.contains(&e.split) {
            split_order.push(e.split.clone());
        }
    }
    for split in split_order {
        let eps: Vec<_> = report
            .episodes
            .iter()
            .filter(|e| e.split == split)
            .collect();
        let successes = eps.iter().filter(|e| e.success).count();
        report.split_scores.push(SplitScore {
            split,
            episodes: eps.len(),
            successes,
            rate: successes as f64 / eps.len() as f64,
            ci: wilson(successes, eps.len()),
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn task_score(task: &str, split: &str, successes: usize, episodes: usize) -> TaskScore {
        TaskScore {
            task: task.into(),
            split: split.into(),
            instruction: None,
            episodes,
            successes,
            rate: successes as f64 / episodes as f64,
            ci: wilson(successes, episodes),
            failures: BTreeMap::new(),
            median_closest_m: None,
            median_at_close_m: None,
            median_released_m: None,
            median_perceived_err_m: None,
        }
    }

    /// 4 of 10 cannot tell a task from a coin; 19 of 40 cannot either; 1 of 20 and 18 of
    /// 60 can; 5 of 10 meets half. Other splits are left out.
    #[test]
    fn the_task_verdict_tells_short_from_undecided() {
        let report = EvalReport {
            scores: vec![
                task_score("a", "seen_layouts", 5, 10),
                task_score("b", "seen_layouts", 4, 10),
                task_score("c", "seen_layouts", 1, 20),
                task_score("d", "korean", 0, 10),
                task_score("e", "seen_layouts", 19, 40),
                task_score("f", "seen_layouts", 18, 60),
            ],
            ..EvalReport::default()
        };
        let v = report.task_verdict("seen_layouts", 0.5);
        let names = |l: &[&TaskScore]| l.iter().map(|s| s.task.clone()).collect::<Vec<_>>();
        assert_eq!(names(&v.met), ["a"]);
        assert_eq!(names(&v.undecided), ["b", "e"]);
        assert_eq!(names(&v.below), ["c", "f"]);
        assert_eq!(v.tasks(), 5);
        assert_eq!(report.task_verdict("nowhere", 0.5), TaskVerdict::default());
    }

    #[test]
    fn wilson_interval_brackets_the_rate() {
        let (lo, hi) = wilson(8, 10);
        assert!(lo < 0.8 && hi > 0.8 && lo > 0.4 && hi < 1.0, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, _) = wilson(0, 20);
        assert_eq!(lo, 0.0);
    }

    proptest! {
        #[test]
        fn wilson_is_a_valid_interval_around_the_rate(n in 1usize..500, k in 0usize..500) {
            let k = k.min(n);
            let (lo, hi) = wilson(k, n);
            let p = k as f64 / n as f64;
            prop_assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
            prop_assert!(lo <= p + 1e-12 && p <= hi + 1e-12, "{lo} {p} {hi}");
            // More episodes never widen the interval at the same rate.
            let (lo2, hi2) = wilson(4 * k, 4 * n);
            prop_assert!(hi2 - lo2 <= hi - lo + 1e-12);
        }
    }

    #[test]
    fn options_are_checked() {
        let bad = |o: EvalOptions| jobs(&o).err().expect("should fail").to_string();
        let e = bad(EvalOptions {
            episodes_per_task: 0,
            ..Default::default()
        });
        assert!(e.contains("at least one episode"), "{e}");
        let e = bad(EvalOptions {
            splits: vec![],
            ..Default::default()
        });
        assert!(e.contains("at least one split"), "{e}");
        let e = bad(EvalOptions {
            splits: vec![Split::Train],
            ..Default::default()
        });
        assert!(e.contains("training pool"), "{e}");
        let e = bad(EvalOptions {
            instructions: vec![CustomInstruction {
                task: "fly_to_the_moon".into(),
                instruction: "fly".into(),
            }],
            ..Default::default()
        });
        assert!(
            e.contains("fly_to_the_moon") && e.contains("open_drawer"),
            "{e}"
        );
    }

    #[test]
    fn jobs_cover_splits_tasks_and_custom_instructions() {
        let opts = EvalOptions {
            suite: "kitchen-v1-single".into(),
            tasks: vec!["open_drawer".into(), "pick_up_apple".into()],
            splits: vec![Split::SeenLayouts, Split::Korean],
            instructions: vec![CustomInstruction {
                task: "open_drawer".into(),
                instruction: "pull the drawer out".into(),
            }],
            episodes_per_task: 3,
            ..Default::default()
        };
        let j = jobs(&opts).unwrap();
        assert_eq!(j.len(), 2 * 2 * 3 + 3);
        assert_eq!(j.last().unwrap().split_id, CUSTOM_SPLIT);
        assert_eq!(
            j.last().unwrap().instruction.as_deref(),
            Some("pull the drawer out")
        );
    }
}
