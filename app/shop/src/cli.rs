//! The command line: one binary, one subcommand per role.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use faultline_telemetry::Telemetry;

use crate::config::DatabaseConfig;
use crate::startup::{Application, RoleConfig};

/// faultline's shop backend: one binary, one role per subcommand.
///
/// Every setting is also read from the environment variable named in each
/// subcommand's --help, so the same image runs any role. Logs are JSON lines on
/// stdout, filtered by RUST_LOG (default: info); traces go over OTLP/gRPC as the
/// OTEL_* variables say (OTEL_TRACES_EXPORTER=none turns export off).
#[derive(Debug, Parser)]
#[command(name = "faultline-shop", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The roles, one subcommand each (see [`RoleConfig`]); boxed, the
    /// largest settings by far.
    #[command(flatten)]
    Role(Box<RoleConfig>),
    /// Drive traffic at the gateway: a realistic mix, live progress, and a
    /// summary per route (count, errors, p50/p95/p99/max) as text or --json.
    ///
    /// Example: faultline-shop loadgen --target http://127.0.0.1:8080 --rate 50 --duration 30s
    Loadgen(faultline_loadgen::LoadgenArgs),
    /// Apply the database migrations and exit.
    ///
    /// The catalog, orders and worker roles also apply them at start, under a
    /// PostgreSQL advisory lock, so running this first is optional.
    Migrate {
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// List the events the workers gave up on (the dead-letter queue), or
    /// send them back to the workers.
    ///
    /// Examples:
    ///   faultline-shop dead-letters list
    ///   faultline-shop dead-letters replay --event-id 6f1c2d1e-0b8e-4bb1-9a51-2f0f9e4f6a10
    ///   faultline-shop dead-letters replay --all
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
        #[command(flatten)]
        broker: crate::broker::BrokerConfig,
    },
    /// Mint a bearer token signed with the current key of a key directory
    /// (development and tests; a real deployment's tokens come from its
    /// identity provider).
    ///
    /// Example: faultline-shop token --sub alice --role customer
    Token {
        /// The subject: who the token says the caller is.
        #[arg(long)]
        sub: String,
        /// customer (their own orders) or admin (every order).
        #[arg(long, default_value = "customer")]
        role: faultline_auth::Role,
        /// How long the token is valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Sign with this key of the directory instead of the current one.
        #[arg(long)]
        kid: Option<String>,
        #[command(flatten)]
        keys: KeysDir,
    },
    /// Manage a key directory: the signing keys, their JWKS (what the gateway
    /// and orders trust) and which key signs new tokens.
    ///
    /// Examples:
    ///   faultline-shop keys init       # at first start: a key unless there is one
    ///   faultline-shop keys rotate     # a new current key; the old one stays trusted
    ///   faultline-shop keys retire --kid key-0a1b2c3d
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        keys: KeysDir,
    },
    /// Exit 0 when URL answers 2xx: a healthcheck for images without curl.
    ///
    /// Example: faultline-shop probe http://127.0.0.1:9000/health/ready
    Probe {
        /// The URL to GET.
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// Where the signing keys are.
#[derive(Debug, clap::Args)]
pub struct KeysDir {
    /// The key directory (PKCS#8 keys, jwks.json, current).
    #[arg(
        long = "keys",
        env = "FAULTLINE_AUTH_KEYS",
        default_value = "keys",
        global = true
    )]
    pub dir: std::path::PathBuf,
}

/// What to do with a key directory.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create the directory and a first key, unless it has a current key.
    Init,
    /// Add a key and make it current; the others stay in the JWKS.
    Rotate {
        /// The new key's id (default: key-<random>).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Drop a key from the JWKS and delete it: its tokens stop working.
    Retire {
        #[arg(long)]
        kid: String,
    },
}

