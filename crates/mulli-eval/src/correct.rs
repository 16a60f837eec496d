//! Corrections: the policy drives, the scripted expert takes over, and what the expert then
//! does is recorded as new demonstrations (human-gated DAgger, with the expert as the human).
//!
//! Why: a policy trained on demos alone drifts into states no demo visits (a hand that
//! closed beside the object, an arm over the wrong drawer) and has never seen a way back
//! from them; the scripted demos never miss a grasp. Here each attempt runs the policy on
//! a training layout for a random part of the task's step budget, then hands the arm, as it
//! is, to a (noisy) expert that resumes its script where the demos would be in that state
//! ([`Task::expert_from`]; tasks without one are skipped). The expert's steps from that state to success are written
//! as an episode in the capture's dataset format, so `mulli train` takes them as one more
//! `--data` directory. Where the policy holds the task's object at the takeover, the expert
//! resumes after its grasp (lift, carry, place). Attempts where the policy already
//! succeeded, or holds another object (no demo shows the way from there), or where the
//! expert then fails, write nothing; the report counts each.
//!
//! When the expert takes over is the [`Trigger`]: at a drawn step (a random part of the
//! budget), or where a human operator would step in, the moment the policy's empty hand goes
//! under the grasp expert's funnel beside the object ([`Trigger::UnderFunnel`]). That is
//! the state where the policy's grasps go wrong (docs/benchmarks.md, sessions 21–22) and
//! that no demo visits, so those corrections are the labels the demos lack.
//!
//! Deterministic like evaluation: attempt `i` of a task has its own layout, takeover step,
//! trigger depth, policy seed and expert noise, and episodes are written in attempt order
//! whatever the number of workers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mulli_core::rng::RngExt as _;
use mulli_core::{ChunkExecutor, Execution, Frame, Policy, rng};
use mulli_data::{DatasetWriter, WriteMode, WriterOptions};
use mulli_sim::expert::{Expert, NoisyExpert};
use mulli_sim::record::{MAX_NOISE, features, frame};
use mulli_sim::{EnvConfig, KitchenEnv, ObjectKind, Split, Suite, Task};
use serde::{Deserialize, Serialize};

use crate::{EvalError, run_pool};

#[derive(Clone, Debug)]
pub struct CorrectOptions {
    pub suite: String,
    /// Task ids (empty = the whole suite).
    pub tasks: Vec<String>,
    /// Attempts per task; each writes at most one episode.
    pub attempts_per_task: usize,
    pub seed: u64,
    /// Cameras, step rate and `success_tail` of the recorded episodes: the same as the
    /// demos they are trained with.
    pub env: EnvConfig,
    pub execution: Execution,
    /// Worker threads, each with its own policy instance (0 = one per core).
    pub workers: usize,
    /// The expert's action noise (m per step; see [`NoisyExpert`]).
    pub noise: f64,
    /// The expert takes over after a uniformly drawn share of the task's step budget in
    /// `[takeover.0, takeover.1]`, or earlier where the [`Trigger`] says so.
    pub takeover: (f64, f64),
    pub trigger: Trigger,
}

/// When the expert takes an attempt over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// At the drawn step ([`CorrectOptions::takeover`]).
    #[default]
    Time,
    /// As soon as the hand, holding nothing, is under the grasp expert's funnel beside the
    /// task's object by more than a depth drawn per attempt in [`UNDER_FUNNEL`]
    /// ([`mulli_sim::tasks::under_funnel`]); at the drawn step if that never happens
    /// before it. Tasks without an object to grasp take over at the drawn step.
    UnderFunnel,
}

/// Range (m) of the depth under the funnel at which [`Trigger::UnderFunnel`] fires: a
/// centimetre is within the policy's usual imprecision on a good approach; at 4 cm the hand
/// is well into the 3–10 cm band where the missed grasps come down beside the object.
pub const UNDER_FUNNEL: (f64, f64) = (0.01, 0.04);

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Time => "time",
            Trigger::UnderFunnel => "under_funnel",
        }
    }
}

