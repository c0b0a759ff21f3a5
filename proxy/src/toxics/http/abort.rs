//! `http_abort`: answers the requests it picks with an HTTP response of its
//! own, `status`, instead of forwarding them, then closes the connection.
//!
//! The answer is a complete HTTP/1.1 response with `content-length` and
//! `connection: close`; its body is `body` (as `text/plain`), or by default
//! a short `application/problem+json` document naming the fault. Neither the
//! request nor anything the client sends after it reaches the server.
//! Requests it does not pick pass untouched.

use axum::http::StatusCode;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::matcher::Selector;
use super::parse::RequestHead;
use super::requests::{RequestStage, RequestToxic, Verdict};
use crate::error::ProxyError;
use crate::stats::ToxicCounters;
use crate::toxics::Attributes;

pub(crate) const TYPE: &str = "http_abort";

/// Attributes of the `http_abort` toxic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAbort {
    /// The status of the answer (`status`, 100 to 599).
    pub status: u16,
    /// The body of the answer (`body`); `None` for the default problem document.
    pub body: Option<String>,
    /// Which requests it answers (`method`, `path`, `headers`, `ratio`).
    pub selector: Selector,
}

impl HttpAbort {
    pub(crate) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        let status = attrs.required_integer("status")?;
        let status = u16::try_from(status)
            .ok()
            .filter(|status| (100..=599).contains(status))
            .ok_or_else(|| attrs.invalid("status", "must be an HTTP status from 100 to 599"))?;
        Ok(Self {
            status,
            body: attrs.string("body")?,
            selector: Selector::parse(attrs)?,
        })
    }

    pub(crate) fn put_attributes(&self, map: &mut Map<String, Value>) {
        map.insert("status".to_owned(), Value::from(self.status));
        map.insert("body".to_owned(), self.body.clone().into());
        self.selector.put_attributes(map);
    }

    pub(crate) fn stage(&self, stats: Arc<ToxicCounters>) -> RequestStage<Self> {
        RequestStage::new(self.clone(), stats)
    }

    /// The answer to `head`. A `HEAD` request gets the head only; a 1xx,
    /// 204 or 304 answer has neither body nor `content-length` (RFC 9110).
    pub(crate) fn response(&self, head: &RequestHead) -> Vec<u8> {
        let reason = StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("");
        let (content_type, body) = match &self.body {
            Some(body) => ("text/plain; charset=utf-8", body.clone()),
            None => ("application/problem+json", self.problem(reason)),
        };
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        if !matches!(self.status, 100..=199 | 204 | 304) {
            out.push_str(&format!(
                "content-type: {content_type}\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        out.push_str("connection: close\r\n\r\n");
        if !matches!(self.status, 100..=199 | 204 | 304)
            && !head.method.eq_ignore_ascii_case("HEAD")
        {
            out.push_str(&body);
        }
        out.into_bytes()
    }

    fn problem(&self, reason: &str) -> String {
        let title = if reason.is_empty() { "Aborted" } else { reason };
        serde_json::json!({
            "type": "about:blank",
            "title": title,
            "status": self.status,
            "detail": "answered by the faultline proxy's http_abort toxic; the request was not forwarded",
        })
        .to_string()
    }
}

impl RequestToxic for HttpAbort {
    const TYPE: &'static str = TYPE;

    fn decide(&mut self, head: &RequestHead) -> Verdict {
        if self.selector.picks(head) {
            Verdict::Answer(self.response(head))
        } else {
            Verdict::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::toxics::http::matcher::{Matcher, Ratio};
    use crate::toxics::http::parse::{Framer, Piece};

    fn head(raw: &[u8]) -> RequestHead {
        let mut pieces = Vec::new();
        Framer::new().feed(raw, Instant::now(), &mut pieces);
        match pieces.into_iter().next() {
            Some(Piece::Head { head, .. }) => head,
            other => panic!("not a head: {other:?}"),
        }
    }

    fn abort(status: u16, body: Option<&str>) -> HttpAbort {
        HttpAbort {
            status,
            body: body.map(str::to_owned),
            selector: Selector {
                matcher: Matcher::default(),
                ratio: Ratio::ALWAYS,
            },
        }
    }

    /// Parses an answer: status, headers, body.
    fn parse(answer: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(answer).unwrap() else {
            panic!("incomplete answer");
        };
        let headers = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        (response.code.unwrap(), headers, answer[len..].to_vec())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_default_answer_is_a_problem_document() {
        let get = head(b"GET / HTTP/1.1\r\n\r\n");
        let (status, headers, body) = parse(&abort(503, None).response(&get));
        assert_eq!(status, 503);
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            header(&headers, "content-length"),
            Some(body.len().to_string().as_str())
        );
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["status"], 503);
        assert_eq!(problem["title"], "Service Unavailable");
        assert!(problem["detail"].as_str().unwrap().contains("http_abort"));
    }

    #[test]
    fn a_custom_body_is_text_and_head_gets_no_body() {
        let toxic = abort(429, Some("slow down"));
        let (status, headers, body) = parse(&toxic.response(&head(b"GET / HTTP/1.1\r\n\r\n")));
        assert_eq!((status, body.as_slice()), (429, &b"slow down"[..]));
        assert_eq!(header(&headers, "content-length"), Some("9"));
        let (_, headers, body) = parse(&toxic.response(&head(b"HEAD / HTTP/1.1\r\n\r\n")));
        assert_eq!(header(&headers, "content-length"), Some("9"));
        assert!(body.is_empty());
        let (status, headers, body) =
            parse(&abort(204, None).response(&head(b"GET / HTTP/1.1\r\n\r\n")));
        assert_eq!(status, 204);
        assert_eq!(header(&headers, "content-length"), None);
        assert!(body.is_empty());
        // A status without a registered reason still makes a valid status line.
        assert_eq!(
            parse(&abort(599, None).response(&head(b"GET / HTTP/1.1\r\n\r\n"))).0,
            599
        );
    }
}
