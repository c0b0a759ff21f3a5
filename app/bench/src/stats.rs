//! The median and spread of a figure over the rounds.

use serde::{Deserialize, Serialize};

/// A figure over the rounds: its median, quartiles and extremes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    /// First quartile (25th percentile, linear interpolation).
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    pub min: f64,
    pub max: f64,
    /// Rounds with a finite value.
    pub n: usize,
}

impl Summary {
    /// Summarises the finite values; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            median: quantile(&sorted, 0.5),
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            n: sorted.len(),
        })
    }
}

/// The `q` quantile of sorted, non-empty `values`, interpolating linearly.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let fraction = position - position.floor();
    sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
}

/// `a / b`, NaN when either is not a positive finite number.
pub fn ratio(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() && b > 0.0 && a >= 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quartiles() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(
            (s.median, s.q1, s.q3, s.min, s.max, s.n),
            (3.0, 2.0, 4.0, 1.0, 5.0, 5)
        );
        let s = Summary::of(&[1.0, 2.0]).unwrap();
        assert_eq!(s.median, 1.5);
        assert_eq!(Summary::of(&[7.0]).unwrap().median, 7.0);
    }

    #[test]
    fn non_finite_values_are_left_out() {
        let s = Summary::of(&[f64::NAN, 2.0, f64::INFINITY, 4.0]).unwrap();
        assert_eq!((s.median, s.n), (3.0, 2));
        assert!(Summary::of(&[f64::NAN]).is_none());
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn ratios_of_nonsense_are_nan() {
        assert_eq!(ratio(1.0, 4.0), 0.25);
        assert!(ratio(1.0, 0.0).is_nan());
        assert!(ratio(f64::NAN, 1.0).is_nan());
        assert!(ratio(-1.0, 1.0).is_nan());
    }
}
