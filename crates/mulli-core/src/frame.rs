//! Frames and episodes: what a recorder hands to a dataset writer.

use std::collections::BTreeMap;

use crate::{CoreError, DType, FeatureSpec, Features};

/// The values of one feature in one frame. Images are `U8` in HWC order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Str(String),
}

impl Value {
    pub fn len(&self) -> usize {
        match self {
            Value::Bool(v) => v.len(),
            Value::U8(v) => v.len(),
            Value::I32(v) => v.len(),
            Value::I64(v) => v.len(),
            Value::F32(v) => v.len(),
            Value::F64(v) => v.len(),
            Value::Str(_) => 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::U8(_) => "uint8",
            Value::I32(_) => "int32",
            Value::I64(_) => "int64",
            Value::F32(_) => "float32",
            Value::F64(_) => "float64",
            Value::Str(_) => "string",
        }
    }

    /// The values widened to f64 (for statistics). Strings give nothing.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Value::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            Value::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Value::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Value::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Value::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Value::F64(v) => v.clone(),
            Value::Str(_) => Vec::new(),
        }
    }

    /// Check that this value fits `spec` (dtype and element count).
    pub fn check(&self, spec: &FeatureSpec) -> Result<(), CoreError> {
        let ok = matches!(
            (spec.dtype, self),
            (DType::Bool, Value::Bool(_))
                | (DType::UInt8, Value::U8(_))
                | (DType::Image | DType::Video, Value::U8(_))
                | (DType::Int32, Value::I32(_))
                | (DType::Int64, Value::I64(_))
                | (DType::Float32, Value::F32(_))
                | (DType::Float64, Value::F64(_))
                | (DType::String, Value::Str(_))
        );
        if !ok {
            return Err(CoreError::DType {
                feature: spec.name.clone(),
                expected: spec.dtype.to_string(),
                got: self.type_name().to_owned(),
            });
        }
        if spec.dtype != DType::String && self.len() != spec.numel() {
            return Err(CoreError::Len {
                feature: spec.name.clone(),
                shape: spec.shape.clone(),
                expected: spec.numel(),
                got: self.len(),
            });
        }
        Ok(())
    }
}

/// A task: the natural-language instruction of an episode ("put the ketchup in the fridge").
pub type Task = String;

/// One time step: a value per feature plus the task it belongs to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub values: BTreeMap<String, Value>,
    pub task: Task,
}

impl Frame {
    pub fn new(task: impl Into<String>) -> Self {
        Frame {
            values: BTreeMap::new(),
            task: task.into(),
        }
    }

    pub fn with(mut self, key: impl Into<String>, value: Value) -> Self {
        self.values.insert(key.into(), value);
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Check every user feature is present and well-typed, and nothing unknown is given.
    /// `features` should hold only user features (not LeRobot's default index columns).
    pub fn check(&self, features: &Features) -> Result<(), CoreError> {
        for (name, spec) in features {
            let v = self
                .values
                .get(name)
                .ok_or_else(|| CoreError::MissingFeature(name.clone()))?;
            v.check(spec)?;
        }
        for name in self.values.keys() {
            if !features.contains_key(name) {
                return Err(CoreError::UnknownFeature(name.clone()));
            }
        }
        Ok(())
    }
}

/// A whole recorded episode in memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Episode {
    pub frames: Vec<Frame>,
}

impl Episode {
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    /// The distinct tasks of the episode, in order of first appearance.
    pub fn tasks(&self) -> Vec<Task> {
        let mut out: Vec<Task> = Vec::new();
        for f in &self.frames {
            if !out.contains(&f.task) {
                out.push(f.task.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_check_names_the_problem() {
        let mut feats = Features::new();
        let s = FeatureSpec::vector("observation.state", &["a", "b"]);
        feats.insert(s.name.clone(), s);
        let ok = Frame::new("t").with("observation.state", Value::F32(vec![1.0, 2.0]));
        ok.check(&feats).unwrap();
        let short = Frame::new("t").with("observation.state", Value::F32(vec![1.0]));
        let e = short.check(&feats).unwrap_err().to_string();
        assert!(
            e.contains("observation.state") && e.contains("expected 2"),
            "{e}"
        );
        let wrong = Frame::new("t").with("observation.state", Value::F64(vec![1.0, 2.0]));
        assert!(
            wrong
                .check(&feats)
                .unwrap_err()
                .to_string()
                .contains("float32")
        );
        let missing = Frame::new("t");
        assert_eq!(
            missing.check(&feats).unwrap_err(),
            CoreError::MissingFeature("observation.state".into())
        );
        let extra = ok.clone().with("foo", Value::F32(vec![1.0]));
        assert_eq!(
            extra.check(&feats).unwrap_err(),
            CoreError::UnknownFeature("foo".into())
        );
    }
}
