//! What every policy offers — a learned model in process, a remote server, a scripted expert —
//! and how its action chunks are executed.
//!
//! A policy predicts a *chunk* of H future actions per observation. [`ChunkExecutor`] turns
//! chunks into one action per control step, either by executing the first k actions and
//! re-planning (receding horizon) or by querying every step and averaging all predictions for
//! the current step (ACT's temporal ensembling). The executor lives here, not in a model
//! crate, so evaluation and serving treat every policy the same way.

use std::collections::VecDeque;

use crate::Observation;

/// H future actions, each `action_dim` long, first one for the current step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActionChunk {
    pub actions: Vec<Vec<f32>>,
}

impl ActionChunk {
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// One environment-state value as a policy perceived it from its sensors at its last query,
/// next to the true value when the observation carried one (a simulator's does): how
/// evaluation measures a perceiving policy's perception in closed loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Perceived {
    /// The environment-state entry (`cube.x`, …).
    pub name: String,
    pub value: f32,
    pub truth: Option<f32>,
}

pub trait Policy {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Forget anything remembered from the previous episode.
    fn reset(&mut self);

    /// Seed the stochastic choices of the next episode (e.g. flow-matching noise), so an
    /// episode's actions depend on its seed alone, not on which episodes ran before it on the
    /// same instance: what lets evaluation spread episodes over workers reproducibly.
    /// Deterministic policies ignore it. Call before [`Policy::reset`].
    fn reseed(&mut self, _seed: u64) {}

    /// The action chunk for this observation.
    fn act(&mut self, obs: &Observation) -> Result<ActionChunk, Self::Error>;

    /// One chunk per observation, in order. A server that gathers concurrent requests calls
    /// this once per batch; a model that can run them as one forward pass overrides it. The
    /// default calls [`Policy::act`] in order, so results equal one-at-a-time calls.
    fn act_batch(&mut self, obs: &[Observation]) -> Result<Vec<ActionChunk>, Self::Error> {
        obs.iter().map(|o| self.act(o)).collect()
    }

    /// What the policy perceived of the environment state at its last [`Policy::act`]
    /// (empty for policies that perceive nothing or are given it).
    fn perceived(&self) -> Vec<Perceived> {
        Vec::new()
    }
}

/// How chunks become per-step actions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Execution {
    /// Execute the first `execute` actions of each chunk, then query again.
    RecedingHorizon { execute: usize },
    /// Query every step; the action is the average of every chunk's prediction for this step,
    /// weighted `exp(-decay * i)` with i = 0 for the oldest prediction (ACT, Zhao et al. 2023).
    TemporalEnsemble { decay: f32 },
}

impl Default for Execution {
    fn default() -> Self {
        Execution::RecedingHorizon { execute: 8 }
    }
}

impl Execution {
    /// What the flywheel and trained policies use unless told otherwise: temporal
    /// ensembling with decay 0.1. Why: on the flywheel's policies it succeeds in 52.9% and
    /// 57.1% of 660 episodes (two seeds) against 49.2% and 54.4% executing 8 of each 10
    /// actions — averaging overlapping chunks damps a re-plan made from one bad look
    /// (docs/benchmarks.md, session 19).
    pub const ENSEMBLE: Execution = Execution::TemporalEnsemble { decay: 0.1 };

