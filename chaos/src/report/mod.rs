//! Rendering a journal: Markdown ([`markdown`]) and a timeline plot
//! ([`plot`]) as SVG and PNG, whose alert state lanes ([`lanes`]) the game
//! day's timeline shares.

pub mod chaostoolkit;
pub mod lanes;
pub mod markdown;
pub mod plot;

use std::path::{Path, PathBuf};

use crate::journal::Journal;

/// The files a report consists of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub svg: PathBuf,
    pub png: PathBuf,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Writes `<dir>/<stem>.md`, `<stem>.svg` and `<stem>.png`.
pub fn write(journal: &Journal, dir: &Path, stem: &str) -> Result<ReportFiles, ReportError> {
    let files = ReportFiles {
        markdown: dir.join(format!("{stem}.md")),
        svg: dir.join(format!("{stem}.svg")),
        png: dir.join(format!("{stem}.png")),
    };
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|error| ReportError::Write {
            path: path.to_owned(),
            error,
        })
    };
    std::fs::create_dir_all(dir).map_err(|error| ReportError::Write {
        path: dir.to_owned(),
        error,
    })?;
    write(&files.svg, plot::render_svg(journal)?.as_bytes())?;
    plot::write_png(journal, &files.png)?;
    let plot_name = format!("{stem}.svg");
    write(
        &files.markdown,
        markdown::render(journal, Some(&plot_name)).as_bytes(),
    )?;
    Ok(files)
}
