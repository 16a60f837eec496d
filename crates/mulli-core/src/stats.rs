//! Small summary statistics shared by the evaluation and the report.

/// Median of the finite values (`None` when there are none); the mean of the middle two for
/// an even count.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn odd_even_empty_and_non_finite() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([]), None);
        assert_eq!(median([f64::NAN, 5.0, f64::INFINITY]), Some(5.0));
    }

    proptest! {
        #[test]
        fn lies_between_min_and_max_whatever_the_order(
            mut v in proptest::collection::vec(-1e6f64..1e6, 1..50)
        ) {
            let m = median(v.iter().copied()).unwrap();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(lo <= m && m <= hi);
            v.reverse();
            prop_assert_eq!(median(v), Some(m));
        }
    }
}