    /// Checks the mode against a policy's chunk length: at least one and at most `chunk`
    /// actions executed per chunk; a finite decay ≥ 0. The message names the field and value.
    pub fn check(&self, chunk: usize) -> Result<(), String> {
        match *self {
            Execution::RecedingHorizon { execute: 0 } => {
                Err("execute = 0: execute at least one action of each chunk".into())
            }
            Execution::RecedingHorizon { execute } if execute > chunk => Err(format!(
                "execute = {execute} is more than the policy's chunk ({chunk} actions)"
            )),
            Execution::TemporalEnsemble { decay } if !(decay.is_finite() && decay >= 0.0) => {
                Err(format!(
                    "decay = {decay}: the ensemble's weights are exp(-decay·i); give a number >= 0"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Drives a [`Policy`] one control step at a time.
pub struct ChunkExecutor<P> {
    policy: P,
    mode: Execution,
    /// Receding horizon: actions left to execute.
    queue: VecDeque<Vec<f32>>,
    /// Temporal ensembling: (step the chunk was predicted at, chunk), oldest first.
    chunks: VecDeque<(usize, ActionChunk)>,
    step: usize,
    queries: usize,
}

impl<P: Policy> ChunkExecutor<P> {
    pub fn new(policy: P, mode: Execution) -> Self {
        ChunkExecutor {
            policy,
            mode,
            queue: VecDeque::new(),
            chunks: VecDeque::new(),
            step: 0,
            queries: 0,
        }
    }

    pub fn policy(&self) -> &P {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// Times the policy was queried since the last reset.
    pub fn queries(&self) -> usize {
        self.queries
    }

    pub fn reset(&mut self) {
        self.policy.reset();
        self.queue.clear();
        self.chunks.clear();
        self.step = 0;
        self.queries = 0;
    }

    /// The action for this control step. A policy returning an empty chunk yields an empty
    /// action (the caller reports it), never a panic.
    pub fn next_action(&mut self, obs: &Observation) -> Result<Vec<f32>, P::Error> {
        let step = self.step;
        self.step += 1;
        match self.mode {
            Execution::RecedingHorizon { execute } => {
                if self.queue.is_empty() {
                    let chunk = self.policy.act(obs)?;
                    self.queries += 1;
                    let k = execute.clamp(1, chunk.len().max(1));
                    self.queue.extend(chunk.actions.into_iter().take(k));
                }
                Ok(self.queue.pop_front().unwrap_or_default())
            }
            Execution::TemporalEnsemble { decay } => {
                let chunk = self.policy.act(obs)?;
                self.queries += 1;
                self.chunks.push_back((step, chunk));
                // Drop chunks that no longer cover this step.
                while let Some((s, c)) = self.chunks.front()
                    && s + c.len() <= step
                {
                    self.chunks.pop_front();
                }
                let mut sum: Vec<f64> = Vec::new();
                let mut total = 0.0f64;
                for (i, (s, c)) in self.chunks.iter().enumerate() {
                    let a = &c.actions[step - s];
                    let w = (-f64::from(decay) * i as f64).exp();
                    if sum.is_empty() {
                        sum = vec![0.0; a.len()];
                    }
                    for (acc, &v) in sum.iter_mut().zip(a) {
                        *acc += w * f64::from(v);
                    }
                    total += w;
                }
                Ok(sum.iter().map(|v| (v / total.max(1e-12)) as f32).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Predicts `[t, t+1, …]` where t counts queries, so executed actions show which chunk and
    /// offset they came from.
    struct Counter {
        h: usize,
        calls: usize,
    }

    impl Policy for Counter {
        type Error = std::convert::Infallible;
        fn reset(&mut self) {
            self.calls = 0;
        }
        fn act(&mut self, _: &Observation) -> Result<ActionChunk, Self::Error> {
            let t = self.calls as f32 * 100.0;
            self.calls += 1;
            Ok(ActionChunk {
                actions: (0..self.h).map(|i| vec![t + i as f32]).collect(),
            })
        }
    }

    fn run(mode: Execution, steps: usize) -> (Vec<f32>, usize) {
        let mut ex = ChunkExecutor::new(Counter { h: 4, calls: 0 }, mode);
        let obs = Observation::default();
        let out = (0..steps)
            .map(|_| ex.next_action(&obs).unwrap()[0])
            .collect();
        (out, ex.queries())
    }

    #[test]
    fn receding_horizon_executes_k_then_replans() {
        let (a, q) = run(Execution::RecedingHorizon { execute: 3 }, 7);
        assert_eq!(a, [0.0, 1.0, 2.0, 100.0, 101.0, 102.0, 200.0]);
        assert_eq!(q, 3);
        // k larger than the chunk executes the whole chunk.
        let (a, _) = run(Execution::RecedingHorizon { execute: 99 }, 5);
        assert_eq!(a, [0.0, 1.0, 2.0, 3.0, 100.0]);
    }

    #[test]
    fn execution_modes_are_checked_against_the_chunk() {
        assert_eq!(Execution::ENSEMBLE.check(10), Ok(()));
        assert_eq!(Execution::RecedingHorizon { execute: 10 }.check(10), Ok(()));
        let e = Execution::RecedingHorizon { execute: 0 }
            .check(10)
            .unwrap_err();
        assert!(e.contains("execute = 0"), "{e}");
        let e = Execution::RecedingHorizon { execute: 11 }
            .check(10)
            .unwrap_err();
        assert!(
            e.contains("execute = 11") && e.contains("10 actions"),
            "{e}"
        );
        for bad in [-0.1, f32::NAN, f32::INFINITY] {
            let e = Execution::TemporalEnsemble { decay: bad }
                .check(10)
                .unwrap_err();
            assert!(e.contains(&format!("decay = {bad}")), "{e}");
        }
    }

    #[test]
    fn temporal_ensembling_averages_every_prediction_for_the_step() {
        // decay 0: plain mean. Step 1 sees chunk 0 offset 1 (= 1) and chunk 1 offset 0 (= 100).
        let (a, q) = run(Execution::TemporalEnsemble { decay: 0.0 }, 5);
        assert_eq!(q, 5);
        assert_eq!(a[0], 0.0);
        assert_eq!(a[1], (1.0 + 100.0) / 2.0);
        assert_eq!(a[2], (2.0 + 101.0 + 200.0) / 3.0);
        // Step 4: chunk 0 (len 4) no longer covers it.
        assert_eq!(a[4], (103.0 + 202.0 + 301.0 + 400.0) / 4.0);
        // Large decay: the oldest prediction dominates.
        let (a, _) = run(Execution::TemporalEnsemble { decay: 50.0 }, 3);
        assert!((a[2] - 2.0).abs() < 1e-3, "{a:?}");
    }

    #[test]
    fn act_batch_defaults_to_act_in_order() {
        let mut p = Counter { h: 2, calls: 0 };
        let obs = vec![Observation::default(); 3];
        let chunks = p.act_batch(&obs).unwrap();
        let firsts: Vec<f32> = chunks.iter().map(|c| c.actions[0][0]).collect();
        assert_eq!(firsts, [0.0, 100.0, 200.0]);
        assert!(p.act_batch(&[]).unwrap().is_empty());
    }

    #[test]
    fn reset_starts_a_new_episode() {
        let mut ex = ChunkExecutor::new(
            Counter { h: 4, calls: 0 },
            Execution::RecedingHorizon { execute: 2 },
        );
        let obs = Observation::default();
        ex.next_action(&obs).unwrap();
        ex.reset();
        assert_eq!(ex.next_action(&obs).unwrap(), [0.0]);
        assert_eq!(ex.queries(), 1);
    }
}
