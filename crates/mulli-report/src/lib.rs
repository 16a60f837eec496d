//! The flywheel's report: one self-contained HTML file (no network, no scripts) that shows
//! what a run did — success per task and split with 95% intervals, failure reasons, training
//! curves as inline SVG, rollout videos embedded as data URIs, the dataset, the stage timings,
//! the config and versions.
//!
//! This crate owns the rendering only. It reads the files other stages wrote
//! (`eval_info.json`, `metrics.jsonl`, `meta/info.json`, `flywheel.json`) as plain JSON, so it
//! depends on no other mulli crate, and every number it shows comes from `eval_info.json`
//! (checked for consistency before rendering: the report cannot disagree with it).

mod chart;
mod html;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use chart::{Series, line_chart};
pub use html::escape;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Inconsistent { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What goes into a report; only the evaluation is required.
#[derive(Clone, Debug, Default)]
pub struct ReportInputs {
    pub title: String,
    /// Directory with `eval_info.json` and the `videos/` it lists.
    pub eval_dir: PathBuf,
    /// Training run directory (`metrics.jsonl`, `checkpoint/policy.json`).
    pub train_run: Option<PathBuf>,
    /// The LeRobot dataset the policy was trained on (`meta/info.json`).
    pub dataset: Option<PathBuf>,
    /// How the dataset was captured (`mulli_sim::record::RecordReport` as JSON).
    pub capture: Option<Value>,
    /// `flywheel.json` of a flywheel run (stages, timings, config).
    pub flywheel: Option<Value>,
}

pub(crate) fn read_json(path: &Path) -> Result<Value, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Training metrics, one JSON object per line; unparsable lines (a write cut by a kill) are
/// skipped, not fatal.
pub(crate) fn read_metrics(path: &Path) -> Result<Vec<Value>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Checks that `eval_info.json`'s tables agree with its episodes, so the report's headline
/// numbers, tables and videos tell one story.
pub fn check_eval_info(info: &Value, path: &Path) -> Result<(), ReportError> {
    let bad = |message: String| ReportError::Inconsistent {
        path: path.to_path_buf(),
        message,
    };
    let episodes = info["per_episode"]
        .as_array()
        .ok_or_else(|| bad("per_episode is missing or not a list".into()))?;
    let successes = episodes.iter().filter(|e| e["success"] == true).count();
    let n = episodes.len();
    let pc = info["aggregated"]["pc_success"]
        .as_f64()
        .ok_or_else(|| bad("aggregated.pc_success is missing".into()))?;
    if n > 0 && (pc - 100.0 * successes as f64 / n as f64).abs() > 1e-6 {
        return Err(bad(format!(
            "aggregated.pc_success is {pc} but {successes} of {n} episodes succeeded"
        )));
    }
    let scores = info["scores"].as_array().cloned().unwrap_or_default();
    let (mut s_eps, mut s_ok) = (0, 0);
    for s in &scores {
        s_eps += s["episodes"].as_u64().unwrap_or(0) as usize;
        s_ok += s["successes"].as_u64().unwrap_or(0) as usize;
    }
    if s_eps != n || s_ok != successes {
        return Err(bad(format!(
            "scores count {s_ok}/{s_eps} successes/episodes, per_episode {successes}/{n}"
        )));
    }
    Ok(())
}

/// Renders the report as one HTML document.
pub fn render(inputs: &ReportInputs) -> Result<String, ReportError> {
    let info_path = inputs.eval_dir.join("eval_info.json");
    let info = read_json(&info_path)?;
    check_eval_info(&info, &info_path)?;
    let metrics = match &inputs.train_run {
        Some(run) => {
            let p = run.join("metrics.jsonl");
            if p.exists() {
                read_metrics(&p)?
            } else {
                Vec::new()
            }
        }
        None => Vec::new(),
    };
    let policy = match &inputs.train_run {
        Some(run) => {
            let p = run.join("checkpoint").join("policy.json");
            if p.exists() {
                Some(read_json(&p)?)
            } else {
                None
            }
        }
        None => None,
    };
    let dataset = match &inputs.dataset {
        Some(d) => Some(read_json(&d.join("meta").join("info.json"))?),
        None => None,
    };
    html::document(&html::Parts {
        title: &inputs.title,
        info: &info,
        eval_dir: &inputs.eval_dir,
        metrics: &metrics,
        policy: policy.as_ref(),
        dataset: dataset.as_ref(),
        capture: inputs.capture.as_ref(),
        flywheel: inputs.flywheel.as_ref(),
    })
}

/// Renders and writes the report (through a temporary file, so a reader never sees half).
pub fn write(inputs: &ReportInputs, path: &Path) -> Result<(), ReportError> {
    let html = render(inputs)?;
    let tmp = path.with_extension("html.tmp");
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, html).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
