//! Each toxic's effect on real TCP connections, within generous timing bounds.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use faultline_proxy::toxics::{
    Bandwidth, Latency, LimitData, ResetPeer, SlowClose, Timeout, ToxicKind,
};
use faultline_proxy::{NewToxic, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::support::{Harness, blob_server, echo_server, eventually, pattern, round_trip, within};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn latency(latency: u64) -> ToxicKind {
    ToxicKind::Latency(Latency {
        latency: ms(latency),
        jitter: Duration::ZERO,
    })
}

#[tokio::test]
async fn latency_delays_existing_and_new_connections() {
    let h = Harness::start().await;
    let addr = h.proxy("latency", echo_server().await).await;
    let mut existing = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut existing, b"warm").await, b"warm");

    h.client
        .add_toxic("latency", &NewToxic::new(&latency(300)))
        .await
        .unwrap();
    for stream in [&mut existing, &mut TcpStream::connect(addr).await.unwrap()] {
        let start = Instant::now();
        assert_eq!(round_trip(stream, b"ping").await, b"ping");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= ms(300) && elapsed < ms(800),
            "round trip took {elapsed:?}"
        );
    }

    // Both streams: the delay applies each way.
    h.client
        .add_toxic(
            "latency",
            &NewToxic::new(&latency(200)).with_stream(Stream::Upstream),
        )
        .await
        .unwrap();
    let start = Instant::now();
    round_trip(&mut existing, b"pong").await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= ms(500) && elapsed < ms(1000),
        "round trip took {elapsed:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn bandwidth_limits_the_rate() {
    let h = Harness::start().await;
    let addr = h
        .proxy("bandwidth", blob_server(pattern(50_000)).await)
        .await;
    h.client
        .add_toxic(
            "bandwidth",
            &NewToxic::new(&ToxicKind::Bandwidth(Bandwidth {
                rate_kb_per_sec: 100,
            })),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    within("reading the blob", stream.read_to_end(&mut received))
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(received, pattern(50_000));
    // 50 KB at 100 KB/s: 0.5 s.
    assert!(
        elapsed >= ms(450) && elapsed < ms(2000),
        "50 KB took {elapsed:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn reset_peer_resets_the_connection_after_its_timeout() {
    let h = Harness::start().await;
    let addr = h.proxy("reset", echo_server().await).await;
    h.client
        .add_toxic(
            "reset",
            &NewToxic::new(&ToxicKind::ResetPeer(ResetPeer { timeout: ms(300) })),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"before").await, b"before");
    let mut buf = [0u8; 16];
    let err = within("waiting for the reset", stream.read(&mut buf))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(
        start.elapsed() >= ms(300),
        "reset after {:?}",
        start.elapsed()
    );
    h.stop().await;
}

#[tokio::test]
async fn timeout_holds_the_data_then_closes() {
    let h = Harness::start().await;
    let addr = h.proxy("timeout", echo_server().await).await;
    h.client
        .add_toxic(
            "timeout",
            &NewToxic::new(&ToxicKind::Timeout(Timeout { timeout: ms(400) })),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"anyone there?").await.unwrap();
    let mut received = Vec::new();
    let read = within("waiting for the close", stream.read_to_end(&mut received)).await;
    let elapsed = start.elapsed();
    // A clean close, or a reset if the kernel still held unread bytes: either
    // way nothing came through, and not before the timeout.
    if let Err(err) = read {
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    }
    assert!(received.is_empty(), "{received:?}");
    assert!(
        elapsed >= ms(400) && elapsed < ms(2000),
        "closed after {elapsed:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn timeout_zero_holds_until_the_toxic_is_removed() {
    let h = Harness::start().await;
    let addr = h.proxy("blackhole", echo_server().await).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let toxic = h
        .client
        .add_toxic(
            "blackhole",
            &NewToxic::new(&ToxicKind::Timeout(Timeout {
                timeout: Duration::ZERO,
            })),
        )
        .await
        .unwrap();
    stream.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 4];
    let early = tokio::time::timeout(ms(300), stream.read_exact(&mut buf)).await;
    assert!(early.is_err(), "data got through a blackhole: {early:?}");

    h.client
        .remove_toxic("blackhole", &toxic.name)
        .await
        .unwrap();
    within("released data", stream.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"held");
    h.stop().await;
}

