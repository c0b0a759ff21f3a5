//! `faultline coverage`: the detection coverage table of a set of journals.

use std::path::PathBuf;

use anyhow::Context;
use faultline_chaos::coverage::Coverage;

/// Arguments of `faultline coverage`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline coverage target/chaos-reports/
  faultline coverage faultline-journals/*.json --out coverage.md

Directories are searched recursively for *.journal.json; files are read as
given. One row per (alert, experiment): the time to fire (from the first
injection), the time to resolve (from the end of the rollbacks), the alerts
that fired unexpected, and the run's verdict. The latest run of an experiment
wins.")]
pub struct CoverageArgs {
    /// Journal files, or directories searched for *.journal.json.
    #[arg(required = true, value_name = "DIR_OR_FILES")]
    pub paths: Vec<PathBuf>,
    /// Write the Markdown table here instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl CoverageArgs {
    pub fn run(&self) -> anyhow::Result<u8> {
        let coverage = Coverage::from_paths(&self.paths)?;
        let markdown = coverage.render_markdown();
        match &self.out {
            Some(out) => {
                if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                std::fs::write(out, &markdown)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!("{}", out.display());
            }
            None => print!("{markdown}"),
        }
        Ok(0)
    }
}
