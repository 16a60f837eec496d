//! `mulli correct`: the policy drives, the scripted expert takes over, the expert's part is
//! written as new demos (see `mulli_eval::correct`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use mulli_core::Execution;
use mulli_eval::CorrectOptions;
use mulli_policy::VlaPolicy;

#[derive(Args)]
pub struct CorrectArgs {
    /// Run directory (or checkpoint directory) of the policy that drives.
    #[arg(long)]
    pub policy: PathBuf,
    /// New dataset directory for the corrected episodes (LeRobot v3, like `mulli sim record`).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "kitchen-v1-single")]
    pub suite: String,
    /// Only these task ids (repeatable).
    #[arg(long = "task")]
    pub tasks: Vec<String>,
    /// Attempts per task; each writes at most one episode.
    #[arg(long, default_value_t = 20)]
    pub attempts: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The expert's action noise (m per step).
    #[arg(long, default_value_t = 0.002)]
    pub noise: f64,
    /// Earliest and latest takeover, as shares of the task's step budget.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [0.1, 0.8])]
    pub takeover: Vec<f64>,
    /// `time`: take over at the drawn step; `under-funnel`: as soon as the empty hand goes
    /// under the grasp expert's funnel beside the object (a human stepping in before a
    /// missed grasp), at the drawn step at the latest.
    #[arg(long, default_value = "time", value_parser = ["time", "under-funnel"])]
    pub trigger: String,
    /// Steps each episode keeps recording after the task first succeeds (as the demos
    /// it is trained with; see `mulli sim record --success-tail`).
    #[arg(long, default_value_t = 0)]
    pub success_tail: usize,
    /// Execute this many actions of each chunk before re-planning (default: the policy's).
    #[arg(long)]
    pub execute: Option<usize>,
    /// Parallel workers, each with its own copy of the policy (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Replace an existing dataset at --out.
    #[arg(long, conflicts_with = "append")]
    pub force: bool,
    /// Add the episodes to an existing dataset at --out.
    #[arg(long)]
    pub append: bool,
}

pub fn run(args: CorrectArgs) -> Result<ExitCode> {
    let device = mulli_policy::device(&args.device)?;
    let spec = VlaPolicy::load(&args.policy, &device)?.spec().clone();
    let execution = match args.execute {
        Some(execute) => Execution::RecedingHorizon { execute },
        None => spec.execution,
    };
    execution
        .check(spec.model.chunk)
        .map_err(|e| anyhow::anyhow!("--execute: {e}"))?;
    let mut env = crate::policy::env_for_size(spec.model.image_size);
    env.success_tail = args.success_tail;
    let opts = CorrectOptions {
        suite: args.suite.clone(),
        tasks: args.tasks.clone(),
        attempts_per_task: args.attempts,
        seed: args.seed,
        env,
        execution,
        workers: args.workers,
        noise: args.noise,
        takeover: (args.takeover[0], args.takeover[1]),
        trigger: args.trigger.parse()?,
    };
    let report = run_correct(
        &args.policy,
        &args.device,
        &opts,
        &args.out,
        crate::files::write_mode(args.force, args.append),
    )?;
    print_report(&report);
    // Beside the episodes, like synth_report.json; an append keeps earlier reports.
    let json = serde_json::to_vec_pretty(&report).context("serializing the report")?;
    let path = (0..)
        .map(|k| match k {
            0 => args.out.join("correct_report.json"),
            k => args.out.join(format!("correct_report.{k}.json")),
        })
        .find(|p| !p.exists())
        .expect("a free name");
    crate::files::write_new(&path, &json, false)?;
    println!("wrote {} ({})", args.out.display(), path.display());
    Ok(ExitCode::SUCCESS)
}

/// `mulli_eval::correct` with the policy of a run directory and a progress bar.
pub fn run_correct(
    policy: &std::path::Path,
    device: &str,
    opts: &CorrectOptions,
    out: &std::path::Path,
    mode: mulli_data::WriteMode,
) -> Result<mulli_eval::CorrectReport> {
    let device = mulli_policy::device(device)?;
    let pb = crate::progress::bar(0, "correct");
    let report = mulli_eval::correct(
        |_worker| VlaPolicy::load(policy, &device),
        opts,
        out,
        mode,
        |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    )
    .with_context(|| format!("recording corrections into {}", out.display()))?;
    pb.finish_and_clear();
    Ok(report)
}

/// One line per task: attempts, episodes written and why the others were not.
pub fn print_report(report: &mulli_eval::CorrectReport) {
    println!(
        "| task | attempts | under the funnel | written (frames) | policy succeeded | holding another object | expert failed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (task, t) in &report.per_task {
        let failed: usize = t.expert_failed.values().sum();
        let why = t
            .expert_failed
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {task} | {} | {} | {} ({}) | {} | {} | {failed}{} |",
            t.attempts,
            t.under_funnel,
            t.written,
            t.frames,
            t.policy_succeeded,
            t.holding,
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        );
    }
    if !report.skipped_tasks.is_empty() {
        println!(
            "skipped (no expert that can take over midway): {}",
            report.skipped_tasks.join(", ")
        );
    }
    println!(
        "{} episodes ({} frames) from {} attempts in {:.1} s on {} workers",
        report.episodes, report.frames, report.attempts, report.seconds, report.workers
    );
}
