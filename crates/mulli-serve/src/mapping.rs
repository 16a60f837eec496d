//! What the policy needs ([`PolicyInfo`]), which client keys feed it ([`ObservationMap`]),
//! and the conversion of an openpi observation dict into a [`mulli_core::Observation`].
//!
//! Images: numpy uint8 in HWC (`[H, W, 3]`, openpi's LIBERO/DROID clients) or CHW
//! (`[3, H, W]`, openpi's ALOHA client), or float32/float64 in [0, 1] in either layout (×255,
//! rounded). Other float ranges are refused rather than guessed. Images are resized to the
//! policy's camera size with the same half-pixel bilinear filter the training pipeline uses,
//! when the aspect ratio matches; a different aspect ratio is an error (stretching would feed
//! the policy distorted images silently).
//!
//! A configured key is looked up as a literal key first (`"observation/image"`, openpi's flat
//! convention), then as a `/`-separated path into nested dicts (`{"observation": {"image": …}}`).

use std::collections::BTreeMap;

use mulli_core::{CameraImage, Execution, Observation};
use rmpv::{Value, ValueRef};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ObservationError};
use crate::wire::{self, DType};

/// One camera the policy reads.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInfo {
    pub name: String,
    pub height: usize,
    pub width: usize,
}

/// What a served policy expects and produces; sent to clients in the metadata frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInfo {
    /// Shown to clients (e.g. the run directory).
    pub name: String,
    pub cameras: Vec<CameraInfo>,
    pub state_dim: usize,
    pub state_names: Option<Vec<String>>,
    /// Values of the privileged environment state (object poses) the policy observes;
    /// 0 = it observes none and requests need not carry it.
    pub env_state_dim: usize,
    pub action_dim: usize,
    /// Actions per chunk (openpi's action horizon).
    pub chunk: usize,
    /// How the policy was trained to execute its chunks, so a remote evaluator can match it.
    pub execution: Option<Execution>,
}

/// Client key for each input, as written in the serve config (`[observation]` table). Unset
/// entries take defaults derived from the policy's cameras.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationMapConfig {
    /// Camera name → client key.
    #[serde(default)]
    pub cameras: BTreeMap<String, String>,
    pub state: Option<String>,
    /// Key of the environment state, for policies that observe it
    /// (default `observation/environment_state`).
    pub environment_state: Option<String>,
    pub prompt: Option<String>,
    /// Instruction used when a request has no prompt; without it a missing prompt is an error.
    pub default_prompt: Option<String>,
}

/// The resolved mapping: every policy camera has exactly one client key.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationMap {
    /// (camera, client key) in the policy's camera order.
    pub cameras: Vec<(String, String)>,
    pub state: String,
    /// Set when the policy observes the environment state.
    pub environment_state: Option<String>,
    pub prompt: String,
    pub default_prompt: Option<String>,
}

/// openpi's key for a camera: the first camera is `observation/image`, a camera whose name
/// contains `wrist` is `observation/wrist_image` (LIBERO's names), any other is
/// `observation/<name>_image`.
pub fn default_camera_key(index: usize, name: &str) -> String {
    if name.contains("wrist") {
        "observation/wrist_image".into()
    } else if index == 0 {
        "observation/image".into()
    } else {
        format!("observation/{name}_image")
    }
}

