//! SQL faults against a real PostgreSQL: the local image
//! `faultline-local/postgres:15` (built by `compose/build-images`; trust
//! auth, user `postgres`), one container per test.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::polling::eventually;
use faultline_chaos::actions::sql::SqlInjection;
use faultline_chaos::actions::{Fault, Services};
use faultline_chaos::cleanup;
use faultline_chaos::environment::{DockerTarget, Environment, SecretUrl};
use faultline_chaos::experiment::Experiment;
use faultline_chaos::journal::{ActivityStatus, Journal, Status, Verdict};
use faultline_chaos::ledger::{self, Ledger};
use faultline_chaos::runner::{Bindings, LedgerDir};
use faultline_chaos::undo::UndoRecord;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::BOUND;

const IMAGE: (&str, &str) = ("faultline-local/postgres", "15");

/// PostgreSQL in a container, for one test.
struct Postgres {
    _container: ContainerAsync<GenericImage>,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    url: String,
}

impl Postgres {
    async fn start(test: &str) -> anyhow::Result<Self> {
        super::require_image(IMAGE).await?;
        let container = GenericImage::new(IMAGE.0, IMAGE.1)
            .with_exposed_port(ContainerPort::Tcp(5432))
            .with_wait_for(WaitFor::message_on_stderr(
                "database system is ready to accept connections",
            ))
            .with_cmd(["-c", "fsync=off"])
            .with_label("org.faultline.test", test)
            .with_startup_timeout(BOUND)
            .start()
            .await
            .context("the PostgreSQL container starts")?;
        let port = container.get_host_port_ipv4(5432).await?;
        Ok(Self {
            _container: container,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        })
    }

    async fn connect(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(&self.url)
            .await
            .context("the test connects to PostgreSQL")
    }

    async fn table_exists(&self, table: &str) -> anyhow::Result<bool> {
        let mut connection = self.connect().await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut connection)
            .await?;
        connection.close().await?;
        Ok(exists)
    }

    /// How many statements of faultline's (by application name) that
    /// start with `prefix` are running now.
    async fn running(&self, prefix: &str) -> anyhow::Result<i64> {
        let mut connection = self.connect().await?;
        let row = sqlx::query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE application_name = 'faultline' AND state = 'active' AND starts_with(query, $1)",
        )
        .bind(prefix)
        .fetch_one(&mut connection)
        .await?;
        connection.close().await?;
        Ok(row.try_get("n")?)
    }
}

/// An experiment with one sql fault of `fields`, for `duration`.
fn experiment(fields: &str, duration: &str) -> anyhow::Result<Experiment> {
    let text = format!(
        r#"
title = "a sql fault"

[settings]
probe_interval = "100ms"

[method]

[[method.faults]]
name = "chaos probe table"
type = "sql"
{fields}
duration = "{duration}"
"#
    );
    Ok(Experiment::parse(&text, "sql.toml")?)
}

fn bindings(postgres: &Postgres, ledger: &std::path::Path) -> Bindings {
    let environment = Environment {
        database: Some(postgres.url.clone()),
        ..Environment::default()
    };
    Bindings {
        environment,
        ledger: LedgerDir::At(ledger.to_owned()),
        ..Bindings::default()
    }
}

/// The method's activity of `step` for the fault.
fn step<'a>(
    journal: &'a Journal,
    step: &str,
) -> anyhow::Result<&'a faultline_chaos::journal::Activity> {
    journal
        .run
        .iter()
        .find(|a| a.activity.name == "chaos probe table" && a.activity.step == step)
        .with_context(|| format!("no {step} step in {:#?}", journal.run))
}

