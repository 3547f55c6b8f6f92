//! PNG charts (plotters, on the bitmap backend of [`text::Canvas`], which
//! lays text out correctly). One look for every chart: [`frame`] draws the
//! caption and a legend panel to the right of the plot (a legend there
//! covers no data), [`axes`] the mesh; [`line_chart`] draws every line chart
//! (each launch here, every sweep in `sweep`), [`bar_chart`] the median-time
//! and throughput bars. The font is compiled in (DejaVu Sans, free licence,
//! `assets/fonts/`), so text renders on a machine with no fonts installed.

mod first_byte;
mod text;

pub use first_byte::first_byte_lines;

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use self::text::Canvas;
use super::cpu;
use super::runner::Run;
use super::summary::{ModelSummary, models_only};
use crate::db::WriteStrategy;
use crate::models::{Label, Model};

static FONTS: Once = Once::new();

/// Registers the bundled font as plotters' "sans-serif", for the charts
/// plotters draws itself (criterion's reports). Ours do not need it.
pub fn register_fonts() {
    FONTS.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, text::REGULAR);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, text::BOLD);
    });
}

const SIZE: (u32, u32) = (1200, 720);
const MARGIN: u32 = 20;
/// Half the width of a bar, in category units.
const BAR: f64 = 0.36;
const GRID: RGBColor = RGBColor(215, 215, 215);
const CEILING: RGBColor = RGBColor(90, 90, 90);

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

fn bold(size: u32) -> TextStyle<'static> {
    ("sans-serif", size)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

type Area<'a> = DrawingArea<Canvas<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, Canvas<'b>, Cartesian2d<Axis, Axis>>;

// ---------------------------------------------------------------- axes

/// One axis, linear or logarithmic, with its ticks given: one type for
/// every chart, so one function draws every mesh.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    range: Range<f64>,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    fn linear(range: Range<f64>, ticks: Vec<f64>) -> Self {
        Axis {
            range,
            log: false,
            ticks,
        }
    }

    fn log(range: Range<f64>, ticks: Vec<f64>) -> Self {
        Axis {
            range,
            log: true,
            ticks,
        }
    }

    /// A log axis over `lo..hi` with readable ticks.
    fn log_auto(lo: f64, hi: f64) -> Self {
        Axis::log(lo..hi, log_ticks(lo, hi))
    }

    fn pos(&self, v: f64) -> f64 {
        let Range { start, end } = self.range;
        if self.log {
            (v.max(f64::MIN_POSITIVE).ln() - start.ln()) / (end.ln() - start.ln())
        } else {
            (v - start) / (end - start)
        }
    }

    /// The value `frac` of the way up the axis.
    fn at(&self, frac: f64) -> f64 {
        let Range { start, end } = self.range;
        if self.log {
            start * (end / start).powf(frac)
        } else {
            start + (end - start) * frac
        }
    }

    /// `v` moved up the axis by `frac` of its length.
    fn up(&self, v: f64, frac: f64) -> f64 {
        self.at(self.pos(v) + frac)
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let p = self.pos(*v);
        let p = if p.is_finite() {
            p.clamp(-10.0, 10.0)
        } else {
            0.0
        };
        (f64::from(limit.0) + p * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Bold lines only: no unlabelled light lines between the ticks.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// 1-2-5 steps between `lo` and `hi`: readable ticks on a log axis.
pub(crate) fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    steps(lo, hi, &[1.0, 2.0, 5.0])
}

fn steps(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    if !(lo > 0.0 && hi > lo) {
        return out;
    }
    let mut exp = lo.log10().floor() as i32;
    while 10f64.powi(exp) <= hi {
        for m in mantissas {
            // Rounded, so 0.1 × 3 is 0.3 and prints so.
            let v = round_sig(m * 10f64.powi(exp));
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        exp += 1;
    }
    out
}

/// Log ticks: 1-2-5, finer when the range is too narrow for three.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let t = one_two_five(lo, hi);
    if t.len() >= 3 {
        return t;
    }
    for m in [
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0][..],
        &[
            1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0,
        ][..],
    ] {
        let t = steps(lo, hi, m);
        if t.len() >= 3 {
            return t;
        }
    }
    t
}

/// Round ticks from 0 to `hi`, about six of them.
fn linear_ticks(hi: f64) -> Vec<f64> {
    if hi.is_nan() || hi <= 0.0 {
        return vec![0.0];
    }
    let raw = hi / 6.0;
    let decade = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * decade);
    (0..)
        .map(|i| round_sig(i as f64 * step))
        .take_while(|v| *v <= hi)
        .collect()
}

fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// A tick label: as few digits as the value needs (0.05, 0.5, 5, 50).
fn number(v: &f64) -> String {
    let v = round_sig(*v);
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// What the mesh writes on its axes.
struct AxisText<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    x_fmt: &'a dyn Fn(&f64) -> String,
    y_fmt: &'a dyn Fn(&f64) -> String,
    /// Vertical grid lines at the x ticks (not through bars).
    x_grid: bool,
    /// Lines in the tallest x tick label.
    x_lines: u32,
}

