//! The command line: one binary, one subcommand per role.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::ServeConfig;
use crate::startup::Application;

/// faultline's shop backend.
///
/// Every setting is also read from the environment variable named in --help,
/// so the same image runs any role. Logs are JSON lines on stdout, filtered by
/// RUST_LOG (default: info).
#[derive(Debug, Parser)]
#[command(name = "faultline-shop", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a service: health, readiness and /metrics on the admin port.
    Serve(ServeConfig),
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
    // One TLS provider for the whole process (ring, as sqlx and bollard use).
    // An error means one is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "exiting");
            eprintln!("faultline-shop: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(config) => serve(config).await,
        Command::Probe { url, timeout } => Ok(crate::probe::probe(&url, timeout).await?),
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    faultline_telemetry::logs::init().context("cannot set up logging")?;
    tracing::info!(?config, "starting");
    let app = Application::build(config).await.context("cannot start")?;
    faultline_telemetry::metrics::record_build_info("shop", env!("CARGO_PKG_VERSION"));
    app.run_until_stopped(crate::shutdown::signal()).await?;
    Ok(())
}
