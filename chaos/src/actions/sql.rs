//! SQL faults (`type = "sql"`): one statement against PostgreSQL when the
//! fault is injected, the statement that undoes it when it is reverted (and
//! by `faultline cleanup`, from the ledger), and an optional `verify` query
//! read just before the revert as the fault's evidence.
//!
//! Every statement runs on a connection of its own, closed right after, as
//! one prepared statement (so one statement, not a `;`-separated list),
//! within the fault's timeout: connecting included on our side, and as the
//! session's `statement_timeout` on the server's, so that a statement we
//! gave up on does not run on. URLs are shown with their password as `***`.

use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use faultline_signal::error_chain;
use futures::TryStreamExt;
use serde_json::{Map, Value, json};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Column, Connection, Either, Executor, Row, TypeInfo, ValueRef};

use super::{ActionError, Effect, Fault, Prepared, UndoRecord};
use crate::environment::{SecretUrl, redact_passwords};
use crate::experiment::duration::render;

/// How many rows of what a statement returned are kept for the journal.
const ROWS_KEPT: usize = 5;

/// How long closing a connection may take once its statement is done.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection options of a PostgreSQL URL. The error never repeats the
/// URL (it may hold a password).
pub fn connect_options(url: &str) -> Result<PgConnectOptions, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("not a PostgreSQL URL (postgres://user@host:5432/database)".to_owned());
    }
    PgConnectOptions::from_str(url).map_err(|err| {
        format!(
            "not a valid PostgreSQL URL: {}",
            redact_passwords(&err.to_string())
        )
    })
}

/// What one statement returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Executed {
    /// Rows the statement changed (PostgreSQL's command tag).
    pub rows_affected: u64,
    /// How many rows it returned.
    pub rows: usize,
    /// The first five of them, column name → value.
    pub kept: Vec<Map<String, Value>>,
    /// The first column of the first row, if there was one.
    pub first_value: Option<Value>,
}

impl Executed {
    /// As the journal shows it.
    pub fn to_json(&self) -> Value {
        json!({
            "rows_affected": self.rows_affected,
            "rows": self.rows,
            "first_rows": self.kept,
        })
    }
}

/// Runs `statement` on a connection of its own to `url`, connecting and
/// running within `timeout`. `context` says what it is, for errors
/// (`sql fault "x": statement`).
pub async fn execute(
    url: &SecretUrl,
    statement: &str,
    timeout: Duration,
    context: &str,
) -> Result<Executed, ActionError> {
    let failed = |reason: String| ActionError::Sql {
        context: context.to_owned(),
        url: url.redacted(),
        reason: redact_passwords(&reason),
    };
    let server_timeout = timeout.as_millis().max(1).to_string();
    let options = connect_options(url.expose())
        .map_err(failed)?
        .application_name("faultline")
        .options([("statement_timeout", server_timeout.as_str())]);
    let work = async {
        let mut connection = PgConnection::connect_with(&options)
            .await
            .map_err(|err| format!("cannot connect: {}", error_chain(&err)))?;
        let result = run(&mut connection, statement)
            .await
            .map_err(|err| error_chain(&err));
        Ok::<_, String>((connection, result))
    };
    let (connection, result) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(reason)) => return Err(failed(reason)),
        Err(_) => {
            return Err(failed(format!(
                "did not finish within {} (timeout)",
                render(timeout)
            )));
        }
    };
    // The statement is done either way; a slow goodbye changes nothing.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close()).await;
    result.map_err(failed)
}

async fn run(connection: &mut PgConnection, statement: &str) -> Result<Executed, sqlx::Error> {
    // The statement comes from the experiment file, written by whoever runs it.
    let query = sqlx::query(AssertSqlSafe(statement.to_owned())).persistent(false);
    let mut results = connection.fetch_many(query);
    let mut executed = Executed::default();
    while let Some(result) = results.try_next().await? {
        match result {
            Either::Left(done) => executed.rows_affected += done.rows_affected(),
            Either::Right(row) => {
                if executed.rows == 0 && !row.columns().is_empty() {
                    executed.first_value = Some(cell(&row, 0));
                }
                executed.rows += 1;
                if executed.kept.len() < ROWS_KEPT {
                    executed.kept.push(
                        row.columns()
                            .iter()
                            .enumerate()
                            .map(|(i, column)| (column.name().to_owned(), cell(&row, i)))
                            .collect(),
                    );
                }
            }
        }
    }
    Ok(executed)
}