/// The plot on `area` with the one mesh style.
fn axes<'a, 'b>(
    area: &'a Area<'b>,
    x: Axis,
    y: Axis,
    text: &AxisText<'_>,
) -> anyhow::Result<Chart<'a, 'b>> {
    let (nx, ny) = (x.ticks.len(), y.ticks.len());
    let mut chart = ChartBuilder::on(area)
        .margin(MARGIN)
        .margin_left(MARGIN / 2)
        .x_label_area_size(38 + 22 * text.x_lines)
        .y_label_area_size(90)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(text.x_desc)
        .y_desc(text.y_desc)
        .axis_desc_style(font(20))
        .label_style(font(18))
        .x_labels(nx)
        .y_labels(ny)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK.stroke_width(1))
        .x_label_formatter(text.x_fmt)
        .y_label_formatter(text.y_fmt);
    if !text.x_grid {
        mesh.disable_x_mesh();
    }
    mesh.draw().map_err(err)?;
    Ok(chart)
}

// ---------------------------------------------------------------- frame and legend

/// What a legend line shows beside its text.
#[derive(Clone, Copy)]
enum Swatch {
    Line(RGBColor, Marker),
    /// Dashes: colour, dash length, width.
    Dashes(RGBColor, i32, u32),
    Box(RGBColor),
    /// A min–max error bar.
    Whisker,
    /// Text only.
    Note,
}

/// One legend entry; `\n` breaks its text into lines.
struct Entry {
    swatch: Swatch,
    text: String,
}

const SWATCH: i32 = 40;
const LEGEND_FONT: u32 = 18;
const LEGEND_LINE: i32 = 23;

/// The caption's font size: 26 px, smaller for a long caption (a
/// subtitle that names the network and the durability) so that it fits the
/// canvas instead of being cut at both ends.
fn caption_size(caption: &str) -> u32 {
    let room = f64::from(SIZE.0 - 2 * MARGIN);
    (14..=26)
        .rev()
        .find(|&px| f64::from(text::text_size(FontStyle::Bold, f64::from(px), caption).0) <= room)
        .unwrap_or(14)
}

