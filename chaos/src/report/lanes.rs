//! State lanes, as in a state timeline: one row per series (an alert, a
//! run), its name once at the left of the row, coloured segments over a
//! shared time axis, fault windows shaded behind. The run's plot draws its
//! alerts this way ([`super::plot`]), and the game day's timeline its runs
//! and their alerts.
//!
//! Nothing overlaps whatever the number of rows: each row is
//! [`ROW_HEIGHT`] pixels high and has one label, cut to fit
//! [`LABEL_WIDTH`]; the picture grows with the rows ([`height`]).

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::plot::{PlotError, draw_err, font};
use crate::journal::AlertSeen;

/// Height of one row, in pixels.
pub const ROW_HEIGHT: u32 = 26;
/// Width of the row labels at the left; the load panels of a run's plot
/// keep the same left area, so that their time axes line up with the lanes.
pub const LABEL_WIDTH: u32 = 270;
/// Space around the chart, in pixels (as the load panels).
pub const MARGIN: u32 = 12;
const CAPTION: u32 = 30;
const AXIS: u32 = 40;
const FONT: u32 = 14;

/// Pending alert.
pub const PENDING: RGBColor = RGBColor(240, 170, 20);
/// Firing alert.
pub const FIRING: RGBColor = RGBColor(205, 30, 30);
/// Resolved (inactive) alert.
pub const RESOLVED: RGBColor = RGBColor(120, 190, 120);
/// Fault windows, behind the segments.
pub const FAULT: RGBColor = RGBColor(255, 200, 200);

/// A span of one state.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub color: RGBColor,
}

/// One row.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub label: String,
    pub segments: Vec<Segment>,
}

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct LaneChart<'a> {
    /// Drawn at the top left.
    pub caption: &'a str,
    /// The time axis runs from 0 to this.
    pub x_max: f64,
    pub x_desc: &'a str,
    pub lanes: &'a [Lane],
    /// Shaded behind every row (fault windows).
    pub shades: &'a [(f64, f64)],
    /// Colour keys, drawn at the top right.
    pub legend: &'a [(&'a str, RGBColor)],
}

/// The height in pixels of a chart of `rows` lanes.
pub fn height(rows: usize) -> u32 {
    CAPTION + AXIS + 2 * MARGIN + u32::try_from(rows).unwrap_or(u32::MAX / 2) * ROW_HEIGHT
}

/// The colour of an alert state (`pending`, `firing`, otherwise resolved).
pub fn alert_color(state: &str) -> RGBColor {
    match state {
        "pending" => PENDING,
        "firing" => FIRING,
        _ => RESOLVED,
    }
}

/// The legend of alert lanes.
pub const ALERT_LEGEND: [(&str, RGBColor); 3] = [
    ("pending", PENDING),
    ("firing", FIRING),
    ("resolved", RESOLVED),
];

/// One lane per alert series, from runs given as (offset of the run on the
/// time axis, end of the run on it, the alerts it saw). Each state lasts
/// from its transition to the next one, or to the end of its run. A series
/// is labelled with its alert's name, plus, when several series share that
/// name, the values of the labels that tell them apart:
/// `CircuitBreakerOpen (payments)`. Lanes are in order of first appearance.
pub fn alert_lanes<'a>(runs: impl IntoIterator<Item = (f64, f64, &'a [AlertSeen])>) -> Vec<Lane> {
    type Key = (String, BTreeMap<String, String>);
    let mut order: Vec<Key> = Vec::new();
    let mut segments: BTreeMap<Key, Vec<Segment>> = BTreeMap::new();
    for (offset_s, end_s, alerts) in runs {
        for alert in alerts {
            let key = (alert.alert.clone(), alert.labels.clone());
            let mut transitions = alert.transitions.clone();
            transitions.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
            let lane = segments.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                Vec::new()
            });
            for (index, transition) in transitions.iter().enumerate() {
                let until = transitions
                    .get(index + 1)
                    .map_or(end_s, |next| offset_s + next.at_s);
                let start_s = offset_s + transition.at_s;
                if until > start_s {
                    lane.push(Segment {
                        start_s,
                        end_s: until,
                        color: alert_color(&transition.state),
                    });
                }
            }
        }
    }
    // Series of the same alert are told apart by the values of the labels
    // that differ between them.
    let mut by_name: BTreeMap<&str, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
    for (name, labels) in &order {
        by_name.entry(name).or_default().push(labels);
    }
    order
        .iter()
        .map(|key| {
            let (name, labels) = key;
            let siblings = by_name.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            let label = if siblings.len() > 1 {
                let values: Vec<&str> = labels
                    .iter()
                    .filter(|(k, v)| siblings.iter().any(|other| other.get(*k) != Some(*v)))
                    .map(|(_, v)| v.as_str())
                    .collect();
                format!("{name} ({})", values.join(", "))
            } else {
                name.clone()
            };
            Lane {
                label,
                segments: segments.remove(key).unwrap_or_default(),
            }
        })
        .collect()
}