/// What to do with the dead letters.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Print the dead letters, oldest first; they all stay in the queue.
    List {
        /// Print at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish dead letters again, as first attempts; each leaves the queue
    /// once the broker confirmed its copy.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["event_id", "all"])))]
    Replay {
        /// Replay this event (repeat for several).
        #[arg(long = "event-id")]
        event_id: Vec<uuid::Uuid>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
        /// Replay at most this many.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

/// Parses the command line and runs the command; errors go to stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    faultline_signal::install_crypto_provider();
    faultline_signal::run_main("faultline-shop", ExitCode::FAILURE, run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let role = match command {
        Command::Role(role) => *role,
        Command::Migrate { database } => {
            migrate(&database).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Loadgen(args) => return faultline_loadgen::run_cli(args).await,
        Command::DeadLetters { action, broker } => {
            dead_letters(action, &broker).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Token {
            sub,
            role,
            ttl,
            kid,
            keys,
        } => {
            let token = token(&keys, &sub, role, ttl, kid.as_deref())?;
            std::io::Write::write_all(
                &mut std::io::stdout().lock(),
                format!("{token}\n").as_bytes(),
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Keys { action, keys } => {
            manage_keys(&keys, action)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Probe { url, timeout } => {
            crate::probe::probe(&url, timeout).await?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    serve(role).await?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: RoleConfig) -> anyhow::Result<()> {
    let telemetry = Telemetry::init(config.name(), env!("CARGO_PKG_VERSION"))
        .context("cannot set up telemetry")?;
    tracing::info!(role = config.name(), ?config, "starting");
    let result = async {
        let app = Application::build(config).await.context("cannot start")?;
        app.run_until_stopped(faultline_signal::shutdown()).await?;
        Ok(())
    }
    .await;
    telemetry.shutdown();
    result
}

fn token(
    keys: &KeysDir,
    subject: &str,
    role: faultline_auth::Role,
    ttl: Duration,
    kid: Option<&str>,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        faultline_auth::Identity::valid_subject(subject),
        "--sub must be 1 to {} characters without control characters",
        faultline_auth::claims::MAX_SUBJECT_LEN
    );
    let dir = faultline_auth::KeyDir::new(&keys.dir);
    let key = dir.signing_key(kid).with_context(|| {
        format!(
            "no signing key in {} (create one with `faultline-shop keys init --keys {}`)",
            keys.dir.display(),
            keys.dir.display()
        )
    })?;
    Ok(faultline_auth::Minter::new(key).token(subject, role, ttl)?)
}

fn manage_keys(keys: &KeysDir, action: KeysAction) -> anyhow::Result<()> {
    let dir = faultline_auth::KeyDir::new(&keys.dir);
    match action {
        KeysAction::Init => {
            let kid = dir.ensure()?;
            eprintln!(
                "faultline-shop: {} signs with {kid}; its public keys are in {}",
                keys.dir.display(),
                dir.jwks_path().display()
            );
        }
        KeysAction::Rotate { kid } => {
            let kid = dir.rotate(kid.as_deref())?;
            eprintln!(
                "faultline-shop: {kid} is the current key; the others stay trusted until retired"
            );
        }
        KeysAction::Retire { kid } => {
            dir.retire(&kid)?;
            eprintln!(
                "faultline-shop: {kid} retired: its tokens are refused once verifiers re-read the JWKS"
            );
        }
    }
    Ok(())
}

async fn dead_letters(
    action: DeadLetterAction,
    broker: &crate::broker::BrokerConfig,
) -> anyhow::Result<()> {
    use std::io::Write;

    use crate::broker::dead_letters;

    let uri = broker
        .uri()?
        .context("no broker: set FAULTLINE_AMQP_URL (or --amqp-url)")?;
    let mut stdout = std::io::stdout().lock();
    match action {
        DeadLetterAction::List { limit, json } => {
            let letters = dead_letters::list(&uri, limit)
                .await
                .context("cannot list the dead letters")?;
            for letter in &letters {
                if json {
                    writeln!(stdout, "{}", serde_json::to_string(letter)?)?;
                } else {
                    writeln!(
                        stdout,
                        "{}  {}  order {}  attempt {}  {} from {}\n    {}",
                        letter.event_id.as_deref().unwrap_or("(no id)"),
                        letter.kind.as_deref().unwrap_or("(no kind)"),
                        letter.aggregate_id.as_deref().unwrap_or("-"),
                        letter.attempt,
                        letter.reason.as_deref().unwrap_or("-"),
                        letter.queue.as_deref().unwrap_or("-"),
                        letter.body,
                    )?;
                }
            }
            eprintln!("faultline-shop: {} dead letter(s) listed", letters.len());
        }
        DeadLetterAction::Replay {
            event_id,
            all,
            limit,
        } => {
            let only = if all {
                std::collections::BTreeSet::new()
            } else {
                event_id.iter().map(ToString::to_string).collect()
            };
            let report = dead_letters::replay(&uri, &only, limit)
                .await
                .context("cannot replay the dead letters")?;
            for id in &report.replayed {
                writeln!(stdout, "{id}")?;
            }
            eprintln!(
                "faultline-shop: {} replayed, {} left in the queue",
                report.replayed.len(),
                report.kept
            );
        }
    }
    Ok(())
}

async fn migrate(database: &DatabaseConfig) -> anyhow::Result<()> {
    let pool = crate::db::lazy_pool(database, "migrate")?;
    crate::db::MIGRATOR
        .run(&pool)
        .await
        .context("cannot apply the migrations")?;
    pool.close().await;
    eprintln!("faultline-shop: the database schema is up to date");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        // Duplicate argument ids across flattened settings, and the like,
        // fail here rather than silently in a release build.
        Cli::command().debug_assert();
    }

    #[test]
    fn a_minted_token_verifies_against_the_directory_after_a_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeysDir {
            dir: tmp.path().join("keys"),
        };
        let err = token(
            &keys,
            "alice",
            faultline_auth::Role::Customer,
            Duration::from_secs(60),
            None,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("keys init"), "{err:#}");
        manage_keys(&keys, KeysAction::Init).unwrap();
        let before = token(
            &keys,
            "alice",
            faultline_auth::Role::Customer,
            Duration::from_secs(60),
            None,
        )
        .unwrap();
        manage_keys(
            &keys,
            KeysAction::Rotate {
                kid: Some("second".into()),
            },
        )
        .unwrap();
        let after = token(
            &keys,
            "bob",
            faultline_auth::Role::Admin,
            Duration::from_secs(60),
            None,
        )
        .unwrap();
        let jwks = std::fs::read_to_string(keys.dir.join("jwks.json")).unwrap();
        let verifier = faultline_auth::Verifier::new(
            faultline_auth::KeySet::from_jwks(&jwks).unwrap().0,
            faultline_auth::Policy::default(),
        );
        assert_eq!(verifier.verify(&before).unwrap().subject, "alice");
        assert_eq!(
            verifier.verify(&after).unwrap().role,
            faultline_auth::Role::Admin
        );
        assert!(
            token(
                &keys,
                "a\nb",
                faultline_auth::Role::Customer,
                Duration::from_secs(60),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn the_key_directory_is_named_before_or_after_the_action() {
        for args in [
            ["faultline-shop", "keys", "init", "--keys", "/k"],
            ["faultline-shop", "keys", "--keys", "/k", "init"],
        ] {
            let Command::Keys { keys, action } = Cli::try_parse_from(args).unwrap().command else {
                panic!("not keys");
            };
            assert_eq!(keys.dir, std::path::PathBuf::from("/k"));
            assert!(matches!(action, KeysAction::Init));
        }
    }

    #[test]
    fn the_broker_url_reaches_the_roles_that_use_it() {
        let cli = Cli::try_parse_from([
            "faultline-shop",
            "worker",
            "--database-url",
            "postgres://db/shop",
            "--amqp-url",
            "amqp://rabbitmq/%2f",
            "--catalog-urls",
            "http://catalog",
            "--payments-urls",
            "http://payments",
        ])
        .unwrap();
        let Command::Role(role) = cli.command else {
            panic!("not a role");
        };
        let RoleConfig::Worker(worker) = *role else {
            panic!("not the worker");
        };
        assert_eq!(worker.database.url, "postgres://db/shop");
        assert_eq!(worker.broker.url.as_deref(), Some("amqp://rabbitmq/%2f"));
    }
}
