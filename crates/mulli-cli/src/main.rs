//! The `mulli` binary: wires the flywheel's stages into one command line.
//!
//! Each subcommand lives in its own module; this file only parses arguments, sets up logging
//! and reports errors (with their chain of causes) in the user's words.

mod bench;
mod bench_policy;
mod dataset;
mod files;
mod policy;
mod progress;
mod sim;
mod synth;
mod teleop;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mulli",
    version,
    about = "mulli (물리): the physical-AI data flywheel in one binary"
)]
struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole flywheel on the built-in default world: capture → multiply → train →
    /// evaluate → report.
    Flywheel(FlywheelArgs),
    /// Inspect, check and transform LeRobot datasets (v3.0 and v2.1).
    #[command(subcommand)]
    Dataset(dataset::DatasetCmd),
    /// The kitchen world: tasks, camera renders, scripted experts, demo recording.
    #[command(subcommand)]
    Sim(sim::SimCmd),
    /// Multiply kitchen demonstrations MimicGen-style: re-target their subtasks to new
    /// scenes, replay them in the simulator and keep the successes.
    Synth(synth::SynthArgs),
    /// Train a vision-language-action policy on LeRobot datasets.
    Train(policy::TrainArgs),
    /// Evaluate a trained policy closed-loop in the kitchen.
    Eval(policy::EvalArgs),
    /// Inspect trained policies.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Measure speed: the training loader, the dataset writer, the simulator, training and
    /// inference of the policy.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(clap::Args)]
struct FlywheelArgs {
    /// Flywheel configuration (TOML).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Tiny budgets, for a smoke test.
    #[arg(long)]
    quick: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Flywheel(a) => flywheel(a),
        Command::Dataset(c) => dataset::run(c),
        Command::Sim(c) => sim::run(c),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => policy::train(a),
        Command::Eval(a) => policy::eval(a),
        Command::Policy(c) => policy::run(c),
        Command::Bench(c) => bench::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::from(2)
        }
    }
}

fn flywheel(args: FlywheelArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(c) = &args.config {
        anyhow::ensure!(c.exists(), "flywheel config {} does not exist", c.display());
    }
    println!("mulli flywheel{}", if args.quick { " --quick" } else { "" });
    println!("  capture   : ready as `mulli sim record` (flywheel wiring: issue 5)");
    println!("  multiply  : ready as `mulli synth` (MimicGen-style demo multiplication)");
    println!("  train     : ready as `mulli train` (VLA policy, CPU)");
    println!("  evaluate  : ready as `mulli eval` (closed loop, per-task success)");
    println!("  report    : not built yet (HTML report: issue 5)");
    println!();
    println!("flywheel stages not built yet as one command. Run them one by one:");
    println!("  mulli sim record --suite kitchen-v1-single --episodes 330 --out /tmp/kitchen");
    println!("  mulli synth --source /tmp/kitchen --out /tmp/kitchen-x10 --per-task 300");
    println!("  mulli train --data /tmp/kitchen --out /tmp/run");
    println!("  mulli eval --policy /tmp/run --episodes 10");
    println!("  mulli policy info /tmp/run");
    Ok(std::process::ExitCode::SUCCESS)
}
