//! The toxics, one module each: their attributes (as the API spells them) and
//! the pipeline stage that applies them to one direction of one connection.
//!
//! | type | attributes | effect |
//! |---|---|---|
//! | `latency` | `latency`, `jitter` (ms) | delays every chunk by `latency` ± `jitter`, keeping order |
//! | `bandwidth` | `rate` (KB/s, 0 = unlimited) | paces the data to `rate` × 1000 bytes per second |
//! | `timeout` | `timeout` (ms) | holds all data; closes the connection after `timeout`, or holds until removed if 0 |
//! | `reset_peer` | `timeout` (ms) | resets the connection (TCP RST) after `timeout`, at once if 0 |
//! | `slow_close` | `delay` (ms) | delays the close (FIN) by `delay` |
//! | `limit_data` | `bytes` | lets `bytes` bytes through, then closes the connection |
//! | `http_abort` | `status`, `body`, `ratio`, matchers | answers picked HTTP requests itself, then closes |
//! | `http_delay` | `latency`, `jitter` (ms), `ratio`, matchers | delays picked HTTP requests |
//!
//! Attributes of the TCP toxics are non-negative integers; a missing
//! attribute is 0. The HTTP toxics (`http/`, upstream only) add a required
//! `status`, a `ratio` (0 to 1, default 1), strings and an object of headers.
//! An attribute the toxic does not know is rejected.

mod bandwidth;
mod buffer;
pub mod http;
mod latency;
mod limit_data;
mod reset_peer;
mod slow_close;
mod timeout;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

pub use bandwidth::Bandwidth;
pub use http::{HttpAbort, HttpDelay};
pub use latency::Latency;
pub use limit_data::LimitData;
pub use reset_peer::ResetPeer;
pub use slow_close::SlowClose;
pub use timeout::Timeout;

use crate::error::ProxyError;
use crate::stage::Stage;
use crate::stats::ToxicCounters;

/// Every toxic type this proxy implements, as the API names them.
pub const TOXIC_TYPES: &[&str] = &[
    "latency",
    "bandwidth",
    "timeout",
    "reset_peer",
    "slow_close",
    "limit_data",
    "http_abort",
    "http_delay",
];

/// The longest duration an attribute may give: one day.
pub const MAX_ATTRIBUTE_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A toxic's type and attributes, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToxicKind {
    Latency(Latency),
    Bandwidth(Bandwidth),
    Timeout(Timeout),
    ResetPeer(ResetPeer),
    SlowClose(SlowClose),
    LimitData(LimitData),
    HttpAbort(HttpAbort),
    HttpDelay(HttpDelay),
}

