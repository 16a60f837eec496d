//! Feature statistics as LeRobot stores them: min/max/mean/std/count and the quantiles
//! q01/q10/q50/q90/q99, per episode (episodes parquet) and aggregated (`meta/stats.json`).
//!
//! Per-episode numbers are exact (quantiles by linear interpolation, numpy's default; LeRobot
//! approximates them with a 5,000-bin histogram). Aggregation follows LeRobot's definitions so
//! the files mean the same thing in both tools: min/max/count exact, mean and std pooled
//! exactly, quantiles the count-weighted mean of the per-episode quantiles. Image statistics
//! are per channel, scaled to [0, 1] and shaped `(C, 1, 1)` in JSON, as LeRobot does.

use serde_json::{Map, Value, json};

pub const QUANTILES: [(&str, f64); 5] = [
    ("q01", 0.01),
    ("q10", 0.10),
    ("q50", 0.50),
    ("q90", 0.90),
    ("q99", 0.99),
];

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub count: u64,
    /// One vector per entry of [`QUANTILES`].
    pub quantiles: [Vec<f64>; 5],
    /// Per-channel image stats, written as `(C, 1, 1)` nested lists.
    pub image: bool,
}

impl FeatureStats {
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Exact stats of `n` rows of `dim` values each (row-major).
    pub fn from_rows(values: &[f64], dim: usize) -> Option<Self> {
        if dim == 0 || values.is_empty() || !values.len().is_multiple_of(dim) {
            return None;
        }
        let n = values.len() / dim;
        let mut s = FeatureStats::empty(dim, false);
        s.count = n as u64;
        let mut column = Vec::with_capacity(n);
        for d in 0..dim {
            column.clear();
            column.extend(values.iter().skip(d).step_by(dim).copied());
            let mean = column.iter().sum::<f64>() / n as f64;
            let var = column.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
            column.sort_by(f64::total_cmp);
            s.min[d] = column[0];
            s.max[d] = column[n - 1];
            s.mean[d] = mean;
            s.std[d] = var.sqrt();
            for (qi, (_, q)) in QUANTILES.iter().enumerate() {
                s.quantiles[qi][d] = quantile_sorted(&column, *q);
            }
        }
        Some(s)
    }

    /// Per-channel stats of 8-bit images from per-channel 256-bin histograms, scaled to [0, 1].
    /// `frames` is the number of frames the histograms came from (LeRobot's `count`).
    pub fn from_u8_histograms(hist: &[[u64; 256]], frames: u64) -> Option<Self> {
        let channels = hist.len();
        let mut s = FeatureStats::empty(channels, true);
        s.count = frames;
        for (c, h) in hist.iter().enumerate() {
            let total: u64 = h.iter().sum();
            if total == 0 {
                return None;
            }
            let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
            let hi = h.iter().rposition(|&n| n > 0).unwrap_or(255);
            let mean = h
                .iter()
                .enumerate()
                .map(|(v, &n)| v as f64 * n as f64)
                .sum::<f64>()
                / total as f64;
            let var = h
                .iter()
                .enumerate()
                .map(|(v, &n)| (v as f64 - mean).powi(2) * n as f64)
                .sum::<f64>()
                / total as f64;
            s.min[c] = lo as f64 / 255.0;
            s.max[c] = hi as f64 / 255.0;
            s.mean[c] = mean / 255.0;
            s.std[c] = var.sqrt() / 255.0;
            for (qi, (_, q)) in QUANTILES.iter().enumerate() {
                s.quantiles[qi][c] = quantile_hist(h, total, *q) / 255.0;
            }
        }
        Some(s)
    }

    fn empty(dim: usize, image: bool) -> Self {
        let z = vec![0.0; dim];
        FeatureStats {
            min: z.clone(),
            max: z.clone(),
            mean: z.clone(),
            std: z.clone(),
            count: 0,
            quantiles: [z.clone(), z.clone(), z.clone(), z.clone(), z],
            image,
        }
    }

