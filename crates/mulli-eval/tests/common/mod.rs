//! Policies the evaluation tests drive the kitchen with: one that stands still, and one
//! that replays the scripted expert's actions of the episode it recognizes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use mulli_core::{ActionChunk, Observation, Policy, Value};
use mulli_sim::{EnvConfig, Split, Suite, record};

/// Actions per episode, by (instruction, first agent-view image).
pub type Plans = HashMap<(String, Vec<u8>), Vec<Vec<f32>>>;

pub struct Still;

impl Policy for Still {
    type Error = Infallible;
    fn reset(&mut self) {}
    fn act(&mut self, _: &Observation) -> Result<ActionChunk, Infallible> {
        Ok(ActionChunk {
            actions: vec![vec![0.0; 7]; 4],
        })
    }
}

/// Plays back the plan of the episode it recognizes by its instruction and first camera
/// image, four actions per chunk; past the plan's end (or without one) the arm stands
/// still with the plan's last gripper command.
#[derive(Clone)]
pub struct Replay {
    plans: Arc<Plans>,
    plan: Option<Vec<Vec<f32>>>,
    step: usize,
}

impl Replay {
    pub fn new(plans: Arc<Plans>) -> Self {
        Replay {
            plans,
            plan: None,
            step: 0,
        }
    }
}

impl Policy for Replay {
    type Error = Infallible;
    fn reset(&mut self) {
        self.plan = None;
        self.step = 0;
    }
    fn act(&mut self, obs: &Observation) -> Result<ActionChunk, Infallible> {
        if self.plan.is_none() {
            let key = (obs.instruction.clone(), obs.images["agentview"].rgb.clone());
            self.plan = Some(self.plans.get(&key).cloned().unwrap_or_default());
        }
        let plan = self.plan.as_deref().unwrap_or(&[]);
        let gripper = plan.last().map_or(0.0, |a| a[6]);
        let chunk = (self.step..self.step + 4)
            .map(|i| {
                plan.get(i).cloned().unwrap_or_else(|| {
                    let mut a = vec![0.0; 7];
                    a[6] = gripper;
                    a
                })
            })
            .collect();
        self.step += 4;
        Ok(ActionChunk { actions: chunk })
    }
}

/// The clean expert's actions, cut by `cut`, on episodes `0..episodes` of each task of
/// `split` (one-task suites, as evaluation and corrections run them).
pub fn expert_plans(
    suite: &str,
    tasks: &[String],
    split: Split,
    episodes: u64,
    seed: u64,
    env: &EnvConfig,
    cut: impl Fn(Vec<Vec<f32>>) -> Vec<Vec<f32>>,
) -> Plans {
    let config = EnvConfig {
        render: true,
        ..env.clone()
    };
    let mut plans = HashMap::new();
    for id in tasks {
        let one = Suite {
            tasks: vec![mulli_sim::tasks::task(id).unwrap()],
            ..Suite::named(suite).unwrap()
        };
        for i in 0..episodes {
            let spec = one.episode(split, i, seed);
            let r = record::rollout(&spec, i, &config, 0.0, true).unwrap();
            assert!(r.success, "the expert solves {id} {i}");
            let first = match r.frames[0].get("observation.images.agentview") {
                Some(Value::U8(v)) => v.clone(),
                _ => panic!("no image"),
            };
            let actions = r
                .frames
                .iter()
                .map(|f| match f.get("action") {
                    Some(Value::F32(a)) => a.clone(),
                    _ => panic!("no action"),
                })
                .collect();
            // Tasks share layouts: the same first image can start two tasks.
            plans.insert((spec.instruction.clone(), first), cut(actions));
        }
    }
    plans
}
