//! The JSON documents of the control API, shared by the server and the client.
//!
//! Field names and defaults follow Toxiproxy's v2 API: a proxy is
//! `{name, listen, upstream, enabled, toxics}`, a toxic is
//! `{name, type, stream, toxicity, attributes}`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ProxyError;
use crate::toxics::ToxicKind;

/// The listen address a proxy gets when a request leaves it out: an
/// ephemeral port on the loopback interface.
pub const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:0";

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
        }
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
/// and/or some attributes; the others keep their values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToxicUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f32>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
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
}

impl RawProxy {
    fn into_new(self) -> Result<NewProxy, ProxyError> {
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
        };
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
            }],
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
}
