//! `faultline report`: Markdown and a timeline plot (SVG, PNG) from a journal.

use std::path::PathBuf;

use anyhow::Context;
use faultline_chaos::journal::Journal;

/// Arguments of `faultline report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline report journal.json                 # journal.md, journal.svg, journal.png
  faultline report journal.json --out reports/")]
pub struct ReportArgs {
    /// The journal written by `faultline run`.
    pub journal: PathBuf,
    /// Directory for the report (default: the journal's).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ReportArgs {
    pub fn run(&self) -> anyhow::Result<u8> {
        let journal = Journal::load(&self.journal)?;
        let dir = self.out.clone().unwrap_or_else(|| {
            self.journal
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
        });
        let stem = self
            .journal
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("journal");
        let files = faultline_chaos::report::write(&journal, &dir, stem)
            .with_context(|| format!("cannot write the report of {}", self.journal.display()))?;
        println!("{}", files.markdown.display());
        println!("{}", files.svg.display());
        println!("{}", files.png.display());
        Ok(0)
    }
}
