//! `faultline`: chaos experiments against the faultline stack.
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use faultline_chaos::proxy::cli::ProxyArgs;

/// faultline: chaos experiments against the faultline stack.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the fault proxy: TCP proxies with toxics, driven by a
    /// Toxiproxy-compatible HTTP API.
    Proxy(ProxyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "exiting");
            eprintln!("faultline: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Proxy(args) => {
            let telemetry =
                faultline_telemetry::Telemetry::init("faultline-proxy", env!("CARGO_PKG_VERSION"))
                    .context("cannot set up telemetry")?;
            let result = args.run(faultline_chaos::signal::shutdown()).await;
            telemetry.shutdown();
            result?;
        }
    }
    Ok(())
}
