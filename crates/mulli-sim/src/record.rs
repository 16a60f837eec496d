//! Recording scripted (optionally noisy) demonstrations into a LeRobot v3 dataset: both
//! cameras as H.264 video, proprio state, actions, the instruction as the task string, and
//! the privileged scene state as `observation.environment_state`.
//!
//! Episodes are rolled out in parallel (rayon) and written in index order, so the dataset's
//! bytes depend only on the options and the seed, never on the number of threads.

use crate::env::{EnvConfig, KitchenEnv, StepResult, environment_state_names, state_names};
use crate::error::SimError;
use crate::expert::NoisyExpert;
use crate::tasks::{EpisodeSpec, FailureReason, Split, Suite};
use mulli_core::rng::{self, RngExt};
use mulli_core::{FeatureSpec, Features, Frame, Observation, Value};
use mulli_data::{DatasetWriter, WriteMode, WriterOptions};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What to record.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub suite: String,
    /// Restrict to these task ids (empty = every task of the suite).
    pub tasks: Vec<String>,
    /// Successful episodes to write.
    pub episodes: usize,
    pub seed: u64,
    /// Expert action noise (m per step, see [`NoisyExpert`]); 0 = clean demos.
    pub noise: f64,
    /// Also write episodes where the expert failed (they are marked by `next.success`).
    pub keep_failures: bool,
    /// DART: execute the noisy action, record the expert's own (see
    /// [`NoisyExpert::act_both`]); otherwise the executed, noisy action is the label, as
    /// a teleoperator's would be.
    pub dart: bool,
    /// Probability per episode that the task's object slips away (5–7 cm, see
    /// [`crate::scene::Scene::slip_object`]) as the hand first closes on it; the expert then
    /// finds the gripper empty, opens and grasps again. Why: a policy whose grasp misses
    /// must have seen a second attempt, and scripted demos never miss. 0 = never.
    pub slip: f64,
    /// Probability per episode that it starts from a missed grasp: before recording, the
    /// hand goes down 4–9 cm beside the task's object, closes on nothing and lifts 4–16 cm
    /// ([`perturbed_start`]); the recording starts there, with the expert opening the hand and
    /// grasping. Why: a policy's grasp that misses closes on nothing and lifts the empty
    /// hand, and then hovers until the time runs out (docs/benchmarks.md, session 21):
    /// scripted demos never show that state, nor the way out of it. 0 = never. Only tasks
    /// whose expert can take over midway ([`crate::tasks::Task::expert_resumes`]) and that
    /// grasp an object.
    pub recover: f64,
    /// Probability per episode that it starts off centre: before recording, the open hand
    /// goes down 4–9 cm beside the task's object, to 1–8 cm above the grasp; the
    /// recording starts there, with the expert rising along its funnel and coming down
    /// onto the object. Why: a policy comes down beside the object and keeps going down,
    /// and scripted demos are always centred by then, so they never show that a low hand
    /// off centre must rise and re-centre first. Drawn with [`Self::recover`]: the two
    /// together at most 1. Same tasks as `recover`.
    pub off_centre: f64,
    /// Probability per episode that it starts from a wandering hand: before recording,
    /// the open hand goes to a random point 3–20 cm beside the task's object (horizontally)
    /// and 5–30 cm above it; the recording starts there. Why: every other demo starts at
    /// the rest pose, so the hand's height and its lateral offset from the object fall on
    /// one curve, and a policy can learn its lateral speed from the height alone; it then
    /// stops short when its first look placed the object too near (docs/benchmarks.md,
    /// session 29). Drawn with [`Self::recover`] and [`Self::off_centre`]: the three
    /// together at most 1. Same tasks as `recover`; the multiply stage does not re-target
    /// such demos (they do not start at the rest pose).
    pub wander: f64,
    pub split: Split,
    pub env: EnvConfig,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            suite: "kitchen-v1".into(),
            tasks: Vec::new(),
            episodes: 10,
            seed: 0,
            noise: 0.002,
            keep_failures: false,
            dart: false,
            slip: 0.0,
            recover: 0.0,
            off_centre: 0.0,
            wander: 0.0,
            split: Split::Train,
            env: EnvConfig::default(),
        }
    }
}