#[tokio::test]
async fn a_sql_fault_runs_its_statement_then_its_undo_after_its_duration() {
    let postgres = Postgres::start("sql_fault_runs").await.unwrap();
    // The statement takes a second, so that it can be seen running: by
    // then its undo must be in the ledger already.
    let experiment = experiment(
        r#"statement = "CREATE TABLE chaos_probe AS SELECT 1 AS id FROM pg_sleep(1)"
undo = "DROP TABLE IF EXISTS chaos_probe"
verify = "SELECT to_regclass('chaos_probe') IS NOT NULL""#,
        "3s",
    )
    .unwrap();
    let ledger_dir = tempfile::tempdir().unwrap();
    let run = faultline_chaos::run_experiment(experiment, bindings(&postgres, ledger_dir.path()));
    let watcher = async {
        eventually("the statement runs", BOUND, || async {
            (postgres.running("CREATE TABLE chaos_probe").await.ok()? > 0).then_some(())
        })
        .await;
        let recorded = ledger::read_all(ledger_dir.path()).unwrap();
        let in_flight = postgres.table_exists("chaos_probe").await.unwrap();
        eventually("the table is there", BOUND, || async {
            postgres
                .table_exists("chaos_probe")
                .await
                .ok()?
                .then_some(())
        })
        .await;
        let seen_at = Instant::now();
        eventually("the undo drops the table", BOUND, || async {
            (!postgres.table_exists("chaos_probe").await.ok()?).then_some(())
        })
        .await;
        (recorded, in_flight, seen_at.elapsed())
    };
    let (journal, (recorded, in_flight, visible_for)) =
        tokio::time::timeout(BOUND, async { tokio::join!(run, watcher) })
            .await
            .unwrap();
    let journal = journal.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    assert_eq!(journal.status, Status::Completed);

    // While the statement ran, before its table existed, the ledger held
    // its undo.
    assert!(
        !in_flight,
        "the table appears only once the statement is done"
    );
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        recorded[0].1.faults["chaos probe table"],
        vec![UndoRecord::Sql {
            url: SecretUrl::new(postgres.url.clone()),
            statement: "DROP TABLE IF EXISTS chaos_probe".into(),
            timeout_ms: 5000,
        }]
    );

    // The undo ran after the fault's 3 s, not before.
    let inject = step(&journal, "inject").unwrap();
    let revert = step(&journal, "revert").unwrap();
    assert_eq!(inject.activity.kind, "sql");
    assert_eq!(inject.status, ActivityStatus::Succeeded);
    assert_eq!(inject.output["returned"]["rows_affected"], 1, "{inject:?}");
    assert!(
        revert.start_s - inject.start_s >= 3.0,
        "reverted {:.2}s after the injection",
        revert.start_s - inject.start_s
    );
    assert_eq!(revert.status, ActivityStatus::Succeeded, "{revert:?}");
    assert!(
        visible_for >= Duration::from_secs(1),
        "the table lived {visible_for:?}"
    );
    // The evidence: verify said true, just before the revert.
    let effect = step(&journal, "effect").unwrap();
    assert_eq!(effect.status, ActivityStatus::Succeeded, "{effect:?}");
    assert_eq!(effect.output["effective"], true, "{effect:?}");
    assert_eq!(effect.output["evidence"]["value"], true, "{effect:?}");
    assert!(effect.end_s <= revert.end_s, "read before the revert");
    assert!(ledger::read_all(ledger_dir.path()).unwrap().is_empty());
}

