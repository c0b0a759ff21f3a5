//! The JSON documents of the control API, shared by the server and the client.
//!
//! Field names and defaults follow Toxiproxy's v2 API: a proxy is
//! `{name, listen, upstream, enabled, toxics}`, a toxic is
//! `{name, type, stream, toxicity, attributes}`.
//!
//! Two extensions add optional fields that Toxiproxy clients ignore: leases
//! (`lease_ms` in requests, `lease_remaining_ms` in documents) and per-toxic
//! `stats`. Requests without them behave as in Toxiproxy.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ProxyError;
use crate::stats::CounterValues;
use crate::toxics::ToxicKind;

/// The listen address a proxy gets when a request leaves it out: an
/// ephemeral port on the loopback interface.
pub const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:0";

/// The longest lease a request may ask for: one day.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// Which direction of a proxied connection a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client → upstream server: the requests.
    Upstream,
    /// Upstream server → client: the responses. The default.
    #[default]
    Downstream,
}

impl Stream {
    /// `"upstream"` or `"downstream"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }

    /// Parses `"upstream"` or `"downstream"`.
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        match text {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            other => Err(ProxyError::InvalidStream(other.to_owned())),
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proxy as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    pub name: String,
    /// Where the proxy listens; once bound, the actual address (port 0 resolved).
    pub listen: String,
    /// Where it forwards connections to, `host:port`.
    pub upstream: String,
    pub enabled: bool,
    #[serde(default)]
    pub toxics: Vec<Toxic>,
    /// While the proxy is down with a lease: milliseconds until it is enabled
    /// again. Absent without a lease (and from a real Toxiproxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_remaining_ms: Option<u64>,
}

/// A request to create a proxy (`POST /proxies`, `POST /populate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProxy {
    pub name: String,
    /// `host:port` to listen on; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `host:port` to forward to; resolved on every new connection.
    pub upstream: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl NewProxy {
    /// An enabled proxy from `listen` to `upstream`.
    pub fn new(
        name: impl Into<String>,
        listen: impl Into<String>,
        upstream: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            listen: listen.into(),
            upstream: upstream.into(),
            enabled: true,
        }
    }

    /// The same proxy, created disabled.
    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }
}

/// Changes to a proxy (`POST /proxies/{name}`); absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Only for a proxy that is or goes down (`enabled: false`): enable it
    /// again this many milliseconds from now, unless renewed; 0 clears the
    /// lease (down until enabled). An extension of this proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

impl ProxyUpdate {
    /// Only switches the proxy on or off.
    pub fn enabled(enabled: bool) -> Self {
        Self {
            enabled: Some(enabled),
            ..Self::default()
        }
    }
}

/// A toxic as the API shows it.
///
/// `toxic_type` and `attributes` stay untyped so that the client can read any
/// toxic a real Toxiproxy holds; [`Toxic::kind`] gives the typed view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toxic {
    pub name: String,
    #[serde(rename = "type")]
    pub toxic_type: String,
    #[serde(default)]
    pub stream: Stream,
    #[serde(default = "default_toxicity")]
    pub toxicity: f32,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// Milliseconds until the toxic is removed, unless renewed. Absent
    /// without a lease (and from a real Toxiproxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_remaining_ms: Option<u64>,
    /// What the toxic did so far. Always present from this proxy, absent from
    /// a real Toxiproxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ToxicStats>,
}

/// A toxic's counters since it was added (updates keep them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToxicStats {
    /// Connections the toxic is active on (its toxicity draw included them).
    pub connections: u64,
    /// Payload bytes it acted on: delayed, paced, held or dropped.
    pub bytes: u64,
    /// Connections it reset (`reset_peer`).
    pub resets: u64,
    /// Connections it closed (`timeout`, `limit_data`) or whose close it
    /// delayed (`slow_close`).
    pub closes: u64,
    /// HTTP requests it matched (HTTP toxics; 0 for the TCP toxics).
    pub requests: u64,
}

impl From<CounterValues> for ToxicStats {
    fn from(values: CounterValues) -> Self {
        Self {
            connections: values.connections,
            bytes: values.bytes,
            resets: values.resets,
            closes: values.closes,
            requests: values.requests,
        }
    }
}

impl Toxic {
    /// The typed type and attributes, if this proxy knows the type.
    pub fn kind(&self) -> Result<ToxicKind, ProxyError> {
        ToxicKind::from_attributes(&self.toxic_type, &self.attributes)
    }
}