impl ObservationMap {
    pub fn resolve(config: &ObservationMapConfig, info: &PolicyInfo) -> Result<Self, ConfigError> {
        for name in config.cameras.keys() {
            if !info.cameras.iter().any(|c| &c.name == name) {
                return Err(ConfigError::Invalid(format!(
                    "[observation.cameras] names camera `{name}`, but the policy's cameras are {:?}",
                    info.cameras.iter().map(|c| &c.name).collect::<Vec<_>>()
                )));
            }
        }
        let cameras: Vec<(String, String)> = info
            .cameras
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let key = config
                    .cameras
                    .get(&c.name)
                    .cloned()
                    .unwrap_or_else(|| default_camera_key(i, &c.name));
                (c.name.clone(), key)
            })
            .collect();
        let map = ObservationMap {
            cameras,
            state: config
                .state
                .clone()
                .unwrap_or_else(|| "observation/state".into()),
            environment_state: (info.env_state_dim > 0).then(|| {
                config
                    .environment_state
                    .clone()
                    .unwrap_or_else(|| "observation/environment_state".into())
            }),
            prompt: config.prompt.clone().unwrap_or_else(|| "prompt".into()),
            default_prompt: config.default_prompt.clone(),
        };
        let mut keys: Vec<&str> = map.cameras.iter().map(|(_, k)| k.as_str()).collect();
        keys.extend([map.state.as_str(), map.prompt.as_str()]);
        keys.extend(map.environment_state.as_deref());
        for (i, k) in keys.iter().enumerate() {
            if k.is_empty() {
                return Err(ConfigError::Invalid("a client key is empty".into()));
            }
            if keys[..i].contains(k) {
                return Err(ConfigError::Invalid(format!(
                    "client key `{k}` is used for two inputs"
                )));
            }
        }
        Ok(map)
    }

    /// Decode an observation frame for a policy described by `info`.
    pub fn decode(&self, frame: &[u8], info: &PolicyInfo) -> Result<Observation, ObservationError> {
        let value = wire::decode_frame(frame)?;
        let ValueRef::Map(map) = &value else {
            return Err(ObservationError::NotAMap(wire::describe(&value)));
        };
        let missing = |key: &str, feeds: String| ObservationError::Missing {
            key: key.to_string(),
            feeds,
            sent: map
                .iter()
                .filter_map(|(k, _)| wire::key_str(k).map(str::to_string))
                .collect(),
        };
        let mut obs = Observation::default();
        for ((name, key), cam) in self.cameras.iter().zip(&info.cameras) {
            let v = lookup(map, key).ok_or_else(|| missing(key, format!("camera `{name}`")))?;
            let img =
                image(v, cam.height, cam.width).map_err(|message| ObservationError::Invalid {
                    key: key.clone(),
                    message,
                })?;
            obs.images.insert(name.clone(), img);
        }
        let v = lookup(map, &self.state).ok_or_else(|| {
            missing(
                &self.state,
                format!("the proprioceptive state, {} values", info.state_dim),
            )
        })?;
        let names = info.state_names.as_deref();
        obs.state = vector(v, "state", info.state_dim, names).map_err(|message| {
            ObservationError::Invalid {
                key: self.state.clone(),
                message,
            }
        })?;
        if let Some(key) = &self.environment_state {
            let dim = info.env_state_dim;
            let v = lookup(map, key).ok_or_else(|| {
                missing(
                    key,
                    format!("the environment state (object poses), {dim} values"),
                )
            })?;
            obs.environment_state =
                vector(v, "environment_state", dim, None).map_err(|message| {
                    ObservationError::Invalid {
                        key: key.clone(),
                        message,
                    }
                })?;
        }
        obs.instruction = match (lookup(map, &self.prompt), &self.default_prompt) {
            (Some(v), _) => text(v).map_err(|message| ObservationError::Invalid {
                key: self.prompt.clone(),
                message,
            })?,
            (None, Some(d)) => d.clone(),
            (None, None) => return Err(missing(&self.prompt, "the instruction".into())),
        };
        Ok(obs)
    }

    /// Encode an observation as an openpi client would (uint8 HWC images, float32 state,
    /// str prompt, flat keys).
    pub fn encode(&self, obs: &Observation) -> Result<Vec<u8>, String> {
        let mut entries = Vec::with_capacity(self.cameras.len() + 2);
        for (name, key) in &self.cameras {
            let img = obs
                .images
                .get(name)
                .ok_or_else(|| format!("camera `{name}` is missing from the observation"))?;
            if img.rgb.len() != img.width * img.height * 3 {
                return Err(format!(
                    "camera `{name}`: {} bytes for {}×{} RGB8",
                    img.rgb.len(),
                    img.width,
                    img.height
                ));
            }
            entries.push((
                Value::from(key.as_str()),
                wire::ndarray_value(DType::U8, &[img.height, img.width, 3], img.rgb.clone()),
            ));
        }
        entries.push((
            Value::from(self.state.as_str()),
            wire::f32_array(&[obs.state.len()], &obs.state),
        ));
        if let Some(key) = &self.environment_state {
            let env = &obs.environment_state;
            entries.push((
                Value::from(key.as_str()),
                wire::f32_array(&[env.len()], env),
            ));
        }
        entries.push((
            Value::from(self.prompt.as_str()),
            Value::from(obs.instruction.as_str()),
        ));
        Ok(wire::encode(&Value::Map(entries)))
    }
}

