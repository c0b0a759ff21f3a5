//! Leases: leased toxics and proxies undo themselves unless renewed.
//!
//! Waits poll with a deadline. A "witness" toxic with the original lease
//! shows when that lease would have run out, so that no test sleeps to let
//! time pass.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use faultline_proxy::toxics::{Latency, ToxicKind};
use faultline_proxy::{NewToxic, ProxyUpdate, Stream};
use tokio::net::TcpStream;

use crate::support::{Harness, echo_server, eventually, metric_value, round_trip};

const LEASE: Duration = Duration::from_millis(300);

fn latency(ms: u64) -> NewToxic {
    NewToxic::new(&ToxicKind::Latency(Latency {
        latency: Duration::from_millis(ms),
        jitter: Duration::ZERO,
    }))
}

async fn has_toxic(h: &Harness, proxy: &str, toxic: &str) -> bool {
    let toxics = h.client.toxics(proxy).await.unwrap();
    toxics.iter().any(|t| t.name == toxic)
}

async fn until_gone(h: &Harness, proxy: &str, toxic: &str) {
    eventually(&format!("{toxic} to expire"), || async {
        (!has_toxic(h, proxy, toxic).await).then_some(())
    })
    .await;
}

/// Adds a toxic with the original lease, on the upstream stream so that it
/// does not slow the connections of the test.
async fn witness(h: &Harness, proxy: &str) {
    h.client
        .add_toxic(
            proxy,
            &latency(1)
                .with_name("witness")
                .with_stream(Stream::Upstream)
                .with_lease(LEASE),
        )
        .await
        .unwrap();
}

