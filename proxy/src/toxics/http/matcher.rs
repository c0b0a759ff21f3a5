//! Which requests an HTTP toxic picks: the matchers (`method`, `path`,
//! `headers`, all optional, all must match) and the per-request `ratio`.
//!
//! - `method`: equal to the request's method, ignoring case.
//! - `path`: a prefix of the request-target's path, as sent (not decoded;
//!   the query is not part of it): `/api/orders` matches `/api/orders`,
//!   `/api/orders/42` and `/api/orders-old`; `/api/orders/` only the
//!   sub-paths.
//! - `headers`: an object name → value; each header must be present with
//!   exactly that value (names ignore case; one of several values suffices).

use serde_json::{Map, Value};

use super::parse::RequestHead;
use crate::error::ProxyError;
use crate::toxics::Attributes;

/// The probability that a matched request is picked, from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(f64);

// Ratios are never NaN: parsing refuses anything outside 0..=1.
impl Eq for Ratio {}

impl Ratio {
    /// Every matched request.
    pub const ALWAYS: Ratio = Ratio(1.0);

    /// A ratio, if `value` is within 0..=1.
    pub fn new(value: f64) -> Option<Self> {
        (0.0..=1.0).contains(&value).then_some(Self(value))
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// One draw: is this request picked?
    fn draw(self) -> bool {
        if self.0 >= 1.0 {
            true
        } else if self.0 <= 0.0 {
            false
        } else {
            rand::random::<f64>() < self.0
        }
    }
}

/// The matchers of an HTTP toxic; an empty one matches every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Compared ignoring case.
    pub method: Option<String>,
    /// A prefix of the request's path.
    pub path: Option<String>,
    /// Lower-case names, exact values.
    pub headers: Vec<(String, String)>,
}

impl Matcher {
    pub(crate) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        let method = attrs.string("method")?;
        if let Some(method) = &method
            && (method.is_empty() || !method.bytes().all(is_token_byte))
        {
            return Err(attrs.invalid("method", "must be an HTTP method such as GET"));
        }
        let path = attrs.string("path")?;
        if path.as_deref().is_some_and(str::is_empty) {
            return Err(attrs.invalid(
                "path",
                "must not be empty (leave it out to match every path)",
            ));
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in attrs.object("headers")? {
            let Value::String(value) = value else {
                return Err(attrs.invalid("headers", "must map header names to strings"));
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(attrs.invalid("headers", &format!("{name:?} is not a header name")));
            }
            let name = name.to_ascii_lowercase();
            if headers.iter().any(|(seen, _)| *seen == name) {
                return Err(attrs.invalid("headers", &format!("{name:?} is given twice")));
            }
            headers.push((name, value.clone()));
        }
        Ok(Self {
            method,
            path,
            headers,
        })
    }

    /// The matchers as the API shows them (`null` and `{}` for none).
    pub(crate) fn put_attributes(&self, map: &mut Map<String, Value>) {
        map.insert("method".to_owned(), self.method.clone().into());
        map.insert("path".to_owned(), self.path.clone().into());
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(value.clone())))
            .collect();
        map.insert("headers".to_owned(), Value::Object(headers));
    }

    /// Whether `head` passes every matcher.
    pub(crate) fn matches(&self, head: &RequestHead) -> bool {
        self.method
            .as_deref()
            .is_none_or(|method| head.method.eq_ignore_ascii_case(method))
            && self
                .path
                .as_deref()
                .is_none_or(|prefix| head.path().starts_with(prefix))
            && self.headers.iter().all(|(name, value)| {
                head.values(name)
                    .any(|sent| sent == value.trim_ascii().as_bytes())
            })
    }
}

/// The matchers and the ratio together: which requests a toxic acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub matcher: Matcher,
    /// Per matched request (`toxicity` is per connection).
    pub ratio: Ratio,
}

impl Selector {
    pub(crate) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        let ratio = attrs.fraction("ratio", 1.0)?;
        Ok(Self {
            matcher: Matcher::parse(attrs)?,
            ratio: Ratio(ratio),
        })
    }

    pub(crate) fn put_attributes(&self, map: &mut Map<String, Value>) {
        map.insert("ratio".to_owned(), Value::from(self.ratio.get()));
        self.matcher.put_attributes(map);
    }

    /// Whether this request is picked: it matches, and wins the ratio draw.
    pub(crate) fn picks(&self, head: &RequestHead) -> bool {
        self.matcher.matches(head) && self.ratio.draw()
    }
}

/// `tchar` of RFC 9110: what methods and header names are made of.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::toxics::http::parse::{Framer, Piece};

    fn head(raw: &[u8]) -> RequestHead {
        let mut pieces = Vec::new();
        Framer::new().feed(raw, Instant::now(), &mut pieces);
        match pieces.into_iter().next() {
            Some(Piece::Head { head, .. }) => head,
            other => panic!("not a head: {other:?}"),
        }
    }

    fn matcher(method: Option<&str>, path: Option<&str>, headers: &[(&str, &str)]) -> Matcher {
        Matcher {
            method: method.map(str::to_owned),
            path: path.map(str::to_owned),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn every_matcher_must_match() {
        let post = head(
            b"POST /api/orders/7?x=1 HTTP/1.1\r\nX-Tenant: blue\r\nAccept: a\r\nAccept: b\r\n\r\n",
        );
        assert!(Matcher::default().matches(&post));
        assert!(matcher(Some("post"), None, &[]).matches(&post));
        assert!(!matcher(Some("GET"), None, &[]).matches(&post));
        assert!(matcher(None, Some("/api/orders"), &[]).matches(&post));
        assert!(matcher(None, Some("/api/orders/7"), &[]).matches(&post));
        assert!(!matcher(None, Some("/api/orders/7?x"), &[]).matches(&post));
        assert!(!matcher(None, Some("/api/payments"), &[]).matches(&post));
        assert!(matcher(None, None, &[("x-tenant", "blue")]).matches(&post));
        assert!(!matcher(None, None, &[("x-tenant", "Blue")]).matches(&post));
        assert!(!matcher(None, None, &[("x-other", "blue")]).matches(&post));
        assert!(matcher(None, None, &[("accept", "b")]).matches(&post));
        assert!(matcher(Some("POST"), Some("/api/"), &[("x-tenant", "blue")]).matches(&post));
        assert!(!matcher(Some("POST"), Some("/api/"), &[("x-tenant", "red")]).matches(&post));
    }

    #[test]
    fn ratio_draws_within_bounds() {
        assert!(Ratio::ALWAYS.draw());
        assert!(!Ratio(0.0).draw());
        let picked = (0..10_000).filter(|_| Ratio(0.25).draw()).count();
        assert!((2_000..3_000).contains(&picked), "{picked}");
        assert!(Ratio::new(1.5).is_none());
        assert!(Ratio::new(-0.1).is_none());
        assert!(Ratio::new(f64::NAN).is_none());
    }
}
