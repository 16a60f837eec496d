//! The `mulli` binary: wires the flywheel's stages into one command line.
//!
//! Each subcommand lives in its own module; this file only parses arguments, sets up logging
//! and reports errors (with their chain of causes) in the user's words.

// burn-flex allocates and frees a fresh buffer for nearly every tensor op; glibc's malloc
// returns the large ones to the kernel each time, so training spent its time in page faults
// and page zeroing. mimalloc keeps them (measured in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_decommits` (index 5 in both mimalloc v2's and v3's `mi_option_e`;
/// `libmimalloc-sys` names no constant for it).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Makes mimalloc purge freed memory with `MADV_FREE` instead of decommitting it. Why: a
/// training step frees and reallocates the same large buffers; decommitted, each one came
/// back through page faults and kernel page zeroing (8% of a step's profile), and the image
/// steps ran 17% slower (docs/benchmarks.md, "Allocator purging"). `MADV_FREE`d pages are
/// still given back when the system needs memory. `MIMALLOC_PURGE_DECOMMITS` (or its old
/// name) in the environment wins.
fn tune_allocator() {
    let set_by_user = ["MIMALLOC_PURGE_DECOMMITS", "MIMALLOC_RESET_DECOMMITS"]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
    if !set_by_user {
        // SAFETY: sets one integer option of the allocator, first thing in `main`, before
        // any other thread exists; mimalloc reads it at each purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) };
    }
}

mod bench;
mod bench_policy;
mod correct;
mod dataset;
mod files;
mod flywheel;
mod policy;
mod progress;
mod report;
mod serve;
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
    Flywheel(flywheel::FlywheelArgs),
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
    /// Record corrections: the policy drives, the scripted expert takes over, and the
    /// expert's steps are written as new demos (DAgger-style) for the next training.
    Correct(correct::CorrectArgs),
    /// Serve a trained policy over openpi's websocket protocol (robots, other simulators,
    /// `mulli eval --server`).
    Serve(serve::ServeArgs),
    /// Inspect trained policies.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Render the HTML report of a flywheel run or an evaluation.
    Report(report::ReportArgs),
    /// Measure speed: the training loader, the dataset writer, the simulator, training and
    /// inference of the policy, the policy server.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

fn main() -> std::process::ExitCode {
    tune_allocator();
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
        Command::Flywheel(a) => flywheel::run(a),
        Command::Dataset(c) => dataset::run(c),
        Command::Sim(c) => sim::run(c),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => policy::train(a),
        Command::Eval(a) => policy::eval(a),
        Command::Correct(a) => correct::run(a),
        Command::Policy(c) => policy::run(c),
        Command::Report(a) => report::run(a),
        Command::Serve(a) => serve::serve(a),
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
