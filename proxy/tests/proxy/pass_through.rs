//! Connections without toxics take the pass-through path: toxics added to
//! them act on the next bytes, even while a write is blocked, and their bytes
//! and close reasons count as on the pipeline path.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faultline_proxy::toxics::{LimitData, ResetPeer, ToxicKind};
use faultline_proxy::{NewToxic, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Harness, echo_server, eventually, metric_value, round_trip, within};

/// Waits until `series` reads `expected` at `/metrics`.
async fn metric_reaches(h: &Harness, series: &str, expected: f64) {
    eventually(&format!("{series} = {expected}"), || async {
        (metric_value(h, series).await == Some(expected)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_toxic_added_to_a_pass_through_connection_acts_on_the_next_bytes() {
    let h = Harness::start().await;
    let addr = h.proxy("next", echo_server().await).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Both directions pass through: no toxic yet.
    assert_eq!(round_trip(&mut stream, b"0123456789").await, b"0123456789");

    h.client
        .add_toxic(
            "next",
            &NewToxic::new(&ToxicKind::LimitData(LimitData { bytes: 4 }))
                .with_stream(Stream::Downstream),
        )
        .await
        .unwrap();
    stream.write_all(b"abcdefgh").await.unwrap();
    let mut echoed = Vec::new();
    within("the limited echo", stream.read_to_end(&mut echoed))
        .await
        .unwrap();
    assert_eq!(echoed, b"abcd", "the limit counts from the toxic on");

    metric_reaches(
        &h,
        r#"proxy_connections_closed_total{proxy="next",reason="toxic"}"#,
        1.0,
    )
    .await;
    for (series, bytes) in [
        (
            r#"proxy_bytes_total{proxy="next",direction="upstream"}"#,
            18.0,
        ),
        (
            r#"proxy_bytes_total{proxy="next",direction="downstream"}"#,
            14.0,
        ),
    ] {
        assert_eq!(metric_value(&h, series).await, Some(bytes), "{series}");
    }
    h.stop().await;
}

/// An upstream that accepts and never reads, holding its connections open.
async fn deaf_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test]
async fn a_toxic_added_while_a_write_is_blocked_acts_at_once() {
    let h = Harness::start().await;
    let addr = h.proxy("blocked", deaf_server().await).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (_read, mut write) = stream.into_split();
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            loop {
                if let Err(err) = write.write_all(&chunk).await {
                    return err;
                }
                sent.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        })
    };
    // Every buffer on the way fills, the proxy's write to the server
    // included: the writer makes no progress over 20 polls in a row (about
    // 200 ms at the poll interval of `eventually`).
    let (mut last, mut unchanged) = (usize::MAX, 0);
    eventually("the writer stalls", || {
        let now = sent.load(Ordering::Relaxed);
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
        let stalled = unchanged >= 20;
        async move { stalled.then_some(()) }
    })
    .await;

    h.client
        .add_toxic(
            "blocked",
            &NewToxic::new(&ToxicKind::ResetPeer(ResetPeer {
                timeout: Duration::ZERO,
            }))
            .with_stream(Stream::Upstream),
        )
        .await
        .unwrap();
    let err = within("the reset", writer).await.unwrap();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{err}"
    );
    metric_reaches(
        &h,
        r#"proxy_connections_closed_total{proxy="blocked",reason="reset"}"#,
        1.0,
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_peer_reset_is_passed_on_and_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 5];
        socket.read_exact(&mut hello).await.unwrap();
        // Closing with SO_LINGER 0 sends a RST.
        socket.set_zero_linger().unwrap();
    });
    let h = Harness::start().await;
    let addr = h.proxy("reset-by-peer", upstream).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let err = within("the reset", stream.read(&mut buf))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    metric_reaches(
        &h,
        r#"proxy_connections_closed_total{proxy="reset-by-peer",reason="peer_error"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        metric_value(
            &h,
            r#"proxy_bytes_total{proxy="reset-by-peer",direction="upstream"}"#
        )
        .await,
        Some(5.0)
    );
    h.stop().await;
}

#[tokio::test]
async fn disabling_the_proxy_closes_pass_through_connections() {
    let h = Harness::start().await;
    let addr = h.proxy("stopping", echo_server().await).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"up").await, b"up");
    h.client.set_enabled("stopping", false).await.unwrap();
    let mut buf = [0u8; 16];
    let read = within("the close", stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(0)), "{read:?}");
    metric_reaches(
        &h,
        r#"proxy_connections_closed_total{proxy="stopping",reason="stopped"}"#,
        1.0,
    )
    .await;
    h.stop().await;
}