impl std::str::FromStr for Trigger {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self, EvalError> {
        match s {
            "time" => Ok(Trigger::Time),
            "under_funnel" | "under-funnel" => Ok(Trigger::UnderFunnel),
            other => Err(EvalError::Options(format!(
                "trigger = {other:?}: expected \"time\" or \"under_funnel\""
            ))),
        }
    }
}

impl Default for CorrectOptions {
    fn default() -> Self {
        CorrectOptions {
            suite: "kitchen-v1-single".into(),
            tasks: Vec::new(),
            attempts_per_task: 10,
            seed: 0,
            env: EnvConfig::default(),
            execution: Execution::default(),
            workers: 0,
            noise: 0.002,
            takeover: (0.1, 0.8),
            trigger: Trigger::Time,
        }
    }
}

impl CorrectOptions {
    /// The errors [`correct`] would give for these options, before any attempt runs.
    pub fn check(&self) -> Result<(), EvalError> {
        let bad = |m: String| Err(EvalError::Options(m));
        if self.attempts_per_task == 0 {
            return bad("attempts_per_task = 0: make at least one attempt per task".into());
        }
        let (lo, hi) = self.takeover;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return bad(format!(
                "takeover = ({lo}, {hi}): need 0 <= min <= max <= 1 (shares of the task's step budget)"
            ));
        }
        if !(0.0..=MAX_NOISE).contains(&self.noise) {
            return bad(format!(
                "noise = {}: must be between 0 and {MAX_NOISE} m per step",
                self.noise
            ));
        }
        Ok(())
    }
}

/// What the attempts of one task came to.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CorrectTally {
    pub attempts: usize,
    /// Episodes written: the expert took over and succeeded.
    pub written: usize,
    pub frames: usize,
    /// The policy succeeded before the takeover: nothing to correct.
    pub policy_succeeded: usize,
    /// The hand held an object other than the task's at the takeover.
    pub holding: usize,
    /// The expert took over as the hand went under its funnel ([`Trigger::UnderFunnel`]),
    /// whatever came of it.
    #[serde(skip_serializing_if = "is_zero")]
    pub under_funnel: usize,
    /// The expert took over and did not succeed (by failure reason).
    pub expert_failed: BTreeMap<String, usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CorrectReport {
    pub attempts: usize,
    pub episodes: usize,
    pub frames: usize,
    pub per_task: BTreeMap<String, CorrectTally>,
    /// Tasks whose expert cannot take over midway ([`Task::expert_resumes`]): no attempts.
    pub skipped_tasks: Vec<String>,
    pub seconds: f64,
    pub workers: usize,
}

struct Attempt {
    task: Arc<dyn Task>,
    index: u64,
}

enum Outcome {
    PolicySucceeded,
    Holding,
    ExpertFailed(String),
    Corrected(Vec<Frame>),
}

