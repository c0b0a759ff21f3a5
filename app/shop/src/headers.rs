//! The HTTP headers the roles agree on, in one place: the gateway forwards
//! them, orders and payments read them, and the client stack's retry policy
//! looks for them.

use axum::http::HeaderName;

/// Makes a POST safe to repeat: checkout (from clients) and payment
/// authorisation (from orders and the worker) carry one, and the client stack
/// retries a POST only when it does.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Set on a response replayed from an earlier request with the same key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// On the catalog's answer to a write (a reservation made or released): the
/// primary's WAL position once it committed.
pub const WRITE_LSN: HeaderName = HeaderName::from_static("faultline-write-lsn");

/// On a catalog read: the WAL position (a `Faultline-Write-Lsn`) the answer
/// must reflect. A read replica that has not replayed it leaves the read to
/// the primary.
pub const READ_AFTER_LSN: HeaderName = HeaderName::from_static("faultline-read-after-lsn");
