//! A trained VLA as a [`Policy`]: observation in, un-normalized action chunk out.
//!
//! Observations are checked before anything runs: every camera the model was trained with
//! must be present, no unknown camera may be (cameras of the training data it does not
//! read are ignored), images must have the training resolution's
//! aspect (they are resized to the model's input like the training frames were), and the state
//! must have the right length and be finite. Each failure names the key and what was expected.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use mulli_core::rng::{self, Rng};
use mulli_core::{ActionChunk, Observation, Perceived, Policy};

use crate::PolicyError;
use crate::checkpoint::{self, PolicySpec};
use crate::data::{normal, push_chw, resize_rgb};
use crate::model::{Head, InstructionReading, TextInput, Vla};
use crate::pretrained::PretrainedTextEncoder;
use crate::train::Batcher;

pub struct VlaPolicy {
    spec: PolicySpec,
    model: Vla,
    batcher: Batcher,
    device: Device,
    /// Flow-matching noise; re-seeded by `reset` so an episode's actions are reproducible.
    rng: Rng,
    seed: u64,
    episodes: u64,
    /// What the last `act` perceived (perceiving policies only).
    perceived: Vec<Perceived>,
    /// The last instruction and its encoding: a robot sends the same one every step, and
    /// the text encoder is a sixth of a default VLA's batch-1 latency (docs/benchmarks.md).
    text_cache: Option<(String, Tensor<2>)>,
}

impl VlaPolicy {
    /// Load the policy of a run directory (`RUN/checkpoint`) or of a checkpoint directory.
    pub fn load(path: &Path, device: &Device) -> Result<Self, PolicyError> {
        let dir = checkpoint::checkpoint_dir(path).ok_or_else(|| {
            PolicyError::Checkpoint(format!(
                "{}: no policy here (expected policy.json in it or in its checkpoint/)",
                path.display()
            ))
        })?;
        let (spec, model) = checkpoint::load_policy_model(&dir, device)?;
        let pretrained = match &spec.text_encoder_dir {
            Some(d) => Some(PretrainedTextEncoder::load(d, device)?),
            None => None,
        };
        Self::from_parts(spec, model, pretrained, device.clone())
    }

    /// What the policy reads of its state for `instruction`: the gate on each entry and the
    /// slots' weights over the things ([`Vla::read_instruction`]).
    pub fn read_instruction(&self, instruction: &str) -> Result<InstructionReading, PolicyError> {
        let text = self
            .batcher
            .text(&[instruction.to_owned()], &[0], &self.device)?;
        Ok(self.model.read_instruction(self.model.encode_text(text)))
    }

