//! `type = "sql"` and `type = "invariant"`: data checks against PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row};

use super::{Observation, Probe, ProbeContext, ProbeError};
use crate::experiment::{Invariant, Tolerance};

/// A small pool that connects on first use.
pub fn lazy_pool(url: &str) -> Result<PgPool, ProbeError> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
        .map_err(|err| ProbeError::Config(format!("bad database URL: {err}")))
}

fn sql_error(err: &sqlx::Error) -> ProbeError {
    ProbeError::Sql(err.to_string())
}

/// The first column of a row as a number, if it is one.
fn first_number(row: &PgRow) -> Option<f64> {
    if row.columns().is_empty() {
        return None;
    }
    if let Ok(Some(v)) = row.try_get::<Option<i64>, _>(0) {
        return Some(v as f64);
    }
    if let Ok(Some(v)) = row.try_get::<Option<i32>, _>(0) {
        return Some(f64::from(v));
    }
    if let Ok(Some(v)) = row.try_get::<Option<i16>, _>(0) {
        return Some(f64::from(v));
    }
    if let Ok(Some(v)) = row.try_get::<Option<f64>, _>(0) {
        return Some(v);
    }
    if let Ok(Some(v)) = row.try_get::<Option<f32>, _>(0) {
        return Some(f64::from(v));
    }
    if let Ok(Some(v)) = row.try_get::<Option<bool>, _>(0) {
        return Some(if v { 1.0 } else { 0.0 });
    }
    None
}

/// A query whose scalar (or row count) is checked against a tolerance.
#[derive(Debug, Clone)]
pub struct SqlCheck {
    pub pool: PgPool,
    pub query: String,
    pub params: Vec<String>,
    pub tolerance: Tolerance,
}

#[async_trait::async_trait]
impl Probe for SqlCheck {
    fn kind(&self) -> &'static str {
        "sql"
    }

    async fn check(&self, _cx: &ProbeContext) -> Result<Observation, ProbeError> {
        // The query comes from the experiment file, written by whoever runs it.
        let mut query = sqlx::query(AssertSqlSafe(self.query.clone()));
        for param in &self.params {
            query = query.bind(param);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql_error(&e))?;
        let (ok, value) = match self.tolerance {
            Tolerance::NonEmpty | Tolerance::Empty => (
                self.tolerance.accepts_all(&vec![0.0; rows.len()]),
                rows.len() as f64,
            ),
            _ => {
                let value = rows.first().and_then(first_number).ok_or_else(|| {
                    ProbeError::NoData(
                        "the query returned no row, or a non-numeric first column".into(),
                    )
                })?;
                (self.tolerance.accepts(value), value)
            }
        };
        Ok(Observation::new(
            ok,
            json!({"value": value, "rows": rows.len()}),
            format!("{value}, expected {}", self.tolerance),
        ))
    }
}

/// A built-in invariant over the load generator's report.
#[derive(Debug, Clone)]
pub struct InvariantCheck {
    pub pool: PgPool,
    pub invariant: Invariant,
    /// Fewer acknowledged orders than this fail the invariant: it would
    /// prove nothing about a checkout route that never succeeded.
    pub min_acknowledged: u64,
}

/// How acknowledged orders compare with the `orders` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrdersCheck {
    pub acknowledged: usize,
    pub found: usize,
    /// Acknowledged ids with no row.
    pub missing: Vec<String>,
    /// Idempotency keys with more than one row.
    pub duplicated_keys: Vec<String>,
    /// Rows whose key is not the acknowledged one.
    pub mismatched: Vec<String>,
}

impl OrdersCheck {
    /// Compares acknowledged `(order id, idempotency key)` pairs with the
    /// `(id, idempotency_key)` rows found for them.
    pub fn compare(acknowledged: &[(String, String)], rows: &[(String, String)]) -> Self {
        let mut by_id: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut by_key: BTreeMap<&str, usize> = BTreeMap::new();
        for (id, key) in rows {
            by_id.entry(id).or_default().push(key);
            *by_key.entry(key).or_default() += 1;
        }
        let mut check = OrdersCheck {
            acknowledged: acknowledged.len(),
            ..OrdersCheck::default()
        };
        for (id, key) in acknowledged {
            match by_id.get(id.as_str()) {
                None => check.missing.push(id.clone()),
                Some(keys) => {
                    check.found += 1;
                    if keys.len() != 1 || keys[0] != key {
                        check.mismatched.push(id.clone());
                    }
                }
            }
            if by_key.get(key.as_str()).copied().unwrap_or(0) > 1 {
                check.duplicated_keys.push(key.clone());
            }
        }
        check
    }

    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.duplicated_keys.is_empty() && self.mismatched.is_empty()
    }
}

#[async_trait::async_trait]
impl Probe for InvariantCheck {
    fn kind(&self) -> &'static str {
        "invariant"
    }

    async fn check(&self, cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let Invariant::AcknowledgedOrdersExistOnce = self.invariant;
        let report = cx.report.as_ref().ok_or_else(|| {
            ProbeError::Config(
                "acknowledged_orders_exist_once needs the load report: use it in [[after]] with a [load] section"
                    .into(),
            )
        })?;
        let acknowledged: Vec<(String, String)> = report
            .acknowledged_orders
            .iter()
            .map(|o| (o.order_id.clone(), o.idempotency_key.to_string()))
            .collect();
        let mut rows = Vec::new();
        for chunk in acknowledged.chunks(1000) {
            let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
            let keys: Vec<String> = chunk.iter().map(|(_, key)| key.clone()).collect();
            let found = sqlx::query(
                "SELECT id::text AS id, idempotency_key FROM orders \
                 WHERE id = ANY($1::text[]::uuid[]) OR idempotency_key = ANY($2::text[])",
            )
            .bind(&ids)
            .bind(&keys)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql_error(&e))?;
            for row in found {
                let id: String = row.try_get("id").map_err(|e| sql_error(&e))?;
                let key: String = row.try_get("idempotency_key").map_err(|e| sql_error(&e))?;
                rows.push((id, key));
            }
        }
        let check = OrdersCheck::compare(&acknowledged, &rows);
        let enough = check.acknowledged as u64 >= self.min_acknowledged;
        let ok = check.ok() && enough;
        let detail = format!(
            "{}{} acknowledged, {} found, {} missing, {} duplicated keys, {} mismatched",
            if enough {
                String::new()
            } else {
                format!(
                    "too few orders to prove anything (at least {} expected): ",
                    self.min_acknowledged
                )
            },
            check.acknowledged,
            check.found,
            check.missing.len(),
            check.duplicated_keys.len(),
            check.mismatched.len()
        );
        let mut value = serde_json::to_value(&check).unwrap_or(Value::Null);
        for list in ["missing", "duplicated_keys", "mismatched"] {
            if let Some(Value::Array(items)) = value.get_mut(list) {
                items.truncate(20);
            }
        }
        Ok(Observation::new(ok, value, detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str, key: &str) -> (String, String) {
        (id.to_owned(), key.to_owned())
    }

    #[test]
    fn compares_acknowledged_orders_with_rows() {
        let acked = [pair("a", "k1"), pair("b", "k2"), pair("c", "k3")];
        let rows = [pair("a", "k1"), pair("b", "k2"), pair("x", "k2")];
        let check = OrdersCheck::compare(&acked, &rows);
        assert_eq!(check.found, 2);
        assert_eq!(check.missing, vec!["c".to_owned()]);
        assert_eq!(check.duplicated_keys, vec!["k2".to_owned()]);
        assert!(!check.ok());
        assert!(OrdersCheck::compare(&acked[..1], &rows[..1]).ok());
    }
}