/// Outcome per task.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TaskTally {
    pub attempts: usize,
    pub successes: usize,
    pub written: usize,
    pub failures: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecordReport {
    pub episodes: usize,
    pub frames: usize,
    pub attempts: usize,
    /// Written episodes whose object slipped away from the first grasp ([`RecordOptions::slip`]).
    pub slipped: usize,
    /// Written episodes that start from a missed grasp, off centre or a wandering hand
    /// ([`RecordOptions::recover`], [`RecordOptions::off_centre`], [`RecordOptions::wander`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub recovered: usize,
    pub per_task: BTreeMap<String, TaskTally>,
}

/// One rolled-out episode.
pub struct Rollout {
    pub spec_index: u64,
    pub task_id: String,
    pub frames: Vec<Frame>,
    pub success: bool,
    pub failure: Option<FailureReason>,
    pub steps: usize,
    /// The object slipped away from the first grasp ([`RecordOptions::slip`]).
    pub slipped: bool,
    /// The episode starts from a missed grasp or off centre ([`RecordOptions::recover`],
    /// [`RecordOptions::off_centre`]).
    pub recovered: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The dataset features a recording writes.
pub fn features(config: &EnvConfig) -> Features {
    let mut f = Features::new();
    let c = &config.cameras;
    for cam in KitchenEnv::CAMERAS {
        let spec =
            FeatureSpec::camera(format!("observation.images.{cam}"), c.height, c.width, true);
        f.insert(spec.name.clone(), spec);
    }
    let state = state_names();
    let env_state = environment_state_names();
    let action = config.action_mode.names();
    for (key, n) in [
        ("observation.state", &state),
        ("observation.environment_state", &env_state),
        ("action", &action),
    ] {
        let spec = FeatureSpec::vector(key, &n.iter().map(String::as_str).collect::<Vec<_>>());
        f.insert(spec.name.clone(), spec);
    }
    let reward = FeatureSpec::vector("next.reward", &["reward"]);
    f.insert(reward.name.clone(), reward);
    let mut done = FeatureSpec::new("next.done", mulli_core::DType::Bool, vec![1]);
    done.names = serde_json::Value::Null;
    f.insert(done.name.clone(), done);
    let mut success = FeatureSpec::new("next.success", mulli_core::DType::Bool, vec![1]);
    success.names = serde_json::Value::Null;
    f.insert(success.name.clone(), success);
    f
}

/// One dataset frame (see [`features`]): the observation `obs` the action was chosen on (its
/// images are moved out), the privileged state then, the action and what the step returned.
pub fn frame(
    instruction: &str,
    obs: &mut Observation,
    env_state: Vec<f32>,
    action: &[f32],
    result: &StepResult,
) -> Frame {
    let mut frame = Frame::new(instruction)
        .with("observation.state", Value::F32(obs.state.clone()))
        .with("observation.environment_state", Value::F32(env_state))
        .with("action", Value::F32(action.to_vec()))
        .with("next.reward", Value::F32(vec![result.reward]))
        .with(
            "next.done",
            Value::Bool(vec![result.terminated || result.truncated]),
        )
        .with("next.success", Value::Bool(vec![result.info.success]));
    for cam in KitchenEnv::CAMERAS {
        let img = obs.images.remove(cam).map(|i| i.rgb).unwrap_or_default();
        frame = frame.with(format!("observation.images.{cam}"), Value::U8(img));
    }
    frame
}

/// Roll out the (noisy) expert for one episode, capturing frames when `capture` is set.
pub fn rollout(
    spec: &EpisodeSpec,
    index: u64,
    config: &EnvConfig,
    noise: f64,
    capture: bool,
) -> Result<Rollout, SimError> {
    let opts = RolloutOptions {
        noise,
        capture,
        ..RolloutOptions::default()
    };
    rollout_with(spec, index, config, &opts)
}

/// How [`rollout_with`] drives and labels an episode.
#[derive(Clone, Copy, Debug, Default)]
pub struct RolloutOptions {
    /// Expert action noise (m per step); 0 passes the expert's actions through.
    pub noise: f64,
    /// Keep the frames.
    pub capture: bool,
    /// The frames' actions are the expert's own, not the executed noisy ones
    /// ([`RecordOptions::dart`]).
    pub dart: bool,
    /// [`RecordOptions::slip`].
    pub slip: f64,
    /// [`RecordOptions::recover`].
    pub recover: f64,
    /// [`RecordOptions::off_centre`].
    pub off_centre: f64,
    /// [`RecordOptions::wander`].
    pub wander: f64,
}

/// Slide distance range (m) of a slip: beyond the grasp radius of every object, so the
/// closing hand finds nothing, and beyond one step of the hand, so re-targeting can tell
/// the jump from carrying (`mulli-synth` leaves such demos out).
const SLIP_DISTANCE: (f32, f32) = (0.05, 0.07);

/// How far beside the object (m) a perturbed start goes down: beyond every object's grasp
/// radius, within the policy's misses (medians of 4.7 and 8.9 cm in the traces of sessions
/// 21 and 18).
const MISS_ASIDE: (f64, f64) = (0.04, 0.09);
/// How high (m) the empty hand lifts after a missed grasp: a policy's empty hand hovers
/// 10–15 cm up.
const MISS_LIFT: (f64, f64) = (0.04, 0.16);
/// How high above the grasp (m) an off-centre start leaves the open hand: where the
/// policy's hand is still coming down beside the object.
const OFF_CENTRE_HEIGHT: (f64, f64) = (0.01, 0.08);
/// How far beside the object (m) a wandering start leaves the open hand: from just off its
/// grasp radius to most of the way from the rest pose.
const WANDER_ASIDE: (f64, f64) = (0.03, 0.20);
/// How high above the grasp (m) a wandering start leaves the open hand: from the height
/// where the experts' funnel turns the hand back up to most of the rest pose's height.
const WANDER_HEIGHT: (f64, f64) = (0.05, 0.30);

/// A perturbed start: down beside the object (`aside` m in the direction `angle`), then,
/// for a missed grasp (`close`), close and lift by `lift` m; otherwise stop `lift` m above
/// the grasp height, the hand open.
struct Perturbation {
    angle: f64,
    aside: f64,
    lift: f64,
    close: bool,
}

/// Drive `env` through a perturbed start near `object` without recording it (see
/// [`RecordOptions::recover`], [`RecordOptions::off_centre`]): down beside the object, then
/// close and lift, or stop above the grasp height. Returns the observation after it, or
/// `None` when the episode ended on the way.
fn perturbed_start(
    env: &mut KitchenEnv,
    object: crate::objects::ObjectKind,
    miss: &Perturbation,
) -> Result<Option<Observation>, SimError> {
    use crate::expert::{CLOSE, OPEN, SPEED, Target, reached, servo, tool};
    let Some(pose) = env.scene().object_pose(object) else {
        return Ok(Some(env.observe()));
    };
    let c = pose.translation.as_dvec3();
    let (_, rot) = tool(env.scene());
    let (sin, cos) = miss.angle.sin_cos();
    let low = glam::DVec3::new(
        c.x + miss.aside * cos,
        c.y + miss.aside * sin,
        (c.z - 0.01).max(crate::env::MIN_TCP_Z + 0.004),
    );
    let high = low + glam::DVec3::Z * miss.lift;
    // (target, gripper, at most this many steps, stop once within this distance)
    let legs: &[_] = if miss.close {
        &[
            (low, OPEN, 90, 0.01),
            (low, CLOSE, 8, 0.0),
            (high, CLOSE, 40, 0.01),
        ]
    } else {
        &[(high, OPEN, 90, 0.01)]
    };
    let mut last = None;
    for &(pos, gripper, steps, tol) in legs {
        let target = Target { pos, rot, gripper };
        for _ in 0..steps {
            if tol > 0.0 && reached(env.scene(), &target, tol) {
                break;
            }
            let action = servo(env.scene(), &target, SPEED);
            let result = env.step(&action)?;
            if result.terminated || result.truncated {
                return Ok(None);
            }
            last = Some(result.observation);
        }
    }
    Ok(Some(last.unwrap_or_else(|| env.observe())))
}

/// One episode of `spec` driven by the (noisy) scripted expert.
pub fn rollout_with(
    spec: &EpisodeSpec,
    index: u64,
    config: &EnvConfig,
    opts: &RolloutOptions,
) -> Result<Rollout, SimError> {
    let mut env = KitchenEnv::new(
        spec.env_config(config),
        spec.task.clone(),
        spec.seed,
        &spec.instruction,
    )?;
    let mut expert = NoisyExpert::new(spec.task.expert(), opts.noise, spec.seed);
    // Drawn before the episode from a stream of its own, so the draw does not depend on
    // the trajectory and a slip-free episode is the same as without the option.
    let mut slip = None;
    if opts.slip > 0.0 {
        let mut rng = rng::substream(spec.seed, "record-slip", 0);
        if rng.random_bool(opts.slip.clamp(0.0, 1.0)) {
            let d = rng.random_range(SLIP_DISTANCE.0..=SLIP_DISTANCE.1);
            slip = Some(if rng.random_bool(0.5) { d } else { -d });
        }
    }
    let mut slipped = false;
    let mut was_closing = false;
    let mut frames = Vec::new();
    let mut obs = env.observe();
    let mut recovered = false;
    let perturbed = opts.recover + opts.off_centre + opts.wander;
    if perturbed > 0.0
        && spec.task.expert_resumes()
        && let Some(object) = spec.task.target_object()
    {
        let mut rng = rng::substream(spec.seed, "record-recover", 0);
        let u: f64 = rng.random();
        if u < perturbed {
            let close = u < opts.recover;
            let wander = u >= opts.recover + opts.off_centre;
            let angle = rng.random_range(0.0..std::f64::consts::TAU);
            let (aside, lift) = if wander {
                (WANDER_ASIDE, WANDER_HEIGHT)
            } else if close {
                (MISS_ASIDE, MISS_LIFT)
            } else {
                (MISS_ASIDE, OFF_CENTRE_HEIGHT)
            };
            let miss = Perturbation {
                angle,
                aside: rng.random_range(aside.0..=aside.1),
                lift: rng.random_range(lift.0..=lift.1),
                close,
            };
            match perturbed_start(&mut env, object, &miss)? {
                Some(o) => {
                    obs = o;
                    recovered = true;
                }
                // The miss ran the episode out (a blocked arm): nothing to record.
                None => {
                    return Ok(Rollout {
                        spec_index: index,
                        task_id: spec.task.id().to_string(),
                        frames,
                        success: false,
                        failure: None,
                        steps: 0,
                        slipped,
                        recovered: true,
                    });
                }
            }
        }
    }
    loop {
        let (clean, action) = expert.act_both(env.scene());
        let closing = action[6] > 0.0;
        if closing
            && !was_closing
            && let Some(d) = slip.take()
            && let Some(object) = spec.task.target_object()
        {
            slipped = env.slip_object(object, d);
        }
        was_closing = closing;
        let env_state = env.environment_state();
        let result = env.step(&action)?;
        if opts.capture {
            frames.push(frame(
                &spec.instruction,
                &mut obs,
                env_state,
                if opts.dart { &clean } else { &action },
                &result,
            ));
        }
        obs = result.observation;
        if result.terminated || result.truncated {
            return Ok(Rollout {
                spec_index: index,
                task_id: spec.task.id().to_string(),
                frames,
                success: result.info.success,
                failure: result.info.failure,
                steps: result.info.step,
                slipped,
                recovered,
            });
        }
    }
}

/// Record `opts.episodes` episodes to `out`. `progress(written, target)` is called as
/// episodes are written.
pub fn record(
    out: &Path,
    opts: &RecordOptions,
    mode: WriteMode,
    mut progress: impl FnMut(usize, usize),
) -> Result<RecordReport, SimError> {
    opts.env.validate()?;
    if opts.episodes == 0 {
        return Err(SimError::Config(
            "episodes = 0: record at least one episode".into(),
        ));
    }
    if !(0.0..=MAX_NOISE).contains(&opts.noise) {
        return Err(SimError::Config(format!(
            "noise = {}: must be between 0 and {MAX_NOISE} m per step",
            opts.noise
        )));
    }
    for (name, p) in [
        ("recover", opts.recover),
        ("off_centre", opts.off_centre),
        ("wander", opts.wander),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(SimError::Config(format!(
                "{name} = {p}: a probability, between 0 and 1"
            )));
        }
    }
    if opts.recover + opts.off_centre + opts.wander > 1.0 {
        return Err(SimError::Config(format!(
            "recover = {}, off_centre = {} and wander = {}: one draw per episode picks one of them, so together at most 1",
            opts.recover, opts.off_centre, opts.wander
        )));
    }
    if !(0.0..=1.0).contains(&opts.slip) {
        return Err(SimError::Config(format!(
            "slip = {}: a probability, between 0 and 1",
            opts.slip
        )));
    }
    let suite = Suite::named(&opts.suite)?.with_tasks(&opts.tasks)?;
    let env = EnvConfig {
        render: true,
        ..opts.env.clone()
    };
    let wopts = WriterOptions {
        fps: env.control_hz,
        robot_type: Some(crate::env::ROBOT_TYPE.into()),
        mode,
        ..WriterOptions::default()
    };
    let mut writer = DatasetWriter::create(out, &features(&env), wopts)?;
    let mut report = RecordReport::default();
    // Give up if the expert fails far more often than it should (a broken config).
    let max_attempts = opts.episodes * 4 + 20;
    let batch = (rayon::current_num_threads() * 2).max(2) as u64;
    let suite = Arc::new(suite);
    let mut next: u64 = 0;
    while report.episodes < opts.episodes {
        if report.attempts >= max_attempts {
            return Err(SimError::Config(format!(
                "only {} of {} episodes succeeded after {} attempts; per task: {}",
                report.episodes,
                opts.episodes,
                report.attempts,
                serde_json::to_string(&report.per_task).unwrap_or_default()
            )));
        }
        let indices: Vec<u64> = (next..next + batch).collect();
        next += batch;
        let rollouts: Vec<Result<Rollout, SimError>> = indices
            .par_iter()
            .map(|&i| {
                let spec = suite.episode(opts.split, i, opts.seed);
                let ro = RolloutOptions {
                    noise: opts.noise,
                    capture: true,
                    dart: opts.dart,
                    slip: opts.slip,
                    recover: opts.recover,
                    off_centre: opts.off_centre,
                    wander: opts.wander,
                };
                rollout_with(&spec, i, &env, &ro)
            })
            .collect();
        for r in rollouts {
            let r = r?;
            if report.episodes >= opts.episodes {
                break;
            }
            report.attempts += 1;
            let tally = report.per_task.entry(r.task_id.clone()).or_default();
            tally.attempts += 1;
            if r.success {
                tally.successes += 1;
            } else if let Some(f) = r.failure {
                *tally.failures.entry(f.as_str().to_string()).or_default() += 1;
            }
            if r.success || opts.keep_failures {
                for frame in &r.frames {
                    writer.add_frame(frame)?;
                }
                writer.save_episode()?;
                tally.written += 1;
                report.episodes += 1;
                report.slipped += usize::from(r.slipped);
                report.recovered += usize::from(r.recovered);
                report.frames += r.frames.len();
                progress(report.episodes, opts.episodes);
            }
        }
    }
    writer.finalize()?;
    Ok(report)
}

/// Largest accepted expert noise (m per step); beyond it demos stop looking like demos.
pub const MAX_NOISE: f64 = 0.02;
