//! `eval_info.json` and the rollout videos of an evaluation directory.
//!
//! The JSON uses LeRobot's field names (`lerobot-eval`): the single-environment schema
//! (`per_episode`, `aggregated.{avg_sum_reward, avg_max_reward, pc_success, eval_s,
//! eval_ep_s}`) and the multi-task one (`per_task`, `per_group`, `overall`), so tools written
//! for LeRobot's output read ours; mulli's own tables (per task and split with Wilson
//! intervals and failure reasons) are added under keys LeRobot does not use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{EvalError, EvalOptions, EvalReport, SplitScore, TaskScore, wilson};

/// What was evaluated, stored next to the numbers.
#[derive(Clone, Debug, Serialize)]
pub struct EvalSettings {
    /// The policy: a run directory, a server URL, or a name.
    pub policy: String,
    pub suite: String,
    pub tasks: Vec<String>,
    pub splits: Vec<String>,
    pub episodes_per_task: usize,
    pub seed: u64,
    pub execution: mulli_core::Execution,
    pub workers: usize,
    pub image_size: (usize, usize),
    pub mulli_version: String,
    /// Things whose true positions the control was given instead of its perception
    /// (`mulli eval --oracle`): a diagnosis, not the policy's score. Empty for a real one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oracle: Vec<String>,
}

impl EvalSettings {
    pub fn new(policy: impl Into<String>, opts: &EvalOptions, report: &EvalReport) -> Self {
        let mut splits: Vec<String> = opts.splits.iter().map(|s| s.id().to_string()).collect();
        if !opts.instructions.is_empty() {
            splits.push(crate::CUSTOM_SPLIT.into());
        }
        EvalSettings {
            policy: policy.into(),
            suite: opts.suite.clone(),
            tasks: opts.tasks.clone(),
            splits,
            episodes_per_task: opts.episodes_per_task,
            seed: opts.seed,
            execution: opts.execution,
            workers: report.workers,
            image_size: (opts.env.cameras.width, opts.env.cameras.height),
            mulli_version: env!("CARGO_PKG_VERSION").into(),
            oracle: Vec::new(),
        }
    }
}

#[derive(Serialize)]
pub struct EpisodeInfo {
    pub episode_ix: usize,
    pub sum_reward: f64,
    pub max_reward: f64,
    pub success: bool,
    /// The layout seed of the episode.
    pub seed: u64,
    pub task: String,
    pub split: String,
    pub index: u64,
    pub instruction: String,
    pub failure: Option<String>,
    pub steps: usize,
    pub policy_queries: usize,
    /// mulli, grasping tasks: closest approach of the hand to the target object, and the
    /// nearest it was when commanded to close (m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_close_m: Option<f64>,
    /// mulli, placing tasks: how far the object was, horizontally, from where it had to go
    /// when the hand let go of it (m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_m: Option<f64>,
    /// A perceiving policy's median error on the target object's position (m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perceived_err_m: Option<f64>,
    /// Relative to the evaluation directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
}

#[derive(Serialize)]
pub struct Aggregated {
    pub avg_sum_reward: f64,
    pub avg_max_reward: f64,
    pub pc_success: f64,
    pub eval_s: f64,
    pub eval_ep_s: f64,
}

#[derive(Serialize)]
pub struct GroupAggregate {
    pub avg_sum_reward: f64,
    pub avg_max_reward: f64,
    pub pc_success: f64,
    pub n_episodes: usize,
    pub video_paths: Vec<String>,
}

#[derive(Serialize)]
pub struct OverallAggregate {
    pub avg_sum_reward: f64,
    pub avg_max_reward: f64,
    pub pc_success: f64,
    pub n_episodes: usize,
    pub eval_s: f64,
    pub eval_ep_s: f64,
    pub video_paths: Vec<String>,
}

#[derive(Serialize)]
pub struct TaskMetrics {
    pub sum_rewards: Vec<f64>,
    pub max_rewards: Vec<f64>,
    pub successes: Vec<bool>,
    pub video_paths: Vec<String>,
}

#[derive(Serialize)]
pub struct PerTask {
    /// The split (LeRobot's task group).
    pub task_group: String,
    pub task_id: String,
    pub metrics: TaskMetrics,
}

