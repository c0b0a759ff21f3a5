//! Where the JWKS comes from: inline, a file, or a URL; and keeping it fresh.

use std::path::PathBuf;
use std::time::Duration;

use faultline_auth::verify::JwksError;
use faultline_auth::{KeySet, Verifier};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::metrics as auth_metrics;

/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A JWKS location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Inline(String),
    File(PathBuf),
    Url(Url),
}

/// Why the keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch the JWKS from {url}: {source}")]
    Fetch {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot fetch the JWKS from {url}: no HTTP client")]
    NoClient { url: Url },
    #[error("the JWKS at {url} answered {status}")]
    Status { url: Url, status: u16 },
    #[error("the JWKS at {location} is over {MAX_JWKS_BYTES} bytes")]
    TooLarge { location: String },
    #[error("the JWKS at {location}: {source}")]
    Invalid {
        location: String,
        #[source]
        source: JwksError,
    },
}

impl JwksSource {
    /// Reads FAULTLINE_AUTH_JWKS: `{...}` inline, `http(s)://` a URL, else a path.
    pub fn parse(value: &str) -> Self {
        let trimmed = value.trim();
        if trimmed.starts_with('{') {
            return Self::Inline(trimmed.to_owned());
        }
        match Url::parse(trimmed) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Self::Url(url),
            _ => Self::File(PathBuf::from(trimmed)),
        }
    }

    /// Where it is, for messages (an inline JWKS is not repeated).
    pub fn location(&self) -> String {
        match self {
            Self::Inline(_) => "(inline)".to_owned(),
            Self::File(path) => path.display().to_string(),
            Self::Url(url) => url.to_string(),
        }
    }

    /// Whether reading it again can give other keys.
    pub fn refreshes(&self) -> bool {
        !matches!(self, Self::Inline(_))
    }

    /// Reads and parses an inline or file JWKS at once (`None` for a URL,
    /// which the refresh task fetches).
    pub fn load_now(&self) -> Option<Result<KeySet, LoadError>> {
        let text = match self {
            Self::Inline(text) => text.clone(),
            Self::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(source) => {
                    return Some(Err(LoadError::Read {
                        path: path.clone(),
                        source,
                    }));
                }
            },
            Self::Url(_) => return None,
        };
        Some(self.parse_keys(&text))
    }

    /// Reads and parses the keys; the skipped keys are logged. A URL needs
    /// `http`.
    pub async fn load(&self, http: Option<&reqwest::Client>) -> Result<KeySet, LoadError> {
        let text = match self {
            Self::Inline(text) => text.clone(),
            Self::File(path) => {
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| LoadError::Read {
                        path: path.clone(),
                        source,
                    })?
            }
            Self::Url(url) => {
                let fetch = |source| LoadError::Fetch {
                    url: url.clone(),
                    source,
                };
                let Some(http) = http else {
                    return Err(LoadError::NoClient { url: url.clone() });
                };
                let response = http.get(url.clone()).send().await.map_err(fetch)?;
                if !response.status().is_success() {
                    return Err(LoadError::Status {
                        url: url.clone(),
                        status: response.status().as_u16(),
                    });
                }
                let bytes = response.bytes().await.map_err(fetch)?;
                if bytes.len() > MAX_JWKS_BYTES {
                    return Err(LoadError::TooLarge {
                        location: self.location(),
                    });
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        self.parse_keys(&text)
    }

    fn parse_keys(&self, text: &str) -> Result<KeySet, LoadError> {
        if text.len() > MAX_JWKS_BYTES {
            return Err(LoadError::TooLarge {
                location: self.location(),
            });
        }
        let (keys, skipped) = KeySet::from_jwks(text).map_err(|source| LoadError::Invalid {
            location: self.location(),
            source,
        })?;
        if !skipped.is_empty() {
            tracing::warn!(location = %self.location(), ?skipped, "JWKS keys skipped: not EdDSA/ES256 with a kid");
        }
        Ok(keys)
    }
}

/// Reads the keys every `interval` until `stop` (a URL at once, a file
/// after the first interval); a failed read keeps the keys the verifier has.
pub async fn refresh(
    source: JwksSource,
    verifier: Verifier,
    http: Option<reqwest::Client>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if !matches!(source, JwksSource::Url(_)) {
        ticker.tick().await;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match source.load(http.as_ref()).await {
            Ok(keys) => {
                let before = verifier.keys().kids();
                let after = keys.kids();
                if before != after {
                    tracing::info!(location = %source.location(), ?before, ?after, "trusted keys changed");
                }
                auth_metrics::keys_loaded(keys.len());
                verifier.replace_keys(keys);
                auth_metrics::refreshed("success");
            }
            Err(err) => {
                auth_metrics::refreshed("failure");
                tracing::warn!(error = %err, "cannot refresh the JWKS; keeping the keys loaded before");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_told_by_its_shape() {
        assert!(matches!(
            JwksSource::parse(" {\"keys\":[]}"),
            JwksSource::Inline(_)
        ));
        assert!(matches!(
            JwksSource::parse("https://idp.example/.well-known/jwks.json"),
            JwksSource::Url(_)
        ));
        assert_eq!(
            JwksSource::parse("/keys/jwks.json"),
            JwksSource::File("/keys/jwks.json".into())
        );
        assert!(!JwksSource::parse("{}").refreshes());
    }

    #[tokio::test]
    async fn a_missing_file_and_a_bad_document_are_named() {
        let err = JwksSource::parse("/no/such/jwks.json")
            .load(None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/jwks.json"), "{err}");
        let err = JwksSource::parse(r#"{"keys": []}"#)
            .load(None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no usable key"), "{err}");
    }
}
