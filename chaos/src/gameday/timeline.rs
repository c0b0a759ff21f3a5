//! The game day's timeline picture (SVG, PNG): one lane per run on the
//! day's time axis (coloured by verdict, darker while its faults were in),
//! then the alerts' state lanes, drawn by the same code as a run's plot
//! ([`crate::report::lanes`]).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::record::GameDayReport;
use crate::journal::Verdict;
use crate::report::lanes::{self, Lane, LaneChart, Segment};
use crate::report::plot::{PlotError, draw_err, font};

const WIDTH: u32 = 1200;
const TITLE: u32 = 44;

/// (light, dark) colours of a verdict: the run, and its faults.
fn verdict_colors(verdict: Verdict) -> (RGBColor, RGBColor) {
    match verdict {
        Verdict::Passed => (RGBColor(150, 210, 150), RGBColor(40, 140, 60)),
        Verdict::Failed => (RGBColor(240, 150, 150), RGBColor(190, 20, 20)),
        Verdict::Error => (RGBColor(250, 200, 130), RGBColor(200, 110, 0)),
        Verdict::Interrupted => (RGBColor(200, 200, 200), RGBColor(110, 110, 110)),
        Verdict::Aborted => (RGBColor(210, 170, 230), RGBColor(120, 40, 160)),
    }
}

const RUN_LEGEND: [(&str, RGBColor); 5] = [
    ("passed", RGBColor(40, 140, 60)),
    ("failed", RGBColor(190, 20, 20)),
    ("error", RGBColor(200, 110, 0)),
    ("interrupted", RGBColor(110, 110, 110)),
    ("aborted", RGBColor(120, 40, 160)),
];

fn run_lanes(report: &GameDayReport) -> Vec<Lane> {
    report
        .runs
        .iter()
        .map(|run| {
            let (light, dark) = verdict_colors(run.verdict);
            let mut segments = vec![Segment {
                start_s: run.start_s,
                end_s: run.end_s,
                color: light,
            }];
            if let Some(window) = &run.fault_window {
                segments.push(Segment {
                    start_s: window.start_s,
                    end_s: window.end_s,
                    color: dark,
                });
            }
            Lane {
                label: format!("{}. {}", run.index, run.experiment),
                segments,
            }
        })
        .collect()
}

fn alert_lanes(report: &GameDayReport) -> Vec<Lane> {
    lanes::alert_lanes(
        report
            .runs
            .iter()
            .map(|run| (run.start_s, run.end_s, run.alerts_seen.as_slice())),
    )
}

/// Pixel size of the picture: it grows with the runs and the alerts.
pub fn size(report: &GameDayReport) -> (u32, u32) {
    let alerts = alert_lanes(report).len();
    let alerts_height = if alerts == 0 {
        0
    } else {
        lanes::height(alerts)
    };
    (
        WIDTH,
        TITLE + lanes::height(report.runs.len()) + alerts_height,
    )
}

/// Draws the timeline on `root`.
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &GameDayReport,
) -> Result<(), PlotError> {
    font()?;
    root.fill(&WHITE).map_err(draw_err)?;
    let title = format!(
        "Game day, seed {}: {} runs in {:.0} s",
        report.seed,
        report.runs.len(),
        report.elapsed_s
    );
    root.draw(&Text::new(
        title,
        (i32::try_from(WIDTH / 2).unwrap_or(0), 22),
        ("sans-serif", 24)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(draw_err)?;
    let x_max = report
        .elapsed_s
        .max(report.runs.iter().map(|r| r.end_s).fold(0.0, f64::max))
        .max(1.0);
    let shades: Vec<(f64, f64)> = report
        .runs
        .iter()
        .filter_map(|r| r.fault_window.as_ref().map(|w| (w.start_s, w.end_s)))
        .collect();
    let (_, body) = root.split_vertically(TITLE);
    let runs = run_lanes(report);
    let (runs_area, alerts_area) = body.split_vertically(lanes::height(runs.len()));
    lanes::draw(
        &runs_area,
        &LaneChart {
            caption: "Runs (darker while faults are in)",
            x_max,
            x_desc: "seconds since the game day started",
            lanes: &runs,
            shades: &[],
            legend: &RUN_LEGEND,
        },
    )?;
    let alerts = alert_lanes(report);
    if !alerts.is_empty() {
        lanes::draw(
            &alerts_area,
            &LaneChart {
                caption: "Alerts",
                x_max,
                x_desc: "seconds since the game day started",
                lanes: &alerts,
                shades: &shades,
                legend: &lanes::ALERT_LEGEND,
            },
        )?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// The timeline as an SVG document.
pub fn render_svg(report: &GameDayReport) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size(report)).into_drawing_area();
        draw(&root, report)?;
    }
    Ok(svg)
}

/// Writes the timeline as a PNG file.
pub fn write_png(report: &GameDayReport, path: &Path) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, size(report)).into_drawing_area();
    draw(&root, report)
}
