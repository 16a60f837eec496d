//! Many kitchens stepped in parallel across threads (rayon): the batched interface closed-
//! loop evaluation and throughput benchmarks use.

use crate::env::{EnvConfig, KitchenEnv, StepResult};
use crate::error::SimError;
use crate::tasks::EpisodeSpec;
use mulli_core::Observation;
use rayon::prelude::*;

pub struct VecEnv {
    envs: Vec<KitchenEnv>,
}

impl VecEnv {
    /// One environment per episode spec, all reset.
    pub fn new(config: &EnvConfig, specs: &[EpisodeSpec]) -> Result<Self, SimError> {
        let envs = specs
            .par_iter()
            .map(|s| KitchenEnv::new(config.clone(), s.task.clone(), s.seed, &s.instruction))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { envs })
    }

    pub fn len(&self) -> usize {
        self.envs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    pub fn envs(&self) -> &[KitchenEnv] {
        &self.envs
    }

    /// Observations of every environment.
    pub fn observe(&mut self) -> Vec<Observation> {
        self.envs.par_iter_mut().map(|e| e.observe()).collect()
    }

    /// Step environment `i` with `actions[i]`. Environments whose episode is over are not
    /// stepped (their entry is `None`).
    pub fn step(
        &mut self,
        actions: &[Vec<f32>],
        active: &[bool],
    ) -> Result<Vec<Option<StepResult>>, SimError> {
        if actions.len() != self.envs.len() || active.len() != self.envs.len() {
            return Err(SimError::Action(format!(
                "{} environments, got {} actions and {} active flags",
                self.envs.len(),
                actions.len(),
                active.len()
            )));
        }
        self.envs
            .par_iter_mut()
            .zip(actions.par_iter())
            .zip(active.par_iter())
            .map(|((env, a), &on)| if on { env.step(a).map(Some) } else { Ok(None) })
            .collect()
    }
}
