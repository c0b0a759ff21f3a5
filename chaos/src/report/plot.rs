//! The timeline plot of a journal, as SVG or PNG: latency percentiles of the
//! harness's load (p50, p95, p99) on top, the error ratio below, then the
//! alerts as state lanes (one row per alert series: pending, firing,
//! resolved; [`super::lanes`]), all on one time axis, the fault window
//! shaded in each. The plot grows in height with the number of alerts.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (the `dejavu`
//! crate), so rendering needs no system fonts.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::lanes::{self, FAULT, Lane, LaneChart};
use crate::journal::{Journal, Verdict};

/// Pixel size of the plot without alert lanes; [`size`] adds theirs.
pub const SIZE: (u32, u32) = (1200, 760);

/// Pixel size of the plot of `journal`: [`SIZE`], plus the alert lanes.
pub fn size(journal: &Journal) -> (u32, u32) {
    let lanes = alert_lanes(journal).len();
    if lanes == 0 {
        SIZE
    } else {
        (SIZE.0, SIZE.1 + lanes::height(lanes))
    }
}

fn x_max(journal: &Journal) -> f64 {
    let points = journal
        .load
        .as_ref()
        .map(|l| l.timeline.as_slice())
        .unwrap_or(&[]);
    journal
        .duration
        .max(points.iter().map(|p| p.t_s).fold(0.0, f64::max))
        .max(1.0)
}

fn alert_lanes(journal: &Journal) -> Vec<Lane> {
    lanes::alert_lanes([(0.0, x_max(journal), journal.alerts_seen.as_slice())])
}

/// Why a plot could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    #[error("cannot load the embedded font")]
    Font,
}

/// Registers the embedded font (once).
pub(crate) fn font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

pub(crate) fn draw_err<E: std::fmt::Debug>(err: E) -> PlotError {
    PlotError::Draw(format!("{err:?}"))
}

const P50: RGBColor = RGBColor(31, 119, 180);
const P95: RGBColor = RGBColor(255, 127, 14);
const P99: RGBColor = RGBColor(214, 39, 40);
const ERRORS: RGBColor = RGBColor(148, 103, 189);

/// Draws the journal's timeline on `root`.
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    journal: &Journal,
) -> Result<(), PlotError> {
    font()?;
    root.fill(&WHITE).map_err(draw_err)?;
    let verdict = match journal.verdict {
        Verdict::Passed => "PASSED",
        Verdict::Failed => "FAILED",
        Verdict::Error => "ERROR",
        Verdict::Interrupted => "INTERRUPTED",
        Verdict::Aborted => "ABORTED",
    };
    let title = format!("{} — {verdict}", journal.experiment.title);
    let root = root
        .titled(
            &title,
            ("sans-serif", 26).into_font().style(FontStyle::Bold),
        )
        .map_err(draw_err)?;
    let alert_lanes = alert_lanes(journal);
    let lanes_height = if alert_lanes.is_empty() {
        0
    } else {
        lanes::height(alert_lanes.len())
    };
    let (_, root_height) = root.dim_in_pixel();
    let (load, lanes_area) = root.split_vertically(root_height.saturating_sub(lanes_height));
    let (top, bottom) = load.split_vertically(SIZE.1 * 58 / 100);

    let points = journal
        .load
        .as_ref()
        .map(|l| l.timeline.as_slice())
        .unwrap_or(&[]);
    let x_max = x_max(journal);
    let latency_max = points
        .iter()
        .map(|p| p.p99_ms.max(p.p95_ms).max(p.p50_ms))
        .fold(0.0, f64::max)
        .max(10.0)
        * 1.15;
    let error_max = (points
        .iter()
        .map(|p| p.error_ratio * 100.0)
        .fold(0.0, f64::max)
        * 1.2)
        .max(1.0);

    let mut latency = ChartBuilder::on(&top)
        .margin(lanes::MARGIN)
        .x_label_area_size(44)
        .y_label_area_size(lanes::LABEL_WIDTH - lanes::MARGIN)
        .caption("Latency of the harness's load (ms)", ("sans-serif", 18))
        .build_cartesian_2d(0.0..x_max, 0.0..latency_max)
        .map_err(draw_err)?;
    latency
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("ms")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    let mut errors = ChartBuilder::on(&bottom)
        .margin(lanes::MARGIN)
        .x_label_area_size(44)
        .y_label_area_size(lanes::LABEL_WIDTH - lanes::MARGIN)
        .caption("Error ratio (%)", ("sans-serif", 18))
        .build_cartesian_2d(0.0..x_max, 0.0..error_max)
        .map_err(draw_err)?;
    errors
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("% errors")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;

    // The fault window, shaded under the lines.
    if let Some(window) = &journal.fault_window {
        let shade = FAULT.mix(0.55).filled();
        latency
            .draw_series(std::iter::once(Rectangle::new(
                [(window.start_s, 0.0), (window.end_s, latency_max)],
                shade,
            )))
            .map_err(draw_err)?
            .label("fault window")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], FAULT.filled()));
        errors
            .draw_series(std::iter::once(Rectangle::new(
                [(window.start_s, 0.0), (window.end_s, error_max)],
                shade,
            )))
            .map_err(draw_err)?;
    }

    for (name, color, value) in [
        (
            "p50",
            P50,
            (|p: &crate::journal::LoadPoint| p.p50_ms) as fn(&crate::journal::LoadPoint) -> f64,
        ),
        ("p95", P95, |p| p.p95_ms),
        ("p99", P99, |p| p.p99_ms),
    ] {
        latency
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .filter(|p| p.requests > 0)
                    .map(|p| (p.t_s, value(p))),
                color.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
    }
    errors
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.t_s, p.error_ratio * 100.0)),
            ERRORS.stroke_width(2),
        ))
        .map_err(draw_err)?;
    errors
        .draw_series(
            points
                .iter()
                .filter(|p| p.errors > 0)
                .map(|p| Circle::new((p.t_s, p.error_ratio * 100.0), 3, ERRORS.filled())),
        )
        .map_err(draw_err)?;

    latency
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(draw_err)?;

    // The alerts, one lane per series, on the same time axis.
    if !alert_lanes.is_empty() {
        let shades: Vec<(f64, f64)> = journal
            .fault_window
            .iter()
            .map(|w| (w.start_s, w.end_s))
            .collect();
        lanes::draw(
            &lanes_area,
            &LaneChart {
                caption: "Alerts",
                x_max,
                x_desc: "seconds since start",
                lanes: &alert_lanes,
                shades: &shades,
                legend: &lanes::ALERT_LEGEND,
            },
        )?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// The plot as an SVG document.
pub fn render_svg(journal: &Journal) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size(journal)).into_drawing_area();
        draw(&root, journal)?;
    }
    Ok(svg)
}

/// Writes the plot as a PNG file.
pub fn write_png(journal: &Journal, path: &Path) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, size(journal)).into_drawing_area();
    draw(&root, journal)
}
