//! `mulli flywheel`: the main job. Capture scripted demos in the kitchen → multiply them →
//! train a policy → (rounds of: let it drive, record the expert's corrections, train
//! again) → evaluate the last policy on every split → write the HTML report.
//!
//! Every stage writes into `OUT/<stage>-<hash>/`, where the hash covers the stage's own
//! config and the hashes of the stages it reads, and marks itself complete by writing
//! `stage.json` last. A rerun with the same config reuses complete stages; a changed config
//! gets new directories (old results stay on disk); a killed run picks up where it stopped
//! (training resumes from its last checkpoint, bit for bit; an interrupted capture,
//! correction or evaluation — minutes at most — is redone).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use mulli_core::Execution;
use mulli_eval::EvalOptions;
use mulli_policy::model::{ImageStem, VlaConfig};
use mulli_policy::{EnvState, TrainConfig};
use mulli_sim::record::RecordOptions;
use mulli_sim::{EnvConfig, Split, Suite};
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub struct FlywheelArgs {
    /// Flywheel configuration (TOML; see --print-config). Default: the built-in one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tiny budgets (3 tasks, a tiny model, one episode per split): a smoke test of every
    /// stage in a few minutes, not a useful policy.
    #[arg(long)]
    pub quick: bool,
    /// Output directory (stages, report.html). Default: runs/flywheel (runs/flywheel-quick).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute device for training and evaluation (`cpu`, `cuda:N`, `vulkan:N`); overrides
    /// the config's `device`.
    #[arg(long)]
    pub device: Option<String>,
    /// Print the configuration that would run (defaults merged with --config) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Everything that defines a flywheel run. Unknown keys are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlywheelConfig {
    /// Seed of the demos' layouts and noise, and of the evaluation episodes.
    pub seed: u64,
    pub suite: String,
    /// Task ids (empty = every task of the suite).
    pub tasks: Vec<String>,
    /// `cpu`, `cuda:N` or `vulkan:N` (with the `cuda` / `vulkan` feature).
    pub device: String,
    pub capture: CaptureConfig,
    pub multiply: MultiplyConfig,
    /// The policy and its training (`mulli train --print-config`); the cameras are recorded
    /// at `train.model.image_size`.
    pub train: TrainConfig,
    /// DAgger-style rounds after training: the policy drives, the expert takes over.
    pub correct: CorrectConfig,
    pub eval: EvalConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Successful scripted demos per task.
    pub episodes_per_task: usize,
    /// Expert action noise (m per step): demos that recover from small errors.
    pub noise: f64,
    /// Steps recorded after each demo first succeeds: the expert letting go and moving
    /// away, which a policy must learn too (a placed object counts only once the fingers
    /// leave it). Evaluation still ends an episode at its first success.
    pub success_tail: usize,
    /// DART: the demos execute the noisy action but record the expert's own, so they show
    /// the way back from where the noise pushed the arm (`mulli sim record --dart`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dart: bool,
    /// Probability per demo that the object slips away as the hand first closes on it, so
    /// the expert's second grasp is in the demos (`mulli sim record --slip`). Such demos
    /// are not re-targeted by the multiply stage.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub slip: f64,
    /// Probability per demo that it starts from a missed grasp: the hand beside the object,
    /// closed on nothing and lifted, then the expert opening it and grasping again
    /// (`mulli sim record --recover`). The multiply stage does not re-target such demos.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub recover: f64,
    /// Probability per demo that it starts off centre: the open hand low beside the
    /// object, then the expert rising, re-centring and grasping (`mulli sim record
    /// --off-centre`; with `recover` at most 1). Not re-targeted by the multiply stage.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub off_centre: f64,
    /// Demos per grasping task recorded on top of `episodes_per_task`, each starting from
    /// a wandering hand: the open hand 3–20 cm beside the task's object and 5–30 cm above
    /// it (`mulli sim record --wander 1`). Why: from the rest pose the hand's height and its
    /// offset from the object fall on one curve, so the control can learn its lateral speed
    /// from the height alone. Not re-targeted by the multiply stage (they do not start at
    /// the rest pose), and on top rather than instead, so the multiply stage keeps every
    /// source demo. 15 by default: 9 → 11 of 11 tasks at ≥ 5/10 on seen layouts, 54.8% →
    /// 57.4% at seed 0 (docs/benchmarks.md, session 29); 0 gives the old default's capture.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub wander_per_task: usize,
}

fn is_zero_usize(x: &usize) -> bool {
    *x == 0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiplyConfig {
    /// Generated demos per task (0 = no multiplication).
    pub per_task: usize,
    /// Share of generated scenes with strong visual randomization (other colours, stripes
    /// and checkers, strong lighting; `mulli synth --strong-visuals`). 0 in the flywheel:
    /// at 0.25 (`mulli synth`'s default) the keypoints come out coarser on the standard
    /// scenes (held-out 2.65 / 5.5 px against 1.56 / 4.17 px, agent view / wrist) and the
    /// policy succeeds in 52.9% and 57.1% of 660 episodes (seeds 0, 1) against 56.8% and
    /// 60.6%, with no gain on the visual-changes split (docs/benchmarks.md, session 19).
    pub strong_visuals: f64,
}

/// Rounds of correction (`mulli correct`, then `mulli train` again): the trained policy
/// drives in the training layouts, the scripted expert takes over at a random point, and
/// the episodes the expert completes join the generated demos (or the captured ones when
/// nothing is generated); the policy is then trained again from scratch on them. The
/// corrections show the way back from where the policy's own errors lead, which scripted
/// demos never do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrectConfig {
    /// Rounds of correct → retrain (0 = none: the first policy is evaluated).
    pub rounds: usize,
    /// Attempts per task and round; each writes at most one episode.
    pub attempts_per_task: usize,
    /// The expert's action noise once it has taken over (m per step).
    pub noise: f64,
    /// Earliest and latest takeover, as shares of the task's step budget.
    pub takeover: [f64; 2],
    /// `"time"` (at a drawn step) or `"under_funnel"` (as soon as the empty hand goes under
    /// the grasp expert's funnel beside the object, at the drawn step at the latest).
    pub trigger: mulli_eval::Trigger,
}

