//! `meta/info.json`: the schema and counters of a LeRobot dataset (v3.0 and v2.1).
//!
//! Parsed by hand from a `serde_json::Value` rather than derived, so that every problem names
//! the field and the value, and so the known variations of real datasets are accepted: fps as a
//! float (`30.0`), `names` as null/list/dict, `video.is_depth_map` or `is_depth_map`, unknown
//! keys (kept and written back untouched).

use std::path::{Path, PathBuf};

use mulli_core::{DType, FeatureSpec, Features};
use serde_json::{Map, Value, json};

use crate::error::{DataError, Result};

pub const V30: &str = "v3.0";
pub const V21: &str = "v2.1";
pub const DEFAULT_CHUNK_SIZE: usize = 1000;
pub const DEFAULT_DATA_FILE_SIZE_MB: u64 = 100;
pub const DEFAULT_VIDEO_FILE_SIZE_MB: u64 = 200;
pub const V30_DATA_PATH: &str = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
pub const V30_VIDEO_PATH: &str =
    "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4";
pub const V30_EPISODES_PATH: &str =
    "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";

/// The columns LeRobot adds to every dataset.
pub const INDEX_COLUMNS: [&str; 5] = [
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
];

/// Dataset format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V21,
    V30,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    pub version: Version,
    pub fps: u32,
    /// All features, including LeRobot's index columns.
    pub features: Features,
    pub total_episodes: usize,
    pub total_frames: usize,
    pub total_tasks: usize,
    pub chunks_size: usize,
    pub data_files_size_in_mb: u64,
    pub video_files_size_in_mb: u64,
    pub data_path: String,
    pub video_path: Option<String>,
    pub robot_type: Option<String>,
    pub splits: Map<String, Value>,
    /// Keys mulli does not interpret, written back as they were (`tools`, `total_videos`...).
    pub extra: Map<String, Value>,
}

impl DatasetInfo {
    /// A fresh v3.0 info for `user_features` (LeRobot's index columns are added).
    pub fn new_v30(fps: u32, robot_type: Option<String>, user_features: &Features) -> Self {
        let mut features = user_features.clone();
        for f in default_features() {
            features.insert(f.name.clone(), f);
        }
        let has_video = features.values().any(|f| f.dtype == DType::Video);
        DatasetInfo {
            version: Version::V30,
            fps,
            features,
            total_episodes: 0,
            total_frames: 0,
            total_tasks: 0,
            chunks_size: DEFAULT_CHUNK_SIZE,
            data_files_size_in_mb: DEFAULT_DATA_FILE_SIZE_MB,
            video_files_size_in_mb: DEFAULT_VIDEO_FILE_SIZE_MB,
            data_path: V30_DATA_PATH.into(),
            video_path: has_video.then(|| V30_VIDEO_PATH.into()),
            robot_type,
            splits: Map::new(),
            extra: Map::new(),
        }
    }