#[tokio::test]
async fn limit_data_closes_after_the_limit() {
    let h = Harness::start().await;
    let addr = h.proxy("limit", blob_server(pattern(10_000)).await).await;
    h.client
        .add_toxic(
            "limit",
            &NewToxic::new(&ToxicKind::LimitData(LimitData { bytes: 1000 })),
        )
        .await
        .unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    within("reading to the limit", stream.read_to_end(&mut received))
        .await
        .unwrap();
    assert_eq!(received, pattern(10_000)[..1000]);
    h.stop().await;
}

#[tokio::test]
async fn slow_close_delays_the_close_only() {
    let h = Harness::start().await;
    let addr = h
        .proxy("slow_close", blob_server(b"bye".to_vec()).await)
        .await;
    h.client
        .add_toxic(
            "slow_close",
            &NewToxic::new(&ToxicKind::SlowClose(SlowClose { delay: ms(400) })),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    within("reading to the close", stream.read_to_end(&mut received))
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(received, b"bye");
    assert!(
        elapsed >= ms(400) && elapsed < ms(2000),
        "closed after {elapsed:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn toxicity_zero_spares_every_connection() {
    let h = Harness::start().await;
    let addr = h.proxy("spared", echo_server().await).await;
    h.client
        .add_toxic(
            "spared",
            &NewToxic::new(&ToxicKind::ResetPeer(ResetPeer {
                timeout: Duration::ZERO,
            }))
            .with_toxicity(0.0),
        )
        .await
        .unwrap();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"ok").await, b"ok");
    }
    h.stop().await;
}

/// Streams a long known sequence through an echo upstream while toxics of
/// every buffering kind come and go on both streams, each removed while data
/// is inside it: not a byte may be lost, duplicated or reordered.
#[tokio::test]
async fn toxics_toggled_mid_stream_lose_and_reorder_nothing() {
    const BATCH: usize = 64 * 1024;
    const ROUNDS: usize = 24;
    let h = Harness::start().await;
    let addr = h.proxy("toggle", echo_server().await).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let sent = pattern(BATCH * ROUNDS);
    // The writer sends one batch per permit, so every toxic sees traffic.
    let permits = Arc::new(Semaphore::new(0));
    let writer = {
        let sent = sent.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            for batch in sent.chunks(BATCH) {
                permits.acquire().await.unwrap().forget();
                for chunk in batch.chunks(7919) {
                    write.write_all(chunk).await.unwrap();
                }
            }
            write.shutdown().await.unwrap();
        })
    };
    let progress = Arc::new(AtomicUsize::new(0));
    let reader = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut received = Vec::with_capacity(BATCH * ROUNDS);
            let mut buf = vec![0u8; 65536];
            loop {
                let n = read.read(&mut buf).await.unwrap();
                if n == 0 {
                    return received;
                }
                received.extend_from_slice(&buf[..n]);
                progress.store(received.len(), Ordering::Relaxed);
            }
        })
    };

    let kinds = [
        latency(20),
        ToxicKind::Timeout(Timeout {
            timeout: Duration::ZERO,
        }),
        ToxicKind::Bandwidth(Bandwidth {
            rate_kb_per_sec: 2_000,
        }),
        ToxicKind::SlowClose(SlowClose { delay: ms(5) }),
        ToxicKind::Latency(Latency {
            latency: ms(10),
            jitter: ms(10),
        }),
    ];
    for round in 0..ROUNDS {
        let kind = &kinds[round % kinds.len()];
        let stream = if round % 2 == 0 {
            Stream::Downstream
        } else {
            Stream::Upstream
        };
        let toxic = h
            .client
            .add_toxic("toggle", &NewToxic::new(kind).with_stream(stream))
            .await
            .unwrap();
        let before = progress.load(Ordering::Relaxed);
        permits.add_permits(1);
        // Remove the toxic while the batch is still passing through it (a
        // holding toxic lets nothing through, so give it a moment instead).
        if matches!(kind, ToxicKind::Timeout(_)) {
            tokio::time::sleep(ms(20)).await;
        } else {
            eventually("progress under a toxic", || async {
                (progress.load(Ordering::Relaxed) > before + BATCH / 4).then_some(())
            })
            .await;
        }
        h.client.remove_toxic("toggle", &toxic.name).await.unwrap();
    }
    within("the writer", writer).await.unwrap();
    let received = within("the reader", reader).await.unwrap();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "the echoed bytes differ from those sent");
    h.stop().await;
}