#[tokio::test]
async fn a_sql_fault_whose_verify_is_false_or_fails_is_not_effective() {
    let postgres = Postgres::start("sql_not_effective").await.unwrap();
    for (verify, evidence) in [
        // The statement ran, but verify looks at something else.
        (
            "SELECT to_regclass('chaos_elsewhere') IS NOT NULL",
            "\"value\":false",
        ),
        ("SELECT NULL::boolean", "\"value\":null"),
        (
            "SELECT * FROM no_such_table",
            "relation \\\"no_such_table\\\" does not exist",
        ),
        ("SELECT 1", "verify must return one boolean, not 1"),
    ] {
        let experiment = experiment(
            &format!(
                "statement = \"CREATE TABLE chaos_probe (id int)\"\n\
                 undo = \"DROP TABLE IF EXISTS chaos_probe\"\n\
                 verify = \"{verify}\""
            ),
            "1s",
        )
        .unwrap();
        let ledger_dir = tempfile::tempdir().unwrap();
        let journal = tokio::time::timeout(
            BOUND,
            faultline_chaos::run_experiment(experiment, bindings(&postgres, ledger_dir.path())),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(journal.verdict, Verdict::Failed, "{verify}: {journal:#?}");
        let reason = journal
            .reasons
            .iter()
            .find(|r| r.contains("fault not effective: chaos probe table"))
            .unwrap_or_else(|| panic!("{verify}: {:?}", journal.reasons));
        assert!(reason.contains(evidence), "{verify}: {reason}");
        let effect = step(&journal, "effect").unwrap();
        assert_eq!(effect.status, ActivityStatus::Failed, "{effect:?}");
        // Not effective, and still undone.
        assert_eq!(
            step(&journal, "revert").unwrap().status,
            ActivityStatus::Succeeded
        );
        assert!(
            !postgres.table_exists("chaos_probe").await.unwrap(),
            "{verify}"
        );
        assert!(ledger::read_all(ledger_dir.path()).unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_killed_runs_sql_undo_is_run_by_cleanup_and_a_hung_statement_times_out() {
    let postgres = Postgres::start("sql_cleanup").await.unwrap();
    let fault = SqlInjection::new(
        "chaos probe table",
        SecretUrl::new(postgres.url.clone()),
        "CREATE TABLE chaos_probe (id int)",
        "DROP TABLE IF EXISTS chaos_probe",
    );
    // What the run does: the ledger first, then the statement; then it dies.
    let dir = tempfile::tempdir().unwrap();
    let prepared = fault.prepare().await.unwrap();
    let run_ledger = Ledger::new(Some(dir.path()), "killed-run", "sql");
    run_ledger
        .record("chaos probe table", &prepared.undo)
        .unwrap();
    let returned = fault.inject(&prepared).await.unwrap();
    assert_eq!(returned["returned"]["rows_affected"], 0, "{returned}");
    assert!(postgres.table_exists("chaos_probe").await.unwrap());
    drop(run_ledger);

    // `faultline cleanup` (and the guardian) revert what the ledger holds.
    let services = Services::new(DockerTarget::default()).unwrap();
    let mut runs = ledger::read_all(dir.path()).unwrap();
    assert_eq!(runs.len(), 1);
    let (path, run) = runs.remove(0);
    let done = cleanup::revert_run(&path, run.clone(), &services)
        .await
        .unwrap();
    assert_eq!(done.failures(), 0, "{done:?}");
    assert!(done.removed);
    assert_eq!(
        done.steps[0].record.to_string(),
        format!(
            "run SQL \"DROP TABLE IF EXISTS chaos_probe\" on {}",
            postgres.url
        )
    );
    assert!(!postgres.table_exists("chaos_probe").await.unwrap());
    // Undoing twice is harmless.
    for record in &run.faults["chaos probe table"] {
        record.execute(&services).await.unwrap();
    }

    // A statement that hangs ends at its timeout, on our side and on the
    // server's.
    let hung = SqlInjection::new(
        "hung",
        SecretUrl::new(postgres.url.clone()),
        "SELECT pg_sleep(60)",
        "SELECT 1",
    )
    .with_timeout(Duration::from_secs(1));
    let prepared = hung.prepare().await.unwrap();
    let started = Instant::now();
    let err = hung.inject(&prepared).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(
        err.starts_with("sql fault \"hung\": statement on postgres://postgres@127.0.0.1:")
            && (err.contains("did not finish within 1s")
                || err.contains("canceling statement due to statement timeout")),
        "{err}"
    );
    eventually("the server gives up the statement too", BOUND, || async {
        (postgres.running("SELECT pg_sleep(60)").await.ok()? == 0).then_some(())
    })
    .await;

    // A statement the server refuses says why, naming the fault.
    let refused = SqlInjection::new(
        "two statements",
        SecretUrl::new(postgres.url.clone()),
        "SELECT 1; SELECT 2",
        "SELECT 1",
    );
    let err = refused
        .inject(&refused.prepare().await.unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("sql fault \"two statements\": statement on")
            && err.contains("cannot insert multiple commands into a prepared statement"),
        "{err}"
    );
}