/// Literal key first, then a `/`-path through nested maps.
fn lookup<'v, 'a>(map: &'v [(ValueRef<'a>, ValueRef<'a>)], key: &str) -> Option<&'v ValueRef<'a>> {
    if let Some(v) = wire::map_get(map, key) {
        return Some(v);
    }
    let mut parts = key.split('/');
    let mut cur = wire::map_get(map, parts.next()?)?;
    for p in parts {
        let ValueRef::Map(m) = cur else {
            return None;
        };
        cur = wire::map_get(m, p)?;
    }
    Some(cur)
}

fn image(v: &ValueRef<'_>, height: usize, width: usize) -> Result<CameraImage, String> {
    let a = match wire::as_ndarray(v) {
        Some(a) => a.map_err(|e| e.to_string())?,
        None => {
            return Err(format!(
                "expected an image as a numpy array (uint8 [H, W, 3] or [3, H, W]), got {}",
                wire::describe(v)
            ));
        }
    };
    let (h, w, chw) = match a.shape[..] {
        [h, w, 3] if h > 0 && w > 0 => (h, w, false),
        [3, h, w] if h > 0 && w > 0 => (h, w, true),
        _ => {
            return Err(format!(
                "image of shape {:?}; expected [H, W, 3] or [3, H, W] RGB",
                a.shape
            ));
        }
    };
    let n = h * w * 3;
    let mut hwc = vec![0u8; n];
    let index = |y: usize, x: usize, c: usize| {
        if chw {
            (c * h + y) * w + x
        } else {
            (y * w + x) * 3 + c
        }
    };
    match a.dtype {
        DType::U8 if !chw => hwc.copy_from_slice(a.data),
        DType::U8 => {
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        hwc[(y * w + x) * 3 + c] = a.data[index(y, x, c)];
                    }
                }
            }
        }
        DType::F32 | DType::F64 => {
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let v = a.get_f64(index(y, x, c));
                        // A little slack for rounding; anything else is another convention.
                        if !(-1e-3..=1.0 + 1e-3).contains(&v) {
                            return Err(format!(
                                "float image value {v} at (y {y}, x {x}, channel {c}) is outside [0, 1]; send uint8 0–255 or floats in [0, 1]"
                            ));
                        }
                        hwc[(y * w + x) * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                }
            }
        }
        other => {
            return Err(format!(
                "image dtype {}; expected uint8 (|u1) or float in [0, 1] (<f4, <f8)",
                other.numpy()
            ));
        }
    }
    if (h, w) == (height, width) {
        return Ok(CameraImage {
            width,
            height,
            rgb: hwc,
            depth: None,
        });
    }
    // Same aspect ratio within one pixel of rounding.
    if h * width > (w + 1) * height || (h + 1) * width < w * height {
        return Err(format!(
            "image is {h}×{w} (H×W); the policy takes {height}×{width}, and a different aspect ratio would distort it (resize or pad on the client, e.g. openpi's image_tools.resize_with_pad)"
        ));
    }
    Ok(CameraImage {
        width,
        height,
        rgb: resize_rgb(&hwc, h, w, height, width),
        depth: None,
    })
}

/// The one bilinear filter of mulli (the policy's training filter), re-exported for callers
/// that map wire images themselves.
pub use mulli_core::resize_rgb;

