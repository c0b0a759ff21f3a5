//! Polling with a deadline, shared by the chaos engine's test binaries
//! (each includes this file: `#[path = "../common/eventually.rs"]`).

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, failing after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not true after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