/// Width in pixels of `text` in the embedded sans-serif at `size` pixels,
/// as laid out by the font (a generous estimate if that fails), plus a
/// tenth for the renderers that space glyphs a little wider.
pub fn text_width(text: &str, size: u32) -> u32 {
    let measured = ("sans-serif", size)
        .into_font()
        .box_size(text)
        .map(|(width, _)| width);
    let width = measured.unwrap_or_else(|_| {
        let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX / 64);
        chars.saturating_mul(size) * 2 / 3
    });
    width.saturating_add(width / 10)
}

/// `text`, cut with an ellipsis to fit `width` pixels at `size`.
pub fn fit(text: &str, width: u32, size: u32) -> String {
    if text_width(text, size) <= width {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut keep = chars.len();
    while keep > 0 {
        keep -= 1;
        let cut = format!("{}…", chars[..keep].iter().collect::<String>());
        if text_width(&cut, size) <= width {
            return cut;
        }
    }
    "…".to_owned()
}

/// Draws `chart` on `area`, which should be [`height`] pixels high.
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &LaneChart<'_>,
) -> Result<(), PlotError> {
    font()?;
    let rows = chart.lanes.len().max(1);
    let rows_f = rows as f64;
    let x_max = chart.x_max.max(1.0);
    let (width, _) = area.dim_in_pixel();
    // The caption and the legend share the band above the rows: the caption
    // at the left, the legend keys from the right edge leftwards.
    let caption_style = ("sans-serif", 18)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let band_y = i32::try_from(MARGIN + CAPTION / 2).unwrap_or(0);
    let left = i32::try_from(MARGIN).unwrap_or(0);
    area.draw(&Text::new(
        chart.caption.to_owned(),
        (left, band_y),
        caption_style,
    ))
    .map_err(draw_err)?;
    let mut right = i32::try_from(width.saturating_sub(MARGIN)).unwrap_or(0);
    for (name, color) in chart.legend.iter().rev() {
        let text_w = i32::try_from(text_width(name, FONT)).unwrap_or(0);
        let x = right - text_w;
        let style = ("sans-serif", FONT)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new((*name).to_owned(), (x, band_y), style))
            .map_err(draw_err)?;
        area.draw(&Rectangle::new(
            [(x - 20, band_y - 6), (x - 6, band_y + 6)],
            color.filled(),
        ))
        .map_err(draw_err)?;
        right = x - 20 - 18;
    }

    let body = area.margin(MARGIN + CAPTION, MARGIN, MARGIN, MARGIN);
    let mut lanes = ChartBuilder::on(&body)
        .x_label_area_size(AXIS)
        .y_label_area_size(LABEL_WIDTH - MARGIN)
        .build_cartesian_2d(0.0..x_max, 0.0..rows_f)
        .map_err(draw_err)?;
    lanes
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(chart.x_desc)
        .label_style(("sans-serif", FONT))
        .axis_desc_style(("sans-serif", FONT))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    lanes
        .draw_series(chart.shades.iter().map(|(start, end)| {
            Rectangle::new([(*start, 0.0), (*end, rows_f)], FAULT.mix(0.55).filled())
        }))
        .map_err(draw_err)?;
    for (index, lane) in chart.lanes.iter().enumerate() {
        // Row 0 at the top.
        let bottom = rows_f - index as f64 - 1.0;
        lanes
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, bottom), (x_max, bottom)],
                RGBColor(225, 225, 225),
            )))
            .map_err(draw_err)?;
        lanes
            .draw_series(lane.segments.iter().map(|segment| {
                Rectangle::new(
                    [
                        (segment.start_s.max(0.0), bottom + 0.15),
                        (segment.end_s.min(x_max), bottom + 0.85),
                    ],
                    segment.color.filled(),
                )
            }))
            .map_err(draw_err)?;
        // The label, once, at the left of its row.
        let (_, y) = lanes.backend_coord(&(0.0, bottom + 0.5));
        let (_, base_y) = area.get_base_pixel();
        let style = ("sans-serif", FONT)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(
            fit(&lane.label, LABEL_WIDTH - MARGIN - 12, FONT),
            (left, y - base_y),
            style,
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}
