//! `faultline regress`: a promtool unit test from a journal's evidence.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use faultline_chaos::Journal;
use faultline_chaos::evidence::promtool::{promtool_test, relative_path};

/// Arguments of `faultline regress`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline regress target/chaos-reports/kill_replica/kill-replica.journal.json \\
      --rules alerts/compressed/*.rules.yml --out alerts/tests/regress/kill-replica.test.yml
  promtool test rules alerts/tests/regress/kill-replica.test.yml

The journal must hold `evidence`: the raw series behind the expected alerts
that fired, which `faultline run` gathers from Prometheus at the end of a run.
Give the rule files the run used (the compressed ones for the demo and the
container tests); the test file names them relative to its own directory.")]
pub struct RegressArgs {
    /// The journal of a run whose expected alerts fired.
    pub journal: PathBuf,
    /// The rule files to load (repeatable; several after one --rules).
    #[arg(long = "rules", required = true, num_args = 1.., value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Write the test file here instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The alerting rules' names in a rule file.
fn alert_names(path: &Path) -> anyhow::Result<BTreeSet<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML", path.display()))?;
    let Some(groups) = yaml.get("groups").and_then(|g| g.as_sequence()) else {
        bail!("{}: groups: not a Prometheus rule file", path.display());
    };
    Ok(groups
        .iter()
        .filter_map(|group| group.get("rules").and_then(|r| r.as_sequence()))
        .flatten()
        .filter_map(|rule| rule.get("alert").and_then(|a| a.as_str()))
        .map(str::to_owned)
        .collect())
}

impl RegressArgs {
    pub fn run(&self) -> anyhow::Result<u8> {
        let journal = Journal::load(&self.journal)?;
        let mut defined = BTreeSet::new();
        for file in &self.rules {
            defined.extend(alert_names(file)?);
        }
        if let Some(evidence) = &journal.evidence {
            let missing: BTreeSet<&str> = evidence
                .alerts
                .iter()
                .map(|a| a.alert.as_str())
                .filter(|a| !defined.contains(*a))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "{}: evidence.alerts: {} defined in none of {}",
                    self.journal.display(),
                    missing.into_iter().collect::<Vec<_>>().join(", "),
                    self.rules
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for note in &evidence.notes {
                eprintln!("faultline: note from the run: {note}");
            }
        }
        let base = match &self.out {
            Some(out) => out
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            None => PathBuf::from("."),
        };
        let rule_files: Vec<String> = self
            .rules
            .iter()
            .map(|file| relative_path(file, &base).display().to_string())
            .collect();
        let text = promtool_test(&journal, &rule_files)
            .with_context(|| format!("{}", self.journal.display()))?;
        match &self.out {
            Some(out) => {
                std::fs::create_dir_all(&base)
                    .with_context(|| format!("cannot create {}", base.display()))?;
                std::fs::write(out, &text)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!("{}", out.display());
            }
            None => print!("{text}"),
        }
        Ok(0)
    }
}