    pub fn from_parts(
        spec: PolicySpec,
        model: Vla,
        pretrained: Option<PretrainedTextEncoder>,
        device: Device,
    ) -> Result<Self, PolicyError> {
        let batcher = Batcher::new(&spec.model, pretrained)?;
        Ok(VlaPolicy {
            spec,
            model,
            batcher,
            device,
            rng: rng::seeded(0),
            seed: 0,
            episodes: 0,
            perceived: Vec::new(),
            text_cache: None,
        })
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// Give the control the true values of these things' perceived entries (`apple` for
    /// `apple.x`, `apple.y`, `apple.z`, from the observation's environment state) in place
    /// of what it perceives; `all` for every perceived entry; empty = off. The perception
    /// still runs and is what [`Policy::perceived`] reports. Why: an evaluation with the
    /// truth for, say, the target object tells how many of the failures its perception
    /// causes and how many the control does (docs/benchmarks.md, session 25).
    pub fn set_oracle(&mut self, things: &[String]) -> Result<(), PolicyError> {
        let env = match (&self.spec.env_state, self.spec.required_env_state()) {
            (Some(env), None) => env,
            _ if things.is_empty() => return Ok(()),
            _ => {
                return Err(PolicyError::Config(
                    "an oracle replaces perceived positions, and this policy perceives none (it reads the environment state it is given, or none)".into(),
                ));
            }
        };
        let thing = |name: &str| name.split('.').next().unwrap_or(name).to_string();
        let known: std::collections::BTreeSet<String> =
            env.names.iter().map(|n| thing(n)).collect();
        if let Some(bad) = things.iter().find(|t| *t != "all" && !known.contains(*t)) {
            return Err(PolicyError::Config(format!(
                "oracle thing `{bad}`: this policy perceives {} (or give `all`)",
                known.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let flags: Vec<bool> = env
            .names
            .iter()
            .map(|n| things.iter().any(|t| t == "all" || *t == thing(n)))
            .collect();
        let flags = if flags.contains(&true) {
            flags
        } else {
            Vec::new()
        };
        self.model = self.model.clone().with_oracle(flags)?;
        Ok(())
    }

    /// Seed of the flow head's noise (episode `k` after the seed uses stream `k`).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
        self.episodes = 0;
        self.rng = rng::substream(seed, "policy-noise", 0);
    }

    /// The model's (un-normalized) state for one observation — proprioception plus the
    /// observed environment-state entries — or an error naming what is wrong.
    fn check(&self, obs: &Observation) -> Result<Vec<f32>, PolicyError> {
        let bad = |m: String| Err(PolicyError::Observation(m));
        for name in obs.images.keys() {
            if !self.spec.cameras.contains(name) && !self.spec.unused_cameras.contains(name) {
                return bad(format!(
                    "unknown camera `{name}`; this policy uses {:?}{}",
                    self.spec.cameras,
                    if self.spec.unused_cameras.is_empty() {
                        String::new()
                    } else {
                        format!(" (and ignores {:?})", self.spec.unused_cameras)
                    }
                ));
            }
        }
        for name in &self.spec.cameras {
            let Some(img) = obs.images.get(name) else {
                return bad(format!(
                    "camera `{name}` is missing; this policy needs {:?}",
                    self.spec.cameras
                ));
            };
            if img.width == 0 || img.height == 0 || img.rgb.len() != img.width * img.height * 3 {
                return bad(format!(
                    "camera `{name}`: {} bytes for {}×{} RGB8 (expected {})",
                    img.rgb.len(),
                    img.width,
                    img.height,
                    img.width * img.height * 3
                ));
            }
            if img.width != img.height {
                return bad(format!(
                    "camera `{name}`: {}×{} image; this policy takes square images (it was trained at {}×{})",
                    img.width, img.height, self.spec.model.image_size, self.spec.model.image_size
                ));
            }
        }
        let sd = self.spec.proprio_dim();
        if obs.state.len() != sd {
            return bad(format!(
                "state has {} values; this policy expects {sd}{}",
                obs.state.len(),
                self.spec
                    .proprio_names()
                    .map(|n| format!(" ({})", n.join(", ")))
                    .unwrap_or_default()
            ));
        }
        let mut state = obs.state.clone();
        match (&self.spec.env_state, self.spec.required_env_state()) {
            (_, Some(env)) => state.extend(
                env.select(&obs.environment_state)
                    .map_err(PolicyError::Observation)?,
            ),
            // Perceived: the model puts its own predictions there.
            (Some(env), None) => state.extend(std::iter::repeat_n(0.0, env.index.len())),
            (None, None) => {}
        }
        if let Some(i) = state.iter().position(|v| !v.is_finite()) {
            let name = self
                .spec
                .state_names
                .as_ref()
                .and_then(|n| n.get(i).cloned())
                .unwrap_or_else(|| format!("#{i}"));
            let what = if i < sd { "state" } else { "environment_state" };
            return bad(format!("{what} value {name} is {}", state[i]));
        }
        Ok(state)
    }
}

impl Policy for VlaPolicy {
    type Error = PolicyError;

    fn reset(&mut self) {
        self.episodes += 1;
        self.rng = rng::substream(self.seed, "policy-noise", self.episodes);
    }

    fn reseed(&mut self, seed: u64) {
        self.set_seed(seed);
    }

    fn perceived(&self) -> Vec<Perceived> {
        self.perceived.clone()
    }

    fn act(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        let mut state = self.check(obs)?;
        if let (true, Some(env)) = (self.model.has_oracle(), &self.spec.env_state) {
            // Every perceived entry gets the truth here; the model keeps it only where the
            // oracle says (`Vla::with_oracle`).
            let truth = env.select(&obs.environment_state).map_err(|e| {
                PolicyError::Observation(format!("the oracle needs the true positions: {e}"))
            })?;
            if let Some((name, v)) = env.names.iter().zip(&truth).find(|(_, v)| !v.is_finite()) {
                return Err(PolicyError::Observation(format!(
                    "environment_state value {name} is {v}"
                )));
            }
            let n = state.len() - truth.len();
            state[n..].copy_from_slice(&truth);
        }
        let s = self.spec.model.image_size;
        let mut images = Vec::with_capacity(self.spec.cameras.len() * 3 * s * s);
        for name in &self.spec.cameras {
            let img = &obs.images[name];
            let px = resize_rgb(&img.rgb, img.height, img.width, s);
            push_chw(&mut images, &px, s, (0, 0), (1.0, 1.0));
        }
        self.spec.state_norm.normalize(&mut state);
        let (h, a) = (self.spec.model.chunk, self.spec.model.action_dim);
        let host = crate::data::HostBatch {
            size: 1,
            images,
            texts: vec![obs.instruction.clone()],
            text_index: vec![0],
            state,
            aux: Vec::new(),
            pixels: Vec::new(),
            shifts: Vec::new(),
            action: Vec::new(),
            valid: Vec::new(),
            noise: Vec::new(),
            t: Vec::new(),
        };
        let mut input = self.batcher.input(&host, &self.device)?;
        let features = match &self.text_cache {
            Some((text, features)) if *text == obs.instruction => features.clone(),
            _ => {
                let features = self.model.encode_text(input.text.clone());
                self.text_cache = Some((obs.instruction.clone(), features.clone()));
                features
            }
        };
        input.text = TextInput::Encoded {
            features,
            index: Tensor::from_data(TensorData::new(vec![0i64], [1]), &self.device),
        };
        let noise = (self.model.head() == Head::Flow).then(|| {
            let v: Vec<f32> = (0..h * a).map(|_| normal(&mut self.rng)).collect();
            Tensor::<3>::from_data(TensorData::new(v, [1, h, a]), &self.device)
        });
        let (chunk, perceived) = self.model.predict_perceiving(input, noise);
        if let (Some(p), Some(env), Some(norm)) =
            (perceived, &self.spec.env_state, &self.spec.aux_norm)
        {
            let mut values: Vec<f32> =
                p.into_data().convert::<f32>().try_into_vec().map_err(|e| {
                    PolicyError::Observation(format!("reading the perception: {e:?}"))
                })?;
            norm.unnormalize(&mut values);
            // The truth, in the same terms (relative to the origin when the policy is).
            let truth = env.select(&obs.environment_state).ok();
            self.perceived = env
                .names
                .iter()
                .zip(values)
                .enumerate()
                .map(|(i, (name, value))| Perceived {
                    name: name.clone(),
                    value,
                    truth: truth.as_ref().map(|t| t[i]),
                })
                .collect();
        }
        let mut out: Vec<f32> = chunk
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| PolicyError::Observation(format!("reading the model output: {e:?}")))?;
        self.spec.action_norm.unnormalize(&mut out);
        Ok(ActionChunk {
            actions: out.chunks(a).map(<[f32]>::to_vec).collect(),
        })
    }
}
