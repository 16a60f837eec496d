//! Normalization of state and action vectors from dataset statistics, stored with a
//! checkpoint so inference un-normalizes actions exactly as training normalized them.

use serde::{Deserialize, Serialize};

use crate::PolicyError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormMode {
    /// (x - mean) / std.
    MeanStd,
    /// Maps [q01, q99] to [-1, 1] (pi0's choice; robust to outliers).
    Quantile,
}

/// Per-dimension affine normalization `(x - shift) / scale`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub mode: NormMode,
    pub shift: Vec<f32>,
    pub scale: Vec<f32>,
    /// Dimensions the model does not see: they normalize to 0 whatever their value (see
    /// [`crate::train::TrainConfig::state_ignore`]). Empty = none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<bool>,
}

/// Smallest scale used, so constant dimensions (a gripper never used) do not blow up.
const MIN_SCALE: f32 = 1e-4;

impl Normalizer {
    /// From `mean`/`std` (MeanStd) or `q01`/`q99` (Quantile), one value per dimension.
    pub fn new(mode: NormMode, a: &[f32], b: &[f32]) -> Result<Self, PolicyError> {
        if a.len() != b.len() || a.is_empty() {
            return Err(PolicyError::Config(format!(
                "normalization statistics have {} and {} values; need the same non-zero number",
                a.len(),
                b.len()
            )));
        }
        if let Some(i) = a.iter().chain(b).position(|v| !v.is_finite()) {
            return Err(PolicyError::Config(format!(
                "normalization statistic {i} is not finite"
            )));
        }
        let (shift, scale) = match mode {
            NormMode::MeanStd => (
                a.to_vec(),
                b.iter().map(|s| s.abs().max(MIN_SCALE)).collect(),
            ),
            NormMode::Quantile => (
                a.iter().zip(b).map(|(lo, hi)| 0.5 * (lo + hi)).collect(),
                a.iter()
                    .zip(b)
                    .map(|(lo, hi)| (0.5 * (hi - lo)).abs().max(MIN_SCALE))
                    .collect(),
            ),
        };
        Ok(Normalizer {
            mode,
            shift,
            scale,
            ignored: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.shift.len()
    }

    pub fn normalize(&self, x: &mut [f32]) {
        for (i, v) in x.iter_mut().enumerate() {
            let k = i % self.dim();
            *v = if self.ignored.get(k).copied().unwrap_or(false) {
                0.0
            } else {
                (*v - self.shift[k]) / self.scale[k]
            };
        }
    }

    pub fn unnormalize(&self, x: &mut [f32]) {
        for (i, v) in x.iter_mut().enumerate() {
            let k = i % self.dim();
            *v = *v * self.scale[k] + self.shift[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_map_to_minus_one_and_one() {
        let n = Normalizer::new(NormMode::Quantile, &[-2.0, 0.0], &[2.0, 10.0]).unwrap();
        let mut x = [-2.0, 10.0, 2.0, 0.0];
        n.normalize(&mut x);
        assert_eq!(x, [-1.0, 1.0, 1.0, -1.0]);
        assert!(Normalizer::new(NormMode::MeanStd, &[0.0], &[]).is_err());
        assert!(Normalizer::new(NormMode::MeanStd, &[f32::NAN], &[1.0]).is_err());
    }

    #[test]
    fn ignored_dimensions_normalize_to_zero_and_old_files_ignore_none() {
        let mut n = Normalizer::new(NormMode::MeanStd, &[1.0, 1.0], &[2.0, 2.0]).unwrap();
        n.ignored = vec![false, true];
        let mut x = [5.0, 5.0, -3.0, 1e9];
        n.normalize(&mut x);
        assert_eq!(x, [2.0, 0.0, -2.0, 0.0]);
        let old: Normalizer =
            serde_json::from_str(r#"{"mode":"mean_std","shift":[0.0],"scale":[1.0]}"#).unwrap();
        assert!(old.ignored.is_empty());
    }

    proptest! {
        #[test]
        fn unnormalize_inverts_normalize(mean in proptest::collection::vec(-10.0f32..10.0, 1..8), x in proptest::collection::vec(-100.0f32..100.0, 1..32)) {
            let std: Vec<f32> = mean.iter().map(|m| 0.1 + m.abs()).collect();
            let n = Normalizer::new(NormMode::MeanStd, &mean, &std).unwrap();
            let mut y = x.clone();
            n.normalize(&mut y);
            n.unnormalize(&mut y);
            for (a, b) in x.iter().zip(&y) {
                prop_assert!((a - b).abs() <= 1e-3 * (1.0 + a.abs()));
            }
        }
    }
}
