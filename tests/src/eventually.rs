//! Polling with a deadline: the only way tests wait.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

/// The first pause between attempts; it doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(50);
const MAX_INTERVAL: Duration = Duration::from_millis(500);

/// Calls `check` until it returns `Ok`, or fails once `timeout` has passed.
///
/// Each attempt is itself bounded by the time left, so a check that hangs (a
/// request to a paused container, say) cannot outlive the deadline. The error
/// names `what` and the last reason the check gave.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    let mut interval = FIRST_INTERVAL;
    let mut attempts = 0_u32;
    // The reason the last finished attempt gave: an attempt cut short by the
    // deadline says nothing by itself.
    let mut reason: Option<String> = None;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(left, check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => {
                let text = format!("{err:#}");
                reason = Some(text.clone());
                text
            }
            Err(_) => match &reason {
                Some(before) => format!(
                    "the last attempt was still running at the deadline; the one before: {before}"
                ),
                None => "the last attempt was still running at the deadline".to_owned(),
            },
        };
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "timed out after {:.1?} ({attempts} attempts) waiting for {what}; last: {last}",
                now - started
            );
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_success() {
        let calls = Arc::new(AtomicU32::new(0));
        let value = eventually("the third call", Duration::from_secs(10), || {
            let calls = Arc::clone(&calls);
            async move {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => bail!("not yet"),
                    n => Ok(n),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fails_at_the_deadline_with_the_last_reason() {
        let err = eventually("a miracle", Duration::from_secs(2), || async {
            Err::<(), _>(anyhow::anyhow!("still broken"))
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("a miracle"), "{err}");
        assert!(err.contains("still broken"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_cut_by_the_deadline_reports_the_reason_before_it() {
        let calls = Arc::new(AtomicU32::new(0));
        let err = eventually("a slow second call", Duration::from_secs(3), || {
            let calls = Arc::clone(&calls);
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    bail!("the first reason");
                }
                std::future::pending::<anyhow::Result<()>>().await
            }
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("still running"), "{err}");
        assert!(err.contains("the first reason"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_cannot_outlive_the_deadline() {
        let started = Instant::now();
        let err = eventually("a hung call", Duration::from_secs(3), || async {
            std::future::pending::<anyhow::Result<()>>().await
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("still running"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