/// The whole `eval_info.json`.
#[derive(Serialize)]
pub struct EvalInfo {
    pub per_episode: Vec<EpisodeInfo>,
    pub aggregated: Aggregated,
    pub per_task: Vec<PerTask>,
    pub per_group: BTreeMap<String, GroupAggregate>,
    pub overall: OverallAggregate,
    /// mulli: success per task and split, Wilson 95% intervals, failure reasons.
    pub scores: Vec<TaskScore>,
    /// mulli: success per split over all tasks.
    pub split_scores: Vec<SplitScore>,
    /// mulli: Wilson 95% interval of the overall success rate, in percent.
    pub pc_success_ci95: (f64, f64),
    pub settings: EvalSettings,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// Relative path of the video of report episode `i`.
fn video_path(report: &EvalReport, i: usize) -> String {
    let e = &report.episodes[i];
    let outcome = if e.success { "success" } else { "failure" };
    format!("videos/{}/{}_ep{:04}_{outcome}.mp4", e.split, e.task, i)
}

impl EvalInfo {
    pub fn new(report: &EvalReport, settings: EvalSettings) -> Self {
        let videos: BTreeMap<usize, String> = report
            .videos
            .iter()
            .map(|v| (v.episode, video_path(report, v.episode)))
            .collect();
        let per_episode: Vec<EpisodeInfo> = report
            .episodes
            .iter()
            .enumerate()
            .map(|(i, e)| EpisodeInfo {
                episode_ix: i,
                sum_reward: e.sum_reward,
                max_reward: e.max_reward,
                success: e.success,
                seed: e.layout_seed,
                task: e.task.clone(),
                split: e.split.clone(),
                index: e.index,
                instruction: e.instruction.clone(),
                failure: e.failure.clone(),
                steps: e.steps,
                policy_queries: e.policy_queries,
                closest_m: e.closest_m,
                at_close_m: e.at_close_m,
                released_m: e.released_m,
                perceived_err_m: e.perceived_err_m,
                video: videos.get(&i).cloned(),
            })
            .collect();
        let n = per_episode.len();
        let eval_ep_s = report.eval_s / n.max(1) as f64;
        let pc_success = 100.0 * mean(per_episode.iter().map(|e| f64::from(u8::from(e.success))));
        let avg_sum_reward = mean(per_episode.iter().map(|e| e.sum_reward));
        let avg_max_reward = mean(per_episode.iter().map(|e| e.max_reward));

        let mut per_task: Vec<PerTask> = Vec::new();
        let mut per_group: BTreeMap<String, GroupAggregate> = BTreeMap::new();
        for e in &per_episode {
            let pos = per_task
                .iter()
                .position(|t| t.task_group == e.split && t.task_id == e.task)
                .unwrap_or_else(|| {
                    per_task.push(PerTask {
                        task_group: e.split.clone(),
                        task_id: e.task.clone(),
                        metrics: TaskMetrics {
                            sum_rewards: vec![],
                            max_rewards: vec![],
                            successes: vec![],
                            video_paths: vec![],
                        },
                    });
                    per_task.len() - 1
                });
            let m = &mut per_task[pos].metrics;
            m.sum_rewards.push(e.sum_reward);
            m.max_rewards.push(e.max_reward);
            m.successes.push(e.success);
            m.video_paths.extend(e.video.clone());
        }
        for t in &per_task {
            let g = per_group
                .entry(t.task_group.clone())
                .or_insert(GroupAggregate {
                    avg_sum_reward: 0.0,
                    avg_max_reward: 0.0,
                    pc_success: 0.0,
                    n_episodes: 0,
                    video_paths: vec![],
                });
            // Sums now, means below.
            g.avg_sum_reward += t.metrics.sum_rewards.iter().sum::<f64>();
            g.avg_max_reward += t.metrics.max_rewards.iter().sum::<f64>();
            g.pc_success += t.metrics.successes.iter().filter(|s| **s).count() as f64;
            g.n_episodes += t.metrics.successes.len();
            g.video_paths.extend(t.metrics.video_paths.iter().cloned());
        }
        for g in per_group.values_mut() {
            let n = g.n_episodes.max(1) as f64;
            g.avg_sum_reward /= n;
            g.avg_max_reward /= n;
            g.pc_success = 100.0 * g.pc_success / n;
        }
        let (lo, hi) = wilson(report.successes(), n);
        EvalInfo {
            aggregated: Aggregated {
                avg_sum_reward,
                avg_max_reward,
                pc_success,
                eval_s: report.eval_s,
                eval_ep_s,
            },
            overall: OverallAggregate {
                avg_sum_reward,
                avg_max_reward,
                pc_success,
                n_episodes: n,
                eval_s: report.eval_s,
                eval_ep_s,
                video_paths: videos.values().cloned().collect(),
            },
            per_episode,
            per_task,
            per_group,
            scores: report.scores.clone(),
            split_scores: report.split_scores.clone(),
            pc_success_ci95: (100.0 * lo, 100.0 * hi),
            settings,
        }
    }
}

/// Writes `DIR/eval_info.json`, `DIR/videos/SPLIT/*.mp4` and a poster PNG next to each video.
/// `DIR` must not hold an `eval_info.json` yet (nothing is overwritten); the JSON is written
/// last, through a temporary file, so its presence means the directory is complete.
pub fn write_eval_dir(
    dir: &Path,
    report: &EvalReport,
    settings: EvalSettings,
) -> Result<PathBuf, EvalError> {
    let io = |context: String| move |source| EvalError::Io { context, source };
    let info_path = dir.join("eval_info.json");
    if info_path.exists() {
        return Err(EvalError::Options(format!(
            "{} already exists; evaluate into a new directory",
            info_path.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    for v in &report.videos {
        let rel = video_path(report, v.episode);
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("cannot create {}", parent.display())))?;
        }
        mulli_data::video::write_h264_mp4(&path, v.width, v.height, v.fps, &v.packets)
            .map_err(|e| EvalError::Video(format!("{}: {e}", path.display())))?;
        let png = mulli_data::encode_png(&v.poster, v.width, v.height, 3)
            .map_err(|e| EvalError::Video(format!("poster of {}: {e}", path.display())))?;
        let poster = path.with_extension("png");
        std::fs::write(&poster, png).map_err(io(format!("cannot write {}", poster.display())))?;
    }
    if !report.traces.is_empty() {
        let path = dir.join("trace.jsonl");
        let mut text = Vec::new();
        for t in &report.traces {
            serde_json::to_writer(&mut text, t).expect("a trace serializes");
            text.push(b'\n');
        }
        write_through_temp(&path, &text)?;
    }
    let info = EvalInfo::new(report, settings);
    let json = serde_json::to_vec_pretty(&info).expect("eval info serializes");
    write_through_temp(&info_path, &json)?;
    Ok(info_path)
}

/// Write `bytes` to `path` through `<path>.tmp` and a rename, so an interrupted write
/// never leaves a partial file under the final name.
fn write_through_temp(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let io = |context: String| move |source| EvalError::Io { context, source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("cannot rename into {}", path.display())))
}