/// A white canvas with the caption on top and, when `legend` has entries,
/// the legend in a panel right of the plot; returns the plot's area.
fn frame<'a>(path: &'a Path, caption: &str, legend: &[Entry]) -> anyhow::Result<Area<'a>> {
    let root = Canvas(BitMapBackend::new(path, SIZE)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let body = root
        .margin(MARGIN / 2, 0, 0, 0)
        .titled(caption, bold(caption_size(caption)))
        .map_err(err)?;
    if legend.is_empty() {
        return Ok(body);
    }
    let style = font(LEGEND_FONT);
    let text_w = legend
        .iter()
        .flat_map(|e| e.text.lines())
        .map(|l| text::text_size(FontStyle::Normal, f64::from(LEGEND_FONT), l).0 as i32)
        .max()
        .unwrap_or(0);
    let panel_w = SWATCH + 12 + text_w + 2 * MARGIN as i32;
    let (w, _) = body.dim_in_pixel();
    let (plot, panel) = body.split_horizontally(w as i32 - panel_w);
    // Level with the top of the plot; a frame like the plot's.
    let (x0, mut y) = (6, MARGIN as i32 + 4);
    let lines: i32 = legend.iter().map(|e| e.text.lines().count() as i32).sum();
    let height = lines * LEGEND_LINE + (legend.len() as i32 - 1) * 8 + 16;
    panel
        .draw(&Rectangle::new(
            [(0, y - 8), (panel_w - MARGIN as i32, y - 8 + height)],
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(err)?;
    for e in legend {
        let mid = y + LEGEND_LINE / 2;
        let (a, b) = (x0 + 4, x0 + SWATCH - 4);
        match e.swatch {
            Swatch::Line(color, marker) => {
                panel
                    .draw(&PathElement::new(
                        vec![(a, mid), (b, mid)],
                        color.stroke_width(3),
                    ))
                    .map_err(err)?;
                marker.draw_px(&panel, ((a + b) / 2, mid), color)?;
            }
            Swatch::Dashes(color, dash, width) => {
                let mut s = a;
                while s < b {
                    panel
                        .draw(&PathElement::new(
                            vec![(s, mid), ((s + dash).min(b), mid)],
                            color.stroke_width(width),
                        ))
                        .map_err(err)?;
                    s += dash + dash / 2 + 1;
                }
            }
            Swatch::Box(color) => {
                panel
                    .draw(&Rectangle::new(
                        [(a + 6, mid - 8), (b - 6, mid + 8)],
                        color.mix(0.85).filled(),
                    ))
                    .map_err(err)?;
            }
            Swatch::Whisker => {
                let c = (a + b) / 2;
                let style = BLACK.stroke_width(2);
                for seg in [
                    [(c, mid - 9), (c, mid + 9)],
                    [(c - 7, mid - 9), (c + 7, mid - 9)],
                    [(c - 7, mid + 9), (c + 7, mid + 9)],
                ] {
                    panel
                        .draw(&PathElement::new(seg.to_vec(), style))
                        .map_err(err)?;
                }
            }
            Swatch::Note => {}
        }
        for (i, line) in e.text.lines().enumerate() {
            panel
                .draw(&Text::new(
                    line.to_string(),
                    (x0 + SWATCH + 8, mid + i as i32 * LEGEND_LINE),
                    style.pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(err)?;
        }
        y += e.text.lines().count() as i32 * LEGEND_LINE + 8;
    }
    Ok(plot)
}

// ---------------------------------------------------------------- colours

/// A point's shape, so series stay apart where colours are close, or
/// where lines coincide (`async`, `async-fetch` and `fetch-only` wait for
/// the same draws of the network and often lie on top of one another).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
    /// Hollow, so what it is drawn over still shows through.
    Ring,
}

/// The points of a diamond around the origin, in pixels.
const DIAMOND: [(i32, i32); 4] = [(0, -7), (7, 0), (0, 7), (-7, 0)];

impl Marker {
    /// Each model's own shape, for charts of models (not of write
    /// strategies, which take [`series_styles`]' shapes).
    fn of(model: Model) -> Marker {
        match model {
            Model::Sync | Model::LoadOnly => Marker::Circle,
            Model::AsyncFetch => Marker::Triangle,
            Model::Async => Marker::Square,
            Model::Threads => Marker::Diamond,
            Model::FetchOnly => Marker::Ring,
            #[cfg(feature = "test-models")]
            Model::TestDropOne => Marker::Circle,
        }
    }

    fn draw_px(self, area: &Area<'_>, at: (i32, i32), color: RGBColor) -> anyhow::Result<()> {
        let element = EmptyElement::at(at) + self.element(color);
        area.draw(&element).map_err(err)
    }

    /// The marker around the origin, to be placed with `EmptyElement::at`.
    fn element<DB: DrawingBackend>(self, color: RGBColor) -> DynElement<'static, DB, (i32, i32)> {
        let fill = color.filled();
        match self {
            Marker::Circle => Circle::new((0, 0), 5, fill).into_dyn(),
            Marker::Triangle => TriangleMarker::new((0, 0), 7, fill).into_dyn(),
            Marker::Square => Rectangle::new([(-5, -5), (5, 5)], fill).into_dyn(),
            Marker::Diamond => Polygon::new(DIAMOND.to_vec(), fill).into_dyn(),
            Marker::Ring => Circle::new((0, 0), 6, color.stroke_width(2)).into_dyn(),
        }
    }
}

/// The fixed colour of each model and ceiling ([`Model::color`], the one
/// place it is set), so every chart reads the same way.
fn known_color(model: Model) -> RGBColor {
    let (r, g, b) = model.color();
    RGBColor(r, g, b)
}

/// Colours for models no one named above, before Palette99's.
const SPARE: [RGBColor; 4] = [
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

fn shade(c: RGBColor, f: f64) -> RGBColor {
    let ch = |v: u8| {
        let v = f64::from(v);
        (if f < 1.0 {
            v * f
        } else {
            v + (255.0 - v) * (f - 1.0)
        })
        .round()
        .clamp(0.0, 255.0) as u8
    };
    RGBColor(ch(c.0), ch(c.1), ch(c.2))
}

/// A colour and marker per label, never two alike: each model its own
/// colour; in a matrix (`model+write`) the model's colour, darker for
/// insert and lighter for copy, with a marker per write strategy.
pub(crate) fn series_styles(labels: &[String]) -> Vec<(RGBColor, Marker)> {
    let mut used: Vec<RGBColor> = Vec::new();
    let mut spare = SPARE
        .into_iter()
        .chain((0..99).map(|i| {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }))
        .filter(|c| {
            !labels
                .iter()
                .any(|l| l.parse::<Label>().is_ok_and(|l| known_color(l.model) == *c))
        });
    labels
        .iter()
        .map(|label| {
            // A label that names no model (a test's, a future one's) gets
            // a spare colour.
            let label = label.parse::<Label>().ok();
            let (factor, marker) = match label.map(|l| (l.model, l.write)) {
                Some((_, Some(WriteStrategy::Insert))) => (0.65, Marker::Square),
                Some((_, Some(WriteStrategy::Copy))) => (1.45, Marker::Triangle),
                Some((_, Some(WriteStrategy::Batch))) | None => (1.0, Marker::Circle),
                Some((model, None)) => (1.0, Marker::of(model)),
            };
            let mut color = label.map(|l| shade(known_color(l.model), factor));
            while color.is_none_or(|c| used.contains(&c)) {
                color = Some(spare.next().unwrap_or(BLACK));
            }
            let color = color.unwrap_or(BLACK);
            used.push(color);
            (color, marker)
        })
        .collect()
}

// ---------------------------------------------------------------- line charts

/// One line of a line chart.
pub(crate) struct Series {
    pub label: String,
    pub color: RGBColor,
    pub marker: Marker,
    pub points: Vec<(f64, f64)>,
}

/// How a line chart's x axis runs.
pub(crate) enum XScale {
    /// Launch numbers 1, 2, 3…
    Launches,
    /// The swept values, spaced linearly.
    Linear,
    /// The swept values, spaced logarithmically (they span decades).
    Log,
}

/// The one line chart: each launch, and every sweep. y is seconds on a log
/// scale; one line per series; the ceiling, when given, dashed beneath.
pub(crate) struct LineChart<'a> {
    pub caption: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: XScale,
    pub series: Vec<Series>,
    /// Its legend text and points.
    pub ceiling: Option<(String, Vec<(f64, f64)>)>,
}

pub(crate) fn line_chart(path: &Path, c: &LineChart<'_>) -> anyhow::Result<()> {
    let all = || {
        c.series
            .iter()
            .flat_map(|s| s.points.iter())
            .chain(c.ceiling.iter().flat_map(|x| x.1.iter()))
            .filter(|p| p.0.is_finite() && p.1.is_finite() && p.1 > 0.0)
    };
    let mut xs: Vec<f64> = all().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (xlo, xhi) = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) => (*a, *b),
        _ => (1.0, 1.0),
    };
    let x = match c.x {
        XScale::Launches => {
            let last = xhi.max(1.0).round();
            Axis::linear(0.7..last + 0.3, (1..=last as u32).map(f64::from).collect())
        }
        XScale::Linear => {
            let pad = ((xhi - xlo) * 0.04).max(0.5);
            Axis::linear(xlo - pad..xhi + pad, xs.clone())
        }
        XScale::Log => {
            let (lo, hi) = (xlo.max(1e-9), xhi.max(1e-9));
            Axis::log(lo / 1.3..hi * 1.3, xs.clone())
        }
    };
    let ymin = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let ymax = all().map(|p| p.1).fold(0.0, f64::max);
    let (ymin, ymax) = if ymin.is_finite() && ymax > 0.0 {
        (ymin / 1.4, ymax * 1.4)
    } else {
        (0.01, 1.0)
    };
    let y = Axis::log_auto(ymin, ymax);
    let mut legend: Vec<Entry> = c
        .series
        .iter()
        .map(|s| Entry {
            swatch: Swatch::Line(s.color, s.marker),
            text: s.label.clone(),
        })
        .collect();
    if let Some((label, _)) = &c.ceiling {
        legend.push(Entry {
            swatch: Swatch::Dashes(BLACK, 8, 2),
            text: label.clone(),
        });
    }
    let area = frame(path, c.caption, &legend)?;
    let mut chart = axes(
        &area,
        x,
        y,
        &AxisText {
            x_desc: c.x_desc,
            y_desc: c.y_desc,
            x_fmt: &number,
            y_fmt: &number,
            x_grid: true,
            x_lines: 1,
        },
    )?;
    if let Some((_, pts)) = &c.ceiling {
        chart
            .draw_series(DashedLineSeries::new(
                pts.clone(),
                10,
                6,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?;
    }
    for s in &c.series {
        marked_line(&mut chart, &s.points, s.color, s.marker)?;
    }
    area.present().map_err(err)?;
    Ok(())
}

/// One series of a line chart: the line, and its marker at each point.
fn marked_line(
    chart: &mut Chart<'_, '_>,
    points: &[(f64, f64)],
    color: RGBColor,
    marker: Marker,
) -> anyhow::Result<()> {
    chart
        .draw_series(LineSeries::new(points.to_vec(), color.stroke_width(3)))
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&p| EmptyElement::at(p) + marker.element(color)),
        )
        .map_err(err)?;
    Ok(())
}