impl ToxicKind {
    /// The API name of this toxic's type, e.g. `"reset_peer"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency(_) => latency::TYPE,
            ToxicKind::Bandwidth(_) => bandwidth::TYPE,
            ToxicKind::Timeout(_) => timeout::TYPE,
            ToxicKind::ResetPeer(_) => reset_peer::TYPE,
            ToxicKind::SlowClose(_) => slow_close::TYPE,
            ToxicKind::LimitData(_) => limit_data::TYPE,
            ToxicKind::HttpAbort(_) => http::ABORT_TYPE,
            ToxicKind::HttpDelay(_) => http::DELAY_TYPE,
        }
    }

    /// Whether the toxic only makes sense on the `upstream` stream (the HTTP
    /// toxics act on requests, which travel client → server).
    pub fn upstream_only(&self) -> bool {
        matches!(self, ToxicKind::HttpAbort(_) | ToxicKind::HttpDelay(_))
    }

    /// Parses a type name and its attributes, as the API receives them.
    pub fn from_attributes(
        type_name: &str,
        attributes: &Map<String, Value>,
    ) -> Result<Self, ProxyError> {
        let mut attrs = Attributes::new(type_name, attributes);
        let kind = match type_name {
            latency::TYPE => ToxicKind::Latency(Latency::parse(&mut attrs)?),
            bandwidth::TYPE => ToxicKind::Bandwidth(Bandwidth::parse(&mut attrs)?),
            timeout::TYPE => ToxicKind::Timeout(Timeout::parse(&mut attrs)?),
            reset_peer::TYPE => ToxicKind::ResetPeer(ResetPeer::parse(&mut attrs)?),
            slow_close::TYPE => ToxicKind::SlowClose(SlowClose::parse(&mut attrs)?),
            limit_data::TYPE => ToxicKind::LimitData(LimitData::parse(&mut attrs)?),
            http::ABORT_TYPE => ToxicKind::HttpAbort(HttpAbort::parse(&mut attrs)?),
            http::DELAY_TYPE => ToxicKind::HttpDelay(HttpDelay::parse(&mut attrs)?),
            other => return Err(ProxyError::UnknownToxicType(other.to_owned())),
        };
        attrs.finish()?;
        Ok(kind)
    }

    /// Every attribute, defaults included, as the API shows them.
    pub fn attributes(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let mut put = |key: &str, value: u64| {
            map.insert(key.to_owned(), Value::from(value));
        };
        match self {
            ToxicKind::Latency(t) => {
                put("latency", millis(t.latency));
                put("jitter", millis(t.jitter));
            }
            ToxicKind::Bandwidth(t) => put("rate", t.rate_kb_per_sec),
            ToxicKind::Timeout(t) => put("timeout", millis(t.timeout)),
            ToxicKind::ResetPeer(t) => put("timeout", millis(t.timeout)),
            ToxicKind::SlowClose(t) => put("delay", millis(t.delay)),
            ToxicKind::LimitData(t) => put("bytes", t.bytes),
            ToxicKind::HttpAbort(t) => t.put_attributes(&mut map),
            ToxicKind::HttpDelay(t) => t.put_attributes(&mut map),
        }
        map
    }

    /// This toxic with some attributes replaced (the others keep their values).
    pub fn with_attributes(&self, changes: &Map<String, Value>) -> Result<Self, ProxyError> {
        let mut merged = self.attributes();
        for (key, value) in changes {
            merged.insert(key.clone(), value.clone());
        }
        Self::from_attributes(self.type_name(), &merged)
    }

    /// A fresh stage applying this toxic to one direction of one connection.
    ///
    /// `stats` are the toxic's counters; a stage that sees something the
    /// pipeline cannot (a close it decides, bytes it drops, a request it
    /// matches) keeps a clone and counts it (see [`crate::stats`]).
    pub(crate) fn stage(&self, now: Instant, stats: &Arc<ToxicCounters>) -> Box<dyn Stage> {
        match self {
            ToxicKind::Latency(t) => Box::new(t.stage()),
            ToxicKind::Bandwidth(t) => Box::new(t.stage()),
            ToxicKind::Timeout(t) => Box::new(t.stage(now, Arc::clone(stats))),
            ToxicKind::ResetPeer(t) => Box::new(t.stage(now)),
            ToxicKind::SlowClose(t) => Box::new(t.stage(Arc::clone(stats))),
            ToxicKind::LimitData(t) => Box::new(t.stage(Arc::clone(stats))),
            ToxicKind::HttpAbort(t) => Box::new(t.stage(Arc::clone(stats))),
            ToxicKind::HttpDelay(t) => Box::new(t.stage(Arc::clone(stats))),
        }
    }

    /// Whether this toxic acts on every byte that enters its stage (delays,
    /// paces or holds it), so that the pipeline counts those bytes in the
    /// toxic's `bytes`. The others let data through untouched and count only
    /// the bytes they drop themselves (`limit_data`), if any.
    pub(crate) fn acts_on_every_byte(&self) -> bool {
        match self {
            ToxicKind::Latency(_) | ToxicKind::Timeout(_) => true,
            ToxicKind::Bandwidth(t) => t.rate_kb_per_sec > 0,
            ToxicKind::ResetPeer(_)
            | ToxicKind::SlowClose(_)
            | ToxicKind::LimitData(_)
            | ToxicKind::HttpAbort(_)
            | ToxicKind::HttpDelay(_) => false,
        }
    }
}

