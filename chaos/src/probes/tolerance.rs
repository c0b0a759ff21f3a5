//! Checking numbers against a [`Tolerance`].

use std::fmt;

use crate::experiment::Tolerance;

impl Tolerance {
    /// Whether one value is within the tolerance (`non_empty` accepts any
    /// value, `empty` none).
    pub fn accepts(&self, value: f64) -> bool {
        match self {
            Tolerance::Range([low, high]) => (*low..=*high).contains(&value),
            Tolerance::Equals(expected) => {
                (value - expected).abs() <= f64::EPSILON * expected.abs().max(1.0)
            }
            Tolerance::AtMost(max) => value <= *max,
            Tolerance::AtLeast(min) => value >= *min,
            Tolerance::NonEmpty => true,
            Tolerance::Empty => false,
        }
    }

    /// Whether a set of values (PromQL samples, SQL rows) is within the
    /// tolerance: every value must be, and there must be one unless the
    /// tolerance is `empty`.
    pub fn accepts_all(&self, values: &[f64]) -> bool {
        match self {
            Tolerance::Empty => values.is_empty(),
            Tolerance::NonEmpty => !values.is_empty(),
            _ => !values.is_empty() && values.iter().all(|v| self.accepts(*v)),
        }
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Range([low, high]) => write!(f, "within [{low}, {high}]"),
            Tolerance::Equals(value) => write!(f, "= {value}"),
            Tolerance::AtMost(value) => write!(f, "≤ {value}"),
            Tolerance::AtLeast(value) => write!(f, "≥ {value}"),
            Tolerance::NonEmpty => f.write_str("non-empty"),
            Tolerance::Empty => f.write_str("empty"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sets_of_values() {
        assert!(Tolerance::NonEmpty.accepts_all(&[0.0]));
        assert!(!Tolerance::NonEmpty.accepts_all(&[]));
        assert!(Tolerance::Empty.accepts_all(&[]));
        assert!(!Tolerance::AtMost(1.0).accepts_all(&[]));
        assert!(!Tolerance::AtMost(1.0).accepts_all(&[0.5, 2.0]));
        assert!(Tolerance::Equals(0.0).accepts(0.0));
        assert!(!Tolerance::Equals(0.0).accepts(1e-9));
    }

    proptest! {
        #[test]
        fn a_range_is_at_least_and_at_most(low in -1e6f64..1e6, width in 0f64..1e6, v in -2e6f64..2e6) {
            let high = low + width;
            prop_assert_eq!(
                Tolerance::Range([low, high]).accepts(v),
                Tolerance::AtLeast(low).accepts(v) && Tolerance::AtMost(high).accepts(v)
            );
        }
    }
}
