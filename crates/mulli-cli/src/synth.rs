//! `mulli synth`: multiply demonstrations MimicGen-style (see the `mulli-synth` crate).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use mulli_synth::{Annotations, Selection, SynthOptions};

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Source dataset of kitchen demos (LeRobot v3.0 or v2.1, with
    /// `observation.environment_state`), e.g. from `mulli sim record`.
    #[arg(long)]
    source: PathBuf,
    /// New dataset to write (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Accepted episodes to generate per task.
    #[arg(long)]
    per_task: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Give a task up after per-task × this many attempts.
    #[arg(long, default_value_t = 4.0)]
    max_attempts_factor: f64,
    /// Only these tasks (comma-separated ids; default: every task in the source).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Subtask annotations overriding the automatic segmentation (.toml or .json).
    #[arg(long)]
    annotations: Option<PathBuf>,
    /// Source segment selection per subtask: nearest (object pose) or random.
    #[arg(long, default_value = "nearest", value_parser = ["nearest", "random"])]
    selection: String,
    /// Gaussian action noise as a fraction of the action limits.
    #[arg(long, default_value_t = 0.05)]
    action_noise: f64,
    /// Share of generated scenes with strong visual randomization (colours, textures,
    /// lighting); the rest get the standard jitter.
    #[arg(long, default_value_t = 0.25)]
    strong_visuals: f64,
    /// Keep recording this many steps after each generated demo first succeeds (as
    /// `mulli sim record --success-tail`); 0 ends each at its first success.
    #[arg(long, default_value_t = 0)]
    success_tail: usize,
}

pub fn run(args: SynthArgs) -> Result<ExitCode> {
    refuse_non_empty(&args.out)?;
    let options = SynthOptions {
        per_task: args.per_task,
        seed: args.seed,
        max_attempts_factor: args.max_attempts_factor,
        tasks: args.tasks.clone(),
        selection: if args.selection == "random" {
            Selection::Random
        } else {
            Selection::Nearest
        },
        action_noise: args.action_noise,
        strong_visual_fraction: args.strong_visuals,
        success_tail: args.success_tail,
        ..SynthOptions::default()
    };
    options.validate()?;
    let annotations = match &args.annotations {
        Some(p) => Some(Annotations::load(p)?),
        None => None,
    };
    let source = mulli_synth::load(&args.source)
        .with_context(|| format!("reading source demos from {}", args.source.display()))?;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(w) = args.workers {
        anyhow::ensure!(w > 0, "--workers 0: use at least one worker thread");
        pool = pool.num_threads(w);
    }
    let pool = pool.build().context("starting worker threads")?;
    let tasks = if args.tasks.is_empty() {
        source.by_task().len()
    } else {
        args.tasks.len()
    };
    let pb = crate::progress::bar(args.per_task * tasks, "episodes");
    let report = pool
        .install(|| {
            mulli_synth::synthesize(
                &source,
                annotations.as_ref(),
                &args.out,
                &options,
                crate::progress::callback(&pb),
            )
        })
        .with_context(|| {
            format!(
                "generating {} episodes per task from {} into {}",
                args.per_task,
                args.source.display(),
                args.out.display()
            )
        })?;
    pb.finish_and_clear();
    let json = serde_json::to_vec_pretty(&report).context("serializing the report")?;
    let report_path = args.out.join("synth_report.json");
    crate::files::write_new(&report_path, &json, false)?;
    println!("| task | source demos | subtasks | accepted / attempts | yield | outcomes |");
    println!("|---|---|---|---|---|---|");
    for (id, t) in &report.per_task {
        let reasons = t
            .reasons
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {id} | {} | {} | {}/{} | {:.0}% | {reasons} |",
            t.source_demos,
            t.subtasks,
            t.accepted,
            t.attempts,
            100.0 * t.yield_rate
        );
    }
    println!(
        "\nwrote {} episodes ({} frames) from {} source demos to {} in {:.1} s ({:.2} episodes/s, {} threads); {} attempts, yield {:.0}%; report: {}",
        report.accepted,
        report.frames,
        report.source_episodes,
        args.out.display(),
        report.seconds,
        report.episodes_per_s,
        report.threads,
        report.attempts,
        100.0 * report.accepted as f64 / report.attempts.max(1) as f64,
        report_path.display()
    );
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `mulli synth` never replaces anything: the output must be new or empty.
fn refuse_non_empty(out: &Path) -> Result<()> {
    if out.is_file() {
        anyhow::bail!("--out {} is a file; give a directory", out.display());
    }
    if let Ok(mut entries) = std::fs::read_dir(out)
        && entries.next().is_some()
    {
        anyhow::bail!(
            "--out {} is not empty; mulli synth never overwrites, choose a new directory",
            out.display()
        );
    }
    Ok(())
}