/// Time of every measured launch, one line per model (the original
/// project's chart, with a log scale so fast and slow models both show).
pub fn launches_lines(
    path: &Path,
    runs: &[Run],
    labels: &[Label],
    matrix: bool,
    subtitle: &str,
) -> anyhow::Result<()> {
    let measured: Vec<&Run> = runs.iter().filter(|r| r.run > 0 && r.verified).collect();
    let names: Vec<String> = labels.iter().map(Label::to_string).collect();
    let series = labels
        .iter()
        .zip(series_styles(&names))
        .map(|(label, (color, marker))| Series {
            label: label.to_string(),
            color,
            marker,
            points: measured
                .iter()
                .filter(|r| r.label(matrix) == *label)
                .map(|r| (r.run as f64, r.wall_secs))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    line_chart(
        path,
        &LineChart {
            caption: &format!("Time of each launch — {subtitle}"),
            x_desc: "launch (warm-up runs not shown)",
            y_desc: "seconds per pass (log scale)",
            x: XScale::Launches,
            series,
            ceiling: None,
        },
    )
}

// ---------------------------------------------------------------- bar charts

/// One bar of a bar chart.
struct Bar {
    label: String,
    color: RGBColor,
    value: f64,
    /// Min–max whisker.
    range: Option<(f64, f64)>,
    /// Written above the bar, one string a line, top line first.
    note: Vec<String>,
    /// Drawn dashed across the bar: the model's analytic network bound.
    mark: Option<f64>,
    /// Where the time went, bottom up (see [`cpu_stack`]); empty: one
    /// plain bar of `value`.
    stack: Vec<(f64, RGBColor)>,
    /// Drawn solid across the bar: the CPU floor.
    floor: Option<f64>,
    /// Drawn dotted across the bar: the arrival floor (the first body in,
    /// then the CPU after it over the cores).
    arrival: Option<f64>,
}

/// The arrival floor's colour.
const ARRIVAL: RGBColor = RGBColor(128, 0, 160);

/// The parts of a stacked bar that are the same colour on every model.
const DB_CPU: RGBColor = RGBColor(64, 64, 64);
const BUCKET_CPU: RGBColor = RGBColor(165, 165, 165);

/// A model's median split by where its time went ([`cpu::Split`]), bottom
/// up: client CPU in the model's colour, database CPU dark grey, bucket
/// CPU light grey (each the part's CPU seconds over the cores, so the
/// three reach the CPU floor), then waiting, the rest of the median, in a
/// pale shade of the model's colour. Empty when the CPU was not recorded.
fn cpu_stack(s: &ModelSummary, color: RGBColor) -> Vec<(f64, RGBColor)> {
    cpu::Split::of(s)
        .map(|p| {
            vec![
                (p.client, color),
                (p.db, DB_CPU),
                (p.bucket, BUCKET_CPU),
                (p.waiting, shade(color, 1.75)),
            ]
        })
        .unwrap_or_default()
}

/// More bars than this (a matrix's twelve) get smaller notes.
const CROWDED: usize = 6;

/// Each bar's axis label and colour. A matrix's `model+write` bars are
/// labelled by write strategy, the model written once under the middle bar
/// of its group (twelve full labels would overlap), and coloured as their
/// lines in launches.png.
fn bar_looks(shown: &[&ModelSummary]) -> Vec<(String, RGBColor)> {
    let labels: Vec<Label> = shown.iter().map(|s| s.label).collect();
    let names: Vec<String> = labels.iter().map(Label::to_string).collect();
    labels
        .iter()
        .zip(series_styles(&names))
        .enumerate()
        .map(|(i, (label, (color, _)))| {
            let Some(write) = label.write else {
                return (label.to_string(), color);
            };
            let m = label.model;
            let first = (0..=i)
                .rev()
                .take_while(|j| labels[*j].model == m)
                .last()
                .unwrap_or(i);
            let last = (i..labels.len())
                .take_while(|j| labels[*j].model == m)
                .last()
                .unwrap_or(i);
            let text = if i == (first + last) / 2 {
                format!("{}\n{m}", write.as_str())
            } else {
                write.as_str().to_string()
            };
            (text, color)
        })
        .collect()
}

/// A dashed line across the whole chart.
struct Level {
    value: f64,
    legend: String,
}

/// Bars with optional min–max whiskers, network-bound marks, a ceiling
/// level and a note above each: the median-time and throughput charts.
fn bar_chart(
    path: &Path,
    caption: &str,
    y_desc: &str,
    bars: &[Bar],
    level: Option<&Level>,
    notes: &[String],
    y_fmt: &dyn Fn(&f64) -> String,
) -> anyhow::Result<()> {
    let n = bars.len();
    let top = bars.iter().map(bar_top).fold(0.0, f64::max);
    let bottom = bars
        .iter()
        .map(|b| b.range.map_or(b.value, |r| r.0))
        .chain(bars.iter().filter_map(|b| b.mark))
        .chain(level.map(|l| l.value))
        .fold(f64::INFINITY, f64::min);
    // Bars spanning more than 30× (sync against async on a large bucket)
    // would leave the fast ones invisible on a linear axis. Stacked bars
    // stay linear: on a log axis their parts' heights would lie.
    let stacked = bars.iter().any(|b| !b.stack.is_empty());
    let log = bottom > 0.0 && top / bottom > 30.0 && !stacked;
    let y = if log {
        Axis::log_auto(bottom / 3.0, top * 4.0)
    } else {
        let hi = top * 1.3 + 1e-9;
        Axis::linear(0.0..hi, linear_ticks(hi))
    };
    let y_desc = if log {
        format!("{y_desc}, log scale")
    } else {
        y_desc.to_string()
    };
    let mut legend = Vec::new();
    if bars.iter().any(|b| b.range.is_some()) {
        legend.push(Entry {
            swatch: Swatch::Whisker,
            text: "fastest to slowest run".into(),
        });
    }
    if bars.iter().any(|b| b.mark.is_some()) {
        legend.push(Entry {
            swatch: Swatch::Dashes(BLACK, 8, 3),
            text: "that model's\nnetwork bound".into(),
        });
    }
    if let Some(l) = level {
        legend.push(Entry {
            swatch: Swatch::Dashes(CEILING, 10, 2),
            text: l.legend.clone(),
        });
    }
    if let Some(b) = bars.iter().find(|b| !b.stack.is_empty()) {
        legend.extend([
            Entry {
                swatch: Swatch::Box(b.stack[0].1),
                text: "client CPU (the model's\ncolour; the workers)".into(),
            },
            Entry {
                swatch: Swatch::Box(DB_CPU),
                text: "database CPU".into(),
            },
            Entry {
                swatch: Swatch::Box(BUCKET_CPU),
                text: "bucket CPU (simulated)".into(),
            },
            Entry {
                swatch: Swatch::Box(b.stack[3].1),
                text: "waiting (pale): the median\nless the CPU floor".into(),
            },
            Entry {
                swatch: Swatch::Dashes(BLACK, 40, 2),
                text: "CPU floor: all the CPU\n÷ the cores; each CPU\npart is its CPU ÷ the cores"
                    .into(),
            },
        ]);
    }
    if bars.iter().any(|b| b.arrival.is_some()) {
        legend.push(Entry {
            swatch: Swatch::Dashes(ARRIVAL, 5, 3),
            text: "arrival floor: the first\nbody in, then the CPU\nafter it ÷ the cores".into(),
        });
    }
    legend.extend(notes.iter().map(|n| Entry {
        swatch: Swatch::Note,
        text: n.clone(),
    }));
    let area = frame(path, caption, &legend)?;
    let all: Vec<&Bar> = bars.iter().collect();
    let size = if n > CROWDED { 14 } else { 19 };
    // A stacked bar an eighth of the tallest or less shows no parts to read
    // (sync at 15 s beside async at 1 s): those bars are drawn again beside
    // the others, on an axis of their own.
    let small = |b: &Bar| stacked && bar_top(b) * 8.0 < top;
    let zoomed: Vec<&Bar> = bars.iter().filter(|b| small(b)).collect();
    if zoomed.is_empty() || zoomed.len() == n {
        bar_panel(&area, &all, &y, level, &y_desc, y_fmt, size, &|_| true)?;
    } else {
        let (w, _) = area.dim_in_pixel();
        let (left, right) = area.split_horizontally(w as i32 * 44 / 100);
        bar_panel(&left, &all, &y, level, &y_desc, y_fmt, 14, &|b| !small(b))?;
        let ztop = zoomed
            .iter()
            .map(|b| {
                bar_top(b)
                    .max(b.mark.unwrap_or(0.0))
                    .max(b.floor.unwrap_or(0.0))
                    .max(b.arrival.unwrap_or(0.0))
            })
            .fold(0.0, f64::max);
        let hi = ztop * 1.3 + 1e-9;
        let zy = Axis::linear(0.0..hi, linear_ticks(hi));
        let level = level.filter(|l| l.value < hi);
        bar_panel(
            &right,
            &zoomed,
            &zy,
            level,
            if zoomed.len() == 1 {
                "the same, zoomed on the faster model"
            } else {
                "the same, zoomed on the faster models"
            },
            y_fmt,
            14,
            &|_| true,
        )?;
    }
    area.present().map_err(err)?;
    Ok(())
}

/// Where a bar's drawing ends at the top: its whisker, else its height.
fn bar_top(b: &Bar) -> f64 {
    b.range
        .map_or(b.value, |r| r.1)
        .max(b.stack.iter().map(|p| p.0).sum())
}

/// One plot of [`bar_chart`]: `bars` on the `y` axis, with a note above
/// each bar `noted` accepts.
#[allow(clippy::too_many_arguments)]
fn bar_panel(
    area: &Area,
    bars: &[&Bar],
    y: &Axis,
    level: Option<&Level>,
    y_desc: &str,
    y_fmt: &dyn Fn(&f64) -> String,
    note_size: u32,
    noted: &dyn Fn(&Bar) -> bool,
) -> anyhow::Result<()> {
    let n = bars.len();
    let floor = y.range.start;
    // A narrow slot (the overview beside a zoom) breaks `async-fetch` in two
    // rather than run it into its neighbours.
    let narrow = (area.dim_in_pixel().0 as usize) < 110 * n;
    let labels: Vec<String> = bars
        .iter()
        .map(|b| {
            if narrow {
                b.label.replace('-', "-\n")
            } else {
                b.label.clone()
            }
        })
        .collect();
    let x_fmt = |v: &f64| {
        labels
            .get(v.round().max(0.0) as usize)
            .cloned()
            .unwrap_or_default()
    };
    let mut chart = axes(
        area,
        Axis::linear(-0.5..n as f64 - 0.5, (0..n).map(|i| i as f64).collect()),
        y.clone(),
        &AxisText {
            x_desc: "execution model",
            y_desc,
            x_fmt: &x_fmt,
            y_fmt,
            x_grid: false,
            x_lines: labels
                .iter()
                .map(|l| l.lines().count() as u32)
                .max()
                .unwrap_or(1),
        },
    )?;
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        if b.stack.is_empty() {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - BAR, floor), (x + BAR, b.value)],
                    b.color.mix(0.85).filled(),
                )))
                .map_err(err)?;
        }
        let mut base = 0.0;
        for (height, color) in &b.stack {
            let (lo, hi) = (base, base + height);
            base = hi;
            if *height > 0.0 && hi > floor {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - BAR, lo.max(floor)), (x + BAR, hi)],
                        color.filled(),
                    )))
                    .map_err(err)?;
            }
        }
        if let Some(f) = b.floor {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x - BAR * 1.15, f), (x + BAR * 1.15, f)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
        if let Some(m) = b.mark {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x - BAR, m), (x + BAR, m)],
                    8,
                    6,
                    BLACK.stroke_width(3),
                ))
                .map_err(err)?;
        }
        if let Some(a) = b.arrival {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x - BAR * 1.15, a), (x + BAR * 1.15, a)],
                    4,
                    4,
                    ARRIVAL.stroke_width(3),
                ))
                .map_err(err)?;
        }
        if let Some((lo, hi)) = b.range {
            // An error bar: the line from fastest to slowest, capped.
            let cap = BAR / 5.0;
            let style = BLACK.stroke_width(2);
            for seg in [
                [(x, lo), (x, hi)],
                [(x - cap, lo), (x + cap, lo)],
                [(x - cap, hi), (x + cap, hi)],
            ] {
                chart
                    .draw_series(std::iter::once(PathElement::new(seg.to_vec(), style)))
                    .map_err(err)?;
            }
        }
        if noted(b) {
            let above = y.up(b.range.map_or(b.value, |r| r.1), 0.02);
            chart
                .draw_series(std::iter::once(Text::new(
                    b.note.join("\n"),
                    (x, above),
                    bold(note_size).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))
                .map_err(err)?;
        }
    }
    if let Some(l) = level {
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.5, l.value), (n as f64 - 0.5, l.value)],
                12,
                8,
                CEILING.stroke_width(2),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// Median time per model as bars, min–max error bars, each model's speed