/// `proxy_leases_expired_total{proxy, kind}`, which exists from the proxy's creation.
async fn expired(h: &Harness, proxy: &str, kind: &str) -> f64 {
    let series = format!(r#"proxy_leases_expired_total{{proxy="{proxy}",kind="{kind}"}}"#);
    metric_value(h, &series)
        .await
        .unwrap_or_else(|| panic!("{series} is not rendered"))
}

#[tokio::test]
async fn a_leased_toxic_is_removed_when_its_lease_runs_out() {
    let h = Harness::start().await;
    let addr = h.proxy("leased", echo_server().await).await;
    assert_eq!(
        expired(&h, "leased", "toxic").await,
        0.0,
        "rendered from the start"
    );
    let start = Instant::now();
    let toxic = h
        .client
        .add_toxic("leased", &latency(500).with_name("slow").with_lease(LEASE))
        .await
        .unwrap();
    let remaining = toxic.lease_remaining_ms.unwrap();
    assert!(remaining > 0 && remaining <= 300, "{remaining}");
    assert_eq!(
        h.client.proxy("leased").await.unwrap().lease_remaining_ms,
        None,
        "the proxy itself has no lease"
    );

    until_gone(&h, "leased", "slow").await;
    let elapsed = start.elapsed();
    assert!(elapsed >= LEASE, "removed after {elapsed:?}");
    assert_eq!(expired(&h, "leased", "toxic").await, 1.0);
    assert_eq!(expired(&h, "leased", "proxy").await, 0.0);
    // The latency is gone from new connections.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    round_trip(&mut stream, b"fast").await;
    assert!(start.elapsed() < Duration::from_millis(400));
    h.stop().await;
}

#[tokio::test]
async fn a_renewed_toxic_outlives_its_first_lease_then_expires() {
    let h = Harness::start().await;
    h.proxy("renewed", echo_server().await).await;
    h.client
        .add_toxic("renewed", &latency(10).with_name("kept").with_lease(LEASE))
        .await
        .unwrap();
    witness(&h, "renewed").await;
    let renewed = h
        .client
        .renew_toxic_lease("renewed", "kept", Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(renewed.lease_remaining_ms.unwrap() > 300, "{renewed:?}");
    assert_eq!(
        renewed.stats.unwrap().connections,
        0,
        "renewing keeps the stats"
    );

    until_gone(&h, "renewed", "witness").await;
    let kept = h.client.toxic("renewed", "kept").await.unwrap();
    assert!(kept.lease_remaining_ms.is_some(), "{kept:?}");
    until_gone(&h, "renewed", "kept").await;
    assert_eq!(expired(&h, "renewed", "toxic").await, 2.0);
    h.stop().await;
}

#[tokio::test]
async fn lease_zero_makes_a_toxic_permanent_and_deleting_drops_a_lease() {
    let h = Harness::start().await;
    h.proxy("cleared", echo_server().await).await;
    h.client
        .add_toxic("cleared", &latency(10).with_name("kept").with_lease(LEASE))
        .await
        .unwrap();
    h.client
        .add_toxic(
            "cleared",
            &latency(10).with_name("deleted").with_lease(LEASE),
        )
        .await
        .unwrap();
    witness(&h, "cleared").await;
    let kept = h
        .client
        .renew_toxic_lease("cleared", "kept", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(kept.lease_remaining_ms, None);
    // Deleted and added again without a lease: the old lease is gone with it.
    h.client.remove_toxic("cleared", "deleted").await.unwrap();
    h.client
        .add_toxic("cleared", &latency(10).with_name("deleted"))
        .await
        .unwrap();

    until_gone(&h, "cleared", "witness").await;
    assert!(has_toxic(&h, "cleared", "kept").await);
    assert!(has_toxic(&h, "cleared", "deleted").await);
    assert_eq!(
        expired(&h, "cleared", "toxic").await,
        1.0,
        "the witness only"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_proxy_taken_down_with_a_lease_comes_back_up() {
    let h = Harness::start().await;
    let addr = h.proxy("flaky", echo_server().await).await;
    let down = h.client.disable_with_lease("flaky", LEASE).await.unwrap();
    assert!(!down.enabled);
    let remaining = down.lease_remaining_ms.unwrap();
    assert!(remaining > 0 && remaining <= 300, "{remaining}");
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    let up = eventually("the proxy to come back up", || async {
        let proxy = h.client.proxy("flaky").await.unwrap();
        proxy.enabled.then_some(proxy)
    })
    .await;
    assert_eq!(up.lease_remaining_ms, None);
    assert_eq!(up.listen, addr.to_string());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"back").await, b"back");
    assert_eq!(expired(&h, "flaky", "proxy").await, 1.0);
    assert_eq!(expired(&h, "flaky", "toxic").await, 0.0);
    h.stop().await;
}

#[tokio::test]
async fn a_proxy_lease_renewed_while_down_keeps_it_down_longer_and_zero_keeps_it_down() {
    let h = Harness::start().await;
    let echo = echo_server().await;
    h.proxy("renewed", echo).await;
    h.proxy("cleared", echo).await;
    h.client.disable_with_lease("renewed", LEASE).await.unwrap();
    h.client.disable_with_lease("cleared", LEASE).await.unwrap();
    witness(&h, "renewed").await;
    let renewed = h
        .client
        .renew_proxy_lease("renewed", Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(!renewed.enabled);
    assert!(renewed.lease_remaining_ms.unwrap() > 300, "{renewed:?}");
    let cleared = h
        .client
        .renew_proxy_lease("cleared", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(cleared.lease_remaining_ms, None);

    until_gone(&h, "renewed", "witness").await;
    assert!(!h.client.proxy("renewed").await.unwrap().enabled);
    eventually("the renewed proxy to come back up", || async {
        h.client
            .proxy("renewed")
            .await
            .unwrap()
            .enabled
            .then_some(())
    })
    .await;
    assert!(!h.client.proxy("cleared").await.unwrap().enabled);
    assert_eq!(expired(&h, "cleared", "proxy").await, 0.0);
    // Enabling clears; the proxy then stays up.
    assert!(h.client.set_enabled("cleared", true).await.unwrap().enabled);
    h.stop().await;
}

#[tokio::test]
async fn reset_clears_every_lease() {
    let h = Harness::start().await;
    let echo = echo_server().await;
    h.proxy("toxic", echo).await;
    h.proxy("down", echo).await;
    h.client
        .add_toxic("toxic", &latency(10).with_name("slow").with_lease(LEASE))
        .await
        .unwrap();
    h.client.disable_with_lease("down", LEASE).await.unwrap();
    h.client.reset().await.unwrap();
    for proxy in h.client.proxies().await.unwrap().values() {
        assert!(proxy.enabled && proxy.toxics.is_empty(), "{proxy:?}");
        assert_eq!(proxy.lease_remaining_ms, None);
    }
    // The same toxic again, and the proxy down again, without leases: the
    // old timers must not touch them.
    h.client
        .add_toxic("toxic", &latency(10).with_name("slow"))
        .await
        .unwrap();
    h.client
        .update_proxy("down", &ProxyUpdate::enabled(false))
        .await
        .unwrap();
    witness(&h, "toxic").await;
    until_gone(&h, "toxic", "witness").await;
    assert!(has_toxic(&h, "toxic", "slow").await);
    assert!(!h.client.proxy("down").await.unwrap().enabled);
    assert_eq!(expired(&h, "toxic", "toxic").await, 1.0, "the witness only");
    assert_eq!(expired(&h, "down", "proxy").await, 0.0);
    h.stop().await;
}
