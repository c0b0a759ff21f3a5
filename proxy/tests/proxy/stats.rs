//! Per-toxic stats on real traffic: the evidence that a toxic took effect.

use std::io::ErrorKind;
use std::time::Duration;

use faultline_proxy::toxics::{Latency, LimitData, ResetPeer, ToxicKind};
use faultline_proxy::{NewToxic, Stream, ToxicStats, ToxicUpdate};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::{Harness, blob_server, echo_server, eventually, pattern, round_trip, within};

fn latency(ms: u64) -> ToxicKind {
    ToxicKind::Latency(Latency {
        latency: Duration::from_millis(ms),
        jitter: Duration::ZERO,
    })
}

async fn stats(h: &Harness, proxy: &str, toxic: &str) -> ToxicStats {
    h.client
        .toxic(proxy, toxic)
        .await
        .unwrap()
        .stats
        .expect("this proxy always shows stats")
}

#[tokio::test]
async fn latency_counts_its_connections_and_the_bytes_it_delayed() {
    let h = Harness::start().await;
    let addr = h.proxy("delayed", echo_server().await).await;
    h.client
        .add_toxic("delayed", &NewToxic::new(&latency(20)).with_name("slow"))
        .await
        .unwrap();
    h.client
        .add_toxic(
            "delayed",
            &NewToxic::new(&latency(20))
                .with_name("never")
                .with_stream(Stream::Upstream)
                .with_toxicity(0.0),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"0123456789").await, b"0123456789");
    }
    assert_eq!(
        stats(&h, "delayed", "slow").await,
        ToxicStats {
            connections: 2,
            bytes: 20,
            ..ToxicStats::default()
        }
    );
    assert_eq!(stats(&h, "delayed", "never").await, ToxicStats::default());

    // An update keeps the counters; adding the toxic again starts from zero.
    let mut attributes = serde_json::Map::new();
    attributes.insert("latency".into(), json!(30));
    let updated = h
        .client
        .update_toxic(
            "delayed",
            "slow",
            &ToxicUpdate {
                attributes,
                ..ToxicUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.stats.unwrap().bytes, 20);
    h.client.remove_toxic("delayed", "slow").await.unwrap();
    let again = h
        .client
        .add_toxic("delayed", &NewToxic::new(&latency(20)).with_name("slow"))
        .await
        .unwrap();
    assert_eq!(again.stats, Some(ToxicStats::default()));
    h.stop().await;
}

#[tokio::test]
async fn reset_peer_counts_the_connections_it_reset() {
    let h = Harness::start().await;
    let addr = h.proxy("resetting", echo_server().await).await;
    h.client
        .add_toxic(
            "resetting",
            &NewToxic::new(&ToxicKind::ResetPeer(ResetPeer {
                timeout: Duration::ZERO,
            })),
        )
        .await
        .unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8];
    match within("the reset", stream.read(&mut buf)).await {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}"),
        Ok(n) => panic!("read {n} bytes instead of a reset"),
    }
    let counted = eventually("the reset to be counted", || async {
        let stats = stats(&h, "resetting", "reset_peer_downstream").await;
        (stats.resets == 1).then_some(stats)
    })
    .await;
    assert_eq!(counted.connections, 1);
    assert_eq!(counted.closes, 0);
    h.stop().await;
}

#[tokio::test]
async fn limit_data_counts_the_connections_it_closed() {
    let h = Harness::start().await;
    let addr = h.proxy("limited", blob_server(pattern(10_000)).await).await;
    h.client
        .add_toxic(
            "limited",
            &NewToxic::new(&ToxicKind::LimitData(LimitData { bytes: 100 })),
        )
        .await
        .unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    within("the close", stream.read_to_end(&mut received))
        .await
        .unwrap();
    assert_eq!(received, pattern(100));
    let counted = eventually("the close to be counted", || async {
        let stats = stats(&h, "limited", "limit_data_downstream").await;
        (stats.closes == 1).then_some(stats)
    })
    .await;
    assert_eq!(counted.connections, 1);
    assert_eq!(counted.resets, 0);
    // The bytes it dropped: what it had read past the limit.
    assert!(counted.bytes <= 9_900, "{counted:?}");
    h.stop().await;
}
