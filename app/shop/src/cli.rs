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
    /// The roles, one subcommand each (see [`RoleConfig`]).
    #[command(flatten)]
    Role(RoleConfig),
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

/// Parses the command line and runs the command; errors go to stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    faultline_signal::install_crypto_provider();
    faultline_signal::run_main("faultline-shop", ExitCode::FAILURE, run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let role = match command {
        Command::Role(role) => role,
        Command::Migrate { database } => {
            migrate(&database).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Loadgen(args) => return faultline_loadgen::run_cli(args).await,
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
