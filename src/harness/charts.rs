//! PNG charts (plotters, bitmap backend). The font is compiled in (DejaVu
//! Sans, free licence, `assets/fonts/`), so text renders on a machine with
//! no fonts installed.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::coord::combinators::BindKeyPoints as _;
use plotters::prelude::*;

use super::runner::Run;
use super::summary::{ModelSummary, models_only};
use crate::models::{Label, Model};

static FONTS: Once = Once::new();

/// Registers the bundled font as "sans-serif" (criterion's reports use it too).

pub fn register_fonts() {
    FONTS.call_once(|| {
        let regular: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        let bold: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, regular);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, bold);
    });
}

const SIZE: (u32, u32) = (1200, 720);
/// Half the width of a bar, in category units.
const BAR: f64 = 0.36;

/// 1-2-5 steps between `lo` and `hi`: readable ticks on a log axis.
pub(crate) fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

/// A stable colour per model, so every chart reads the same way.
pub fn model_color(model: Model) -> RGBColor {
    let (r, g, b) = model.color();
    RGBColor(r, g, b)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

fn canvas(path: &Path) -> DrawingArea<BitMapBackend<'_>, Shift> {
    register_fonts();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    let _ = root.fill(&WHITE);
    root
}

/// One bar of a bar chart.
struct Bar {
    label: String,
    color: RGBColor,
    value: f64,
    /// Min–max whisker.
    range: Option<(f64, f64)>,
    /// Written above the bar.
    note: String,
    /// Drawn dashed across the bar: the model's analytic network bound.
    mark: Option<f64>,
}

/// A dashed line across the whole chart, labelled at its right end.
struct Level {
    value: f64,
    label: String,
}

