//! `mulli train`, `mulli policy info`, `mulli eval`: the learning half of the flywheel.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use mulli_core::Execution;
use mulli_eval::EvalOptions;
use mulli_policy::train::{Event, TrainConfig};
use mulli_policy::{VlaPolicy, checkpoint};
use mulli_sim::{EnvConfig, Split};

#[derive(Args)]
pub struct TrainArgs {
    /// LeRobot dataset directories to train on (repeatable; they must share cameras, state,
    /// action and fps).
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Run directory: train.toml, metrics.jsonl, checkpoint/.
    #[arg(long)]
    pub out: PathBuf,
    /// Training config (TOML; see `mulli train --print-config`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, bit for bit.
    #[arg(long)]
    pub resume: bool,
    /// Override the config's step count.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Override the config's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// `cpu`, `cuda:N` or `vulkan:N` (with the `cuda` / `vulkan` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the default config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Architecture, parameter count, training data and normalization of a trained policy.
    Info {
        /// Run directory or checkpoint directory.
        run: PathBuf,
    },
    /// What a trained policy reads of its state for an instruction: which things each of
    /// its slots points at and how far its gate opens each state entry.
    Explain {
        /// Run directory or checkpoint directory.
        run: PathBuf,
        /// Instructions to explain (repeatable), in any language.
        #[arg(long = "instruction", required = true)]
        instructions: Vec<String>,
    },
}

#[derive(Args)]
pub struct EvalArgs {
    /// Run directory (or checkpoint directory) of the policy to evaluate.
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    pub policy: Option<PathBuf>,
    /// Evaluate a policy served by `mulli serve` at this URL (ws://HOST:PORT) through the
    /// openpi protocol instead of loading one.
    #[arg(long)]
    pub server: Option<String>,
    /// API key for --server.
    #[arg(long, requires = "server")]
    pub api_key: Option<String>,
    #[arg(long, default_value = "kitchen-v1-single")]
    pub suite: String,
    /// Only these task ids (repeatable).
    #[arg(long = "task")]
    pub tasks: Vec<String>,
    /// Splits to evaluate on: seen_layouts, held_out_layouts, held_out_phrasings, korean,
    /// distractors, visual_changes (repeatable; default seen_layouts).
    #[arg(long = "split")]
    pub splits: Vec<String>,
    /// Your own instructions to test: a TOML ([[instruction]] task = .., instruction = ..)
    /// or JSON list of {task, instruction}; each runs --episodes episodes on seen layouts.
    #[arg(long)]
    pub instructions: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub episodes: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Execute this many actions of each chunk before re-planning (default: the policy's).
    #[arg(long, conflicts_with = "ensemble")]
    pub execute: Option<usize>,
    /// Temporal ensembling with this decay instead of receding horizon.
    #[arg(long)]
    pub ensemble: Option<f32>,
    /// Write eval_info.json (LeRobot's fields plus per-task/split tables) and rollout videos
    /// into this new directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rollout videos kept per task and split: this many successes and this many failures.
    #[arg(long, default_value_t = 2)]
    pub videos: usize,
    /// Also write trace.jsonl into --out: at every policy query, the tool's position, the
    /// fingers' opening and what the policy perceived next to the truth (perceiving
    /// policies), one JSON object per line.
    #[arg(long, requires = "out")]
    pub trace: bool,
    /// Parallel evaluation workers, each with its own copy of the policy (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Diagnosis, not a score: give the control the true positions of these things (e.g.
    /// `apple,cube`, or `all`) instead of what the policy perceives, to tell the failures
    /// its perception causes from those of its control. Recorded in eval_info.json.
    #[arg(long, value_delimiter = ',', conflicts_with = "server")]
    pub oracle: Vec<String>,
}

fn load_config(path: Option<&Path>) -> Result<Option<TrainConfig>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let c: TrainConfig =
        toml::from_str(&text).with_context(|| format!("training config {}", path.display()))?;
    Ok(Some(c))
}

