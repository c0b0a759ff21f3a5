//! `faultline report`: Markdown and a timeline plot (SVG, PNG) from a
//! journal, or the journal in Chaos Toolkit's journal shape.

use std::path::PathBuf;

use anyhow::Context;
use faultline_chaos::journal::Journal;

/// What `faultline report` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown, SVG and PNG.
    #[default]
    Faultline,
    /// The journal in Chaos Toolkit's journal shape (JSON), for its tooling.
    Chaostoolkit,
}

/// Arguments of `faultline report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline report journal.json                 # journal.md, journal.svg, journal.png
  faultline report journal.json --out reports/
  faultline report --format chaostoolkit journal.json --out journal.ctk.json
  faultline report --format chaostoolkit journal.json > journal.ctk.json

With --format chaostoolkit, --out is the file to write (default: stdout).")]
pub struct ReportArgs {
    /// The journal written by `faultline run`.
    pub journal: PathBuf,
    /// Directory for the report (default: the journal's); with
    /// `--format chaostoolkit`, the file to write (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum, default_value_t = Format::Faultline)]
    pub format: Format,
}

impl ReportArgs {
    pub fn run(&self) -> anyhow::Result<u8> {
        let journal = Journal::load(&self.journal)?;
        if self.format == Format::Chaostoolkit {
            let json = faultline_chaos::report::chaostoolkit::to_json(&journal)
                .context("cannot render the Chaos Toolkit journal")?;
            match &self.out {
                Some(path) => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                    }
                    std::fs::write(path, json + "\n")
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("{}", path.display());
                }
                None => println!("{json}"),
            }
            return Ok(0);
        }
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