/// Run the attempts with one policy per worker (`make_policy(worker)`) and write the
/// corrected episodes to a new dataset at `out`. `progress(done, total)` is called on
/// this thread after every attempt. Errors if no attempt yields an episode (an empty
/// dataset is not one `mulli train` could read); then nothing is left at `out` (or, when
/// appending, the dataset there is unchanged).
pub fn correct<P, E, F>(
    make_policy: F,
    opts: &CorrectOptions,
    out: &Path,
    mode: WriteMode,
    mut progress: impl FnMut(usize, usize),
) -> Result<CorrectReport, EvalError>
where
    P: Policy,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(usize) -> Result<P, E> + Sync,
{
    let start = Instant::now();
    opts.check()?;
    let suite = Suite::named(&opts.suite)?.with_tasks(&opts.tasks)?;
    let mut attempts = Vec::new();
    let mut report = CorrectReport::default();
    for task in &suite.tasks {
        if !task.expert_resumes() {
            report.skipped_tasks.push(task.id().to_string());
            continue;
        }
        for index in 0..opts.attempts_per_task as u64 {
            attempts.push(Attempt {
                task: task.clone(),
                index,
            });
        }
    }
    let env = EnvConfig {
        render: true,
        ..opts.env.clone()
    };
    env.validate()?;
    let wopts = WriterOptions {
        fps: env.control_hz,
        robot_type: Some(mulli_sim::env::ROBOT_TYPE.into()),
        mode,
        ..WriterOptions::default()
    };
    if attempts.is_empty() {
        return Err(EvalError::Options(format!(
            "no task of {} has an expert that can take over midway (tasks: {})",
            suite.name,
            report.skipped_tasks.join(", ")
        )));
    }
    let mut writer = DatasetWriter::create(out, &features(&env), wopts).map_err(sim)?;
    // Episodes are written in attempt order: finished attempts wait here for the ones
    // before them.
    let mut pending: BTreeMap<usize, (Outcome, bool)> = BTreeMap::new();
    let mut next_write = 0;
    let total = attempts.len();
    let mut done = 0;
    report.workers = run_pool(
        make_policy,
        opts.execution,
        opts.workers,
        &attempts,
        |exec, attempt| run_attempt(exec, attempt, opts, &env),
        |j, (outcome, triggered)| {
            done += 1;
            progress(done, total);
            pending.insert(j, (outcome, triggered));
            while let Some((outcome, triggered)) = pending.remove(&next_write) {
                let tally = report
                    .per_task
                    .entry(attempts[next_write].task.id().to_string())
                    .or_default();
                next_write += 1;
                tally.attempts += 1;
                tally.under_funnel += usize::from(triggered);
                report.attempts += 1;
                match outcome {
                    Outcome::PolicySucceeded => tally.policy_succeeded += 1,
                    Outcome::Holding => tally.holding += 1,
                    Outcome::ExpertFailed(why) => *tally.expert_failed.entry(why).or_default() += 1,
                    Outcome::Corrected(frames) => {
                        for f in &frames {
                            writer.add_frame(f).map_err(sim)?;
                        }
                        writer.save_episode().map_err(sim)?;
                        tally.written += 1;
                        tally.frames += frames.len();
                        report.episodes += 1;
                        report.frames += frames.len();
                    }
                }
            }
            Ok(())
        },
    )?;
    if report.episodes == 0 {
        // Leave no half-made dataset behind; an appended-to one stays as it was.
        if matches!(mode, WriteMode::Append) {
            writer.finalize().map_err(sim)?;
        } else {
            drop(writer);
            let _ = std::fs::remove_dir_all(out);
        }
        report.seconds = start.elapsed().as_secs_f64();
        return Err(EvalError::NothingCorrected {
            report: Box::new(report),
            out: out.display().to_string(),
        });
    }
    writer.finalize().map_err(sim)?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn sim(e: mulli_data::DataError) -> EvalError {
    EvalError::Sim(e.into())
}

/// The step (of the task's budget) at which the expert takes attempt `index` over.
pub fn takeover_step(opts: &CorrectOptions, task: &dyn Task, index: u64) -> usize {
    let budget = task.max_steps() as f64;
    let mut rng = rng::substream(opts.seed, &format!("correct/takeover/{}", task.id()), index);
    let (lo, hi) = opts.takeover;
    let share = if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    (share * budget).round() as usize
}

/// How far under the funnel the hand must be for [`Trigger::UnderFunnel`] to take attempt
/// `index` over (m, drawn in [`UNDER_FUNNEL`]).
pub fn trigger_depth(opts: &CorrectOptions, task: &dyn Task, index: u64) -> f64 {
    let mut rng = rng::substream(opts.seed, &format!("correct/depth/{}", task.id()), index);
    rng.random_range(UNDER_FUNNEL.0..=UNDER_FUNNEL.1)
}

/// Whether the hand, holding nothing, is more than `depth` under the grasp expert's funnel
/// beside `object`.
fn under_funnel(scene: &mulli_sim::scene::Scene, object: ObjectKind, depth: f64) -> bool {
    !ObjectKind::ALL.iter().any(|&k| scene.is_grasped(k))
        && mulli_sim::tasks::under_funnel(scene, object).is_some_and(|(d, _)| d > depth)
}

/// One attempt: its outcome, and whether the [`Trigger::UnderFunnel`] fired.
fn run_attempt<P: Policy>(
    exec: &mut ChunkExecutor<P>,
    attempt: &Attempt,
    opts: &CorrectOptions,
    env_config: &EnvConfig,
) -> Result<(Outcome, bool), EvalError> {
    let task = &attempt.task;
    // A one-task suite: attempt i of a task has the same layout whatever tasks run with it.
    let one = Suite {
        tasks: vec![task.clone()],
        ..Suite::named(&opts.suite)?
    };
    let spec = one.episode(Split::Train, attempt.index, opts.seed);
    let takeover = takeover_step(opts, task.as_ref(), attempt.index);
    // The expert gets the task's whole budget after the takeover.
    let config = EnvConfig {
        max_steps: Some(takeover + task.max_steps()),
        ..spec.env_config(env_config)
    };
    let mut env = KitchenEnv::new(config, task.clone(), spec.seed, &spec.instruction)?;
    let label = format!("correct/{}", task.id());
    exec.policy_mut()
        .reseed(rng::derive_seed(opts.seed, &label, attempt.index));
    exec.reset();
    let policy_err = |source: Box<dyn std::error::Error + Send + Sync>| EvalError::Policy {
        task: task.id().to_string(),
        split: "correct".into(),
        index: attempt.index,
        source,
    };
    let watch = match opts.trigger {
        Trigger::Time => None,
        Trigger::UnderFunnel => task
            .target_object()
            .map(|o| (o, trigger_depth(opts, task.as_ref(), attempt.index))),
    };
    let mut triggered = false;
    let mut obs = env.observe();
    for _ in 0..takeover {
        if let Some((object, depth)) = watch
            && under_funnel(env.scene(), object, depth)
        {
            triggered = true;
            break;
        }
        let action = exec
            .next_action(&obs)
            .map_err(|e| policy_err(Box::new(e)))?;
        let r = env.step(&action).map_err(|e| policy_err(Box::new(e)))?;
        if r.info.success {
            return Ok((Outcome::PolicySucceeded, false));
        }
        if r.terminated || r.truncated {
            let why = r.info.failure.map_or("ended", |f| f.as_str());
            return Ok((
                Outcome::ExpertFailed(format!("{why} before the takeover")),
                false,
            ));
        }
        obs = r.observation;
    }
    let own = task.target_object();
    if ObjectKind::ALL
        .iter()
        .any(|&k| Some(k) != own && env.scene().holds(k))
    {
        return Ok((Outcome::Holding, false));
    }
    let mut expert: Box<dyn Expert> = task.expert_from(env.scene());
    if opts.noise > 0.0 {
        let seed = rng::derive_seed(opts.seed, &format!("{label}/expert"), attempt.index);
        expert = Box::new(NoisyExpert::new(expert, opts.noise, seed));
    }
    let mut frames = Vec::new();
    loop {
        let action = expert.act(env.scene());
        let env_state = env.environment_state();
        let r = env.step(&action)?;
        frames.push(frame(&spec.instruction, &mut obs, env_state, &action, &r));
        if r.terminated || r.truncated {
            let outcome = if r.info.success {
                Outcome::Corrected(frames)
            } else {
                Outcome::ExpertFailed(r.info.failure.map_or("failed", |f| f.as_str()).into())
            };
            return Ok((outcome, triggered));
        }
        obs = r.observation;
    }
}
