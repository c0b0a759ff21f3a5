//! The control API's optional credential: a bearer token.
//!
//! Plain Toxiproxy clients send no credential, so the API takes none unless
//! it is given a token (`faultline proxy --api-token`, or
//! `FAULTLINE_PROXY_API_TOKEN`). With one, every call but `GET /version` and
//! `GET /metrics` must carry `Authorization: Bearer <token>`; the answer to
//! one without it is 401. [`ApiToken`] never shows its value (`Debug` prints
//! `ApiToken(***)`), and [`ApiToken::matches`] compares in constant time.

use std::fmt;
use std::str::FromStr;

/// The realm the control API names in `WWW-Authenticate`.
pub const REALM: &str = "faultline-proxy";

/// Why a text is not a usable token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the API token must not be empty")]
    Empty,
    #[error("the API token must be visible ASCII, without spaces")]
    NotVisibleAscii,
}

/// A bearer token of the control API.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// A token from `value`: visible ASCII (what a bearer token may hold in a
    /// header), not empty.
    pub fn new(value: impl Into<String>) -> Result<Self, TokenError> {
        let value = value.into();
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotVisibleAscii);
        }
        Ok(Self(value))
    }

    /// The value, to send: never to show.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, in time that does not depend on
    /// where they differ (a length difference is known at once).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let difference = candidate.iter().enumerate().fold(
            u8::from(expected.len() != candidate.len()),
            |acc, (i, byte)| acc | (expected.get(i).copied().unwrap_or(!byte) ^ byte),
        );
        std::hint::black_box(difference) == 0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl FromStr for ApiToken {
    type Err = TokenError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::new(value)
    }
}

/// The token of an `Authorization: Bearer <token>` header value (the scheme
/// in any case), or `None` for any other value.
pub(crate) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_visible_ascii_and_never_shown() {
        let token: ApiToken = "s3cr3t-Token_1.2~+/=".parse().unwrap();
        assert_eq!(token.expose(), "s3cr3t-Token_1.2~+/=");
        assert_eq!(format!("{token:?}"), "ApiToken(***)");
        assert_eq!(ApiToken::new(""), Err(TokenError::Empty));
        for bad in ["with space", "tab\there", "caf\u{e9}", "line\n"] {
            assert_eq!(
                ApiToken::new(bad),
                Err(TokenError::NotVisibleAscii),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_token_matches_only_itself() {
        let token = ApiToken::new("abc123").unwrap();
        assert!(token.matches(b"abc123"));
        for other in [&b"abc124"[..], b"abc12", b"abc1234", b"", b"ABC123"] {
            assert!(!token.matches(other), "{other:?}");
        }
    }

    #[test]
    fn bearer_headers_are_read_with_any_scheme_case() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer   abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        for none in [&b"Bearer"[..], b"Bearer ", b"Basic abc", b"abc", b""] {
            assert_eq!(
                bearer_token(none),
                None,
                "{:?}",
                String::from_utf8_lossy(none)
            );
        }
    }
}