    /// Features the user records (everything but the index columns).
    pub fn user_features(&self) -> Features {
        self.features
            .iter()
            .filter(|(k, _)| !INDEX_COLUMNS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn video_keys(&self) -> Vec<String> {
        self.keys_of(DType::Video)
    }

    pub fn image_keys(&self) -> Vec<String> {
        self.keys_of(DType::Image)
    }

    fn keys_of(&self, dtype: DType) -> Vec<String> {
        self.features
            .values()
            .filter(|f| f.dtype == dtype)
            .map(|f| f.name.clone())
            .collect()
    }

    /// Read and parse `root/meta/info.json`.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join("meta/info.json");
        let text =
            crate::fsutil::read_existing(&path, "every LeRobot dataset (is this a dataset root?)")?;
        Self::parse(&path, &text)
    }

    /// Parse info.json text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| DataError::Json {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let Value::Object(mut obj) = value else {
            return Err(field_err(path, "(root)", "expected a JSON object"));
        };
        let p = path;
        let version_str = take_str(p, &mut obj, "codebase_version")?;
        let version = match version_str.as_str() {
            V30 => Version::V30,
            V21 => Version::V21,
            _ => {
                return Err(DataError::Version {
                    path: p.to_owned(),
                    version: version_str,
                });
            }
        };
        let fps = take_fps(p, &mut obj)?;
        let features = take_features(p, &mut obj)?;
        let total_episodes = take_count(p, &mut obj, "total_episodes", Some(0))?;
        let total_frames = take_count(p, &mut obj, "total_frames", Some(0))?;
        let total_tasks = take_count(p, &mut obj, "total_tasks", Some(0))?;
        let chunks_size = take_count(p, &mut obj, "chunks_size", Some(DEFAULT_CHUNK_SIZE))?;
        if chunks_size == 0 {
            return Err(field_err(p, "chunks_size", "must be > 0"));
        }
        let data_files_size_in_mb = take_count(
            p,
            &mut obj,
            "data_files_size_in_mb",
            Some(DEFAULT_DATA_FILE_SIZE_MB as usize),
        )? as u64;
        let video_files_size_in_mb = take_count(
            p,
            &mut obj,
            "video_files_size_in_mb",
            Some(DEFAULT_VIDEO_FILE_SIZE_MB as usize),
        )? as u64;
        let default_data = match version {
            Version::V30 => V30_DATA_PATH,
            Version::V21 => "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        };
        let data_path = match obj.remove("data_path") {
            None | Some(Value::Null) => default_data.to_owned(),
            Some(Value::String(s)) => s,
            Some(v) => {
                return Err(field_err(
                    p,
                    "data_path",
                    format!("expected a string, got {v}"),
                ));
            }
        };
        let video_path = match obj.remove("video_path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v) => {
                return Err(field_err(
                    p,
                    "video_path",
                    format!("expected a string or null, got {v}"),
                ));
            }
        };
        let has_video = features.values().any(|f| f.dtype == DType::Video);
        if has_video && video_path.is_none() {
            return Err(field_err(
                p,
                "video_path",
                "the dataset has video features but no video_path template",
            ));
        }
        let robot_type = match obj.remove("robot_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v) => Some(v.to_string()),
        };
        let splits = match obj.remove("splits") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(v) => {
                return Err(field_err(
                    p,
                    "splits",
                    format!("expected an object, got {v}"),
                ));
            }
        };
        Ok(DatasetInfo {
            version,
            fps,
            features,
            total_episodes,
            total_frames,
            total_tasks,
            chunks_size,
            data_files_size_in_mb,
            video_files_size_in_mb,
            data_path,
            video_path,
            robot_type,
            splits,
            extra: obj,
        })
    }

    /// info.json as LeRobot v3.0 writes it.
    pub fn to_json(&self) -> Value {
        let mut feats = Map::new();
        for (name, f) in &self.features {
            let mut o = Map::new();
            o.insert("dtype".into(), json!(f.dtype.as_str()));
            o.insert("shape".into(), json!(f.shape));
            o.insert("names".into(), f.names.clone());
            if let Some(info) = &f.info {
                o.insert("info".into(), info.clone());
            }
            feats.insert(name.clone(), Value::Object(o));
        }
        let mut obj = Map::new();
        obj.insert(
            "codebase_version".into(),
            json!(match self.version {
                Version::V30 => V30,
                Version::V21 => V21,
            }),
        );
        obj.insert("robot_type".into(), json!(self.robot_type));
        obj.insert("total_episodes".into(), json!(self.total_episodes));
        obj.insert("total_frames".into(), json!(self.total_frames));
        obj.insert("total_tasks".into(), json!(self.total_tasks));
        obj.insert("chunks_size".into(), json!(self.chunks_size));
        obj.insert(
            "data_files_size_in_mb".into(),
            json!(self.data_files_size_in_mb),
        );
        obj.insert(
            "video_files_size_in_mb".into(),
            json!(self.video_files_size_in_mb),
        );
        obj.insert("fps".into(), json!(self.fps));
        obj.insert("splits".into(), Value::Object(self.splits.clone()));
        obj.insert("data_path".into(), json!(self.data_path));
        obj.insert("video_path".into(), json!(self.video_path));
        obj.insert("features".into(), Value::Object(feats));
        for (k, v) in &self.extra {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }

    /// Resolve the v3 data path template for a (chunk, file).
    pub fn data_file(&self, chunk: usize, file: usize) -> PathBuf {
        PathBuf::from(fill_template(
            &self.data_path,
            &[("chunk_index", chunk), ("file_index", file)],
            &[],
        ))
    }

    /// Resolve the v3 video path template for a camera and (chunk, file).
    pub fn video_file(&self, key: &str, chunk: usize, file: usize) -> PathBuf {
        let t = self.video_path.as_deref().unwrap_or(V30_VIDEO_PATH);
        PathBuf::from(fill_template(
            t,
            &[("chunk_index", chunk), ("file_index", file)],
            &[("video_key", key)],
        ))
    }
}