impl Default for CorrectConfig {
    fn default() -> Self {
        CorrectConfig {
            rounds: 0,
            attempts_per_task: 30,
            noise: 0.002,
            takeover: [0.1, 0.8],
            trigger: mulli_eval::Trigger::Time,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub splits: Vec<String>,
    pub episodes_per_task: usize,
    /// Parallel workers (0 = one per core).
    pub workers: usize,
    /// Rollout videos per task and split: this many successes and this many failures.
    pub videos_per_outcome: usize,
    /// How the policy's chunks become actions: `mode = "temporal_ensemble"` with `decay`
    /// (every step queries; the chunks covering it are averaged, weights exp(-decay·i), i = 0
    /// the oldest) or `mode = "receding_horizon"` with `execute` (that many actions of each
    /// chunk, then re-plan).
    pub execution: Execution,
    /// Replaced by `execution`; read only to say so.
    #[serde(default, skip_serializing)]
    pub execute: Option<usize>,
}

impl Default for MultiplyConfig {
    fn default() -> Self {
        MultiplyConfig {
            per_task: 50,
            strong_visuals: 0.0,
        }
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            episodes_per_task: 30,
            noise: 0.002,
            success_tail: 10,
            dart: false,
            slip: 0.0,
            recover: 0.0,
            off_centre: 0.0,
            wander_per_task: 15,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            splits: Split::EVAL.iter().map(|s| s.id().to_string()).collect(),
            episodes_per_task: 10,
            workers: 0,
            videos_per_outcome: 1,
            execution: Execution::ENSEMBLE,
            execute: None,
        }
    }
}

impl Default for FlywheelConfig {
    fn default() -> Self {
        // Sized for ≤ 20 minutes on 2 CPU cores (docs/benchmarks.md): 64-px cameras, the
        // patch stem (1.5× the convolutions' training throughput on burn-flex) and a
        // ~0.34 M-parameter policy; the bigger default VLA needs a GPU or more time.
        let model = VlaConfig {
            image_size: 64,
            conv_channels: vec![32, 32, 64, 64],
            stem: ImageStem::Patch,
            d_model: 96,
            n_heads: 4,
            n_layers: 2,
            d_ff: 256,
            // The instruction gates the state: 19.1% → 25.2% on this flywheel
            // (docs/benchmarks.md, "State-only policies").
            state_gate: true,
            // One labelled keypoint per object and receptacle in each camera (8 × 2).
            keypoints: 16,
            // The images reach the policy through what it perceives, so its control part
            // trains on states alone (`control_steps` below).
            images_perception_only: true,
            // The control also reads where each thing is relative to the hand: 46.1% →
            // 49.2% (seed 0), 52.3% → 54.4% (seed 1) (docs/benchmarks.md, "Where the
            // grasps fail").
            hand_relative: true,
            ..VlaConfig::default()
        };
        FlywheelConfig {
            seed: 0,
            suite: "kitchen-v1-single".into(),
            tasks: Vec::new(),
            device: "cpu".into(),
            capture: CaptureConfig::default(),
            multiply: MultiplyConfig::default(),
            train: TrainConfig {
                steps: 3000,
                // Then the control part alone, from states with the perceived entries, at
                // ~3× the steps per second: pick-and-place 0 → 32 of 300, 34.5% → 36.7%
                // (docs/benchmarks.md, "Perception, then control").
                control_steps: 9000,
                batch_size: 32,
                lr: 1e-3,
                warmup_steps: 50,
                ema_decay: 0.99,
                val_every: 250,
                checkpoint_every: 250,
                log_every: 25,
                // The policy sees the objects in its cameras: keypoints trained on the
                // simulator's pixel labels in the agent and wrist views, lifted to
                // positions that it reads as state. Cameras alone at inference; 29.2% →
                // 35.0% on this flywheel, grasps 2 → 16 of 420 (docs/benchmarks.md,
                // "The wrist camera").
                env_state: EnvState::Perceived,
                env_state_origin: String::new(),
                pixel_weight: 1.0,
                // The control learns from the true positions of the things the wrist
                // camera places to a centimetre in 4 of 5 samples, from the predictions in
                // 1: 40.9% → 45.0%, pick-ups 18 → 32 and placements 51 → 68 of 300
                // (docs/benchmarks.md, "Hand–eye geometry").
                lifted_share: Some(0.2),
                model,
                ..TrainConfig::default()
            },
            correct: CorrectConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

impl FlywheelConfig {
    /// Tiny budgets for `--quick`: every stage runs and writes real artifacts in minutes.
    pub fn quick() -> Self {
        let d = FlywheelConfig::default();
        let model = VlaConfig {
            image_size: 32,
            conv_channels: vec![8, 16],
            d_model: 32,
            n_heads: 2,
            n_layers: 1,
            d_ff: 64,
            text_len: 32,
            ..d.train.model.clone()
        };
        FlywheelConfig {
            tasks: vec![
                "open_drawer".into(),
                "pick_up_cube".into(),
                "put_apple_in_bowl".into(),
            ],
            // One demo per grasping task from a wandering hand: the appended capture runs.
            capture: CaptureConfig {
                episodes_per_task: 3,
                wander_per_task: 1,
                ..d.capture
            },
            multiply: MultiplyConfig {
                per_task: 2,
                ..Default::default()
            },
            train: TrainConfig {
                steps: 30,
                control_steps: 30,
                batch_size: 8,
                warmup_steps: 5,
                val_every: 15,
                val_samples: 16,
                checkpoint_every: 15,
                log_every: 5,
                model,
                ..d.train
            },
            // One round with 2 attempts per task: the correct and retrain stages run too.
            correct: CorrectConfig {
                rounds: 1,
                attempts_per_task: 2,
                ..d.correct
            },
            eval: EvalConfig {
                episodes_per_task: 1,
                ..d.eval
            },
            ..d
        }
    }

    fn check(&self) -> Result<()> {
        let suite = Suite::named(&self.suite)?.with_tasks(&self.tasks)?;
        anyhow::ensure!(
            self.capture.episodes_per_task > 0,
            "capture.episodes_per_task = 0: the flywheel needs demos to train on"
        );
        anyhow::ensure!(
            self.eval.episodes_per_task > 0,
            "eval.episodes_per_task = 0: evaluate at least one episode per task and split"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.multiply.strong_visuals),
            "multiply.strong_visuals = {}: a share of the generated scenes, between 0 and 1",
            self.multiply.strong_visuals
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.capture.slip),
            "capture.slip = {}: a probability, between 0 and 1",
            self.capture.slip
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.capture.recover),
            "capture.recover = {}: a probability, between 0 and 1",
            self.capture.recover
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.capture.off_centre)
                && self.capture.recover + self.capture.off_centre <= 1.0,
            "capture.off_centre = {}: a probability, between 0 and 1, and with capture.recover ({}) at most 1",
            self.capture.off_centre,
            self.capture.recover
        );
        // Before any stage runs, not after minutes of capture and multiply.
        self.train.validate().context("in [train]")?;
        if self.correct.rounds > 0 {
            self.correct_options(1)
                .check()
                .map_err(|e| anyhow::anyhow!("in [correct]: {e}"))?;
        }
        if let Some(n) = self.eval.execute {
            anyhow::bail!(
                "eval.execute = {n}: replaced by [eval.execution] — mode = \"receding_horizon\" with execute = {n}, or mode = \"temporal_ensemble\" with decay = 0.1 (the default)"
            );
        }
        self.eval
            .execution
            .check(self.train.model.chunk)
            .map_err(|e| anyhow::anyhow!("eval.execution: {e}"))?;
        anyhow::ensure!(
            !self.eval.splits.is_empty(),
            "eval.splits is empty; known splits: {}",
            Split::EVAL.map(|s| s.id()).join(", ")
        );
        for s in &self.eval.splits {
            let split = Split::from_id(s).context("in eval.splits")?;
            anyhow::ensure!(
                split != Split::Train,
                "eval.splits: 'train' is the training pool, not an evaluation split"
            );
        }
        tracing::debug!(tasks = suite.tasks.len(), "flywheel config checked");
        Ok(())
    }

