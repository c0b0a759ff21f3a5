//! What the resource faults do while active: leak memory, burn CPU, hold
//! database connections. Each stops when its token is cancelled.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Fault;

/// How often the memory leak allocates.
const LEAK_TICK: Duration = Duration::from_millis(100);

/// Starts the background effect of `fault`, if it has one.
pub(super) fn spawn(fault: &Fault, pool: Option<PgPool>, stop: CancellationToken) {
    match *fault {
        Fault::MemoryLeak {
            bytes_per_second, ..
        } => {
            tokio::spawn(leak(bytes_per_second, stop));
        }
        Fault::CpuBurn { threads, .. } => {
            for _ in 0..threads {
                let stop = stop.clone();
                std::thread::spawn(move || burn(&stop));
            }
        }
        Fault::HoldDbConnections { connections, .. } => {
            if let Some(pool) = pool {
                tokio::spawn(hold(pool, connections, stop));
            }
        }
        Fault::Latency { .. } | Fault::ErrorRatio { .. } => {}
    }
}

/// Allocates and touches `bytes_per_second`, keeping it all until stopped.
async fn leak(bytes_per_second: u64, stop: CancellationToken) {
    let per_tick = usize::try_from(bytes_per_second / 10).unwrap_or(usize::MAX);
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut every = tokio::time::interval(LEAK_TICK);
    loop {
        tokio::select! {
            _ = every.tick() => kept.push(vec![0xA5; per_tick]),
            () = stop.cancelled() => break,
        }
    }
    drop(kept);
}

/// Spins until stopped.
fn burn(stop: &CancellationToken) {
    let mut x: u64 = 1;
    while !stop.is_cancelled() {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

/// Takes `connections` from the pool and keeps them until stopped.
async fn hold(pool: PgPool, connections: u32, stop: CancellationToken) {
    let mut held = Vec::new();
    for _ in 0..connections {
        tokio::select! {
            acquired = pool.acquire() => match acquired {
                Ok(connection) => held.push(connection),
                Err(err) => tracing::warn!(error = %err, held = held.len(), "cannot take another connection"),
            },
            () = stop.cancelled() => return,
        }
    }
    stop.cancelled().await;
    drop(held);
}