/// LeRobot's index columns as features.
pub fn default_features() -> Vec<FeatureSpec> {
    vec![
        FeatureSpec::new("timestamp", DType::Float32, vec![1]),
        FeatureSpec::new("frame_index", DType::Int64, vec![1]),
        FeatureSpec::new("episode_index", DType::Int64, vec![1]),
        FeatureSpec::new("index", DType::Int64, vec![1]),
        FeatureSpec::new("task_index", DType::Int64, vec![1]),
    ]
}

/// Fill a Python-format-style template: `{name:03d}` for numbers, `{name}` for strings.
pub fn fill_template(template: &str, nums: &[(&str, usize)], strs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 1..start + end];
        let (name, fmt) = inner.split_once(':').unwrap_or((inner, ""));
        if let Some((_, n)) = nums.iter().find(|(k, _)| *k == name) {
            let width: usize = fmt
                .trim_end_matches('d')
                .trim_start_matches('0')
                .parse()
                .unwrap_or(0);
            out.push_str(&format!("{n:0width$}"));
        } else if let Some((_, s)) = strs.iter().find(|(k, _)| *k == name) {
            out.push_str(s);
        } else {
            out.push_str(&rest[start..start + end + 1]);
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn field_err(path: &Path, field: &str, message: impl Into<String>) -> DataError {
    DataError::Field {
        path: path.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

fn take_str(p: &Path, obj: &mut Map<String, Value>, key: &str) -> Result<String> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(field_err(p, key, format!("expected a string, got {v}"))),
        None => Err(field_err(p, key, "missing (required)")),
    }
}

fn take_count(
    p: &Path,
    obj: &mut Map<String, Value>,
    key: &str,
    default: Option<usize>,
) -> Result<usize> {
    match obj.remove(key) {
        None | Some(Value::Null) => default.ok_or_else(|| field_err(p, key, "missing (required)")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => {
                usize::try_from(v).map_err(|_| field_err(p, key, format!("{v} is too large")))
            }
            None => match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => Ok(f as usize),
                _ => Err(field_err(
                    p,
                    key,
                    format!("expected a non-negative integer, got {n}"),
                )),
            },
        },
        Some(v) => Err(field_err(
            p,
            key,
            format!("expected a non-negative integer, got {v}"),
        )),
    }
}

/// fps must be a positive whole number; `30.0` is accepted (LeRobot's converter casts it).
fn take_fps(p: &Path, obj: &mut Map<String, Value>) -> Result<u32> {
    match obj.remove("fps") {
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f > 0.0 && f <= 100_000.0 && (f - f.round()).abs() < 1e-6 {
                Ok(f.round() as u32)
            } else {
                Err(field_err(
                    p,
                    "fps",
                    format!("expected a positive whole number of frames per second, got {n}"),
                ))
            }
        }
        Some(v) => Err(field_err(p, "fps", format!("expected a number, got {v}"))),
        None => Err(field_err(p, "fps", "missing (required)")),
    }
}