    /// LeRobot's aggregation of per-episode stats into dataset stats.
    pub fn aggregate(parts: &[&FeatureStats]) -> Option<Self> {
        let first = parts.first()?;
        let dim = first.dim();
        if parts.iter().any(|p| p.dim() != dim) {
            return None;
        }
        let total: u64 = parts.iter().map(|p| p.count).sum();
        if total == 0 {
            return None;
        }
        let mut s = FeatureStats::empty(dim, first.image);
        s.count = total;
        for d in 0..dim {
            s.min[d] = parts.iter().map(|p| p.min[d]).fold(f64::INFINITY, f64::min);
            s.max[d] = parts
                .iter()
                .map(|p| p.max[d])
                .fold(f64::NEG_INFINITY, f64::max);
            let w = |p: &FeatureStats| p.count as f64 / total as f64;
            let mean: f64 = parts.iter().map(|p| p.mean[d] * w(p)).sum();
            // Pooled variance: E[x²] − mean², with each part's E[x²] = std² + mean².
            let ex2: f64 = parts
                .iter()
                .map(|p| (p.std[d].powi(2) + p.mean[d].powi(2)) * w(p))
                .sum();
            s.mean[d] = mean;
            s.std[d] = (ex2 - mean * mean).max(0.0).sqrt();
            for qi in 0..QUANTILES.len() {
                s.quantiles[qi][d] = parts.iter().map(|p| p.quantiles[qi][d] * w(p)).sum();
            }
        }
        Some(s)
    }

    /// JSON object as in `meta/stats.json`.
    pub fn to_json(&self) -> Value {
        let shape = |v: &[f64]| -> Value {
            if self.image {
                Value::Array(v.iter().map(|x| json!([[x]])).collect())
            } else {
                json!(v)
            }
        };
        let mut o = Map::new();
        o.insert("min".into(), shape(&self.min));
        o.insert("max".into(), shape(&self.max));
        o.insert("mean".into(), shape(&self.mean));
        o.insert("std".into(), shape(&self.std));
        o.insert("count".into(), json!([self.count]));
        for (qi, (name, _)) in QUANTILES.iter().enumerate() {
            o.insert((*name).into(), shape(&self.quantiles[qi]));
        }
        Value::Object(o)
    }

    /// Parse a stats object; quantiles are optional (older datasets lack them) and then
    /// filled from min/mean/max so consumers always see a complete record.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let o = v.as_object().ok_or("expected an object")?;
        let get = |k: &str| -> Result<Option<(Vec<f64>, bool)>, String> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => flatten(v).map(Some).map_err(|e| format!("`{k}`: {e}")),
            }
        };
        let (min, image) = get("min")?.ok_or("missing `min`")?;
        let (max, _) = get("max")?.ok_or("missing `max`")?;
        let (mean, _) = get("mean")?.ok_or("missing `mean`")?;
        let (std, _) = get("std")?.ok_or("missing `std`")?;
        let dim = mean.len();
        if [min.len(), max.len(), std.len()].iter().any(|&l| l != dim) {
            return Err(format!(
                "min/max/mean/std have different lengths ({}, {}, {}, {})",
                min.len(),
                max.len(),
                dim,
                std.len()
            ));
        }
        let count = match o.get("count") {
            Some(v) => flatten(v)?.0.first().copied().unwrap_or(0.0).max(0.0) as u64,
            None => 0,
        };
        let mut quantiles: [Vec<f64>; 5] = Default::default();
        for (qi, (name, q)) in QUANTILES.iter().enumerate() {
            quantiles[qi] = match get(name)? {
                Some((v, _)) if v.len() == dim => v,
                Some((v, _)) => {
                    return Err(format!("`{name}` has {} values, expected {dim}", v.len()));
                }
                None if *q < 0.5 => min.clone(),
                None if *q > 0.5 => max.clone(),
                None => mean.clone(),
            };
        }
        Ok(FeatureStats {
            min,
            max,
            mean,
            std,
            count,
            quantiles,
            image,
        })
    }
}