/// relative to the reference written on its bar. The ratio is the one
/// `summary.md` and `summary.csv` lead with (`Speedup::ratio`, median over
/// median ± its propagated robust error), so chart and table never disagree.
pub fn median_time_bars(
    path: &Path,
    summaries: &[ModelSummary],
    subtitle: &str,
) -> anyhow::Result<()> {
    let reference = summaries
        .iter()
        .find(|s| s.speedup.is_none() && summaries.iter().any(|o| o.speedup.is_some()));
    let shown: Vec<&ModelSummary> = models_only(summaries).collect();
    let crowded = shown.len() > CROWDED;
    let bars: Vec<Bar> = shown
        .iter()
        .zip(bar_looks(&shown))
        .map(|(s, (label, color))| Bar {
            label,
            color,
            value: s.stats.median,
            range: Some((s.stats.min, s.stats.max)),
            note: match &s.speedup {
                Some(x) if crowded && x.has_error() => vec![
                    format!("{:.2} s", s.stats.median),
                    format!("{:.1}×", x.ratio),
                    format!("± {:.1}", x.error),
                ],
                Some(x) if crowded => vec![
                    format!("{:.2} s", s.stats.median),
                    format!("{}×", x.text(1)),
                ],
                Some(x) => vec![format!("{:.2} s", s.stats.median), x.short(x.decimals())],
                // "reference", not "baseline": --baseline names a saved
                // comparison, another thing.
                None if reference.is_some_and(|r| r.label == s.label) => {
                    vec![format!("{:.2} s", s.stats.median), "reference".into()]
                }
                None => vec![format!("{:.2} s", s.stats.median)],
            },
            mark: s.bound_secs,
            stack: cpu_stack(s, color),
            floor: s.cpu.floor_secs,
            arrival: s.cpu.arrival_floor_secs,
        })
        .collect();
    let ceiling = crate::harness::summary::ceiling(summaries).map(|(c, fetch, load)| Level {
        value: c,
        legend: format!(
            "ceiling {c:.2} s: the slower of\nfetch-only ({fetch:.2} s) and\nload-only ({load:.2} s)"
        ),
    });
    let notes: Vec<String> = reference
        .map(|r| {
            format!(
                "bar: median of the runs\n“× faster”: {}'s median\nover the model's (± from\nboth spreads), as in\nsummary.md",
                r.label
            )
        })
        .into_iter()
        .collect();
    bar_chart(
        path,
        &format!("Median pass time per model — {subtitle}"),
        "seconds per pass (lower is better)",
        &bars,
        ceiling.as_ref(),
        &notes,
        &number,
    )
}

