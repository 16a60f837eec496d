//! Demo-multiplication throughput without the CLI's training stack (burn): records
//! `DEMOS` scripted demos per single-step kitchen task, then generates `PER_TASK` episodes
//! per task and prints the report as JSON.
//!
//! `cargo run --release -p mulli-synth --example bench_synth -- OUT_DIR [DEMOS] [PER_TASK]`

use mulli_data::WriteMode;
use mulli_sim::record::{RecordOptions, record};
use mulli_synth::{SynthOptions, load, synthesize};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: bench_synth OUT_DIR [DEMOS] [PER_TASK]")?,
    );
    let demos: usize = args.next().map_or(Ok(10), |s| s.parse())?;
    let per_task: usize = args.next().map_or(Ok(50), |s| s.parse())?;
    let src = dir.join("source");
    let opts = RecordOptions {
        suite: "kitchen-v1-single".into(),
        episodes: demos * 11,
        ..RecordOptions::default()
    };
    let t = Instant::now();
    let rec = record(&src, &opts, WriteMode::Create, |_, _| {})?;
    eprintln!(
        "recorded {} source demos in {:.1} s",
        rec.episodes,
        t.elapsed().as_secs_f64()
    );
    let source = load(&src)?;
    let sopts = SynthOptions {
        per_task,
        ..SynthOptions::default()
    };
    let report = synthesize(&source, None, &dir.join("generated"), &sopts, |_, _| {})?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