    fn splits(&self) -> Result<Vec<Split>> {
        self.eval
            .splits
            .iter()
            .map(|s| Split::from_id(s).map_err(Into::into))
            .collect()
    }

    /// The options of correction round `round` (1-based). Round 1 uses the flywheel's
    /// seed; later rounds draw other takeover points and expert noise.
    fn correct_options(&self, round: usize) -> mulli_eval::CorrectOptions {
        let seed = match round {
            0 | 1 => self.seed,
            r => mulli_core::rng::derive_seed(self.seed, "flywheel/correct/round", r as u64),
        };
        mulli_eval::CorrectOptions {
            suite: self.suite.clone(),
            tasks: self.tasks.clone(),
            attempts_per_task: self.correct.attempts_per_task,
            seed,
            env: EnvConfig {
                success_tail: self.capture.success_tail,
                ..self.env()
            },
            execution: self.eval.execution,
            workers: self.eval.workers,
            noise: self.correct.noise,
            takeover: (self.correct.takeover[0], self.correct.takeover[1]),
            trigger: self.correct.trigger,
        }
    }

    fn env(&self) -> EnvConfig {
        let mut env = EnvConfig::default();
        env.cameras.width = self.train.model.image_size;
        env.cameras.height = self.train.model.image_size;
        env
    }
}

/// What `stage.json` records: the stage is complete, what it was, how long it took.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: String,
    pub hash: String,
    pub seconds: f64,
    /// Stage-specific results (episodes, losses, success rates).
    pub summary: serde_json::Value,
}

/// One line of `flywheel.json`: what happened to a stage in this run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRun {
    pub stage: String,
    /// `ran`, `cached`, `resumed` or `skipped`.
    pub status: String,
    /// Relative to the output directory.
    pub dir: Option<String>,
    pub hash: Option<String>,
    /// Seconds the stage took when it ran (for a cached stage: when it first ran).
    pub seconds: f64,
    pub note: Option<String>,
}

/// `flywheel.json`: the last run's stages; the report reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlywheelRecord {
    pub mulli_version: String,
    pub quick: bool,
    pub config: FlywheelConfig,
    pub stages: Vec<StageRun>,
    pub total_s: f64,
}

