//! The HTTP/1.1 toxics, for links that carry HTTP/1.1 (client → server
//! stream only): `http_abort` answers picked requests itself, `http_delay`
//! holds them back.
//!
//! Layering: `parse` (framing and request heads), `matcher` (which requests
//! a toxic picks), `requests` (the stage both share), then one module per
//! toxic.

mod abort;
mod delay;
mod matcher;
mod parse;
mod requests;

pub use abort::HttpAbort;
pub use delay::HttpDelay;
pub use matcher::{Matcher, Ratio, Selector};

pub(crate) use abort::TYPE as ABORT_TYPE;
pub(crate) use delay::TYPE as DELAY_TYPE;
