//! Retries under a budget: at most one retry per call, only for calls that are
//! safe to repeat (GET, DELETE, and POSTs carrying an `Idempotency-Key`), and
//! only while retries stay under a share of recent traffic (tower's
//! `TpsBudget`), so a struggling upstream is not hit by a retry storm.

use std::time::Duration;

use axum::http::{HeaderMap, Method};
use tower::retry::budget::{Budget, TpsBudget};

use crate::headers::IDEMPOTENCY_KEY;

/// A retry budget for one upstream.
#[derive(Debug)]
pub struct RetryBudget {
    budget: TpsBudget,
}

impl Default for RetryBudget {
    /// Retries may add 20% to the last 10 s of calls, plus 5 per second.
    fn default() -> Self {
        Self {
            budget: TpsBudget::new(Duration::from_secs(10), 5, 0.2),
        }
    }
}

impl RetryBudget {
    /// Every first attempt earns credit.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Spends credit for a retry; false when the budget is exhausted.
    pub fn withdraw(&self) -> bool {
        self.budget.withdraw()
    }
}

/// Is a call safe to send twice?
pub fn is_retryable(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::PUT
    ) || (*method == Method::POST && headers.contains_key(&IDEMPOTENCY_KEY))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn only_idempotent_calls_are_retried() {
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k"));
        assert!(is_retryable(&Method::GET, &HeaderMap::new()));
        assert!(is_retryable(&Method::DELETE, &HeaderMap::new()));
        assert!(!is_retryable(&Method::POST, &HeaderMap::new()));
        assert!(is_retryable(&Method::POST, &keyed));
        assert!(!is_retryable(&Method::PATCH, &HeaderMap::new()));
    }

    proptest! {
        /// Whatever the mix of calls, retries granted stay within the
        /// budget's share of deposits plus its per-second floor.
        #[test]
        fn retries_stay_within_the_budget(calls in 1_usize..2000, retry_every in 1_usize..5) {
            let budget = RetryBudget::default();
            let mut granted = 0_usize;
            for call in 0..calls {
                budget.deposit();
                if call % retry_every == 0 && budget.withdraw() {
                    granted += 1;
                }
            }
            // 20% of deposits, plus 5/s over the 10 s window = 50 of reserve.
            let ceiling = calls / 5 + 50 + 1;
            prop_assert!(granted <= ceiling, "{granted} retries for {calls} calls");
        }
    }
}