fn take_features(p: &Path, obj: &mut Map<String, Value>) -> Result<Features> {
    let Some(Value::Object(feats)) = obj.remove("features") else {
        return Err(field_err(p, "features", "missing or not an object"));
    };
    let mut out = Features::new();
    for (name, v) in feats {
        let field = format!("features.{name}");
        let Value::Object(mut f) = v else {
            return Err(field_err(
                p,
                &field,
                "expected an object with dtype and shape",
            ));
        };
        let dtype_s = match f.remove("dtype") {
            Some(Value::String(s)) => s,
            other => {
                return Err(field_err(
                    p,
                    &format!("{field}.dtype"),
                    format!("expected a string, got {}", other.unwrap_or(Value::Null)),
                ));
            }
        };
        let dtype = DType::parse(&dtype_s).ok_or_else(|| {
            field_err(
                p,
                &format!("{field}.dtype"),
                format!("unsupported dtype `{dtype_s}` (expected one of bool, uint8, int32, int64, float32, float64, string, image, video)"),
            )
        })?;
        let shape = match f.remove("shape") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<usize>>>()
                .filter(|s| !s.is_empty() && s.iter().all(|&d| d > 0 && d < 1 << 24))
                .ok_or_else(|| {
                    field_err(
                        p,
                        &format!("{field}.shape"),
                        format!("expected a non-empty list of positive integers, got {a:?}"),
                    )
                })?,
            other => {
                return Err(field_err(
                    p,
                    &format!("{field}.shape"),
                    format!("expected a list, got {}", other.unwrap_or(Value::Null)),
                ));
            }
        };
        if shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .is_none_or(|n| n > 1 << 28)
        {
            return Err(field_err(
                p,
                &format!("{field}.shape"),
                format!("{shape:?} is too large"),
            ));
        }
        let names = f.remove("names").unwrap_or(Value::Null);
        let info = f.remove("info");
        let spec = FeatureSpec {
            name: name.clone(),
            dtype,
            shape,
            names,
            info,
        };
        if dtype.is_visual() {
            spec.image_hwc()
                .map_err(|e| field_err(p, &format!("{field}.shape"), e.to_string()))?;
        }
        out.insert(name, spec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_fill() {
        assert_eq!(
            fill_template(
                V30_VIDEO_PATH,
                &[("chunk_index", 2), ("file_index", 17)],
                &[("video_key", "cam")]
            ),
            "videos/cam/chunk-002/file-017.mp4"
        );
        assert_eq!(
            fill_template(
                "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                &[("episode_chunk", 0), ("episode_index", 42)],
                &[]
            ),
            "data/chunk-000/episode_000042.parquet"
        );
    }

    #[test]
    fn float_fps_and_unknown_keys_are_accepted() {
        let text = r#"{"codebase_version":"v3.0","fps":30.0,"features":{"a":{"dtype":"float32","shape":[2],"names":{"motors":["x","y"]}}},"tools":[1]}"#;
        let info = DatasetInfo::parse(Path::new("info.json"), text).unwrap();
        assert_eq!(info.fps, 30);
        assert_eq!(info.features["a"].axis_names(), vec!["x", "y"]);
        assert_eq!(info.extra["tools"], json!([1]));
        let back = DatasetInfo::parse(Path::new("x"), &info.to_json().to_string()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (r#"{"fps":30,"features":{}}"#, "codebase_version"),
            (
                r#"{"codebase_version":"v3.0","fps":29.97,"features":{}}"#,
                "fps",
            ),
            (
                r#"{"codebase_version":"v3.0","fps":"30","features":{}}"#,
                "fps",
            ),
            (r#"{"codebase_version":"v3.0","fps":30}"#, "features"),
            (
                r#"{"codebase_version":"v3.0","fps":30,"features":{"a":{"dtype":"complex64","shape":[1]}}}"#,
                "features.a.dtype",
            ),
            (
                r#"{"codebase_version":"v3.0","fps":30,"features":{"a":{"dtype":"float32","shape":[-1]}}}"#,
                "features.a.shape",
            ),
            (
                r#"{"codebase_version":"v3.0","fps":30,"features":{"c":{"dtype":"video","shape":[96,96,3]}}}"#,
                "video_path",
            ),
            (
                r#"{"codebase_version":"v3.0","fps":30,"total_frames":-3,"features":{}}"#,
                "total_frames",
            ),
        ];
        for (text, field) in cases {
            let e = DatasetInfo::parse(Path::new("meta/info.json"), text)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(field) && e.contains("meta/info.json"),
                "{text} -> {e}"
            );
        }
        let e = DatasetInfo::parse(
            Path::new("i"),
            r#"{"codebase_version":"v1.6","fps":3,"features":{}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, DataError::Version { .. }));
        assert!(DatasetInfo::parse(Path::new("i"), "{").is_err());
    }
}