/// One value of a row as JSON: booleans, numbers, text, JSON and UUIDs as
/// themselves, `void` and NULL as null, anything else as `<its type>`.
fn cell(row: &PgRow, index: usize) -> Value {
    let type_name = match row.try_get_raw(index) {
        Ok(raw) if raw.is_null() => return Value::Null,
        Ok(raw) => raw.type_info().name().to_owned(),
        Err(_) => return Value::Null,
    };
    if type_name.eq_ignore_ascii_case("void") {
        return Value::Null;
    }
    if let Ok(v) = row.try_get::<bool, _>(index) {
        return Value::Bool(v);
    }
    if let Ok(v) = row.try_get::<i64, _>(index) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<i32, _>(index) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<i16, _>(index) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<f64, _>(index) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<f32, _>(index) {
        return Value::from(f64::from(v));
    }
    if let Ok(v) = row.try_get::<String, _>(index) {
        return Value::String(v);
    }
    if let Ok(v) = row.try_get::<Value, _>(index) {
        return v;
    }
    if let Ok(v) = row.try_get::<uuid::Uuid, _>(index) {
        return Value::String(v.to_string());
    }
    Value::String(format!("<{type_name}>"))
}

/// A SQL fault: `statement` when injected, `undo` when reverted, `verify`
/// as its evidence.
pub struct SqlInjection {
    /// The fault's name, for errors.
    name: String,
    url: SecretUrl,
    statement: String,
    undo: String,
    verify: Option<String>,
    timeout: Duration,
    /// What the statement returned: the evidence when there is no `verify`.
    returned: Mutex<Option<Value>>,
}

impl std::fmt::Debug for SqlInjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlInjection")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("statement", &self.statement)
            .field("undo", &self.undo)
            .field("verify", &self.verify)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SqlInjection {
    /// The fault `name`: `statement` on `url`, undone by `undo`.
    pub fn new(name: &str, url: SecretUrl, statement: &str, undo: &str) -> Self {
        Self {
            name: name.to_owned(),
            url,
            statement: statement.to_owned(),
            undo: undo.to_owned(),
            verify: None,
            timeout: Duration::from_secs(5),
            returned: Mutex::new(None),
        }
    }

    /// With `verify`, a query returning one boolean row, as its evidence.
    pub fn with_verify(mut self, verify: Option<String>) -> Self {
        self.verify = verify;
        self
    }

    /// Each statement (connecting included) within `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn context(&self, what: &str) -> String {
        format!("sql fault {:?}: {what}", self.name)
    }

    /// `verify`'s answer, a boolean or NULL; why there is none otherwise
    /// (no row, not a boolean, an error).
    async fn verified(&self, verify: &str) -> Result<Value, String> {
        let executed = execute(&self.url, verify, self.timeout, &self.context("verify"))
            .await
            .map_err(|err| err.to_string())?;
        match executed.first_value {
            None if executed.rows == 0 => Err("verify returned no row".to_owned()),
            None => Err("verify returned a row with no column".to_owned()),
            Some(value @ (Value::Bool(_) | Value::Null)) => Ok(value),
            Some(other) => Err(format!("verify must return one boolean, not {other}")),
        }
    }
}

