//! `faultline validate`: parse experiments and resolve them against the target.

use std::path::PathBuf;

use faultline_chaos::experiment::Experiment;
use faultline_chaos::runner::{Bindings, compile};

use super::style::{Paint, paint};

/// Arguments of `faultline validate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline validate chaos/experiments/kill-replica.toml
  faultline validate chaos/experiments/
  faultline validate --var prometheus=http://127.0.0.1:9091 payments-latency.toml
  faultline validate --var-file envs/staging.toml chaos/experiments/

Exit code: 0 when every file is valid, 2 otherwise.")]
pub struct ValidateArgs {
    /// Experiment files or directories of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Override a [target] setting (repeatable): gateway, prometheus, proxy_api,
    /// proxy_api_token, database, keys, fault_admin.<service>, fault_admin_token,
    /// docker.project, docker.labels.<label>, vars.<name>.
    #[arg(long = "var", visible_alias = "set", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// A TOML file shaped like [target] (repeatable), applied before --var.
    #[arg(long = "var-file", value_name = "PATH")]
    pub var_files: Vec<PathBuf>,
    /// Only check the files, not that the target defines what they use.
    #[arg(long)]
    pub syntax_only: bool,
}

impl ValidateArgs {
    pub async fn run(&self) -> anyhow::Result<u8> {
        let colour = super::style::enabled(false);
        let environment = super::run::environment_overrides(&self.var_files, &self.vars)?;
        let bindings = Bindings {
            environment,
            ..Bindings::default()
        };
        let mut bad = 0;
        let files = super::experiment_files(&self.paths)?;
        for file in &files {
            let loaded = if self.syntax_only {
                Experiment::load(file)
            } else {
                Experiment::load_with(file, &bindings.environment)
            };
            let result = loaded.map_err(|e| e.to_string()).and_then(|experiment| {
                if self.syntax_only {
                    return Ok(experiment);
                }
                compile(&experiment, Some(file), &bindings)
                    .map(|_| experiment)
                    .map_err(|e| format!("{}: {e}", file.display()))
            });
            match result {
                Ok(experiment) => println!(
                    "{} {} — {}",
                    paint(colour, Paint::Good, "ok"),
                    file.display(),
                    experiment.title
                ),
                Err(err) => {
                    bad += 1;
                    println!("{} {err}", paint(colour, Paint::Bad, "invalid"));
                }
            }
        }
        if files.is_empty() {
            anyhow::bail!("no experiment files found");
        }
        Ok(if bad == 0 { 0 } else { 2 })
    }
}
