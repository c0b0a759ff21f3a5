//! `/metrics`: the proxy's series are rendered, and only catalogued names are.

use faultline_proxy::metrics::NAMES;
use faultline_telemetry::Catalog;
use tokio::net::TcpStream;

use crate::support::{Harness, echo_server, eventually, round_trip};

#[test]
fn the_catalog_lists_exactly_the_emitted_names() {
    let catalog = Catalog::embedded().unwrap();
    let mut listed: Vec<&str> = catalog
        .iter()
        .filter(|spec| spec.source == "proxy")
        .map(|spec| spec.name.as_str())
        .collect();
    let mut emitted = NAMES.to_vec();
    listed.sort_unstable();
    emitted.sort_unstable();
    assert_eq!(listed, emitted);
}

#[tokio::test]
async fn metrics_count_connections_bytes_and_toxics() {
    let h = Harness::start().await;
    let addr = h.proxy("metered", echo_server().await).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut stream, b"0123456789").await;
    h.client
        .add_toxic(
            "metered",
            &faultline_proxy::NewToxic::new(&faultline_proxy::ToxicKind::LimitData(
                faultline_proxy::toxics::LimitData { bytes: 1 << 20 },
            )),
        )
        .await
        .unwrap();
    drop(stream);

    let http = reqwest::Client::new();
    let url = format!("{}/metrics", h.server.api_url());
    let text = eventually("the closed connection is counted", || {
        let http = http.clone();
        let url = url.clone();
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            text.contains(r#"proxy_connections_closed_total{proxy="metered",reason="eof"} 1"#)
                .then_some(text)
        }
    })
    .await;
    for expected in [
        r#"proxy_connections_total{proxy="metered"} 1"#,
        r#"proxy_active_connections{proxy="metered"} 0"#,
        r#"proxy_bytes_total{proxy="metered",direction="upstream"} 10"#,
        r#"proxy_bytes_total{proxy="metered",direction="downstream"} 10"#,
        r#"proxy_toxics_active{proxy="metered",type="limit_data"} 1"#,
        r#"proxy_toxics_active{proxy="metered",type="latency"} 0"#,
        r#"proxy_enabled{proxy="metered"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }

    // Every proxy_* series is in the catalog part, with its listed labels.
    let catalog = Catalog::embedded().unwrap();
    for line in text.lines().filter(|line| line.starts_with("proxy_")) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let spec = catalog.metric_of_series(name).unwrap_or_else(|| {
            panic!("{name} is not in the metric catalog (app/telemetry/metrics.toml)")
        });
        if let Some(labels) = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
        {
            for pair in labels.0.split(',') {
                let label = pair.split('=').next().unwrap_or_default();
                assert!(
                    spec.labels.iter().any(|l| l == label),
                    "{name} has unlisted label {label}"
                );
            }
        }
    }
    h.stop().await;
}