pub fn train(args: TrainArgs) -> Result<ExitCode> {
    if args.print_config {
        print!("{}", toml::to_string_pretty(&TrainConfig::default())?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = load_config(args.config.as_deref())?;
    if args.steps.is_some() || args.seed.is_some() {
        anyhow::ensure!(
            !args.resume,
            "--steps/--seed cannot change a run being resumed (its train.toml fixes them)"
        );
        let c = config.get_or_insert_with(TrainConfig::default);
        if let Some(s) = args.steps {
            c.steps = s;
        }
        if let Some(s) = args.seed {
            c.seed = s;
        }
    }
    if !args.resume {
        anyhow::ensure!(
            !args.data.is_empty(),
            "--data DIR is required for a new run"
        );
    }
    let spec = train_with_progress(&args.out, &args.data, config, args.resume, &args.device)?;
    println!(
        "trained {} steps: {}",
        spec.training.step,
        losses(&spec.training)
    );
    println!("policy: {}/checkpoint", args.out.display());
    println!("metrics: {}/metrics.jsonl", args.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: PolicyCmd) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Info { run } => info(&run),
        PolicyCmd::Explain { run, instructions } => explain(&run, &instructions),
    }
}

fn explain(run: &Path, instructions: &[String]) -> Result<ExitCode> {
    let device = mulli_policy::device("cpu")?;
    let policy = VlaPolicy::load(run, &device)
        .with_context(|| format!("loading the policy in {}", run.display()))?;
    let spec = policy.spec();
    if !spec.model.state_gate && spec.model.slots == 0 {
        anyhow::bail!(
            "{}: this policy has neither a state gate nor slots (state_gate = false, slots = 0): it reads its whole state for every instruction",
            run.display()
        );
    }
    let state_name = |i: usize| {
        (spec.state_names.as_ref())
            .and_then(|n| n.get(i).cloned())
            .unwrap_or_else(|| format!("#{i}"))
    };
    for instruction in instructions {
        let reading = policy
            .read_instruction(instruction)
            .with_context(|| format!("reading the instruction {instruction:?}"))?;
        println!("{instruction:?}");
        let thing = |k: usize| {
            spec.pixel_things
                .get(k)
                .cloned()
                .unwrap_or_else(|| format!("thing {k}"))
        };
        for (j, weights) in reading.slots.iter().enumerate() {
            let mut order: Vec<usize> = (0..weights.len()).collect();
            order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
            let top: Vec<String> = order
                .iter()
                .take(3)
                .map(|&t| format!("{} {:.2}", thing(reading.things[t]), weights[t]))
                .collect();
            println!("  slot {}     {}", j + 1, top.join(", "));
        }
        if let Some(gate) = &reading.gate {
            let reads = if spec.model.state_gate_reads_state {
                " (at the mean state; it also reads the state)"
            } else {
                ""
            };
            let m = &spec.model;
            let (low, high) = if m.state_gate_linear {
                ("0".to_string(), "unbounded (linear)".to_string())
            } else {
                let f = m.state_gate_floor;
                (format!("{f}"), format!("{}", 2.0 - f))
            };
            println!("  gate{reads}: {low} = closed, 1 = as trained without it, {high} = widest");
            let cells: Vec<String> = gate
                .iter()
                .enumerate()
                .map(|(i, g)| format!("{:>18} {g:4.2}", state_name(i)))
                .collect();
            for row in cells.chunks(4) {
                println!("  {}", row.join(" "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn info(run: &Path) -> Result<ExitCode> {
    let dir = checkpoint::checkpoint_dir(run)
        .with_context(|| format!("{}: no policy here (no policy.json)", run.display()))?;
    let spec = checkpoint::read_spec(&dir)?;
    let m = &spec.model;
    println!("policy     {}", dir.display());
    println!("format     {}", spec.format);
    println!("parameters {}", spec.params);
    let vision = if m.cameras == 0 {
        "no cameras (state only)".to_owned()
    } else {
        format!(
            "{} cameras {}×{} → {} stem {:?} → {} tokens/camera{}",
            m.cameras,
            m.image_size,
            m.image_size,
            match m.stem {
                mulli_policy::ImageStem::Conv => "3×3 conv",
                mulli_policy::ImageStem::Patch => "2×2 patch",
            },
            m.conv_channels,
            m.grid_side() * m.grid_side(),
            if m.keypoints > 0 {
                format!(
                    " + {} spatial-softmax keypoints on a {}×{} map",
                    m.keypoints,
                    m.keypoint_side(),
                    m.keypoint_side()
                )
            } else {
                String::new()
            },
        )
    };
    println!(
        "model      {vision}; text {:?} ({} tokens, {} layer(s)); fusion d={} heads={} layers={} ff={}; {:?} head, chunk {} × {}{}",
        m.text_encoder,
        m.text_len,
        m.text_layers,
        m.d_model,
        m.n_heads,
        m.n_layers,
        m.d_ff,
        m.head,
        m.chunk,
        m.action_dim,
        if m.head == mulli_policy::Head::Flow {
            format!(", {} Euler steps", m.flow_steps)
        } else {
            String::new()
        }
    );
    println!(
        "cameras    {}{}",
        if spec.cameras.is_empty() { "none" } else { "" },
        spec.cameras.join(", ")
    );
    if !spec.unused_cameras.is_empty() {
        println!(
            "           ignores {} (in the training data, not read)",
            spec.unused_cameras.join(", ")
        );
    }
    println!(
        "robot      {} at {} fps; execution {:?}",
        spec.robot_type.as_deref().unwrap_or("?"),
        spec.fps,
        spec.execution
    );
    let t = &spec.training;
    println!(
        "training   step {}/{} (batch {}, seed {}); loss {}, val loss {}",
        t.step,
        t.steps,
        t.batch_size,
        t.seed,
        t.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        t.last_val_loss.map_or("-".into(), |l| format!("{l:.4}"))
    );
    println!(
        "data       {} ({} train episodes, {} held out, {} frames)",
        t.datasets.join(", "),
        t.train_episodes,
        t.val_episodes,
        t.train_frames
    );
    println!("tasks      {}", t.tasks.len());
    for task in &t.tasks {
        println!("           {task}");
    }
    let names = |n: &Option<Vec<String>>, i: usize| {
        n.as_ref()
            .and_then(|n| n.get(i).cloned())
            .unwrap_or_else(|| format!("#{i}"))
    };
    if !spec.aux_names.is_empty() {
        println!(
            "aux        trained to predict {} targets from the keypoints: {}",
            spec.aux_names.len(),
            spec.aux_names.join(", ")
        );
    }
    if !spec.pixel_things.is_empty() {
        let p = spec.pixel_things.len();
        for (j, &c) in spec.model.pixel_cameras.iter().enumerate() {
            let camera = spec.cameras.get(c).map_or("?", String::as_str);
            println!(
                "pixels     {camera} keypoints {}–{} trained on where these are (or that they are not in view): {}",
                j * p + 1,
                (j + 1) * p,
                spec.pixel_things.join(", ")
            );
        }
        match (&spec.model.hand_eye, spec.model.lift_reads_arm) {
            (Some(h), _) => {
                for (j, c) in h.cameras.iter().enumerate() {
                    let camera = spec
                        .model
                        .pixel_cameras
                        .get(j + 1)
                        .and_then(|&i| spec.cameras.get(i))
                        .map_or("?", String::as_str);
                    println!(
                        "lift       {camera}: along the keypoint's ray from the hand (calibrated on {} labels to {:.3} px; centre {:.3}, {:.3}, {:.3} m in the hand's frame), down to the height {} sees",
                        c.points,
                        c.fit_px,
                        c.centre[0],
                        c.centre[1],
                        c.centre[2],
                        spec.cameras
                            .get(spec.model.pixel_cameras[0])
                            .map_or("?", String::as_str)
                    );
                }
                if spec.model.lift_ray_trust {
                    println!(
                        "lift       each ray's estimate blended with the fixed camera's by a learned trust (ray length, keypoint position, thing)"
                    );
                }
                if spec.model.hand_relative {
                    println!(
                        "control    also reads each lifted thing's position relative to the hand (decimetres)"
                    );
                }
                if spec.model.slots > 0 {
                    println!(
                        "control    and {} instruction-chosen slot(s): a softmax over those things, from the instruction",
                        spec.model.slots
                    );
                }
            }
            (None, true) => {
                println!("lift       positions from the labelled keypoints and the arm's state")
            }
            (None, false) => {}
        }
    }
    match (&spec.env_state, spec.required_env_state()) {
        (_, Some(env)) => println!(
            "env state  observes {} of the {} environment-state values (object poses; the observation must carry them): {}",
            env.names.len(),
            env.width,
            env.names.join(", ")
        ),
        (Some(env), None) => println!(
            "env state  perceives {} object positions from its images (the keypoints' head; the observation needs none): {}",
            env.names.len(),
            env.names.join(", ")
        ),
        (None, None) => {}
    }
    if m.images_perception_only && m.cameras > 0 {
        println!(
            "           the images feed this perception only: the fusion reads the instruction and the state"
        );
    }
    if !m.object_tokens.is_empty() {
        println!(
            "           as {} object tokens of {:?} entries (the arm's state is one more)",
            m.object_tokens.len(),
            m.object_tokens
        );
    }
    println!("normalization ({:?}):", spec.state_norm.mode);
    for (label, norm, n) in [
        ("state", &spec.state_norm, &spec.state_names),
        ("action", &spec.action_norm, &spec.action_names),
    ] {
        for i in 0..norm.dim() {
            if norm.ignored.get(i).copied().unwrap_or(false) {
                println!(
                    "  {label:6} {:>12}  hidden from the policy (state_ignore)",
                    names(n, i)
                );
                continue;
            }
            println!(
                "  {label:6} {:>12}  shift {:>9.4}  scale {:>9.4}",
                names(n, i),
                norm.shift[i],
                norm.scale[i]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    // The policy's image size and default execution: from the server's metadata or the run.
    let (size, default_execution, name) = match (&args.server, &args.policy) {
        (Some(url), _) => {
            let (_probe, size, execution) = crate::serve::connect(url, args.api_key.as_deref())?;
            (size, execution, url.clone())
        }
        (None, Some(path)) => {
            let device = mulli_policy::device(&args.device)?;
            let spec = VlaPolicy::load(path, &device)?.spec().clone();
            let name = path.display().to_string();
            (spec.model.image_size, spec.execution, name)
        }
        (None, None) => anyhow::bail!("--policy RUN or --server URL is required"),
    };
    let (execution, flag) = match (args.execute, args.ensemble) {
        (_, Some(decay)) => (Execution::TemporalEnsemble { decay }, Some("--ensemble")),
        (Some(execute), None) => (Execution::RecedingHorizon { execute }, Some("--execute")),
        (None, None) => (default_execution, None),
    };
    if let Some(flag) = flag {
        // Any chunk length: the executor clamps to the policy's; only the values are checked.
        execution
            .check(usize::MAX)
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    }
    let instructions = match &args.instructions {
        Some(path) => mulli_eval::load_instructions(path)?,
        None => Vec::new(),
    };
    // With a user's own instructions and no --split, only those are run.
    let split_ids = match (&args.splits, instructions.is_empty()) {
        (s, true) if s.is_empty() => vec!["seen_layouts".to_string()],
        (s, _) => s.clone(),
    };
    let splits = split_ids
        .iter()
        .map(|s| Split::from_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(out) = &args.out {
        anyhow::ensure!(
            !out.join("eval_info.json").exists(),
            "{} already holds an evaluation (eval_info.json); choose a new --out",
            out.display()
        );
    }
    let opts = EvalOptions {
        suite: args.suite.clone(),
        tasks: args.tasks.clone(),
        splits,
        instructions,
        episodes_per_task: args.episodes,
        seed: args.seed,
        env: env_for_size(size),
        execution,
        workers: args.workers,
        videos_per_outcome: if args.out.is_some() { args.videos } else { 0 },
        trace: args.trace,
    };
    let report = match (&args.server, &args.policy) {
        // One connection per worker; the chunks are executed here, the server keeps no
        // per-episode state.
        (Some(url), _) => run_eval(
            |_| mulli_serve::RemotePolicy::connect(url, args.api_key.as_deref()),
            &opts,
        )?,
        (None, Some(path)) => eval_policy(path, &args.device, &opts, &args.oracle)?,
        (None, None) => unreachable!("checked above"),
    };
    print_scores(&report);
    if !args.oracle.is_empty() {
        println!(
            "(oracle: the control was given the true positions of {}; a diagnosis, not the policy's score)",
            args.oracle.join(", ")
        );
    }
    if let Some(out) = &args.out {
        let mut settings = mulli_eval::info::EvalSettings::new(name, &opts, &report);
        settings.oracle = args.oracle.clone();
        let path = mulli_eval::write_eval_dir(out, &report, settings)?;
        println!("wrote {} ({} videos)", path.display(), report.videos.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `mulli_policy::train` with a progress bar (loss, validation, lr, samples/s, ETA).
/// "loss L, val loss V" of a training's last logged step ("-" where there is none).
pub fn losses(t: &mulli_policy::checkpoint::TrainingSummary) -> String {
    let f = |l: Option<f32>| l.map_or("-".into(), |l| format!("{l:.4}"));
    format!("loss {}, val loss {}", f(t.last_loss), f(t.last_val_loss))
}

pub fn train_with_progress(
    out: &Path,
    data: &[PathBuf],
    config: Option<TrainConfig>,
    resume: bool,
    device: &str,
) -> Result<mulli_policy::PolicySpec> {
    let device = mulli_policy::device(device)?;
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {pos}/{len} steps ({elapsed} elapsed, eta {eta}) {prefix}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message("train");
    let spec = mulli_policy::train(
        out,
        data,
        config,
        resume,
        &device,
        |event| match event {
            Event::Loading(what) => pb.set_prefix(what.to_string()),
            Event::Started {
                first_step,
                steps,
                params,
                data,
            } => {
                pb.set_length(steps);
                pb.set_position(first_step);
                pb.reset_eta();
                pb.println(format!(
                    "training {params} parameters on {} frames ({} episodes; {} held out), {} tasks, {} (dataset, task) groups{}",
                    data.train_len,
                    data.train_episodes,
                    data.val_episodes,
                    data.tasks.len(),
                    data.groups(),
                    if first_step > 0 {
                        format!("; resuming at step {first_step}")
                    } else {
                        String::new()
                    }
                ));
            }
            Event::Step(m) => {
                pb.set_position(m.step);
                let val = m
                    .val_loss
                    .map(|v| format!(" val {v:.4}"))
                    .unwrap_or_default();
                pb.set_prefix(format!(
                    "loss {:.4}{val} lr {:.1e} {:.0} samples/s",
                    m.loss, m.lr, m.samples_per_s
                ));
                if m.val_loss.is_some() {
                    tracing::info!(step = m.step, loss = m.loss, val = ?m.val_loss, "validation");
                }
            }
            Event::Checkpoint(dir) => tracing::info!(dir = %dir.display(), "checkpoint"),
            Event::Note(note) => pb.suspend(|| tracing::info!("{note}")),
            Event::Warning(w) => pb.suspend(|| tracing::warn!("{w}")),
        },
    )
    .with_context(|| format!("training into {}", out.display()))?;
    pb.finish_and_clear();
    Ok(spec)
}

/// The kitchen as a policy trained on `s`×`s` images sees it.
pub fn env_for_size(s: usize) -> EnvConfig {
    let mut env = EnvConfig::default();
    env.cameras.width = s;
    env.cameras.height = s;
    env
}

/// Evaluates the policy of a run directory, one policy instance per worker, with a progress bar.
/// `oracle`: things whose true positions replace the perceived ones ([`VlaPolicy::set_oracle`]).
pub fn eval_policy(
    run: &Path,
    device: &str,
    opts: &EvalOptions,
    oracle: &[String],
) -> Result<mulli_eval::EvalReport> {
    let device = mulli_policy::device(device)?;
    // Checked once here, so a bad thing name is one error, not one per worker.
    if !oracle.is_empty() {
        VlaPolicy::load(run, &device)?
            .set_oracle(oracle)
            .with_context(|| format!("--oracle {}", oracle.join(",")))?;
    }
    run_eval(
        |_worker| {
            let mut policy = VlaPolicy::load(run, &device)?;
            policy.set_oracle(oracle)?;
            Ok::<_, mulli_policy::PolicyError>(policy)
        },
        opts,
    )
}

/// `mulli_eval::evaluate` with a progress bar.
pub fn run_eval<P, E, F>(make_policy: F, opts: &EvalOptions) -> Result<mulli_eval::EvalReport>
where
    P: mulli_core::Policy,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(usize) -> Result<P, E> + Sync,
{
    let pb = crate::progress::bar(0, "eval");
    let report = mulli_eval::evaluate(make_policy, opts, |done, total, e| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        tracing::info!(task = %e.task, split = %e.split, index = e.index, success = e.success, steps = e.steps, "episode");
    })?;
    pb.finish_and_clear();
    Ok(report)
}

/// Success per split and task, as a Markdown table, then per split.
pub fn print_scores(report: &mulli_eval::EvalReport) {
    println!(
        "| split | task | success | 95% CI | failures | hand–object closest / at close (median cm) |"
    );
    println!("|---|---|---|---|---|---|");
    for sc in &report.scores {
        let task = match &sc.instruction {
            Some(i) => format!("{} \"{i}\"", sc.task),
            None => sc.task.clone(),
        };
        let cm = |m: Option<f64>| m.map_or("—".to_string(), |m| format!("{:.1}", 100.0 * m));
        let mut reach = match sc.median_closest_m {
            Some(_) => format!("{} / {}", cm(sc.median_closest_m), cm(sc.median_at_close_m)),
            None => String::new(),
        };
        if let Some(e) = sc.median_perceived_err_m {
            reach.push_str(&format!(" (seen {:.1} cm off)", 100.0 * e));
        }
        if let Some(r) = sc.median_released_m {
            reach.push_str(&format!("; let go {:.1} cm from the target", 100.0 * r));
        }
        println!(
            "| {} | {} | {}/{} ({:.0}%) | {:.0}–{:.0}% | {} | {reach} |",
            sc.split,
            task,
            sc.successes,
            sc.episodes,
            100.0 * sc.rate,
            100.0 * sc.ci.0,
            100.0 * sc.ci.1,
            sc.failures
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    print_split_scores(report);
}

/// Success per split and overall.
pub fn print_split_scores(report: &mulli_eval::EvalReport) {
    for sp in &report.split_scores {
        println!(
            "{}: {}/{} ({:.1}%, 95% CI {:.1}–{:.1}%)",
            sp.split,
            sp.successes,
            sp.episodes,
            100.0 * sp.rate,
            100.0 * sp.ci.0,
            100.0 * sp.ci.1
        );
    }
    println!(
        "overall: {:.1}% of {} episodes in {:.0} s on {} worker(s)",
        100.0 * report.success_rate(),
        report.episodes.len(),
        report.eval_s,
        report.workers
    );
    if let Some(line) = task_verdict_line(report, "seen_layouts") {
        println!("{line}");
    }
}

/// Which tasks of `split` succeed in at least half their episodes, and of those that do
/// not, which ones too few episodes leave undecided; `None` without that split.
fn task_verdict_line(report: &mulli_eval::EvalReport, split: &str) -> Option<String> {
    let v = report.task_verdict(split, 0.5);
    if v.tasks() == 0 {
        return None;
    }
    let list = |scores: &[&mulli_eval::TaskScore]| {
        scores
            .iter()
            .map(|sc| {
                format!(
                    "{} {}/{} (95% CI {:.0}–{:.0}%)",
                    sc.instruction.as_deref().unwrap_or(&sc.task),
                    sc.successes,
                    sc.episodes,
                    100.0 * sc.ci.0,
                    100.0 * sc.ci.1
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = format!(
        "{split}, per task: {} of {} succeed in at least half their episodes",
        v.met.len(),
        v.tasks()
    );
    if !v.undecided.is_empty() {
        line.push_str(&format!(
            "; below half but within the interval (more episodes would tell): {}",
            list(&v.undecided)
        ));
    }
    if !v.below.is_empty() {
        line.push_str(&format!("; below half: {}", list(&v.below)));
    }
    Some(line)
}
