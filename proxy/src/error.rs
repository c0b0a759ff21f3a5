//! Errors of the proxy registry, each with the HTTP status the API gives it.

/// Why a control operation was refused or failed.
///
/// [`ProxyError::status`] maps each case to the HTTP status the control API
/// answers with: client mistakes are 4xx, and only a failure of the host
/// (an unexpected error binding a listener) is a 5xx.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request body: {0}")]
    BadRequest(String),
    #[error("missing required field: {0}")]
    MissingField(&'static str),
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("proxy {0:?} not found")]
    ProxyNotFound(String),
    #[error("proxy {0:?} already exists")]
    ProxyExists(String),
    #[error("toxic {toxic:?} not found on proxy {proxy:?}")]
    ToxicNotFound { proxy: String, toxic: String },
    #[error("toxic {toxic:?} already exists on proxy {proxy:?}")]
    ToxicExists { proxy: String, toxic: String },
    #[error(
        "unknown toxic type {0:?} (supported: latency, bandwidth, timeout, reset_peer, slow_close, limit_data, http_abort, http_delay)"
    )]
    UnknownToxicType(String),
    #[error("stream must be \"upstream\" or \"downstream\", not {0:?}")]
    InvalidStream(String),
    #[error("toxic {toxic}: attribute {attribute:?} {reason}")]
    InvalidAttribute {
        toxic: String,
        attribute: String,
        reason: String,
    },
    #[error("cannot listen on {addr}: the address is already in use")]
    ListenInUse { addr: String },
    #[error("cannot listen on {addr}: {reason}")]
    ListenRejected { addr: String, reason: String },
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
    #[error("the proxy server is shutting down")]
    ShuttingDown,
}

impl ProxyError {
    /// The HTTP status the control API answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::MissingField(_)
            | ProxyError::InvalidField { .. }
            | ProxyError::UnknownToxicType(_)
            | ProxyError::InvalidStream(_)
            | ProxyError::InvalidAttribute { .. }
            | ProxyError::ListenRejected { .. } => 400,
            ProxyError::ProxyNotFound(_) | ProxyError::ToxicNotFound { .. } => 404,
            ProxyError::ProxyExists(_)
            | ProxyError::ToxicExists { .. }
            | ProxyError::ListenInUse { .. } => 409,
            ProxyError::Listen { .. } => 500,
            ProxyError::ShuttingDown => 503,
        }
    }
}