/// A request to add a toxic (`POST /proxies/{name}/toxics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewToxic {
    /// Defaults to `<type>_<stream>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub toxic_type: String,
    #[serde(default)]
    pub stream: Stream,
    /// Probability, from 0 to 1, that a connection is affected.
    #[serde(default = "default_toxicity")]
    pub toxicity: f32,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// Remove the toxic this many milliseconds after it is added, unless
    /// renewed; `None` or 0: no lease. An extension of this proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

impl NewToxic {
    /// A downstream toxic of this kind with toxicity 1 and the default name.
    pub fn new(kind: &ToxicKind) -> Self {
        Self {
            name: None,
            toxic_type: kind.type_name().to_owned(),
            stream: Stream::Downstream,
            toxicity: 1.0,
            attributes: kind.attributes(),
            lease_ms: None,
        }
    }

    /// Removes the toxic after `lease` unless it is renewed
    /// ([`crate::ToxiproxyClient::renew_toxic_lease`]). Whole milliseconds;
    /// zero means no lease. A real Toxiproxy ignores it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease_ms = Some(lease_millis(lease));
        self
    }

    /// Names the toxic.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Applies it to this stream instead of downstream.
    pub fn with_stream(mut self, stream: Stream) -> Self {
        self.stream = stream;
        self
    }

    /// Applies it to this fraction of connections only.
    pub fn with_toxicity(mut self, toxicity: f32) -> Self {
        self.toxicity = toxicity;
        self
    }

    /// The name the toxic gets: the given one, or `<type>_<stream>`.
    pub fn effective_name(&self) -> String {
        match &self.name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!("{}_{}", self.toxic_type, self.stream),
        }
    }
}

impl From<ToxicKind> for NewToxic {
    fn from(kind: ToxicKind) -> Self {
        Self::new(&kind)
    }
}

/// Changes to a toxic (`POST /proxies/{name}/toxics/{toxic}`): a new toxicity
/// and/or some attributes, and/or a lease; the others keep their values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToxicUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f32>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// Renews the lease: the toxic is removed this many milliseconds from
    /// now; 0 clears the lease (the toxic stays). An extension of this proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

impl ToxicUpdate {
    /// Whether this update changes the toxic itself (not only its lease).
    /// An update that only renews a lease leaves the connections' stages alone.
    pub fn changes_toxic(&self) -> bool {
        self.lease_ms.is_none() || self.toxicity.is_some() || !self.attributes.is_empty()
    }
}

/// The body of every error answer: `{"error": "...", "status": 404}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
}

/// The body of a `/populate` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Populated {
    pub proxies: Vec<Proxy>,
}

/// The body of a `/version` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
}

fn default_listen() -> String {
    DEFAULT_PROXY_LISTEN.to_owned()
}

fn default_true() -> bool {
    true
}

fn default_toxicity() -> f32 {
    1.0
}

/// A lease as whole milliseconds, as the API takes it (saturating).
pub(crate) fn lease_millis(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}

/// Checks a lease given in milliseconds: `None` for 0 (no lease).
pub(crate) fn check_lease(lease_ms: u64) -> Result<Option<Duration>, ProxyError> {
    let lease = Duration::from_millis(lease_ms);
    if lease > MAX_LEASE {
        return Err(ProxyError::InvalidField {
            field: "lease_ms",
            reason: format!(
                "must be at most {} ms (one day), not {lease_ms}",
                lease_millis(MAX_LEASE)
            ),
        });
    }
    Ok((!lease.is_zero()).then_some(lease))
}

/// Reads `lease_ms` from a request: absent or null is `None`, otherwise a
/// whole number of milliseconds.
fn parse_lease(value: Option<Value>) -> Result<Option<u64>, ProxyError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    let lease_ms = value.as_u64().ok_or_else(|| ProxyError::InvalidField {
        field: "lease_ms",
        reason: format!(
            "must be a whole number of milliseconds, 0 or more (0 clears the lease), not {value}"
        ),
    })?;
    check_lease(lease_ms)?;
    Ok(Some(lease_ms))
}

// ---- Lenient parsing of request bodies, with API-grade error messages. ----

fn bad_body(err: &serde_json::Error) -> ProxyError {
    ProxyError::BadRequest(err.to_string())
}

/// A proxy as a request may spell it: every field optional, unknown fields
/// ignored (clients often send back a whole proxy, `toxics` included).
#[derive(Debug, Deserialize)]
struct RawProxy {
    name: Option<String>,
    listen: Option<String>,
    upstream: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    lease_ms: Option<Value>,
}

