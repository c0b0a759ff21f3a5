//! Deadline budgets across hops.
//!
//! The inbound middleware reads the caller's remaining budget from the
//! `x-request-timeout-ms` header, caps it with the role's own request timeout,
//! and runs the handler inside [`scope`]. Outbound calls use
//! [`remaining`] to cap their timeout and send what is left downstream, so no
//! service keeps working for a caller that has already given up.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

/// The header carrying the caller's remaining budget, in milliseconds.
pub const REQUEST_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");

tokio::task_local! {
    static DEADLINE: Instant;
}

/// A caller's `x-request-timeout-ms` that is not a whole number of
/// milliseconds of at least 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x-request-timeout-ms must be a whole number of milliseconds, at least 1")]
pub struct InvalidBudget;

/// The caller's budget, if it sent one.
pub fn caller_budget(headers: &HeaderMap) -> Result<Option<Duration>, InvalidBudget> {
    let Some(value) = headers.get(&REQUEST_TIMEOUT_MS) else {
        return Ok(None);
    };
    let millis = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|millis| *millis >= 1)
        .ok_or(InvalidBudget)?;
    Ok(Some(Duration::from_millis(millis)))
}

/// The deadline of a request: its own timeout, or less if the caller said
/// so; an invalid budget is the caller's mistake.
pub fn from_headers(headers: &HeaderMap, own_timeout: Duration) -> Result<Instant, InvalidBudget> {
    let caller = caller_budget(headers)?;
    Ok(Instant::now() + caller.map_or(own_timeout, |budget| budget.min(own_timeout)))
}

/// Runs `future` with `deadline` as the current request's deadline.
pub async fn scope<F: Future>(deadline: Instant, future: F) -> F::Output {
    DEADLINE.scope(deadline, future).await
}

/// Runs `future` with at most `budget` of time: a step with its own time limit
/// inside a request (never beyond the request's deadline).
pub async fn within<F: Future>(budget: Duration, future: F) -> F::Output {
    let own = Instant::now() + budget;
    let deadline = DEADLINE.try_with(|outer| (*outer).min(own)).unwrap_or(own);
    scope(deadline, future).await
}

/// Time left before the current request's deadline; `None` outside a request.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Writes the remaining budget into outbound headers.
pub fn propagate(headers: &mut HeaderMap, budget: Duration) {
    if let Ok(value) = HeaderValue::from_str(&budget.as_millis().to_string()) {
        headers.insert(REQUEST_TIMEOUT_MS, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_callers_budget_caps_the_deadline() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_TIMEOUT_MS, HeaderValue::from_static("300"));
        let deadline = from_headers(&headers, Duration::from_secs(5)).unwrap();
        let left = deadline - Instant::now();
        assert!(left <= Duration::from_millis(300), "{left:?}");
        let deadline = from_headers(&HeaderMap::new(), Duration::from_secs(5)).unwrap();
        assert!(deadline - Instant::now() > Duration::from_secs(4));
    }

    #[test]
    fn a_budget_that_is_not_a_positive_whole_number_is_refused() {
        for bad in ["0", "-1", "soon", "1.5", "99999999999999999999999"] {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_TIMEOUT_MS, HeaderValue::from_static(bad));
            assert_eq!(caller_budget(&headers), Err(InvalidBudget), "{bad}");
        }
    }

    #[tokio::test]
    async fn remaining_is_known_only_inside_a_scope() {
        assert_eq!(remaining(), None);
        let deadline = Instant::now() + Duration::from_secs(2);
        let left = scope(deadline, async { remaining() }).await.unwrap();
        assert!(left <= Duration::from_secs(2) && left > Duration::from_secs(1));
    }
}
