//! Feature specs: what each column of a dataset holds (LeRobot's `features` in info.json).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Element type of a feature, with LeRobot's spelling (`"float32"`, `"video"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Bool,
    #[serde(rename = "uint8")]
    UInt8,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    /// A camera stream stored as PNG bytes inside the data parquet (HF `Image`).
    Image,
    /// A camera stream stored in MP4 files beside the parquet.
    Video,
}

impl DType {
    pub fn as_str(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::UInt8 => "uint8",
            DType::Int32 => "int32",
            DType::Int64 => "int64",
            DType::Float32 => "float32",
            DType::Float64 => "float64",
            DType::String => "string",
            DType::Image => "image",
            DType::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "bool" => DType::Bool,
            "uint8" => DType::UInt8,
            "int32" => DType::Int32,
            "int64" => DType::Int64,
            "float32" => DType::Float32,
            "float64" => DType::Float64,
            "string" => DType::String,
            "image" => DType::Image,
            "video" => DType::Video,
            _ => return None,
        })
    }

    pub fn is_visual(self) -> bool {
        matches!(self, DType::Image | DType::Video)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a feature is stored, derived from its dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// Numbers in parquet: a scalar when shape is `[1]`, else a fixed-size list.
    Numeric,
    Text,
    Image,
    Video,
}

/// Axis order of an image feature. LeRobot records `[H, W, C]`; some older or third-party
/// datasets declare `[C, H, W]`. mulli keeps pixels HWC in memory either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayout {
    Hwc,
    Chw,
}

/// One feature of a dataset: name, dtype, shape, optional per-axis names and extra info.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    #[serde(skip)]
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// LeRobot allows `null`, a list of names, or a dict like `{"motors": [...]}`.
    #[serde(default)]
    pub names: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

impl FeatureSpec {
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<usize>) -> Self {
        FeatureSpec {
            name: name.into(),
            dtype,
            shape,
            names: serde_json::Value::Null,
            info: None,
        }
    }

    /// A float32 vector with named axes, e.g. the state or the action.
    pub fn vector(name: impl Into<String>, names: &[&str]) -> Self {
        let mut f = FeatureSpec::new(name, DType::Float32, vec![names.len()]);
        f.names = serde_json::json!(names);
        f
    }

    /// An RGB camera stream `[H, W, 3]` stored as video (`video = true`) or PNG images.
    pub fn camera(name: impl Into<String>, height: usize, width: usize, video: bool) -> Self {
        let dtype = if video { DType::Video } else { DType::Image };
        let mut f = FeatureSpec::new(name, dtype, vec![height, width, 3]);
        f.names = serde_json::json!(["height", "width", "channels"]);
        f
    }

    pub fn kind(&self) -> FeatureKind {
        match self.dtype {
            DType::Image => FeatureKind::Image,
            DType::Video => FeatureKind::Video,
            DType::String => FeatureKind::Text,
            _ => FeatureKind::Numeric,
        }
    }

    /// Number of scalar elements per frame.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image layout from axis names when given, else from which axis looks like channels.
    pub fn image_layout(&self) -> ImageLayout {
        if let Some(names) = self.names.as_array() {
            let first = names.first().and_then(|v| v.as_str()).unwrap_or("");
            if matches!(first, "channels" | "channel" | "c" | "C") {
                return ImageLayout::Chw;
            }
            if !names.is_empty() {
                return ImageLayout::Hwc;
            }
        }
        match self.shape.as_slice() {
            [c, _, w] if matches!(c, 1 | 3 | 4) && !matches!(w, 1 | 3 | 4) => ImageLayout::Chw,
            _ => ImageLayout::Hwc,
        }
    }

    /// `(height, width, channels)` of an image/video feature, whatever its declared layout.
    pub fn image_hwc(&self) -> Result<(usize, usize, usize), CoreError> {
        let [a, b, c] = self.shape.as_slice() else {
            return Err(CoreError::Invalid {
                feature: self.name.clone(),
                message: format!("image shape must have 3 axes, got {:?}", self.shape),
            });
        };
        Ok(match self.image_layout() {
            ImageLayout::Hwc => (*a, *b, *c),
            ImageLayout::Chw => (*b, *c, *a),
        })
    }

    /// Axis names as a flat list of strings, when the dataset gave them.
    pub fn axis_names(&self) -> Vec<String> {
        let list = match &self.names {
            serde_json::Value::Array(a) => a.clone(),
            serde_json::Value::Object(o) => o
                .values()
                .next()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }
}

/// The features of a dataset, by name, in declaration order.
pub type Features = BTreeMap<String, FeatureSpec>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_from_names_and_shape() {
        let hwc = FeatureSpec::camera("cam", 96, 64, true);
        assert_eq!(hwc.image_hwc().unwrap(), (96, 64, 3));
        let mut chw = FeatureSpec::new("cam", DType::Video, vec![3, 96, 64]);
        assert_eq!(chw.image_layout(), ImageLayout::Chw);
        assert_eq!(chw.image_hwc().unwrap(), (96, 64, 3));
        chw.names = serde_json::json!(["channels", "height", "width"]);
        assert_eq!(chw.image_hwc().unwrap(), (96, 64, 3));
        let bad = FeatureSpec::new("cam", DType::Video, vec![96, 64]);
        assert!(bad.image_hwc().is_err());
    }

    #[test]
    fn dtype_names_round_trip() {
        for d in [
            DType::Bool,
            DType::UInt8,
            DType::Int32,
            DType::Int64,
            DType::Float32,
            DType::Float64,
            DType::String,
            DType::Image,
            DType::Video,
        ] {
            assert_eq!(DType::parse(d.as_str()), Some(d));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
    }
}
