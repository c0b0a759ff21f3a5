//! The timeline plot of a journal, as SVG or PNG: latency percentiles of the
//! harness's load (p50, p95, p99) above, the error ratio below, the fault
//! window shaded in both, and alert transitions marked.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (the `dejavu`
//! crate), so rendering needs no system fonts.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::journal::{Journal, Verdict};

/// Pixel size of the plot.
pub const SIZE: (u32, u32) = (1200, 760);

/// Why a plot could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    #[error("cannot load the embedded font")]
    Font,
}

fn font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

fn draw_err<E: std::fmt::Debug>(err: E) -> PlotError {
    PlotError::Draw(format!("{err:?}"))
}

const P50: RGBColor = RGBColor(31, 119, 180);
const P95: RGBColor = RGBColor(255, 127, 14);
const P99: RGBColor = RGBColor(214, 39, 40);
const ERRORS: RGBColor = RGBColor(148, 103, 189);
const FAULT: RGBColor = RGBColor(255, 200, 200);
const PENDING: RGBColor = RGBColor(230, 160, 0);
const FIRING: RGBColor = RGBColor(200, 0, 0);
const RESOLVED: RGBColor = RGBColor(0, 150, 60);

fn transition_color(state: &str) -> RGBColor {
    match state {
        "pending" => PENDING,
        "firing" => FIRING,
        _ => RESOLVED,
    }
}

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
    let (top, bottom) = root.split_vertically(SIZE.1 * 58 / 100);

    let points = journal
        .load
        .as_ref()
        .map(|l| l.timeline.as_slice())
        .unwrap_or(&[]);
    let x_max = journal
        .duration
        .max(points.iter().map(|p| p.t_s).fold(0.0, f64::max))
        .max(1.0);
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
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
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
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
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

    // Alert transitions: a vertical line in both panels, named in the top one.
    let mut label_row = 0;
    for alert in &journal.alerts_seen {
        for transition in &alert.transitions {
            let color = transition_color(&transition.state);
            let x = transition.at_s;
            latency
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, latency_max)],
                    color.stroke_width(2),
                )))
                .map_err(draw_err)?;
            errors
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, error_max)],
                    color.stroke_width(2),
                )))
                .map_err(draw_err)?;
            let y = latency_max * (0.95 - 0.07 * f64::from(label_row % 6));
            label_row += 1;
            let state = match transition.state.as_str() {
                "inactive" => "resolved",
                other => other,
            };
            // Labels near the right edge go to the left of their line.
            let (text, anchor) = if x > x_max * 0.7 {
                (format!("{} {state} ", alert.alert), HPos::Right)
            } else {
                (format!(" {} {state}", alert.alert), HPos::Left)
            };
            let style = ("sans-serif", 13)
                .into_font()
                .color(&color)
                .pos(Pos::new(anchor, VPos::Top));
            latency
                .draw_series(std::iter::once(Text::new(text, (x, y), style)))
                .map_err(draw_err)?;
        }
    }
    for (state, color) in [
        ("pending", PENDING),
        ("firing", FIRING),
        ("resolved", RESOLVED),
    ] {
        if journal
            .alerts_seen
            .iter()
            .flat_map(|a| &a.transitions)
            .any(|t| transition_color(&t.state) == color)
        {
            latency
                .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                .map_err(draw_err)?
                .label(format!("alert {state}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x + 9, y - 7), (x + 9, y + 7)], color.stroke_width(2))
                });
        }
    }
    latency
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

/// The plot as an SVG document.
pub fn render_svg(journal: &Journal) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, journal)?;
    }
    Ok(svg)
}

/// Writes the plot as a PNG file.
pub fn write_png(journal: &Journal, path: &Path) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root, journal)
}