/// Bars with optional whiskers and a note above each: the shape of the
/// median-time and throughput charts.
fn bar_chart(
    path: &Path,
    caption: &str,
    y_desc: &str,
    bars: &[Bar],
    level: Option<&Level>,
    y_fmt: &dyn Fn(&f64) -> String,
) -> anyhow::Result<()> {
    let root = canvas(path);
    let n = bars.len();
    let top = bars
        .iter()
        .map(|b| b.range.map_or(b.value, |r| r.1))
        .fold(0.0, f64::max);
    let bottom = bars
        .iter()
        .map(|b| b.range.map_or(b.value, |r| r.0))
        .chain(bars.iter().filter_map(|b| b.mark))
        .chain(level.map(|l| l.value))
        .fold(f64::INFINITY, f64::min);
    // Bars spanning more than 30× (sync against async on a large bucket)
    // would leave the fast ones invisible on a linear axis.
    let log = bottom > 0.0 && top / bottom > 30.0;
    let ymax = if log { top * 4.0 } else { top * 1.3 + 1e-9 };
    let floor = if log { bottom / 3.0 } else { 0.0 };
    // Heights on the axis, for placing notes and the legend.
    let up = |v: f64, frac: f64| {
        if log {
            v * (ymax / floor).powf(frac)
        } else {
            v + ymax * frac
        }
    };
    let at = |frac: f64| {
        if log {
            floor * (ymax / floor).powf(frac)
        } else {
            ymax * frac
        }
    };
    macro_rules! draw {
        ($y:expr) => {{
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    caption,
                    ("sans-serif", 28).into_font().style(FontStyle::Bold),
                )
                .margin(24)
                .x_label_area_size(50)
                .y_label_area_size(100)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), $y)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc("execution model")
                .y_desc(if log {
                    format!("{y_desc}, log scale")
                } else {
                    y_desc.to_string()
                })
                .axis_desc_style(("sans-serif", 20))
                .label_style(("sans-serif", 18))
                .x_labels(n)
                .x_label_formatter(&|v| {
                    let i = v.round();
                    if (v - i).abs() > 0.01 || i < 0.0 {
                        String::new()
                    } else {
                        bars.get(i as usize)
                            .map(|b| b.label.clone())
                            .unwrap_or_default()
                    }
                })
                .y_label_formatter(y_fmt)
                .draw()
                .map_err(err)?;
            for (i, b) in bars.iter().enumerate() {
                let x = i as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - BAR, floor), (x + BAR, b.value)],
                        b.color.mix(0.85).filled(),
                    )))
                    .map_err(err)?;
                if let Some((lo, hi)) = b.range {
                    chart
                        .draw_series(std::iter::once(ErrorBar::new_vertical(
                            x,
                            lo,
                            b.value,
                            hi,
                            BLACK.stroke_width(2),
                            16,
                        )))
                        .map_err(err)?;
                }
                if let Some(m) = b.mark {
                    let dash = BLACK.stroke_width(3);
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(x - BAR, m), (x + BAR, m)],
                            8,
                            6,
                            dash,
                        ))
                        .map_err(err)?;
                }
                let above = up(b.range.map_or(b.value, |r| r.1), 0.03);
                chart
                    .draw_series(std::iter::once(Text::new(
                        b.note.clone(),
                        (x, above),
                        ("sans-serif", 20)
                            .into_font()
                            .style(FontStyle::Bold)
                            .color(&BLACK)
                            .pos(plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Center,
                                plotters::style::text_anchor::VPos::Bottom,
                            )),
                    )))
                    .map_err(err)?;
            }
            let mut legend: Vec<String> = Vec::new();
            if bars.iter().any(|b| b.mark.is_some()) {
                legend.push("short dashes across a bar: that model's network bound".into());
            }
            if let Some(l) = level {
                let style = RGBColor(90, 90, 90).stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new(
                        [(-0.5, l.value), (n as f64 - 0.5, l.value)],
                        12,
                        8,
                        style,
                    ))
                    .map_err(err)?;
                legend.push(format!("long grey dashes: {}", l.label));
            }
            // Top right, above the bars' notes: labels on the lines would collide.
            for (i, line) in legend.iter().enumerate() {
                chart
                    .draw_series(std::iter::once(Text::new(
                        line.clone(),
                        (n as f64 - 0.55, at(0.985 - 0.045 * i as f64)),
                        ("sans-serif", 18).into_font().color(&BLACK).pos(
                            plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Right,
                                plotters::style::text_anchor::VPos::Top,
                            ),
                        ),
                    )))
                    .map_err(err)?;
            }
        }};
    }
    if log {
        draw!(
            (floor..ymax)
                .log_scale()
                .with_key_points(one_two_five(floor, ymax))
        );
    } else {
        draw!(0f64..ymax);
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Median time per model as bars, min–max whiskers, the speedup over the
/// reference written on each bar.
pub fn median_time_bars(
    path: &Path,
    summaries: &[ModelSummary],
    subtitle: &str,
) -> anyhow::Result<()> {
    let bars: Vec<Bar> = models_only(summaries)
        .map(|s| Bar {
            label: s.label.to_string(),
            color: model_color(s.label.model),
            value: s.stats.median,
            range: Some((s.stats.min, s.stats.max)),
            note: match &s.speedup {
                Some(x) => format!("{:.2} s  ·  {:.1}× faster", s.stats.median, x.median_ratio),
                None => format!("{:.2} s  ·  baseline", s.stats.median),
            },
            mark: s.bound_secs,
        })
        .collect();
    let ceiling = crate::harness::summary::ceiling(summaries).map(|(c, fetch, load)| Level {
        value: c,
        label: format!(
            "ceiling {c:.2} s, the slower of fetch-only ({fetch:.2} s) and load-only ({load:.2} s)"
        ),
    });
    let fmt = |v: &f64| {
        if *v >= 10.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    bar_chart(
        path,
        &format!("Median pass time per model — {subtitle}"),
        "seconds per pass (lower is better)",
        &bars,
        ceiling.as_ref(),
        &fmt,
    )
}

/// Throughput (rows per second) per model as bars.
pub fn throughput_bars(
    path: &Path,
    summaries: &[ModelSummary],
    subtitle: &str,
) -> anyhow::Result<()> {
    let bars: Vec<Bar> = models_only(summaries)
        .map(|s| Bar {
            label: s.label.to_string(),
            color: model_color(s.label.model),
            value: s.rows_per_sec,
            range: None,
            note: format!("{:.0} rows/s", s.rows_per_sec),
            mark: None,
        })
        .collect();
    let fmt = |v: &f64| format!("{:.0}k", v / 1000.0);
    bar_chart(
        path,
        &format!("Throughput per model — {subtitle}"),
        "rows loaded per second (median; higher is better)",
        &bars,
        None,
        &fmt,
    )
}

/// Time of every measured launch, one line per model (the original
/// project's chart, with a log scale so fast and slow models both show).
pub fn launches_lines(
    path: &Path,
    runs: &[Run],
    models: &[Label],
    matrix: bool,
    subtitle: &str,
) -> anyhow::Result<()> {
    let root = canvas(path);
    let measured: Vec<&Run> = runs.iter().filter(|r| r.run > 0 && r.verified).collect();
    let max_run = measured.iter().map(|r| r.run).max().unwrap_or(1).max(2);
    let ymax = measured.iter().map(|r| r.wall_secs).fold(0.0, f64::max) * 1.5 + 1e-6;
    let ymin = measured
        .iter()
        .map(|r| r.wall_secs)
        .fold(f64::INFINITY, f64::min)
        .min(ymax)
        / 1.5;
    let ymin = if ymin.is_finite() && ymin > 0.0 {
        ymin
    } else {
        0.01
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Time of each launch — {subtitle}"),
            ("sans-serif", 28).into_font().style(FontStyle::Bold),
        )
        .margin(24)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            1usize..max_run,
            (ymin..ymax)
                .log_scale()
                .with_key_points(one_two_five(ymin, ymax)),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("launch")
        .y_desc("seconds per pass (log scale)")
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 18))
        .x_labels(max_run)
        .light_line_style(WHITE)
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else if *v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()
        .map_err(err)?;
    for (i, m) in models.iter().enumerate() {
        let color = if matrix {
            Palette99::pick(i).to_rgba().into_rgb()
        } else {
            model_color(m.model)
        };
        let pts: Vec<(usize, f64)> = measured
            .iter()
            .filter(|r| r.label(matrix) == *m)
            .map(|r| (r.run, r.wall_secs))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(m.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 5, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 20))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

trait IntoRgb {
    fn into_rgb(self) -> RGBColor;
}

impl IntoRgb for RGBAColor {
    fn into_rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
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
    writes: &[crate::db::WriteStrategy],
    subtitle: &str,
) -> anyhow::Result<()> {
    let root = canvas(path);
    let find = |m: Model, w: crate::db::WriteStrategy| {
        summaries.iter().find(|s| s.label == Label::new(m, w, true))
    };
    let ymax = summaries.iter().map(|s| s.stats.median).fold(0.0, f64::max) * 2.0 + 1e-6;
    let ymin = summaries
        .iter()
        .map(|s| s.stats.median)
        .fold(f64::INFINITY, f64::min)
        .min(ymax)
        / 2.0;
    let ymin = if ymin.is_finite() && ymin > 0.0 {
        ymin
    } else {
        0.01
    };
    let n = models.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Model × write strategy, median pass time — {subtitle}"),
            ("sans-serif", 26).into_font().style(FontStyle::Bold),
        )
        .margin(24)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            -0.5f64..(n as f64 - 0.5),
            (ymin..ymax)
                .log_scale()
                .with_key_points(one_two_five(ymin, ymax)),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_desc("execution model")
        .y_desc("seconds per pass (log scale, lower is better)")
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 18))
        .x_labels(n)
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() > 0.01 || i < 0.0 {
                String::new()
            } else {
                models
                    .get(i as usize)
                    .map(Model::to_string)
                    .unwrap_or_default()
            }
        })
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()
        .map_err(err)?;
    let width = 0.8 / writes.len() as f64;
    for (j, w) in writes.iter().enumerate() {
        let color = write_color(*w);
        let bars: Vec<_> = models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let s = find(*m, *w)?;
                let x0 = i as f64 - 0.4 + j as f64 * width;
                Some(Rectangle::new(
                    [(x0 + 0.01, ymin), (x0 + width - 0.01, s.stats.median)],
                    color.mix(0.85).filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(w.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
        for (i, m) in models.iter().enumerate() {
            if let Some(s) = find(*m, *w) {
                let x = i as f64 - 0.4 + (j as f64 + 0.5) * width;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{:.2}", s.stats.median),
                        (x, s.stats.median * 1.08),
                        ("sans-serif", 15).into_font().color(&BLACK).pos(
                            plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Center,
                                plotters::style::text_anchor::VPos::Bottom,
                            ),
                        ),
                    )))
                    .map_err(err)?;
            }
        }
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 20))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Every chart of a comparison, in `out`: median time, each launch,
/// throughput, and with a matrix the grouped bars. Returns each file's name
/// and whether it was drawn (a chart that fails is a warning, not a lost run).
pub fn draw_all(
    out: &Path,
    runs: &[Run],
    summaries: &[ModelSummary],
    labels: &[Label],
    matrix: Option<(&[Model], &[crate::db::WriteStrategy])>,
    subtitle: &str,
) -> Vec<(&'static str, anyhow::Result<()>)> {
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
    if let Some((models, writes)) = matrix {
        drawn.push((
            "matrix.png",
            matrix_bars(&out.join("matrix.png"), summaries, models, writes, subtitle),
        ));
    }
    drawn
}