/// Throughput (rows per second) per model as bars.
pub fn throughput_bars(
    path: &Path,
    summaries: &[ModelSummary],
    subtitle: &str,
) -> anyhow::Result<()> {
    let shown: Vec<&ModelSummary> = models_only(summaries).collect();
    let crowded = shown.len() > CROWDED;
    let bars: Vec<Bar> = shown
        .iter()
        .zip(bar_looks(&shown))
        .map(|(s, (label, color))| Bar {
            label,
            color,
            value: s.rows_per_sec,
            range: None,
            note: if crowded {
                vec![format!("{:.0}k", s.rows_per_sec / 1000.0), "rows/s".into()]
            } else {
                vec![format!(
                    "{} rows/s",
                    crate::report::grouped(s.rows_per_sec.round() as u64)
                )]
            },
            mark: None,
            stack: Vec::new(),
            floor: None,
            arrival: None,
        })
        .collect();
    let fmt = |v: &f64| {
        if *v == 0.0 {
            "0".into()
        } else {
            format!("{}k", number(&(v / 1000.0)))
        }
    };
    bar_chart(
        path,
        &format!("Throughput per model — {subtitle}"),
        "rows loaded per second (median; higher is better)",
        &bars,
        None,
        &[],
        &fmt,
    )
}

fn write_color(w: crate::db::WriteStrategy) -> RGBColor {
    match w {
        crate::db::WriteStrategy::Insert => RGBColor(214, 39, 40),
        crate::db::WriteStrategy::Batch => RGBColor(255, 127, 14),
        crate::db::WriteStrategy::Copy => RGBColor(44, 160, 44),
    }
}

