//! How to undo a change: plain data, written to the [`crate::ledger`] before
//! the change is made, and carried out by [`crate::actions`]
//! ([`UndoRecord::execute`], [`HttpRequest::send`]).
//!
//! The ledger stores and reads them without knowing the actions, and the
//! actions report a ledger failure as an [`crate::actions::ActionError`]: the
//! dependency goes one way, actions to ledger to undo.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::{KubernetesTarget, Secret, SecretUrl};
use crate::platform::{ContainerAction, TargetRef};

/// A resolved HTTP request and the statuses it must get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Empty: any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<u16>,
    /// Sent as `Authorization: Bearer` (the fault admin token, for a
    /// request to a fault admin API). Stored whole in the ledger, which
    /// must send it again; [`HttpRequest::redacted`] is what to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<Secret>,
}

impl HttpRequest {
    /// The same request with its bearer token as `***`: for a journal.
    pub fn redacted(&self) -> Self {
        Self {
            bearer: self.bearer.as_ref().map(|_| Secret::hidden()),
            ..self.clone()
        }
    }
}

/// How to undo one change; stored in the ledger, so plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UndoRecord {
    /// Delete a toxic (already gone is fine). `token`: the control API's
    /// bearer token, when it requires one (stored whole, as for `Sql`).
    RemoveToxic {
        api: String,
        proxy: String,
        toxic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
    },
    /// Bring a proxy back up (`token` as for `RemoveToxic`).
    EnableProxy {
        api: String,
        proxy: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
    },
    /// Bring a container to a state (start, unpause, reconnect), or a
    /// workload back to its replica count, if it is not there already.
    Container {
        /// `docker` or `kubernetes`.
        platform: String,
        target: TargetRef,
        action: ContainerAction,
        /// How to reach the cluster again (its context or URL) when the
        /// platform is Kubernetes; the target's id names the namespace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kubernetes: Option<KubernetesTarget>,
    },
    /// Send a request (e.g. `DELETE /faults`, with the fault admin token).
    Http { request: HttpRequest },
    /// Run a SQL statement (a `type = "sql"` fault's `undo`) on its own
    /// connection, within `timeout_ms`. The URL is kept whole, password and
    /// all, since cleanup must connect with it: the ledger file is readable
    /// by its owner only, and what shows a record ([`fmt::Display`]) hides
    /// the password.
    Sql {
        url: SecretUrl,
        statement: String,
        #[serde(default = "default_sql_timeout_ms")]
        timeout_ms: u64,
    },
}

fn default_sql_timeout_ms() -> u64 {
    5_000
}

impl fmt::Display for UndoRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UndoRecord::RemoveToxic { proxy, toxic, .. } => {
                write!(f, "remove toxic {toxic} from proxy {proxy}")
            }
            UndoRecord::EnableProxy { proxy, .. } => write!(f, "enable proxy {proxy}"),
            UndoRecord::Container { target, action, .. } => {
                write!(f, "{action} container {}", target.name)
            }
            UndoRecord::Http { request } => write!(f, "{} {}", request.method, request.url),
            UndoRecord::Sql { url, statement, .. } => {
                write!(f, "run SQL {statement:?} on {url}")
            }
        }
    }
}
