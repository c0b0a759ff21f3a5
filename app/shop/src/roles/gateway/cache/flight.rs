//! One fetch per key at a time: the first caller for a key runs the fetch,
//! the others that arrive while it runs wait for it and get a copy of its
//! outcome. A miss storm (a hot product expiring under load, or every key at
//! once after Redis is flushed) reaches the catalog once per key per gateway
//! replica, not once per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

/// The fetches in flight, by key.
#[derive(Debug)]
pub struct Flights<T> {
    in_flight: Arc<Mutex<HashMap<String, Arc<OnceCell<T>>>>>,
    /// Off: every caller runs its own fetch.
    coalesce: bool,
}

impl<T> Clone for Flights<T> {
    fn clone(&self) -> Self {
        Self {
            in_flight: Arc::clone(&self.in_flight),
            coalesce: self.coalesce,
        }
    }
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self::new(true)
    }
}

impl<T> Flights<T> {
    /// Flights that share fetches when `coalesce`, else run each one.
    pub fn new(coalesce: bool) -> Self {
        Self {
            in_flight: Arc::default(),
            coalesce,
        }
    }
}

impl<T: Clone> Flights<T> {
    /// `fetch`'s outcome, or that of the fetch for `key` already running.
    /// If the caller running it is cancelled, a waiting caller runs its own
    /// `fetch` instead (tokio's `OnceCell::get_or_init`).
    pub async fn run<F, Fut>(&self, key: &str, fetch: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        if !self.coalesce {
            return fetch().await;
        }
        let cell = Arc::clone(self.lock().entry(key.to_owned()).or_default());
        let outcome = cell.get_or_init(fetch).await.clone();
        // The first caller back ends the flight: later arrivals start anew.
        let mut in_flight = self.lock();
        if in_flight
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            in_flight.remove(key);
        }
        outcome
    }

    /// How many keys are being fetched.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is being fetched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<T>>>> {
        // A poisoned map is still a valid map.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_per_key() {
        let flights: Flights<u32> = Flights::default();
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut callers = Vec::new();
        for i in 0..20 {
            let (flights, fetches, mut released) =
                (flights.clone(), fetches.clone(), released.clone());
            let key = if i % 2 == 0 { "a" } else { "b" };
            callers.push(tokio::spawn(async move {
                flights
                    .run(key, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        // Every caller is waiting before the fetch ends.
                        let _ = released.wait_for(|go| *go).await;
                        7
                    })
                    .await
            }));
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while flights.len() < 2 {
            assert!(
                tokio::time::Instant::now() < until,
                "the fetches never started"
            );
            tokio::task::yield_now().await;
        }
        // Let every caller reach the cell before the fetches end.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 7);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch per key");
        assert!(flights.is_empty(), "finished flights are forgotten");
    }

    #[tokio::test]
    async fn without_coalescing_every_caller_fetches() {
        let flights: Flights<usize> = Flights::new(false);
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let callers: Vec<_> = (0..5)
            .map(|_| {
                let (flights, fetches, mut released) =
                    (flights.clone(), fetches.clone(), released.clone());
                tokio::spawn(async move {
                    flights
                        .run("a", || async move {
                            let n = fetches.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|go| *go).await;
                            n
                        })
                        .await
                })
            })
            .collect();
        // All five fetches run at once: none waits for another's.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while fetches.load(Ordering::SeqCst) < 5 {
            assert!(
                tokio::time::Instant::now() < until,
                "only {} fetches started",
                fetches.load(Ordering::SeqCst)
            );
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        let mut seen = Vec::new();
        for caller in callers {
            seen.push(caller.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3, 4], "each caller got its own fetch");
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_later_caller_fetches_anew() {
        let flights: Flights<u32> = Flights::default();
        assert_eq!(flights.run("a", || async { 1 }).await, 1);
        assert_eq!(flights.run("a", || async { 2 }).await, 2);
    }
}