/// Models × write strategies as grouped bars of median time (log scale:
/// per-row INSERTs and COPY differ by an order of magnitude).
pub fn matrix_bars(
    path: &Path,
    summaries: &[ModelSummary],
    models: &[Model],
    writes: &[WriteStrategy],
    subtitle: &str,
) -> anyhow::Result<()> {
    let find =
        |m: Model, w: WriteStrategy| summaries.iter().find(|s| s.label == Label::new(m, w, true));
    let medians = || summaries.iter().map(|s| s.stats.median);
    let ymax = medians().fold(0.0, f64::max) * 2.0 + 1e-6;
    let ymin = medians().fold(f64::INFINITY, f64::min).min(ymax) / 2.0;
    let ymin = if ymin.is_finite() && ymin > 0.0 {
        ymin
    } else {
        0.01
    };
    let legend: Vec<Entry> = writes
        .iter()
        .map(|w| Entry {
            swatch: Swatch::Box(write_color(*w)),
            text: w.as_str().to_string(),
        })
        .collect();
    let area = frame(
        path,
        &format!("Model × write strategy, median pass time — {subtitle}"),
        &legend,
    )?;
    let n = models.len();
    let x_fmt = |v: &f64| {
        models
            .get(v.round().max(0.0) as usize)
            .map(Model::to_string)
            .unwrap_or_default()
    };
    let mut chart = axes(
        &area,
        Axis::linear(-0.5..n as f64 - 0.5, (0..n).map(|i| i as f64).collect()),
        Axis::log_auto(ymin, ymax),
        &AxisText {
            x_desc: "execution model",
            y_desc: "seconds per pass (log scale, lower is better)",
            x_fmt: &x_fmt,
            y_fmt: &number,
            x_grid: false,
            x_lines: 1,
        },
    )?;
    let width = 0.8 / writes.len() as f64;
    for (j, w) in writes.iter().enumerate() {
        let color = write_color(*w);
        for (i, m) in models.iter().enumerate() {
            let Some(s) = find(*m, *w) else { continue };
            let x0 = i as f64 - 0.4 + j as f64 * width;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0 + 0.01, ymin), (x0 + width - 0.01, s.stats.median)],
                    color.mix(0.85).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.2}", s.stats.median),
                    (x0 + width / 2.0, s.stats.median * 1.06),
                    font(16).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))
                .map_err(err)?;
        }
    }
    area.present().map_err(err)?;
    Ok(())
}