/// Flatten nested numeric lists; `true` if any nesting was found (image-style `(C,1,1)`).
fn flatten(v: &Value) -> Result<(Vec<f64>, bool), String> {
    fn walk(v: &Value, depth: usize, out: &mut Vec<f64>, nested: &mut bool) -> Result<(), String> {
        match v {
            Value::Number(n) => {
                out.push(n.as_f64().ok_or("not a number")?);
                Ok(())
            }
            // JSON has no NaN/inf; serde_json writes them as null (e.g. the mean of values
            // that overflow f64). Read them back as NaN rather than rejecting the file.
            Value::Null => {
                out.push(f64::NAN);
                Ok(())
            }
            Value::Array(a) => {
                if depth > 0 {
                    *nested = true;
                }
                if depth > 8 {
                    return Err("nested too deeply".into());
                }
                a.iter().try_for_each(|x| walk(x, depth + 1, out, nested))
            }
            other => Err(format!("expected numbers, got {other}")),
        }
    }
    let mut out = Vec::new();
    let mut nested = false;
    walk(v, 0, &mut out, &mut nested)?;
    Ok((out, nested))
}

/// numpy's default (linear) quantile of sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

fn quantile_hist(h: &[u64; 256], total: u64, q: f64) -> f64 {
    // Same linear interpolation as quantile_sorted over the (virtual) sorted pixel values.
    let pos = q * (total - 1) as f64;
    let lo = pos.floor() as u64;
    let frac = pos - lo as f64;
    let value_at = |rank: u64| -> f64 {
        let mut seen = 0;
        for (v, &n) in h.iter().enumerate() {
            seen += n;
            if rank < seen {
                return v as f64;
            }
        }
        255.0
    };
    let a = value_at(lo);
    let b = value_at((lo + 1).min(total - 1));
    a + (b - a) * frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_numeric_stats() {
        let s = FeatureStats::from_rows(&[1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0], 2).unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.min, vec![1.0, 10.0]);
        assert_eq!(s.max, vec![4.0, 40.0]);
        assert_eq!(s.mean, vec![2.5, 25.0]);
        assert!((s.std[0] - 1.118_033_988_7).abs() < 1e-9);
        assert!((s.quantiles[2][0] - 2.5).abs() < 1e-12);
        assert!((s.quantiles[0][0] - 1.03).abs() < 1e-12);
    }

    #[test]
    fn image_json_is_c11_and_parses_back() {
        let mut h = [[0u64; 256]; 3];
        for ch in &mut h {
            ch[0] = 10;
            ch[255] = 10;
        }
        let s = FeatureStats::from_u8_histograms(&h, 5).unwrap();
        assert_eq!(s.mean, vec![0.5; 3]);
        let j = s.to_json();
        assert_eq!(j["mean"], json!([[[0.5]], [[0.5]], [[0.5]]]));
        assert_eq!(j["count"], json!([5]));
        assert_eq!(FeatureStats::from_json(&j).unwrap(), s);
    }

    proptest! {
        #[test]
        fn aggregate_matches_whole(a in prop::collection::vec(-1e3f64..1e3, 1..40), b in prop::collection::vec(-1e3f64..1e3, 1..40)) {
            let sa = FeatureStats::from_rows(&a, 1).unwrap();
            let sb = FeatureStats::from_rows(&b, 1).unwrap();
            let all: Vec<f64> = a.iter().chain(&b).copied().collect();
            let whole = FeatureStats::from_rows(&all, 1).unwrap();
            let agg = FeatureStats::aggregate(&[&sa, &sb]).unwrap();
            prop_assert_eq!(agg.count, whole.count);
            prop_assert_eq!(agg.min[0], whole.min[0]);
            prop_assert_eq!(agg.max[0], whole.max[0]);
            prop_assert!((agg.mean[0] - whole.mean[0]).abs() < 1e-6);
            prop_assert!((agg.std[0] - whole.std[0]).abs() < 1e-5);
        }

        #[test]
        fn histogram_quantiles_match_sorting(px in prop::collection::vec(0u8..=255, 1..500)) {
            let mut h = [[0u64; 256]; 1];
            for &p in &px { h[0][p as usize] += 1; }
            let s = FeatureStats::from_u8_histograms(&h, 1).unwrap();
            let vals: Vec<f64> = px.iter().map(|&p| f64::from(p) / 255.0).collect();
            let exact = FeatureStats::from_rows(&vals, 1).unwrap();
            for qi in 0..5 {
                prop_assert!((s.quantiles[qi][0] - exact.quantiles[qi][0]).abs() < 1e-9);
            }
            prop_assert!((s.mean[0] - exact.mean[0]).abs() < 1e-9);
        }
    }
}