impl RawProxy {
    fn into_new(self) -> Result<NewProxy, ProxyError> {
        if self.lease_ms.as_ref().is_some_and(|lease| !lease.is_null()) {
            return Err(ProxyError::InvalidField {
                field: "lease_ms",
                reason: "is for updates only: create the proxy, then take it down with \
                         {\"enabled\": false, \"lease_ms\": N} at /proxies/{name}"
                    .to_owned(),
            });
        }
        let name = self
            .name
            .filter(|name| !name.is_empty())
            .ok_or(ProxyError::MissingField("name"))?;
        let upstream = self
            .upstream
            .filter(|upstream| !upstream.is_empty())
            .ok_or(ProxyError::MissingField("upstream"))?;
        Ok(NewProxy {
            name,
            listen: self
                .listen
                .filter(|listen| !listen.is_empty())
                .unwrap_or_else(default_listen),
            upstream,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

/// Parses the body of `POST /proxies`.
pub(crate) fn parse_new_proxy(body: &[u8]) -> Result<NewProxy, ProxyError> {
    serde_json::from_slice::<RawProxy>(body)
        .map_err(|err| bad_body(&err))?
        .into_new()
}

/// Parses the body of `POST /populate`: an array of proxies.
pub(crate) fn parse_populate(body: &[u8]) -> Result<Vec<NewProxy>, ProxyError> {
    serde_json::from_slice::<Vec<RawProxy>>(body)
        .map_err(|err| bad_body(&err))?
        .into_iter()
        .map(RawProxy::into_new)
        .collect()
}

/// Parses the body of `POST /proxies/{name}`; a different `name` is refused.
pub(crate) fn parse_proxy_update(name: &str, body: &[u8]) -> Result<ProxyUpdate, ProxyError> {
    let raw: RawProxy = serde_json::from_slice(body).map_err(|err| bad_body(&err))?;
    if let Some(new_name) = raw.name.filter(|new_name| new_name != name) {
        return Err(ProxyError::InvalidField {
            field: "name",
            reason: format!(
                "a proxy cannot be renamed ({name:?} to {new_name:?}); delete and recreate it"
            ),
        });
    }
    Ok(ProxyUpdate {
        listen: raw.listen.filter(|listen| !listen.is_empty()),
        upstream: raw.upstream.filter(|upstream| !upstream.is_empty()),
        enabled: raw.enabled,
        lease_ms: parse_lease(raw.lease_ms)?,
    })
}

/// A toxic as a request may spell it.
#[derive(Debug, Deserialize)]
struct RawToxic {
    name: Option<String>,
    #[serde(rename = "type")]
    toxic_type: Option<String>,
    stream: Option<String>,
    toxicity: Option<f64>,
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    lease_ms: Option<Value>,
}

fn check_toxicity(toxicity: f64) -> Result<f32, ProxyError> {
    if (0.0..=1.0).contains(&toxicity) {
        Ok(toxicity as f32)
    } else {
        Err(ProxyError::InvalidField {
            field: "toxicity",
            reason: format!("must be between 0 and 1, not {toxicity}"),
        })
    }
}

/// Parses the body of `POST /proxies/{name}/toxics`.
pub(crate) fn parse_new_toxic(body: &[u8]) -> Result<NewToxic, ProxyError> {
    let raw: RawToxic = serde_json::from_slice(body).map_err(|err| bad_body(&err))?;
    let toxic_type = raw
        .toxic_type
        .filter(|toxic_type| !toxic_type.is_empty())
        .ok_or(ProxyError::MissingField("type"))?;
    let stream = match raw.stream.as_deref() {
        None | Some("") => Stream::default(),
        Some(text) => Stream::parse(text)?,
    };
    Ok(NewToxic {
        name: raw.name.filter(|name| !name.is_empty()),
        toxic_type,
        stream,
        toxicity: check_toxicity(raw.toxicity.unwrap_or(1.0))?,
        attributes: raw.attributes.unwrap_or_default(),
        lease_ms: parse_lease(raw.lease_ms)?,
    })
}

/// Parses the body of `POST /proxies/{name}/toxics/{toxic}`.
///
/// A client may send the whole toxic back; `name`, `type` and `stream` are
/// accepted when they match the toxic's, and refused when they would change it.
pub(crate) fn parse_toxic_update(current: &Toxic, body: &[u8]) -> Result<ToxicUpdate, ProxyError> {
    let raw: RawToxic = serde_json::from_slice(body).map_err(|err| bad_body(&err))?;
    let unchangeable = |field: &'static str, given: Option<&str>, current: &str| match given {
        Some(given) if !given.is_empty() && given != current => Err(ProxyError::InvalidField {
            field,
            reason: format!(
                "cannot change from {current:?} to {given:?}; remove the toxic and add a new one"
            ),
        }),
        _ => Ok(()),
    };
    unchangeable("name", raw.name.as_deref(), &current.name)?;
    unchangeable("type", raw.toxic_type.as_deref(), &current.toxic_type)?;
    if let Some(stream) = raw.stream.as_deref().filter(|stream| !stream.is_empty()) {
        Stream::parse(stream)?;
        unchangeable("stream", Some(stream), current.stream.as_str())?;
    }
    Ok(ToxicUpdate {
        toxicity: raw.toxicity.map(check_toxicity).transpose()?,
        attributes: raw.attributes.unwrap_or_default(),
        lease_ms: parse_lease(raw.lease_ms)?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_new_proxy_needs_a_name_and_an_upstream() {
        assert!(matches!(
            parse_new_proxy(br#"{"upstream":"a:1"}"#),
            Err(ProxyError::MissingField("name"))
        ));
        assert!(matches!(
            parse_new_proxy(br#"{"name":"x"}"#),
            Err(ProxyError::MissingField("upstream"))
        ));
        let proxy = parse_new_proxy(br#"{"name":"x","upstream":"a:1","toxics":[]}"#).unwrap();
        assert_eq!(proxy.listen, DEFAULT_PROXY_LISTEN);
        assert!(proxy.enabled);
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for body in [&b"{"[..], b"[]", b"{\"name\": 5}", b""] {
            let err = parse_new_proxy(body).unwrap_err();
            assert_eq!(err.status(), 400, "{err}");
        }
    }

    #[test]
    fn proxies_cannot_be_renamed() {
        assert!(parse_proxy_update("a", br#"{"name":"a","enabled":false}"#).is_ok());
        let err = parse_proxy_update("a", br#"{"name":"b"}"#).unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn toxic_defaults_follow_toxiproxy() {
        let toxic = parse_new_toxic(br#"{"type":"latency","attributes":{"latency":5}}"#).unwrap();
        assert_eq!(toxic.stream, Stream::Downstream);
        assert_eq!(toxic.toxicity, 1.0);
        assert_eq!(toxic.effective_name(), "latency_downstream");
    }

    #[test]
    fn toxic_fields_are_checked() {
        let cases: [&[u8]; 4] = [
            br#"{"type":"latency","stream":"sideways"}"#,
            br#"{"type":"latency","toxicity":1.5}"#,
            br#"{"type":"latency","toxicity":-0.1}"#,
            br#"{"stream":"upstream"}"#,
        ];
        for body in cases {
            let err = parse_new_toxic(body).unwrap_err();
            assert_eq!(err.status(), 400, "{err}");
        }
    }

    #[test]
    fn toxic_updates_may_repeat_but_not_change_identity() {
        let current = Toxic {
            name: "lat".into(),
            toxic_type: "latency".into(),
            stream: Stream::Upstream,
            toxicity: 1.0,
            attributes: Map::new(),
            lease_remaining_ms: Some(100),
            stats: Some(ToxicStats::default()),
        };
        // The whole document back, its read-only fields included, is fine.
        let same = serde_json::to_vec(&current).unwrap();
        assert!(parse_toxic_update(&current, &same).is_ok());
        for body in [
            json!({"type": "bandwidth"}),
            json!({"stream": "downstream"}),
            json!({"name": "other"}),
            json!({"toxicity": 3}),
        ] {
            let body = serde_json::to_vec(&body).unwrap();
            assert_eq!(
                parse_toxic_update(&current, &body).unwrap_err().status(),
                400
            );
        }
    }

    #[test]
    fn proxies_serialize_like_toxiproxy() {
        let proxy = Proxy {
            name: "db".into(),
            listen: "127.0.0.1:5433".into(),
            upstream: "db:5432".into(),
            enabled: true,
            toxics: vec![Toxic {
                name: "latency_downstream".into(),
                toxic_type: "latency".into(),
                stream: Stream::Downstream,
                toxicity: 1.0,
                attributes: json!({"latency": 100, "jitter": 0})
                    .as_object()
                    .cloned()
                    .unwrap(),
                lease_remaining_ms: None,
                stats: None,
            }],
            lease_remaining_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&proxy).unwrap(),
            json!({
                "name": "db",
                "listen": "127.0.0.1:5433",
                "upstream": "db:5432",
                "enabled": true,
                "toxics": [{
                    "name": "latency_downstream",
                    "type": "latency",
                    "stream": "downstream",
                    "toxicity": 1.0,
                    "attributes": {"latency": 100, "jitter": 0}
                }]
            })
        );
    }

    #[test]
    fn documents_of_a_real_toxiproxy_parse_without_the_extensions() {
        let proxy: Proxy = serde_json::from_value(json!({
            "name": "db",
            "listen": "127.0.0.1:5433",
            "upstream": "db:5432",
            "enabled": true,
            "toxics": [{
                "name": "latency_downstream",
                "type": "latency",
                "stream": "downstream",
                "toxicity": 1.0,
                "attributes": {"latency": 100, "jitter": 0}
            }]
        }))
        .unwrap();
        assert_eq!(proxy.lease_remaining_ms, None);
        assert_eq!(proxy.toxics[0].lease_remaining_ms, None);
        assert_eq!(proxy.toxics[0].stats, None);
    }

    #[test]
    fn the_extensions_serialize_only_when_present() {
        let toxic = Toxic {
            name: "t".into(),
            toxic_type: "timeout".into(),
            stream: Stream::Upstream,
            toxicity: 1.0,
            attributes: Map::new(),
            lease_remaining_ms: Some(250),
            stats: Some(ToxicStats {
                connections: 2,
                bytes: 10,
                resets: 0,
                closes: 1,
                requests: 0,
            }),
        };
        let value = serde_json::to_value(&toxic).unwrap();
        assert_eq!(value["lease_remaining_ms"], json!(250));
        assert_eq!(
            value["stats"],
            json!({"connections": 2, "bytes": 10, "resets": 0, "closes": 1, "requests": 0})
        );
        let plain = NewToxic::new(&ToxicKind::from_attributes("timeout", &Map::new()).unwrap());
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("lease_ms")
                .is_none()
        );
        let leased = plain.with_lease(Duration::from_millis(1500));
        assert_eq!(
            serde_json::to_value(&leased).unwrap()["lease_ms"],
            json!(1500)
        );
        assert!(
            serde_json::to_value(ProxyUpdate::enabled(false))
                .unwrap()
                .get("lease_ms")
                .is_none()
        );
    }

    #[test]
    fn leases_are_whole_milliseconds_up_to_a_day() {
        let toxic = parse_new_toxic(br#"{"type":"latency","lease_ms":300}"#).unwrap();
        assert_eq!(toxic.lease_ms, Some(300));
        let toxic = parse_new_toxic(br#"{"type":"latency","lease_ms":null}"#).unwrap();
        assert_eq!(toxic.lease_ms, None);
        let update = parse_proxy_update("p", br#"{"enabled":false,"lease_ms":0}"#).unwrap();
        assert_eq!(update.lease_ms, Some(0));
        for (body, needle) in [
            (r#"{"type":"latency","lease_ms":-5}"#, "whole number"),
            (r#"{"type":"latency","lease_ms":"300"}"#, "whole number"),
            (r#"{"type":"latency","lease_ms":1.5}"#, "whole number"),
            (r#"{"type":"latency","lease_ms":86400001}"#, "one day"),
        ] {
            let err = parse_new_toxic(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 400, "{err}");
            let message = err.to_string();
            assert!(
                message.contains("lease_ms") && message.contains(needle),
                "{message}"
            );
        }
        let err = parse_new_proxy(br#"{"name":"x","upstream":"a:1","lease_ms":5}"#).unwrap_err();
        assert!(err.to_string().contains("updates only"), "{err}");
        assert_eq!(check_lease(0).unwrap(), None);
        assert_eq!(check_lease(5).unwrap(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn an_update_with_only_a_lease_leaves_the_toxic_alone() {
        let current = Toxic {
            name: "lat".into(),
            toxic_type: "latency".into(),
            stream: Stream::Downstream,
            toxicity: 1.0,
            attributes: Map::new(),
            lease_remaining_ms: None,
            stats: None,
        };
        let renewal = parse_toxic_update(&current, br#"{"lease_ms":1000}"#).unwrap();
        assert_eq!(renewal.lease_ms, Some(1000));
        assert!(!renewal.changes_toxic());
        let both = parse_toxic_update(&current, br#"{"lease_ms":1000,"toxicity":0.5}"#).unwrap();
        assert!(both.changes_toxic());
        assert!(parse_toxic_update(&current, b"{}").unwrap().changes_toxic());
    }
}
