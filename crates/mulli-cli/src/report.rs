//! `mulli report`: the HTML report of a flywheel run or of one evaluation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use mulli_report::ReportInputs;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A flywheel output directory (with flywheel.json) or an evaluation directory (with
    /// eval_info.json, from `mulli eval --out`).
    pub dir: PathBuf,
    /// For an evaluation directory: the training run of the policy (curves, architecture).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// For an evaluation directory: the dataset the policy was trained on.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to write the report (default DIR/report.html; a report there is replaced — it is
    /// derived from the files above and can always be rendered again).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let path = if args.dir.join("flywheel.json").exists() {
        anyhow::ensure!(
            args.train.is_none() && args.data.is_none(),
            "{} is a flywheel run: its training run and dataset are known; drop --train/--data",
            args.dir.display()
        );
        let inputs = flywheel_inputs(&args.dir)?;
        write(
            &inputs,
            args.out.unwrap_or_else(|| args.dir.join("report.html")),
        )?
    } else if args.dir.join("eval_info.json").exists() {
        let inputs = ReportInputs {
            title: format!("mulli evaluation — {}", args.dir.display()),
            eval_dir: args.dir.clone(),
            train_run: args.train.clone(),
            dataset: args.data.clone(),
            capture: None,
            flywheel: None,
        };
        write(
            &inputs,
            args.out.unwrap_or_else(|| args.dir.join("report.html")),
        )?
    } else {
        anyhow::bail!(
            "{} holds neither flywheel.json (a `mulli flywheel` output) nor eval_info.json (a `mulli eval --out` directory)",
            args.dir.display()
        );
    };
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn write(inputs: &ReportInputs, path: PathBuf) -> Result<PathBuf> {
    mulli_report::write(inputs, &path)
        .with_context(|| format!("rendering the report {}", path.display()))?;
    Ok(path)
}

/// The report inputs of a flywheel output directory, from its flywheel.json.
fn flywheel_inputs(out: &Path) -> Result<ReportInputs> {
    let record_path = out.join("flywheel.json");
    let text = std::fs::read_to_string(&record_path)
        .with_context(|| format!("reading {}", record_path.display()))?;
    let record: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", record_path.display()))?;
    // The last stage of that name that has a directory: after correction rounds, the
    // policy that was evaluated is the last one trained.
    let stage_dir = |name: &str| -> Option<PathBuf> {
        record["stages"]
            .as_array()?
            .iter()
            .filter(|s| s["stage"] == name)
            .filter_map(|s| s["dir"].as_str())
            .next_back()
            .map(|d| out.join(d))
    };
    let eval_dir = stage_dir("eval").with_context(|| {
        format!(
            "{} names no evaluation stage: the flywheel did not get that far",
            record_path.display()
        )
    })?;
    let capture = stage_dir("capture");
    let capture_summary = capture
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("stage.json")).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["summary"].clone());
    let quick = record["quick"] == true;
    Ok(ReportInputs {
        title: format!(
            "mulli flywheel{} — {}",
            if quick { " --quick" } else { "" },
            record["config"]["suite"].as_str().unwrap_or("?")
        ),
        eval_dir,
        train_run: stage_dir("train").map(|d| d.join("run")),
        dataset: capture.map(|d| d.join("dataset")),
        capture: capture_summary,
        flywheel: Some(record),
    })
}

/// Renders `OUT/report.html` of a flywheel run.
pub fn render_flywheel(out: &Path) -> Result<PathBuf> {
    let inputs = flywheel_inputs(out)?;
    write(&inputs, out.join("report.html"))
}