/// A float vector of `dim` values (`what` names it in errors; `names` its entries).
fn vector(
    v: &ValueRef<'_>,
    what: &str,
    dim: usize,
    names: Option<&[String]>,
) -> Result<Vec<f32>, String> {
    let listed = || {
        names
            .map(|n| format!(" ({})", n.join(", ")))
            .unwrap_or_default()
    };
    let values: Vec<f32> = match wire::as_ndarray(v) {
        Some(a) => {
            let a = a.map_err(|e| e.to_string())?;
            // [D] or a batch-of-one [1, D].
            if !(a.shape.len() == 1 || (a.shape.len() == 2 && a.shape[0] == 1)) {
                return Err(format!("{what} of shape {:?}; expected [{dim}]", a.shape));
            }
            a.to_f32()
        }
        None => match v {
            ValueRef::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    wire::as_number(x).map(|f| f as f32).ok_or_else(|| {
                        format!("{what} element {i} is {}, not a number", wire::describe(x))
                    })
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(format!(
                    "expected the {what} as a numpy array or a list of numbers, got {}",
                    wire::describe(v)
                ));
            }
        },
    };
    if values.len() != dim {
        return Err(format!(
            "{what} has {} values; the policy expects {dim}{}",
            values.len(),
            listed()
        ));
    }
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        let name = names
            .and_then(|n| n.get(i).cloned())
            .unwrap_or_else(|| format!("#{i}"));
        return Err(format!("{what} value {name} is {}", values[i]));
    }
    Ok(values)
}

fn text(v: &ValueRef<'_>) -> Result<String, String> {
    match v {
        ValueRef::String(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "prompt is not valid UTF-8".to_string()),
        ValueRef::Binary(b) => std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| "prompt is not valid UTF-8".to_string()),
        // A numpy string array (`np.str_` packs as str; an object array cannot be sent).
        other => Err(format!(
            "expected the prompt as a string, got {}",
            wire::describe(other)
        )),
    }
}

// ---- metadata ----------------------------------------------------------------------------

/// The metadata frame: what the policy needs under which key, the action shape, and the
/// execution it was trained with. Keys are str, as openpi's `policy_metadata` dicts are.
pub fn metadata_value(info: &PolicyInfo, map: &ObservationMap) -> Value {
    let s = |x: &str| Value::from(x);
    let cams = map
        .cameras
        .iter()
        .zip(&info.cameras)
        .map(|((name, key), c)| {
            Value::Map(vec![
                (s("name"), s(name)),
                (s("key"), s(key)),
                (s("height"), Value::from(c.height as u64)),
                (s("width"), Value::from(c.width as u64)),
            ])
        })
        .collect();
    let mut m = vec![
        (s("server"), s("mulli-serve")),
        (s("version"), s(env!("CARGO_PKG_VERSION"))),
        (s("policy"), s(&info.name)),
        (s("cameras"), Value::Array(cams)),
        (
            s("image_format"),
            s(
                "numpy uint8 [H, W, 3] or [3, H, W], or float in [0, 1]; resized to the camera's size",
            ),
        ),
        (s("state_key"), s(&map.state)),
        (s("state_dim"), Value::from(info.state_dim as u64)),
        (s("prompt_key"), s(&map.prompt)),
        (s("action_dim"), Value::from(info.action_dim as u64)),
        (s("action_horizon"), Value::from(info.chunk as u64)),
    ];
    if let Some(key) = &map.environment_state {
        m.push((s("environment_state_key"), s(key)));
        m.push((
            s("environment_state_dim"),
            Value::from(info.env_state_dim as u64),
        ));
    }
    if let Some(n) = &info.state_names {
        m.push((
            s("state_names"),
            Value::Array(n.iter().map(|x| s(x)).collect()),
        ));
    }
    match info.execution {
        Some(Execution::RecedingHorizon { execute }) => m.push((
            s("execution"),
            Value::Map(vec![
                (s("mode"), s("receding_horizon")),
                (s("execute"), Value::from(execute as u64)),
            ]),
        )),
        Some(Execution::TemporalEnsemble { decay }) => m.push((
            s("execution"),
            Value::Map(vec![
                (s("mode"), s("temporal_ensemble")),
                (s("decay"), Value::F64(f64::from(decay))),
            ]),
        )),
        None => {}
    }
    Value::Map(m)
}