#[async_trait::async_trait]
impl Fault for SqlInjection {
    fn kind(&self) -> &'static str {
        "sql"
    }

    /// The undo, for the ledger, before anything runs: nothing connects.
    async fn prepare(&self) -> Result<Prepared, ActionError> {
        Ok(Prepared {
            undo: vec![UndoRecord::Sql {
                url: self.url.clone(),
                statement: self.undo.clone(),
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            }],
            detail: json!({
                "url": self.url.redacted(),
                "statement": self.statement,
                "undo": self.undo,
                "verify": self.verify,
            }),
        })
    }

    async fn inject(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let executed = execute(
            &self.url,
            &self.statement,
            self.timeout,
            &self.context("statement"),
        )
        .await?;
        let returned = executed.to_json();
        *self.returned.lock().unwrap_or_else(PoisonError::into_inner) = Some(returned.clone());
        Ok(json!({"url": self.url.redacted(), "returned": returned}))
    }

    /// With `verify`: its boolean, true or the fault is not effective (false,
    /// NULL, no row, not a boolean, an error). Without: what the statement
    /// returned, which cannot tell whether it still acts.
    async fn effect(&self, _prepared: &Prepared) -> Result<Effect, ActionError> {
        let Some(verify) = &self.verify else {
            let returned = self
                .returned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return Ok(Effect::unknown(json!({
                "verify": null,
                "statement_returned": returned,
            })));
        };
        Ok(match self.verified(verify).await {
            Ok(value) => Effect::seen(
                value == Value::Bool(true),
                json!({"verify": verify, "value": value}),
            ),
            Err(error) => Effect::seen(false, json!({"verify": verify, "error": error})),
        })
    }

    /// Runs the undo the ledger holds, with this fault's name in errors.
    async fn revert(&self, prepared: &Prepared) -> Result<Value, ActionError> {
        let mut outputs = Vec::new();
        for record in prepared.undo.iter().rev() {
            let UndoRecord::Sql {
                url,
                statement,
                timeout_ms,
            } = record
            else {
                continue;
            };
            let executed = execute(
                url,
                statement,
                Duration::from_millis(*timeout_ms),
                &self.context("undo"),
            )
            .await?;
            outputs.push(executed.to_json());
        }
        Ok(Value::Array(outputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_being_repeated() {
        assert!(connect_options("postgres://u:p@127.0.0.1:5432/db").is_ok());
        assert!(connect_options("postgresql://127.0.0.1/db").is_ok());
        let err = connect_options("http://u:hunter2@127.0.0.1/db").unwrap_err();
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        let err = connect_options("postgres://u:hunter2@127.0.0.1:port/db").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn the_undo_is_planned_before_anything_connects() {
        // Nothing listens on port 1: preparing must not need a server.
        let fault = SqlInjection::new(
            "pause replay",
            SecretUrl::new("postgres://u:hunter2@127.0.0.1:1/db"),
            "SELECT pg_wal_replay_pause()",
            "SELECT pg_wal_replay_resume()",
        )
        .with_timeout(Duration::from_secs(2));
        let prepared = fault.prepare().await.unwrap();
        assert_eq!(
            prepared.undo,
            vec![UndoRecord::Sql {
                url: SecretUrl::new("postgres://u:hunter2@127.0.0.1:1/db"),
                statement: "SELECT pg_wal_replay_resume()".into(),
                timeout_ms: 2000,
            }]
        );
        let shown = format!("{} {:?} {fault:?}", prepared.undo[0], prepared);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("u:***@127.0.0.1:1"), "{shown}");
    }

    #[tokio::test]
    async fn a_server_that_cannot_be_reached_is_a_clear_error_naming_the_fault() {
        let fault = SqlInjection::new(
            "pause replay",
            SecretUrl::new("postgres://u:hunter2@127.0.0.1:1/db"),
            "SELECT 1",
            "SELECT 1",
        )
        .with_timeout(Duration::from_secs(3));
        let prepared = fault.prepare().await.unwrap();
        let err = fault.inject(&prepared).await.unwrap_err().to_string();
        assert!(
            err.starts_with(
                "sql fault \"pause replay\": statement on postgres://u:***@127.0.0.1:1/db: cannot connect"
            ),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = fault.revert(&prepared).await.unwrap_err().to_string();
        assert!(err.contains("sql fault \"pause replay\": undo on"), "{err}");
        // With a verify query, evidence that cannot be read shows nothing:
        // the fault is not effective.
        let fault = fault.with_verify(Some("SELECT true".into()));
        let effect = fault.effect(&prepared).await.unwrap();
        assert_eq!(effect.effective, Some(false), "{effect:?}");
        assert!(
            effect.evidence["error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot connect") && !e.contains("hunter2")),
            "{effect:?}"
        );
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_times_out() {
        // A listener that accepts and never speaks: the startup hangs.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let url = SecretUrl::new(format!("postgres://u@127.0.0.1:{port}/db"));
        let started = std::time::Instant::now();
        let err = execute(&url, "SELECT 1", Duration::from_millis(300), "test")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not finish within 300ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{err}");
        silent.abort();
    }
}