/// Every chart of a comparison, in `out`: median time, each launch,
/// throughput, the first-byte delays met on a simulated bucket, and with a
/// matrix the grouped bars. Returns each file's name
/// and whether it was drawn (a chart that fails is a warning, not a lost run).
pub fn draw_all(
    out: &Path,
    runs: &[Run],
    summaries: &[ModelSummary],
    labels: &[Label],
    matrix: Option<(&[Model], &[WriteStrategy])>,
    subtitle: &str,
) -> Vec<(&'static str, anyhow::Result<()>)> {
    // Charts draw the verified runs; with none, they would be empty axes
    // whose scale means nothing.
    if summaries.is_empty() {
        return Vec::new();
    }
    let mut drawn = vec![
        (
            "median_time.png",
            median_time_bars(&out.join("median_time.png"), summaries, subtitle),
        ),
        (
            "launches.png",
            launches_lines(
                &out.join("launches.png"),
                runs,
                labels,
                matrix.is_some(),
                subtitle,
            ),
        ),
        (
            "throughput.png",
            throughput_bars(&out.join("throughput.png"), summaries, subtitle),
        ),
    ];
    if super::firstbyte::charted(runs) {
        drawn.push((
            "first_byte.png",
            first_byte_lines(
                &out.join("first_byte.png"),
                runs,
                labels,
                matrix.is_some(),
                subtitle,
            ),
        ));
    }
    if let Some((models, writes)) = matrix {
        drawn.push((
            "matrix.png",
            matrix_bars(&out.join("matrix.png"), summaries, models, writes, subtitle),
        ));
    }
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_gets_its_own_colour() {
        let labels: Vec<String> = Model::MODELS
            .iter()
            .chain(&Model::CEILINGS)
            .map(|m| m.to_string())
            .chain(["mystery", "another"].map(String::from))
            .collect();
        let styles = series_styles(&labels);
        for (i, a) in styles.iter().enumerate() {
            for b in &styles[i + 1..] {
                assert_ne!(a.0, b.0, "{labels:?} share a colour: {styles:?}");
            }
        }
        let matrix: Vec<String> = Model::MODELS
            .iter()
            .flat_map(|m| ["insert", "batch", "copy"].map(|w| format!("{m}+{w}")))
            .collect();
        let styles = series_styles(&matrix);
        for (i, a) in styles.iter().enumerate() {
            for b in &styles[i + 1..] {
                assert_ne!(a.0, b.0, "two matrix series share a colour");
            }
        }
    }

    #[test]
    fn ticks_read_as_round_numbers() {
        assert_eq!(
            one_two_five(0.15, 25.0),
            vec![0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
        );
        assert_eq!(number(&0.30000000000000004), "0.3");
        assert_eq!(number(&20.0), "20");
        assert_eq!(linear_ticks(13.0), vec![0.0, 2.5, 5.0, 7.5, 10.0, 12.5]);
        assert!(log_ticks(0.5, 0.7).len() >= 3);
    }

    /// plotters' own layout draws each glyph at its caret, dropping its
    /// left side bearing ("first b yte"): the ink of a word after a space
    /// must start where the font puts it.
    #[test]
    fn text_is_placed_where_the_font_puts_it() {
        use ab_glyph::{Font as _, FontRef, ScaleFont as _};
        let (w, h) = (300u32, 50u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root = Canvas(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
            root.draw(&Text::new("a byte", (10, 5), font(28))).unwrap();
            root.present().unwrap();
        }
        let f = FontRef::try_from_slice(text::REGULAR).unwrap();
        let s = f.as_scaled(28.0);
        let after_a = 10.0 + s.h_advance(s.glyph_id('a'));
        let b = after_a + s.h_advance(s.glyph_id(' ')) + s.h_side_bearing(s.glyph_id('b'));
        let ink = |x: u32| (0..h).any(|y| buf[((y * w + x) * 3) as usize] < 128);
        let first = (after_a.ceil() as u32 + 1..w).find(|x| ink(*x)).unwrap();
        assert!(
            (first as f32 - b).abs() <= 1.0,
            "b's ink starts at column {first}; the font puts it at {b:.1}"
        );
    }
}