/// What a client learns from the metadata frame: the policy description and key mapping.
pub fn parse_metadata(frame: &[u8]) -> Result<(PolicyInfo, ObservationMap), String> {
    let v = wire::decode_frame(frame).map_err(|e| e.to_string())?;
    let ValueRef::Map(m) = &v else {
        return Err(format!("metadata is {}, not a map", wire::describe(&v)));
    };
    let get = |k: &str| wire::map_get(m, k).ok_or_else(|| format!("metadata has no `{k}`"));
    let uint = |k: &str, v: &ValueRef<'_>| match v {
        ValueRef::Integer(i) => i
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| format!("metadata `{k}` is negative")),
        _ => Err(format!("metadata `{k}` is not an integer")),
    };
    let string = |k: &str, v: &ValueRef<'_>| match v {
        ValueRef::String(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("metadata `{k}` is not UTF-8")),
        _ => Err(format!("metadata `{k}` is not a string")),
    };
    let ValueRef::Array(cams) = get("cameras")? else {
        return Err("metadata `cameras` is not a list".into());
    };
    let mut cameras = Vec::new();
    let mut keys = Vec::new();
    for c in cams {
        let ValueRef::Map(cm) = c else {
            return Err("metadata camera is not a map".into());
        };
        let f =
            |k: &str| wire::map_get(cm, k).ok_or_else(|| format!("metadata camera has no `{k}`"));
        let name = string("name", f("name")?)?;
        keys.push((name.clone(), string("key", f("key")?)?));
        cameras.push(CameraInfo {
            name,
            height: uint("height", f("height")?)?,
            width: uint("width", f("width")?)?,
        });
    }
    let execution =
        match wire::map_get(m, "execution") {
            Some(ValueRef::Map(e)) => match wire::map_get(e, "mode").and_then(wire::key_str) {
                Some("receding_horizon") => wire::map_get(e, "execute")
                    .and_then(wire::as_number)
                    .map(|x| Execution::RecedingHorizon {
                        execute: x as usize,
                    }),
                Some("temporal_ensemble") => wire::map_get(e, "decay")
                    .and_then(wire::as_number)
                    .map(|x| Execution::TemporalEnsemble { decay: x as f32 }),
                _ => None,
            },
            _ => None,
        };
    let state_names = match wire::map_get(m, "state_names") {
        Some(ValueRef::Array(a)) => Some(
            a.iter()
                .map(|x| string("state_names", x))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    let info = PolicyInfo {
        name: string("policy", get("policy")?)?,
        cameras,
        state_dim: uint("state_dim", get("state_dim")?)?,
        state_names,
        env_state_dim: match wire::map_get(m, "environment_state_dim") {
            Some(v) => uint("environment_state_dim", v)?,
            None => 0,
        },
        action_dim: uint("action_dim", get("action_dim")?)?,
        chunk: uint("action_horizon", get("action_horizon")?)?,
        execution,
    };
    let map = ObservationMap {
        cameras: keys,
        state: string("state_key", get("state_key")?)?,
        environment_state: match wire::map_get(m, "environment_state_key") {
            Some(v) => Some(string("environment_state_key", v)?),
            None => None,
        },
        prompt: string("prompt_key", get("prompt_key")?)?,
        default_prompt: None,
    };
    Ok((info, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "test".into(),
            cameras: vec![
                CameraInfo {
                    name: "agentview".into(),
                    height: 4,
                    width: 4,
                },
                CameraInfo {
                    name: "wrist".into(),
                    height: 4,
                    width: 4,
                },
            ],
            state_dim: 2,
            state_names: Some(vec!["x".into(), "y".into()]),
            env_state_dim: 0,
            action_dim: 3,
            chunk: 5,
            execution: Some(Execution::RecedingHorizon { execute: 4 }),
        }
    }

    fn obs(size: usize) -> Observation {
        let mut o = Observation {
            state: vec![0.5, -1.0],
            instruction: "pick up the apple".into(),
            ..Default::default()
        };
        for (i, name) in ["agentview", "wrist"].iter().enumerate() {
            o.images.insert(
                name.to_string(),
                CameraImage {
                    width: size,
                    height: size,
                    rgb: (0..size * size * 3).map(|p| (p * 7 + i) as u8).collect(),
                    depth: None,
                },
            );
        }
        o
    }

    #[test]
    fn default_keys_follow_openpi_libero() {
        let map = ObservationMap::resolve(&ObservationMapConfig::default(), &info()).unwrap();
        assert_eq!(
            map.cameras,
            [
                ("agentview".into(), "observation/image".into()),
                ("wrist".into(), "observation/wrist_image".into())
            ]
        );
        assert_eq!(map.state, "observation/state");
        assert_eq!(map.prompt, "prompt");
    }

    #[test]
    fn config_is_strict_and_checked_against_the_policy() {
        let c: Result<ObservationMapConfig, _> = toml::from_str("stat = \"x\"");
        assert!(c.unwrap_err().to_string().contains("unknown field"));
        let c: ObservationMapConfig = toml::from_str("[cameras]\nfront = \"img\"").unwrap();
        let e = ObservationMap::resolve(&c, &info())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`front`"), "{e}");
        let c: ObservationMapConfig = toml::from_str("state = \"prompt\"").unwrap();
        assert!(ObservationMap::resolve(&c, &info()).is_err());
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let i = info();
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        let o = obs(4);
        let back = map.decode(&map.encode(&o).unwrap(), &i).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn missing_and_misshaped_inputs_name_the_key() {
        let i = info();
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        let mut o = obs(4);
        o.state.push(1.0);
        let e = map
            .decode(&map.encode(&o).unwrap(), &i)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("observation/state") && e.contains("3 values") && e.contains("(x, y)"),
            "{e}"
        );
        let mut o = obs(4);
        o.images.get_mut("wrist").unwrap().width = 2;
        o.images.get_mut("wrist").unwrap().height = 8;
        o.images.get_mut("wrist").unwrap().rgb.truncate(2 * 8 * 3);
        let e = map
            .decode(&map.encode(&o).unwrap(), &i)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("observation/wrist_image") && e.contains("aspect"),
            "{e}"
        );
        let only_prompt =
            wire::encode(&Value::Map(vec![(Value::from("prompt"), Value::from("x"))]));
        let e = map.decode(&only_prompt, &i).unwrap_err().to_string();
        assert!(
            e.contains("`observation/image` is missing") && e.contains("agentview"),
            "{e}"
        );
        let e = map
            .decode(&wire::encode(&Value::from(3)), &i)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a msgpack map"), "{e}");
    }

    #[test]
    fn chw_float_and_nested_inputs_are_accepted() {
        let i = info();
        let map = ObservationMap::resolve(
            &ObservationMapConfig {
                default_prompt: Some("do it".into()),
                ..Default::default()
            },
            &i,
        )
        .unwrap();
        let hwc = obs(4).images["agentview"].rgb.clone();
        // CHW float32 in [0, 1].
        let mut chw = vec![0f32; 48];
        for y in 0..4 {
            for x in 0..4 {
                for c in 0..3 {
                    chw[(c * 4 + y) * 4 + x] = f32::from(hwc[(y * 4 + x) * 3 + c]) / 255.0;
                }
            }
        }
        let wrist = obs(8).images["wrist"].clone();
        let frame = wire::encode(&Value::Map(vec![(
            Value::from("observation"),
            Value::Map(vec![
                (Value::from("image"), wire::f32_array(&[3, 4, 4], &chw)),
                (
                    Value::from("wrist_image"),
                    wire::ndarray_value(DType::U8, &[8, 8, 3], wrist.rgb.clone()),
                ),
                (
                    Value::from("state"),
                    Value::Array(vec![Value::from(1), Value::F64(2.5)]),
                ),
            ]),
        )]));
        let o = map.decode(&frame, &i).unwrap();
        assert_eq!(o.images["agentview"].rgb, hwc);
        assert_eq!(o.images["wrist"].rgb, resize_rgb(&wrist.rgb, 8, 8, 4, 4));
        assert_eq!(o.state, [1.0, 2.5]);
        assert_eq!(o.instruction, "do it");
    }

    #[test]
    fn float_images_outside_unit_range_are_refused() {
        let i = info();
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        let frame = wire::encode(&Value::Map(vec![(
            Value::from("observation/image"),
            wire::f32_array(&[4, 4, 3], &[200.0; 48]),
        )]));
        let e = map.decode(&frame, &i).unwrap_err().to_string();
        assert!(
            e.contains("observation/image") && e.contains("outside [0, 1]"),
            "{e}"
        );
    }

    /// A policy that observes the environment state reads it from its own key: it round-trips,
    /// is announced in the metadata, and a missing or short one is an error naming the key.
    #[test]
    fn environment_state_has_its_own_key() {
        let i = PolicyInfo {
            env_state_dim: 3,
            ..info()
        };
        assert_eq!(
            ObservationMap::resolve(&Default::default(), &info())
                .unwrap()
                .environment_state,
            None,
            "policies that do not observe it do not ask for it"
        );
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        assert_eq!(
            map.environment_state.as_deref(),
            Some("observation/environment_state")
        );
        let mut o = obs(4);
        o.environment_state = vec![0.1, 0.2, 0.3];
        let back = map.decode(&map.encode(&o).unwrap(), &i).unwrap();
        assert_eq!(back, o);
        let (i2, map2) = parse_metadata(&wire::encode(&metadata_value(&i, &map))).unwrap();
        assert_eq!((i2, map2), (i.clone(), map.clone()));

        o.environment_state.pop();
        let e = map
            .decode(&map.encode(&o).unwrap(), &i)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("observation/environment_state") && e.contains("2 values"),
            "{e}"
        );
        let plain = ObservationMap::resolve(&Default::default(), &info()).unwrap();
        let e = map
            .decode(&plain.encode(&obs(4)).unwrap(), &i)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`observation/environment_state` is missing")
                && e.contains("environment state"),
            "{e}"
        );
        let c: ObservationMapConfig = toml::from_str("environment_state = \"prompt\"").unwrap();
        assert!(
            ObservationMap::resolve(&c, &i).is_err(),
            "keys are distinct"
        );
    }

    #[test]
    fn a_state_only_policy_needs_no_images_and_ignores_sent_ones() {
        let i = PolicyInfo {
            cameras: Vec::new(),
            env_state_dim: 3,
            ..info()
        };
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        assert!(map.cameras.is_empty());
        let mut o = obs(4);
        o.images.clear();
        o.environment_state = vec![0.1, 0.2, 0.3];
        let back = map.decode(&map.encode(&o).unwrap(), &i).unwrap();
        assert_eq!(back, o);
        let (i2, map2) = parse_metadata(&wire::encode(&metadata_value(&i, &map))).unwrap();
        assert_eq!((i2, map2), (i.clone(), map.clone()));
        // A client that also sends its camera images: they are not the policy's business.
        let mut with_images = obs(4);
        with_images.environment_state = o.environment_state.clone();
        let full = ObservationMap::resolve(
            &Default::default(),
            &PolicyInfo {
                env_state_dim: 3,
                ..info()
            },
        )
        .unwrap();
        let back = map.decode(&full.encode(&with_images).unwrap(), &i).unwrap();
        assert!(back.images.is_empty());
        assert_eq!(back.environment_state, o.environment_state);
    }

    #[test]
    fn metadata_round_trips() {
        let i = info();
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        let (i2, map2) = parse_metadata(&wire::encode(&metadata_value(&i, &map))).unwrap();
        assert_eq!(i2, i);
        assert_eq!(map2, map);
    }
}
