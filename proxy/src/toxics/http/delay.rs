//! `http_delay`: holds the requests it picks for `latency` ± `jitter` ms
//! before forwarding them; the others pass at once.
//!
//! Requests keep their order on a connection (HTTP/1.1 answers in order):
//! a request behind a delayed one waits for it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::matcher::Selector;
use super::parse::RequestHead;
use super::requests::{RequestStage, RequestToxic, Verdict};
use crate::error::ProxyError;
use crate::stats::ToxicCounters;
use crate::toxics::{Attributes, Latency, millis};

pub(crate) const TYPE: &str = "http_delay";

/// Attributes of the `http_delay` toxic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpDelay {
    /// Added delay (`latency`, ms).
    pub latency: Duration,
    /// Maximum random deviation from `latency`, either way (`jitter`, ms).
    pub jitter: Duration,
    /// Which requests it delays (`method`, `path`, `headers`, `ratio`).
    pub selector: Selector,
}

impl HttpDelay {
    pub(crate) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        Ok(Self {
            latency: attrs.millis("latency")?,
            jitter: attrs.millis("jitter")?,
            selector: Selector::parse(attrs)?,
        })
    }

    pub(crate) fn put_attributes(&self, map: &mut Map<String, Value>) {
        map.insert("latency".to_owned(), Value::from(millis(self.latency)));
        map.insert("jitter".to_owned(), Value::from(millis(self.jitter)));
        self.selector.put_attributes(map);
    }

    pub(crate) fn stage(&self, stats: Arc<ToxicCounters>) -> RequestStage<Self> {
        RequestStage::new(self.clone(), stats)
    }
}

impl RequestToxic for HttpDelay {
    const TYPE: &'static str = TYPE;

    fn decide(&mut self, head: &RequestHead) -> Verdict {
        if self.selector.picks(head) {
            Verdict::Delay(
                Latency {
                    latency: self.latency,
                    jitter: self.jitter,
                }
                .draw(),
            )
        } else {
            Verdict::Pass
        }
    }
}