/// A duration in whole milliseconds, as the API shows it.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Reads a toxic's attributes, remembering which were used so that unknown
/// ones can be rejected.
#[derive(Debug)]
pub(crate) struct Attributes<'a> {
    toxic: &'a str,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Attributes<'a> {
    fn new(toxic: &'a str, map: &'a Map<String, Value>) -> Self {
        Self {
            toxic,
            map,
            known: Vec::new(),
        }
    }

    pub(crate) fn invalid(&self, attribute: &str, reason: &str) -> ProxyError {
        ProxyError::InvalidAttribute {
            toxic: self.toxic.to_owned(),
            attribute: attribute.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// A non-negative integer attribute; 0 when absent.
    pub(crate) fn integer(&mut self, key: &'static str) -> Result<u64, ProxyError> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        match self.map.get(key) {
            None => Ok(0),
            Some(value) => value
                .as_u64()
                .ok_or_else(|| self.invalid(key, "must be a non-negative integer")),
        }
    }

    /// A duration attribute given in milliseconds; 0 when absent.
    pub(crate) fn millis(&mut self, key: &'static str) -> Result<Duration, ProxyError> {
        let value = Duration::from_millis(self.integer(key)?);
        if value > MAX_ATTRIBUTE_DURATION {
            return Err(self.invalid(key, "must be at most 86400000 ms (one day)"));
        }
        Ok(value)
    }

    /// A required non-negative integer attribute.
    pub(crate) fn required_integer(&mut self, key: &'static str) -> Result<u64, ProxyError> {
        if self.present(key).is_none() {
            return Err(self.invalid(key, "is required"));
        }
        self.integer(key)
    }

    /// A number from 0 to 1; `default` when absent.
    pub(crate) fn fraction(&mut self, key: &'static str, default: f64) -> Result<f64, ProxyError> {
        match self.present(key) {
            None => Ok(default),
            Some(value) => value
                .as_f64()
                .filter(|value| (0.0..=1.0).contains(value))
                .ok_or_else(|| self.invalid(key, "must be a number from 0 to 1")),
        }
    }

    /// A string attribute; `None` when absent or null.
    pub(crate) fn string(&mut self, key: &'static str) -> Result<Option<String>, ProxyError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.invalid(key, "must be a string")),
        }
    }

    /// An object attribute; empty when absent or null.
    pub(crate) fn object(
        &mut self,
        key: &'static str,
    ) -> Result<&'a Map<String, Value>, ProxyError> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        match self.present(key) {
            None => Ok(&EMPTY),
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(self.invalid(key, "must be an object")),
        }
    }

    /// Marks `key` known; its value unless absent or null.
    fn present(&mut self, key: &'static str) -> Option<&'a Value> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.map.get(key).filter(|value| !value.is_null())
    }

    fn finish(self) -> Result<(), ProxyError> {
        match self
            .map
            .keys()
            .find(|key| !self.known.contains(&key.as_str()))
        {
            None => Ok(()),
            Some(unknown) => Err(self.invalid(
                unknown,
                &format!("is unknown (expected: {})", self.known.join(", ")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn every_type_round_trips_through_its_attributes() {
        for (name, value) in [
            ("latency", json!({"latency": 100, "jitter": 10})),
            ("bandwidth", json!({"rate": 64})),
            ("timeout", json!({"timeout": 0})),
            ("reset_peer", json!({"timeout": 250})),
            ("slow_close", json!({"delay": 300})),
            ("limit_data", json!({"bytes": 1024})),
            (
                "http_abort",
                json!({"status": 503, "body": null, "ratio": 0.5, "method": "POST",
                       "path": "/api/orders", "headers": {"x-tenant": "blue"}}),
            ),
            (
                "http_delay",
                json!({"latency": 300, "jitter": 10, "ratio": 1.0, "method": null,
                       "path": null, "headers": {}}),
            ),
        ] {
            let kind = ToxicKind::from_attributes(name, &attrs(value.clone())).unwrap();
            assert_eq!(kind.type_name(), name);
            assert_eq!(Value::Object(kind.attributes()), value);
            assert!(TOXIC_TYPES.contains(&name));
        }
        assert_eq!(TOXIC_TYPES.len(), 8);
    }

    #[test]
    fn http_toxics_default_to_every_request() {
        let kind =
            ToxicKind::from_attributes("http_abort", &attrs(json!({"status": 500}))).unwrap();
        assert_eq!(
            Value::Object(kind.attributes()),
            json!({"status": 500, "body": null, "ratio": 1.0, "method": null, "path": null,
                   "headers": {}})
        );
        assert!(kind.upstream_only());
        // Header names are case-insensitive: shown in lower case.
        let kind = ToxicKind::from_attributes(
            "http_delay",
            &attrs(json!({"latency": 5, "headers": {"X-Tenant": "Blue"}})),
        )
        .unwrap();
        assert_eq!(kind.attributes()["headers"], json!({"x-tenant": "Blue"}));
        assert!(
            !ToxicKind::from_attributes("latency", &Map::new())
                .unwrap()
                .upstream_only()
        );
    }

    #[test]
    fn missing_attributes_default_to_zero() {
        let kind = ToxicKind::from_attributes("latency", &Map::new()).unwrap();
        assert_eq!(
            kind,
            ToxicKind::Latency(Latency {
                latency: Duration::ZERO,
                jitter: Duration::ZERO
            })
        );
    }

    #[test]
    fn bad_attributes_are_rejected() {
        for (name, value, needle) in [
            ("latency", json!({"latency": -1}), "non-negative"),
            ("latency", json!({"latency": 1.5}), "non-negative"),
            ("latency", json!({"latency": "100"}), "non-negative"),
            ("latency", json!({"latancy": 100}), "unknown"),
            ("timeout", json!({"timeout": 100_000_000_000u64}), "one day"),
            ("http_abort", json!({}), "\"status\" is required"),
            ("http_abort", json!({"status": 99}), "100 to 599"),
            ("http_abort", json!({"status": 600}), "\"status\""),
            ("http_abort", json!({"status": "503"}), "\"status\""),
            (
                "http_abort",
                json!({"status": 503, "ratio": 1.5}),
                "\"ratio\"",
            ),
            (
                "http_abort",
                json!({"status": 503, "ratio": -0.1}),
                "\"ratio\"",
            ),
            (
                "http_abort",
                json!({"status": 503, "ratio": "half"}),
                "\"ratio\"",
            ),
            ("http_abort", json!({"status": 503, "body": 5}), "\"body\""),
            (
                "http_abort",
                json!({"status": 503, "statuss": 1}),
                "unknown",
            ),
            (
                "http_abort",
                json!({"status": 503, "method": "GE T"}),
                "\"method\"",
            ),
            ("http_abort", json!({"status": 503, "path": ""}), "\"path\""),
            (
                "http_abort",
                json!({"status": 503, "headers": []}),
                "\"headers\"",
            ),
            (
                "http_abort",
                json!({"status": 503, "headers": {"x": 1}}),
                "\"headers\"",
            ),
            (
                "http_abort",
                json!({"status": 503, "headers": {"A": "1", "a": "2"}}),
                "twice",
            ),
            ("http_delay", json!({"latency": -5}), "\"latency\""),
            (
                "http_delay",
                json!({"latency": 5, "status": 503}),
                "unknown",
            ),
        ] {
            let err = ToxicKind::from_attributes(name, &attrs(value)).unwrap_err();
            assert!(matches!(err, ProxyError::InvalidAttribute { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        assert!(matches!(
            ToxicKind::from_attributes("slicer", &Map::new()),
            Err(ProxyError::UnknownToxicType(_))
        ));
    }

    #[test]
    fn updates_merge_into_the_current_attributes() {
        let kind =
            ToxicKind::from_attributes("latency", &attrs(json!({"latency": 100, "jitter": 5})))
                .unwrap();
        let updated = kind.with_attributes(&attrs(json!({"jitter": 50}))).unwrap();
        assert_eq!(
            Value::Object(updated.attributes()),
            json!({"latency": 100, "jitter": 50})
        );
    }
}