/// Version of what each stage's code makes of unchanged inputs. Bump a stage's number in the
/// commit that changes its output for the same config (the crate version does not move
/// between commits), so no rerun reuses a stage made by older code. Multiply 2: held doors
/// and drawers resume where the live part stands (session 9). Capture 2: the fridge is
/// closed by a push, not a hooked swing (session 10). Capture 3 and 4: the objects' image
/// positions in the agent view, then in the wrist view too (sessions 11, 12). Train 2: the
/// pixel-labelled perception of session 12 (wrist labels, "not in view", near lift). Eval 2:
/// episodes record where a placing task let go of its object (session 13). Multiply 3:
/// generated demos go on past success like the captured ones (`success_tail`, session
/// 13). Train 3: the wrist camera's lift follows rays from a hand–eye calibration
/// (session 17). Capture 5: the grasping experts come down a funnel onto the object and
/// the receptacle instead of stopping above them; eval 3: a grasping task that timed out
/// after the hand closed is a `missed_grasp` (session 18). Correct 2: where the policy
/// holds the task's object at the takeover, the expert lifts, carries and places it
/// instead of writing nothing (session 24). Train 4: the lift reads each keypoint where its
/// camera saw it, not where the random shift of the augmentation moved it (session 26).
/// Later stages hash the earlier
/// ones' hashes, so a bump reruns everything downstream.
const RECIPES: [(&str, u32); 5] = [
    ("capture", 5),
    ("multiply", 3),
    ("train", 4),
    ("correct", 2),
    ("eval", 3),
];

fn recipe(stage: &str) -> u32 {
    RECIPES
        .iter()
        .find(|(s, _)| *s == stage)
        .map_or(0, |&(_, v)| v)
}

