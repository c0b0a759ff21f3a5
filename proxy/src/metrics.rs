//! The proxy's metrics. Names, types, units, labels and help are listed in
//! the metric catalog `app/telemetry/metrics.toml` (source `proxy`); every label set is
//! bounded by the configured proxies and the fixed toxic types and reasons.

use metrics::{Counter, Gauge};

use crate::model::Stream;
use crate::toxics::TOXIC_TYPES;

/// Connections accepted, by proxy.
pub const CONNECTIONS_TOTAL: &str = "proxy_connections_total";
/// Connections ended, by proxy and reason: `eof`, `toxic`, `reset`,
/// `peer_error`, `stopped`, `upstream_unreachable`.
pub const CONNECTIONS_CLOSED_TOTAL: &str = "proxy_connections_closed_total";
/// Connections open now, by proxy.
pub const ACTIVE_CONNECTIONS: &str = "proxy_active_connections";
/// Bytes forwarded, by proxy and direction (`upstream`, `downstream`).
pub const BYTES_TOTAL: &str = "proxy_bytes_total";
/// Toxics configured now, by proxy and toxic type.
pub const TOXICS_ACTIVE: &str = "proxy_toxics_active";
/// 1 when the proxy is enabled (listening), 0 when it is down or deleted.
pub const ENABLED: &str = "proxy_enabled";
/// Leases that ran out, by proxy and kind (`toxic`: the toxic was removed;
/// `proxy`: the proxy was enabled again).
pub const LEASES_EXPIRED_TOTAL: &str = "proxy_leases_expired_total";

/// Every metric name the proxy emits.
pub const NAMES: &[&str] = &[
    CONNECTIONS_TOTAL,
    CONNECTIONS_CLOSED_TOTAL,
    ACTIVE_CONNECTIONS,
    BYTES_TOTAL,
    TOXICS_ACTIVE,
    ENABLED,
    LEASES_EXPIRED_TOTAL,
];

/// Registers the help text of every proxy metric with the global recorder,
/// from the metric catalog (source `proxy`).
pub fn describe() -> Result<(), faultline_telemetry::catalog::CatalogError> {
    faultline_telemetry::catalog::describe_source("proxy")
}

/// Why a proxied connection ended (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Both peers finished normally.
    Eof,
    /// A `timeout` or `limit_data` toxic closed it.
    Toxic,
    /// A `reset_peer` toxic reset it.
    Reset,
    /// A peer reset it or an I/O error ended it.
    PeerError,
    /// The proxy was disabled, changed, deleted or shut down.
    Stopped,
    /// The upstream could not be reached.
    UpstreamUnreachable,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Toxic => "toxic",
            CloseReason::Reset => "reset",
            CloseReason::PeerError => "peer_error",
            CloseReason::Stopped => "stopped",
            CloseReason::UpstreamUnreachable => "upstream_unreachable",
        }
    }
}

/// What a lease kept in place (the `kind` label of `proxy_leases_expired_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseKind {
    /// A toxic, removed when its lease ran out.
    Toxic,
    /// A proxy taken down, enabled again when its lease ran out.
    Proxy,
}

impl LeaseKind {
    pub(crate) const ALL: [LeaseKind; 2] = [LeaseKind::Toxic, LeaseKind::Proxy];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Toxic => "toxic",
            LeaseKind::Proxy => "proxy",
        }
    }
}

/// Metric handles for one proxy, resolved once and shared by its connections.
#[derive(Debug, Clone)]
pub(crate) struct ProxyMetrics {
    proxy: String,
    pub(crate) connections: Counter,
    pub(crate) active: Gauge,
    pub(crate) bytes_upstream: Counter,
    pub(crate) bytes_downstream: Counter,
}

impl ProxyMetrics {
    pub(crate) fn new(proxy: &str) -> Self {
        let label = proxy.to_owned();
        // Every expiry series exists from the start, at 0, so that a
        // dashboard shows the proxy before its first lease runs out.
        for kind in LeaseKind::ALL {
            lease_counter(proxy, kind).increment(0);
        }
        Self {
            proxy: label.clone(),
            connections: metrics::counter!(CONNECTIONS_TOTAL, "proxy" => label.clone()),
            active: metrics::gauge!(ACTIVE_CONNECTIONS, "proxy" => label.clone()),
            bytes_upstream: metrics::counter!(
                BYTES_TOTAL,
                "proxy" => label.clone(),
                "direction" => Stream::Upstream.as_str()
            ),
            bytes_downstream: metrics::counter!(
                BYTES_TOTAL,
                "proxy" => label,
                "direction" => Stream::Downstream.as_str()
            ),
        }
    }

    pub(crate) fn bytes(&self, stream: Stream) -> Counter {
        match stream {
            Stream::Upstream => self.bytes_upstream.clone(),
            Stream::Downstream => self.bytes_downstream.clone(),
        }
    }

    /// Counts a lease that ran out.
    pub(crate) fn lease_expired(&self, kind: LeaseKind) {
        lease_counter(&self.proxy, kind).increment(1);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        metrics::counter!(
            CONNECTIONS_CLOSED_TOTAL,
            "proxy" => self.proxy.clone(),
            "reason" => reason.as_str()
        )
        .increment(1);
    }
}

fn lease_counter(proxy: &str, kind: LeaseKind) -> Counter {
    metrics::counter!(LEASES_EXPIRED_TOTAL, "proxy" => proxy.to_owned(), "kind" => kind.as_str())
}

/// Sets `proxy_enabled{proxy}`.
pub(crate) fn set_enabled(proxy: &str, enabled: bool) {
    metrics::gauge!(ENABLED, "proxy" => proxy.to_owned()).set(if enabled { 1.0 } else { 0.0 });
}

/// Sets `proxy_toxics_active{proxy,type}` for every type, from the types of
/// the proxy's toxics.
pub(crate) fn set_toxics(proxy: &str, types: &[&str]) {
    for toxic_type in TOXIC_TYPES {
        let count = types.iter().filter(|t| *t == toxic_type).count();
        metrics::gauge!(TOXICS_ACTIVE, "proxy" => proxy.to_owned(), "type" => *toxic_type)
            .set(count as f64);
    }
}
