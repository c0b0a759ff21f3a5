//! `faultline list`: the experiments in a directory.

use std::path::PathBuf;

use faultline_chaos::experiment::{Experiment, FaultKind};
use serde_json::json;

/// Arguments of `faultline list`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline list
  faultline list chaos/experiments --json")]
pub struct ListArgs {
    /// Directories or files (default: ./experiments or ./chaos/experiments).
    pub paths: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn summary(experiment: &Experiment) -> String {
    experiment
        .method
        .faults
        .iter()
        .map(|f| match &f.kind {
            FaultKind::Toxic(t) => format!("{} toxic on {}", t.toxic, t.proxy),
            FaultKind::ProxyDown(p) => format!("proxy {} down", p.proxy),
            FaultKind::Container(c) => format!("{:?} {}", c.action, c.target).to_lowercase(),
            FaultKind::Http(h) => format!("{} {}", h.method, h.url),
            FaultKind::Load(_) => "load surge".to_owned(),
            FaultKind::Sql(s) => format!("SQL {:?}", s.statement),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ListArgs {
    pub fn run(&self) -> anyhow::Result<u8> {
        let paths = if self.paths.is_empty() {
            vec![super::default_experiments_dir()]
        } else {
            self.paths.clone()
        };
        let mut rows = Vec::new();
        let mut failed = false;
        for file in super::experiment_files(&paths)? {
            match Experiment::load(&file) {
                Ok(experiment) => rows.push((file, experiment)),
                Err(err) => {
                    failed = true;
                    eprintln!("faultline: {err}");
                }
            }
        }
        if self.json {
            let items: Vec<_> = rows
                .iter()
                .map(|(file, e)| {
                    json!({
                        "path": file.display().to_string(),
                        "title": e.title,
                        "tags": e.tags,
                        "faults": summary(e),
                        "expected_alerts": e.expected_alerts.iter().map(|a| a.alert.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        } else {
            for (file, e) in &rows {
                println!("{}\n  {}", file.display(), e.title);
                if !e.tags.is_empty() {
                    println!("  tags: {}", e.tags.join(", "));
                }
                println!("  faults: {}", summary(e));
                if !e.expected_alerts.is_empty() {
                    let alerts: Vec<_> =
                        e.expected_alerts.iter().map(|a| a.alert.as_str()).collect();
                    println!("  expects: {}", alerts.join(", "));
                }
            }
        }
        Ok(if failed { 2 } else { 0 })
    }
}