/// FNV-1a over the stage's canonical JSON: a cache key, not a security boundary.
fn stage_hash(stage: &str, inputs: &serde_json::Value) -> String {
    let text = serde_json::json!({
        "stage": stage,
        "mulli": env!("CARGO_PKG_VERSION"),
        "recipe": recipe(stage),
        "inputs": inputs,
    })
    .to_string();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn read_record(dir: &Path) -> Option<StageRecord> {
    let text = std::fs::read_to_string(dir.join("stage.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(dir: &Path, record: &StageRecord) -> Result<()> {
    let tmp = dir.join("stage.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(record)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("stage.json"))
        .with_context(|| format!("completing {}", dir.display()))?;
    Ok(())
}

/// Removes what an interrupted stage left in its own directory.
fn clear_partial(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .with_context(|| format!("removing the interrupted stage output {}", path.display()))?;
    }
    Ok(())
}

struct Stage<'a> {
    out: &'a Path,
    name: &'static str,
    hash: String,
    number: usize,
    of: usize,
}

impl Stage<'_> {
    fn dir(&self) -> PathBuf {
        self.out.join(format!("{}-{}", self.name, self.hash))
    }

    fn rel(&self) -> String {
        format!("{}-{}", self.name, self.hash)
    }

    fn header(&self, what: &str) {
        println!("[{}/{}] {:<9} {what}", self.number, self.of, self.name);
    }

    /// The stage's run and summary when a complete one with this hash is on disk.
    fn cached(&self) -> Option<(StageRun, serde_json::Value)> {
        let rec = read_record(&self.dir())?;
        if rec.hash != self.hash {
            return None;
        }
        self.header(&format!(
            "cached ({}, ran in {:.0} s)",
            self.dir().display(),
            rec.seconds
        ));
        let run = StageRun {
            stage: self.name.into(),
            status: "cached".into(),
            dir: Some(self.rel()),
            hash: Some(self.hash.clone()),
            seconds: rec.seconds,
            note: None,
        };
        Some((run, rec.summary))
    }

    fn finish(
        &self,
        started: Instant,
        status: &str,
        summary: serde_json::Value,
    ) -> Result<StageRun> {
        let seconds = started.elapsed().as_secs_f64();
        write_record(
            &self.dir(),
            &StageRecord {
                stage: self.name.into(),
                hash: self.hash.clone(),
                seconds,
                summary,
            },
        )?;
        Ok(StageRun {
            stage: self.name.into(),
            status: status.into(),
            dir: Some(self.rel()),
            hash: Some(self.hash.clone()),
            seconds,
            note: None,
        })
    }
}

pub fn run(args: FlywheelArgs) -> Result<ExitCode> {
    let base = if args.quick {
        FlywheelConfig::quick()
    } else {
        FlywheelConfig::default()
    };
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading flywheel config {}", path.display()))?;
            // The file overrides the (default or --quick) base key by key.
            let mut merged = toml::Value::try_from(&base)?;
            let over: toml::Value = toml::from_str(&text)
                .with_context(|| format!("flywheel config {}", path.display()))?;
            merge(&mut merged, over);
            merged
                .try_into::<FlywheelConfig>()
                .with_context(|| format!("flywheel config {}", path.display()))?
        }
        None => base,
    };
    let config = FlywheelConfig {
        device: args.device.clone().unwrap_or(config.device),
        ..config
    };
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    config.check()?;
    // A device this build or machine lacks fails now, not after capture and multiply.
    mulli_policy::device(&config.device).context("flywheel config `device`")?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.quick {
            "runs/flywheel-quick"
        } else {
            "runs/flywheel"
        })
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    println!(
        "mulli flywheel{} → {}  (suite {}, {} tasks, device {})",
        if args.quick { " --quick" } else { "" },
        out.display(),
        config.suite,
        Suite::named(&config.suite)?
            .with_tasks(&config.tasks)?
            .tasks
            .len(),
        config.device
    );
    let mut stages = Vec::new();
    // capture, multiply, train, (correct, train) per round, eval, report.
    let of = 5 + 2 * config.correct.rounds;

    // 1. Capture.
    let suite = Suite::named(&config.suite)?.with_tasks(&config.tasks)?;
    let n_tasks = suite.tasks.len();
    // The tasks a wandering start applies to (see `CaptureConfig::wander_per_task`).
    let grasping: Vec<String> = suite
        .tasks
        .iter()
        .filter(|t| t.expert_resumes() && t.target_object().is_some())
        .map(|t| t.id().to_string())
        .collect();
    let capture = Stage {
        out: &out,
        name: "capture",
        hash: stage_hash(
            "capture",
            &serde_json::json!({
                "suite": config.suite, "tasks": config.tasks, "seed": config.seed,
                "capture": config.capture, "image_size": config.train.model.image_size,
            }),
        ),
        number: 1,
        of,
    };
    let capture_data = capture.dir().join("dataset");
    let run = match capture.cached() {
        Some((r, _)) => r,
        None => {
            let t = Instant::now();
            let episodes = config.capture.episodes_per_task * n_tasks;
            let mut perturbations = String::new();
            if config.capture.slip > 0.0 {
                perturbations += &format!(", slip {}", config.capture.slip);
            }
            if config.capture.recover > 0.0 {
                perturbations += &format!(", recover {}", config.capture.recover);
            }
            if config.capture.off_centre > 0.0 {
                perturbations += &format!(", off centre {}", config.capture.off_centre);
            }
            if config.capture.wander_per_task > 0 {
                perturbations += &format!(
                    ", + {} per grasping task from a wandering hand",
                    config.capture.wander_per_task
                );
            }
            capture.header(&format!(
                "{episodes} scripted demos ({} per task, noise {} m/step{perturbations})",
                config.capture.episodes_per_task, config.capture.noise
            ));
            clear_partial(&capture.dir())?;
            std::fs::create_dir_all(capture.dir())?;
            let opts = RecordOptions {
                suite: config.suite.clone(),
                tasks: config.tasks.clone(),
                episodes,
                seed: config.seed,
                noise: config.capture.noise,
                keep_failures: false,
                dart: config.capture.dart,
                slip: config.capture.slip,
                recover: config.capture.recover,
                off_centre: config.capture.off_centre,
                wander: 0.0,
                split: Split::Train,
                env: EnvConfig {
                    success_tail: config.capture.success_tail,
                    ..config.env()
                },
            };
            let pb = crate::progress::bar(episodes, "capture");
            let mut report = mulli_sim::record::record(
                &capture_data,
                &opts,
                mulli_data::WriteMode::Create,
                crate::progress::callback(&pb),
            )
            .with_context(|| format!("recording demos into {}", capture_data.display()))?;
            pb.finish_and_clear();
            let wander = config.capture.wander_per_task * grasping.len();
            if wander > 0 {
                // Appended after the clean demos, from layouts of their own seed: the clean
                // part of the dataset is the same bytes as without the option.
                let opts = RecordOptions {
                    tasks: grasping.clone(),
                    episodes: wander,
                    seed: mulli_core::rng::derive_seed(config.seed, "flywheel/capture/wander", 0),
                    // Every one of these starts wandering, whatever `recover` and
                    // `off_centre` ask of the clean demos (the three share one draw).
                    wander: 1.0,
                    recover: 0.0,
                    off_centre: 0.0,
                    ..opts
                };
                let pb = crate::progress::bar(wander, "capture (wandering starts)");
                let extra = mulli_sim::record::record(
                    &capture_data,
                    &opts,
                    mulli_data::WriteMode::Append,
                    crate::progress::callback(&pb),
                )
                .with_context(|| {
                    format!(
                        "recording demos from a wandering hand into {}",
                        capture_data.display()
                    )
                })?;
                pb.finish_and_clear();
                report.episodes += extra.episodes;
                report.frames += extra.frames;
                report.attempts += extra.attempts;
                report.slipped += extra.slipped;
                report.recovered += extra.recovered;
                for (task, tally) in extra.per_task {
                    report.per_task.insert(format!("{task} (wandering)"), tally);
                }
            }
            let mut slipped = String::new();
            if report.slipped > 0 {
                slipped += &format!(", {} with a slipped grasp", report.slipped);
            }
            if report.recovered > 0 {
                slipped += &format!(
                    ", {} from a missed grasp, off centre or a wandering hand",
                    report.recovered
                );
            }
            println!(
                "          {} episodes{slipped}, {} frames ({} expert attempts) in {:.0} s",
                report.episodes,
                report.frames,
                report.attempts,
                t.elapsed().as_secs_f64()
            );
            capture.finish(t, "ran", serde_json::to_value(&report)?)?
        }
    };
    stages.push(run);

    // 2. Multiply: MimicGen-style re-targeting of the captured demos to new layouts.
    // The datasets training reads, and their stages' hashes.
    let mut data = vec![capture_data.clone()];
    let mut upstream = vec![capture.hash.clone()];
    if config.multiply.per_task > 0 {
        let multiply = Stage {
            out: &out,
            name: "multiply",
            hash: stage_hash(
                "multiply",
                &serde_json::json!({
                    "source": [capture.hash], "tasks": config.tasks, "seed": config.seed,
                    "multiply": config.multiply,
                }),
            ),
            number: 2,
            of,
        };
        let synth_data = multiply.dir().join("dataset");
        let run = match multiply.cached() {
            Some((r, _)) => r,
            None => {
                let t = Instant::now();
                multiply.header(&format!(
                    "{} generated demos per task from the captured ones",
                    config.multiply.per_task
                ));
                clear_partial(&multiply.dir())?;
                std::fs::create_dir_all(multiply.dir())?;
                let source = mulli_synth::load(&capture_data).with_context(|| {
                    format!("reading source demos from {}", capture_data.display())
                })?;
                let options = mulli_synth::SynthOptions {
                    per_task: config.multiply.per_task,
                    seed: config.seed,
                    tasks: config.tasks.clone(),
                    success_tail: config.capture.success_tail,
                    strong_visual_fraction: config.multiply.strong_visuals,
                    ..Default::default()
                };
                let pb = crate::progress::bar(config.multiply.per_task * n_tasks, "multiply");
                let report = mulli_synth::synthesize(
                    &source,
                    None,
                    &synth_data,
                    &options,
                    crate::progress::callback(&pb),
                )
                .with_context(|| format!("generating demos into {}", synth_data.display()))?;
                pb.finish_and_clear();
                println!(
                    "          {} accepted of {} attempts ({:.0}% yield, {:.1} episodes/s)",
                    report.accepted,
                    report.attempts,
                    100.0 * report.accepted as f64 / report.attempts.max(1) as f64,
                    report.episodes_per_s
                );
                for w in &report.warnings {
                    println!("          warning: {w}");
                }
                multiply.finish(t, "ran", serde_json::to_value(&report)?)?
            }
        };
        stages.push(run);
        data.push(synth_data);
        upstream.push(multiply.hash.clone());
    } else {
        println!("[2/{of}] multiply  skipped: multiply.per_task = 0");
        stages.push(StageRun {
            stage: "multiply".into(),
            status: "skipped".into(),
            dir: None,
            hash: None,
            seconds: 0.0,
            note: Some("multiply.per_task = 0".into()),
        });
    }

    // 3. Train.
    let mut number = 3;
    let (run, mut policy_hash, mut run_dir) =
        train_stage(&out, &config, &data, &upstream, number, of)?;
    stages.push(run);

    // 4. Correct and train again, round by round.
    for round in 1..=config.correct.rounds {
        number += 1;
        let base = data.last().expect("the captured demos at least").clone();
        let mut key = serde_json::json!({
            "policy": [policy_hash], "base": upstream.last(), "round": round,
            "suite": config.suite, "tasks": config.tasks, "seed": config.seed,
            "success_tail": config.capture.success_tail,
            "execution": config.eval.execution,
            "attempts_per_task": config.correct.attempts_per_task,
            "noise": config.correct.noise, "takeover": config.correct.takeover,
        });
        // Keyed only when not the default, so rounds cached before the option stay valid.
        if config.correct.trigger != mulli_eval::Trigger::Time {
            key["trigger"] = config.correct.trigger.as_str().into();
        }
        let correct = Stage {
            out: &out,
            name: "correct",
            hash: stage_hash("correct", &key),
            number,
            of,
        };
        let corrected = correct.dir().join("dataset");
        let (run, summary) = match correct.cached() {
            Some(cached) => cached,
            None => {
                let t = Instant::now();
                let opts = config.correct_options(round);
                // The drawer and fridge experts cannot take over midway: no attempts there.
                let resumable = Suite::named(&config.suite)?
                    .with_tasks(&config.tasks)?
                    .tasks
                    .iter()
                    .filter(|t| t.expert_resumes())
                    .count();
                correct.header(&format!(
                    "round {round}: {} attempts ({} per task on {resumable} tasks), the expert takes over {}after {:.0}–{:.0}% of the budget",
                    opts.attempts_per_task * resumable,
                    opts.attempts_per_task,
                    match opts.trigger {
                        mulli_eval::Trigger::Time => "",
                        mulli_eval::Trigger::UnderFunnel =>
                            "where the empty hand goes under the funnel, at the latest ",
                    },
                    100.0 * opts.takeover.0,
                    100.0 * opts.takeover.1
                ));
                clear_partial(&correct.dir())?;
                // The corrections join a copy of the last dataset (the generated demos),
                // so task-balanced sampling weighs them as part of it, not as a dataset
                // of their own (which would draw as often as all captured demos).
                crate::files::copy_dir(&base, &corrected)?;
                let summary = match crate::correct::run_correct(
                    &run_dir,
                    &config.device,
                    &opts,
                    &corrected,
                    mulli_data::WriteMode::Append,
                ) {
                    Ok(report) => serde_json::to_value(&report)?,
                    Err(e) => match e.downcast::<mulli_eval::EvalError>() {
                        Ok(mulli_eval::EvalError::NothingCorrected { report, .. }) => {
                            std::fs::remove_dir_all(&corrected)
                                .with_context(|| format!("removing {}", corrected.display()))?;
                            let mut v = serde_json::to_value(&*report)?;
                            v["nothing_corrected"] = true.into();
                            v
                        }
                        Ok(other) => return Err(other.into()),
                        Err(e) => return Err(e),
                    },
                };
                let run = correct.finish(t, "ran", summary.clone())?;
                (run, summary)
            }
        };
        let note = correct_note(round, &summary);
        println!("          {note}");
        stages.push(StageRun {
            note: Some(note),
            ..run
        });
        number += 1;
        if summary["nothing_corrected"] == true {
            println!("[{number}/{of}] train     skipped: nothing to correct");
            stages.push(StageRun {
                stage: "train".into(),
                status: "skipped".into(),
                dir: None,
                hash: None,
                seconds: 0.0,
                note: Some(format!("round {round}: nothing to correct")),
            });
            break;
        }
        // Train again from scratch on the captured demos and the corrected copy.
        *data.last_mut().expect("non-empty") = corrected;
        *upstream.last_mut().expect("non-empty") = correct.hash.clone();
        let (run, hash, dir) = train_stage(&out, &config, &data, &upstream, number, of)?;
        stages.push(StageRun {
            note: Some(format!("round {round}: with the corrections")),
            ..run
        });
        (policy_hash, run_dir) = (hash, dir);
    }
    number = of - 1;

    // 5. Evaluate the last policy.
    let eval = Stage {
        out: &out,
        name: "eval",
        hash: stage_hash(
            "eval",
            &serde_json::json!({
                "policy": [policy_hash], "suite": config.suite, "tasks": config.tasks,
                "seed": config.seed, "eval": config.eval,
            }),
        ),
        number,
        of,
    };
    let run = match eval.cached() {
        Some((r, _)) => r,
        None => {
            let t = Instant::now();
            let splits = config.splits()?;
            eval.header(&format!(
                "{} episodes ({} per task and split; splits: {})",
                n_tasks * splits.len() * config.eval.episodes_per_task,
                config.eval.episodes_per_task,
                config.eval.splits.join(", ")
            ));
            clear_partial(&eval.dir())?;
            let opts = EvalOptions {
                suite: config.suite.clone(),
                tasks: config.tasks.clone(),
                splits,
                instructions: Vec::new(),
                episodes_per_task: config.eval.episodes_per_task,
                seed: config.seed,
                env: config.env(),
                execution: config.eval.execution,
                workers: config.eval.workers,
                videos_per_outcome: config.eval.videos_per_outcome,
                // 660 episodes × ~150 queries: ~150 MB; `mulli eval --trace` when needed.
                trace: false,
            };
            let report = crate::policy::eval_policy(&run_dir, &config.device, &opts, &[])?;
            crate::policy::print_split_scores(&report);
            let settings =
                mulli_eval::info::EvalSettings::new(run_dir.display().to_string(), &opts, &report);
            mulli_eval::write_eval_dir(&eval.dir(), &report, settings)?;
            eval.finish(
                t,
                "ran",
                serde_json::json!({
                    "episodes": report.episodes.len(),
                    "successes": report.successes(),
                    "pc_success": 100.0 * report.success_rate(),
                }),
            )?
        }
    };
    stages.push(run);

    // 6. Report (always re-rendered: it is derived from the stages above).
    let t = Instant::now();
    let mut record = FlywheelRecord {
        mulli_version: env!("CARGO_PKG_VERSION").into(),
        quick: args.quick,
        config: config.clone(),
        stages,
        total_s: 0.0,
    };
    record.stages.push(StageRun {
        stage: "report".into(),
        status: "ran".into(),
        dir: None,
        hash: None,
        seconds: 0.0,
        note: None,
    });
    record.total_s = started.elapsed().as_secs_f64();
    let record_path = out.join("flywheel.json");
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", record_path.display()))?;
    let report_path = crate::report::render_flywheel(&out)?;
    if let Some(last) = record.stages.last_mut() {
        last.seconds = t.elapsed().as_secs_f64();
    }
    record.total_s = started.elapsed().as_secs_f64();
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", record_path.display()))?;
    println!("[{of}/{of}] report    {}", report_path.display());
    println!(
        "flywheel done in {:.0} s; a rerun reuses every stage whose inputs are unchanged ({})",
        record.total_s,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The train stage on `data` (whose stages hashed to `upstream`): its run, hash and run
/// directory.
fn train_stage(
    out: &Path,
    config: &FlywheelConfig,
    data: &[PathBuf],
    upstream: &[String],
    number: usize,
    of: usize,
) -> Result<(StageRun, String, PathBuf)> {
    let train = Stage {
        out,
        name: "train",
        hash: stage_hash(
            "train",
            &serde_json::json!({"data": upstream, "train": config.train, "device": config.device}),
        ),
        number,
        of,
    };
    let run_dir = train.dir().join("run");
    let run = match train.cached() {
        Some((r, _)) => r,
        None => {
            let t = Instant::now();
            let resume = mulli_policy::checkpoint::checkpoint_dir(&run_dir).is_some();
            if resume {
                train.header("resuming from the last checkpoint");
            } else {
                let control = match (config.train.control_steps, config.train.control_batch_size) {
                    (0, _) => String::new(),
                    (n, None) => format!(" + {n} control steps"),
                    (n, Some(b)) => format!(" + {n} control steps of {b}"),
                };
                train.header(&format!(
                    "{} steps{control}, batch {}, on {}",
                    config.train.steps, config.train.batch_size, config.device
                ));
                clear_partial(&train.dir())?;
                std::fs::create_dir_all(train.dir())?;
            }
            let spec = crate::policy::train_with_progress(
                &run_dir,
                data,
                (!resume).then(|| config.train.clone()),
                resume,
                &config.device,
            )?;
            println!(
                "          {} steps: {} in {:.0} s",
                spec.training.step,
                crate::policy::losses(&spec.training),
                t.elapsed().as_secs_f64()
            );
            train.finish(
                t,
                if resume { "resumed" } else { "ran" },
                serde_json::json!({
                    "steps": spec.training.step,
                    "last_loss": spec.training.last_loss,
                    "last_val_loss": spec.training.last_val_loss,
                }),
            )?
        }
    };
    Ok((run, train.hash, run_dir))
}

/// One line on what a correction round came to (from its stage summary).
fn correct_note(round: usize, summary: &serde_json::Value) -> String {
    let n = |k: &str| summary[k].as_u64().unwrap_or(0);
    let sum = |k: &str| -> u64 {
        summary["per_task"]
            .as_object()
            .map_or(0, |m| m.values().map(|t| t[k].as_u64().unwrap_or(0)).sum())
    };
    format!(
        "round {round}: {} corrected episodes ({} frames) from {} attempts; the policy had succeeded before the takeover in {}, held another object in {}{}",
        n("episodes"),
        n("frames"),
        n("attempts"),
        sum("policy_succeeded"),
        sum("holding"),
        match sum("under_funnel") {
            0 => String::new(),
            k => format!("; under the funnel in {k}"),
        },
    )
}

/// Overlays `over` onto `base`, table by table (so a file can set one key of `[train]`).
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_quick_are_valid_and_round_trip_through_toml() {
        for c in [FlywheelConfig::default(), FlywheelConfig::quick()] {
            c.check().unwrap();
            let text = toml::to_string_pretty(&c).unwrap();
            let back: FlywheelConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn a_file_overrides_single_keys_and_unknown_keys_are_errors() {
        let mut base = toml::Value::try_from(FlywheelConfig::default()).unwrap();
        merge(
            &mut base,
            toml::from_str("[train]\nsteps = 7\n[train.model]\nd_model = 48\n").unwrap(),
        );
        let c: FlywheelConfig = base.try_into().unwrap();
        assert_eq!(c.train.steps, 7);
        assert_eq!(c.train.model.d_model, 48);
        assert_eq!(
            c.train.batch_size,
            FlywheelConfig::default().train.batch_size
        );
        let mut base = toml::Value::try_from(FlywheelConfig::default()).unwrap();
        merge(&mut base, toml::from_str("[eval]\nepisodez = 3\n").unwrap());
        let e = base.try_into::<FlywheelConfig>().unwrap_err().to_string();
        assert!(e.contains("episodez"), "{e}");
        let c: FlywheelConfig = toml::from_str("[correct]\ntrigger = \"under_funnel\"\n").unwrap();
        assert_eq!(c.correct.trigger, mulli_eval::Trigger::UnderFunnel);
        let e = toml::from_str::<FlywheelConfig>("[correct]\ntrigger = \"often\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trigger") && e.contains("often") && e.contains("under_funnel"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = FlywheelConfig::default();
        c.eval.splits = vec!["sideways".into()];
        let e = format!("{:#}", c.check().unwrap_err());
        assert!(e.contains("sideways") && e.contains("eval.splits"), "{e}");
        let mut c = FlywheelConfig::default();
        c.eval.execution = Execution::RecedingHorizon { execute: 99 };
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("eval.execution") && e.contains("chunk"), "{e}");
        let mut c = FlywheelConfig::default();
        c.eval.execution = Execution::TemporalEnsemble { decay: f32::NAN };
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("decay = NaN"), "{e}");
        // A config from before [eval.execution] is told what replaced its key.
        let old: FlywheelConfig = toml::from_str("[eval]\nexecute = 8\n").unwrap();
        let e = old.check().unwrap_err().to_string();
        assert!(
            e.contains("eval.execute = 8") && e.contains("receding_horizon"),
            "{e}"
        );
        let c = FlywheelConfig {
            tasks: vec!["juggle".into()],
            ..Default::default()
        };
        assert!(c.check().unwrap_err().to_string().contains("juggle"));
        let mut c = FlywheelConfig::default();
        c.capture.slip = -0.1;
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("capture.slip = -0.1"), "{e}");
        let mut c = FlywheelConfig::default();
        c.capture.recover = 1.5;
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("capture.recover = 1.5"), "{e}");
        let mut c = FlywheelConfig::default();
        (c.capture.recover, c.capture.off_centre) = (0.5, 0.6);
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("capture.off_centre = 0.6"), "{e}");
        let mut c = FlywheelConfig::default();
        (c.correct.rounds, c.correct.takeover) = (1, [0.9, 0.2]);
        let e = c.check().unwrap_err().to_string();
        assert!(
            e.contains("[correct]") && e.contains("takeover = (0.9, 0.2)"),
            "{e}"
        );
        (c.correct.takeover, c.correct.attempts_per_task) = ([0.1, 0.8], 0);
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("attempts_per_task = 0"), "{e}");
        // Without rounds the options are not used, so not checked.
        c.correct.rounds = 0;
        c.check().unwrap();
        let mut c = FlywheelConfig::default();
        c.train.lifted_share = Some(2.0);
        let e = format!("{:#}", c.check().unwrap_err());
        assert!(
            e.contains("[train]") && e.contains("lifted_share = 2"),
            "{e}"
        );
    }

    #[test]
    fn correction_rounds_share_the_config_but_not_the_seed() {
        let c = FlywheelConfig {
            seed: 7,
            ..FlywheelConfig::default()
        };
        let (one, two, three) = (
            c.correct_options(1),
            c.correct_options(2),
            c.correct_options(3),
        );
        assert_eq!(one.seed, 7, "round 1 is what `mulli correct --seed 7` does");
        assert!(two.seed != 7 && three.seed != 7 && two.seed != three.seed);
        assert_eq!(one.attempts_per_task, 30);
        assert_eq!(one.env.success_tail, c.capture.success_tail);
        assert_eq!(one.env.cameras.width, c.train.model.image_size);
        assert_eq!(one.execution, c.eval.execution);
        let note = correct_note(
            2,
            &serde_json::json!({"episodes": 3, "frames": 120, "attempts": 10,
                "per_task": {"a": {"policy_succeeded": 4, "holding": 1},
                             "b": {"policy_succeeded": 2, "holding": 0}}}),
        );
        assert_eq!(
            note,
            "round 2: 3 corrected episodes (120 frames) from 10 attempts; the policy had succeeded before the takeover in 6, held another object in 1"
        );
        let note = correct_note(
            1,
            &serde_json::json!({"episodes": 3, "frames": 120, "attempts": 10,
                "per_task": {"a": {"policy_succeeded": 4, "holding": 1, "under_funnel": 2}}}),
        );
        assert!(
            note.ends_with("held another object in 1; under the funnel in 2"),
            "{note}"
        );
    }

    #[test]
    fn stage_hashes_follow_their_inputs() {
        let a = stage_hash("train", &serde_json::json!({"steps": 1}));
        assert_eq!(a, stage_hash("train", &serde_json::json!({"steps": 1})));
        assert_ne!(a, stage_hash("train", &serde_json::json!({"steps": 2})));
        assert_ne!(a, stage_hash("eval", &serde_json::json!({"steps": 1})));
        assert_eq!(a.len(), 16);
        // Every stage the flywheel hashes has a recipe version.
        for stage in ["capture", "multiply", "train", "correct", "eval"] {
            assert!(recipe(stage) >= 1, "{stage} has no recipe version");
        }
    }
}
