//! Closed-loop evaluation of any [`Policy`] in the kitchen: per task and split, episodes on
//! layouts drawn from the suite, success rates with Wilson 95% intervals, failure reasons.
//!
//! Episodes are the same for every policy given the seed (task `t`'s episode `i` of split `s`
//! is `Suite::episode` of a one-task suite), so two policies, or one policy in process and
//! behind a server, are compared on identical scenes and instructions.

use std::collections::BTreeMap;

use mulli_core::{ChunkExecutor, Execution, Policy};
use serde::Serialize;

use crate::env::{EnvConfig, KitchenEnv};
use crate::error::SimError;
use crate::tasks::{Split, Suite};

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub suite: String,
    /// Task ids (empty = the whole suite).
    pub tasks: Vec<String>,
    pub splits: Vec<Split>,
    pub episodes_per_task: usize,
    pub seed: u64,
    pub env: EnvConfig,
    pub execution: Execution,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            suite: "kitchen-v1".into(),
            tasks: Vec::new(),
            splits: vec![Split::SeenLayouts],
            episodes_per_task: 10,
            seed: 1,
            env: EnvConfig::default(),
            execution: Execution::default(),
        }
    }
}

/// One evaluated episode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpisodeResult {
    pub task: String,
    pub split: String,
    pub index: u64,
    pub layout_seed: u64,
    pub instruction: String,
    pub success: bool,
    pub failure: Option<String>,
    pub steps: usize,
    pub policy_queries: usize,
}

/// Success of one task on one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskScore {
    pub task: String,
    pub split: String,
    pub episodes: usize,
    pub successes: usize,
    pub rate: f64,
    /// Wilson 95% interval.
    pub ci: (f64, f64),
    pub failures: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EvalReport {
    pub episodes: Vec<EpisodeResult>,
    pub scores: Vec<TaskScore>,
}

impl EvalReport {
    /// Overall success rate over all episodes.
    pub fn success_rate(&self) -> f64 {
        let n = self.episodes.len().max(1);
        self.episodes.iter().filter(|e| e.success).count() as f64 / n as f64
    }
}

/// Wilson score interval (95%) for `successes` of `n`.
pub fn wilson(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (z, n_f) = (1.96f64, n as f64);
    let p = successes as f64 / n_f;
    let denom = 1.0 + z * z / n_f;
    let centre = (p + z * z / (2.0 * n_f)) / denom;
    let half = z * ((p * (1.0 - p) + z * z / (4.0 * n_f)) / n_f).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("policy failed in {task} episode {index}: {source}")]
    Policy {
        task: String,
        index: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Evaluate `policy`. `progress(done, total)` is called after every episode.
pub fn evaluate<P: Policy>(
    policy: P,
    opts: &EvalOptions,
    mut progress: impl FnMut(usize, usize, &EpisodeResult),
) -> Result<EvalReport, EvalError> {
    let suite = Suite::named(&opts.suite)?.with_tasks(&opts.tasks)?;
    if opts.episodes_per_task == 0 || opts.splits.is_empty() {
        return Err(SimError::Config(
            "evaluation needs at least one episode per task and one split".into(),
        )
        .into());
    }
    let env_config = EnvConfig {
        render: true,
        ..opts.env.clone()
    };
    let total = suite.tasks.len() * opts.splits.len() * opts.episodes_per_task;
    let mut exec = ChunkExecutor::new(policy, opts.execution);
    let mut report = EvalReport::default();
    for &split in &opts.splits {
        for task in &suite.tasks {
            let one = Suite {
                tasks: vec![task.clone()],
                ..Suite::named(&opts.suite)?
            };
            for i in 0..opts.episodes_per_task as u64 {
                let spec = one.episode(split, i, opts.seed);
                let mut env = KitchenEnv::new(
                    spec.env_config(&env_config),
                    spec.task.clone(),
                    spec.seed,
                    &spec.instruction,
                )?;
                exec.reset();
                let mut obs = env.observe();
                let (success, failure, steps) = loop {
                    let action = exec.next_action(&obs).map_err(|e| EvalError::Policy {
                        task: task.id().to_string(),
                        index: i,
                        source: Box::new(e),
                    })?;
                    let r = env.step(&action).map_err(|e| EvalError::Policy {
                        task: task.id().to_string(),
                        index: i,
                        source: Box::new(e),
                    })?;
                    if r.terminated || r.truncated {
                        break (r.info.success, r.info.failure, r.info.step);
                    }
                    obs = r.observation;
                };
                let result = EpisodeResult {
                    task: task.id().to_string(),
                    split: split.id().to_string(),
                    index: i,
                    layout_seed: spec.seed,
                    instruction: spec.instruction.clone(),
                    success,
                    failure: failure.map(|f| f.as_str().to_string()),
                    steps,
                    policy_queries: exec.queries(),
                };
                report.episodes.push(result);
                progress(
                    report.episodes.len(),
                    total,
                    report.episodes.last().expect("just pushed"),
                );
            }
        }
    }
    let mut groups: BTreeMap<(String, String), Vec<&EpisodeResult>> = BTreeMap::new();
    for e in &report.episodes {
        groups
            .entry((e.split.clone(), e.task.clone()))
            .or_default()
            .push(e);
    }
    for ((split, task), eps) in groups {
        let successes = eps.iter().filter(|e| e.success).count();
        let mut failures = BTreeMap::new();
        for e in &eps {
            if let Some(f) = &e.failure {
                *failures.entry(f.clone()).or_default() += 1;
            }
        }
        report.scores.push(TaskScore {
            task,
            split,
            episodes: eps.len(),
            successes,
            rate: successes as f64 / eps.len() as f64,
            ci: wilson(successes, eps.len()),
            failures,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_brackets_the_rate() {
        let (lo, hi) = wilson(8, 10);
        assert!(lo < 0.8 && hi > 0.8 && lo > 0.4 && hi < 1.0, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, _) = wilson(0, 20);
        assert_eq!(lo, 0.0);
    }
}
