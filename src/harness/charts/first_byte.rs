//! `first_byte.png`: the first-byte delays each model actually met on the
//! simulated bucket, as percentile lines (p50, p90, p99, p99.9, max; those
//! the requests are too few to resolve left off the axis) on a log scale
//! of milliseconds: one line per model, or one for each group of models
//! that made the same requests and so met the same draws, in the look of every
//! other chart ([`super::frame`], [`super::axes`]).

use std::path::Path;

use plotters::prelude::*;

use super::{
    Axis, AxisText, Entry, Marker, Swatch, axes, err, frame, marked_line, number, series_styles,
};
use crate::harness::firstbyte::{self, PERCENTILES};
use crate::harness::runner::Run;
use crate::models::Label;

/// Draws the chart into `path` from the runs' recorded delays.
pub fn first_byte_lines(
    path: &Path,
    runs: &[Run],
    labels: &[Label],
    matrix: bool,
    subtitle: &str,
) -> anyhow::Result<()> {
    let rows = firstbyte::by_label(runs, labels, matrix);
    // The percentiles some model's requests resolve; the others would only
    // repeat the slowest request, so they get no tick at all.
    let shown: Vec<usize> = (0..PERCENTILES.len())
        .filter(|&i| {
            rows.iter()
                .filter_map(|r| r.first_byte)
                .any(|f| f.resolved()[i].is_some())
        })
        .collect();
    let names: Vec<String> = rows.iter().map(|r| r.label.to_string()).collect();
    // Each model's line: its label, request count, style and points.
    let lines: Vec<Line> = rows
        .iter()
        .zip(series_styles(&names))
        .filter_map(|(r, (color, marker))| {
            let f = r.first_byte?;
            let resolved = f.resolved();
            let points = shown
                .iter()
                .enumerate()
                .filter_map(|(x, &i)| Some(((x + 1) as f64, resolved[i]?)))
                .filter(|p| p.1 > 0.0)
                .collect::<Vec<_>>();
            Some((r.label.to_string(), f.count, color, marker, points))
        })
        .filter(|s| !s.4.is_empty())
        .collect();
    anyhow::ensure!(!lines.is_empty(), "no run met a first-byte delay above 0");
    let series = side_by_side(same_draws(lines));
    let ys = || series.iter().flat_map(|s| s.3.iter().map(|p| p.1));
    let (lo, hi) = (
        ys().fold(f64::INFINITY, f64::min),
        ys().fold(0.0_f64, f64::max),
    );
    let y = Axis::log_auto(lo / 1.4, hi * 1.4);
    let n = shown.len();
    let x = Axis::linear(0.6..n as f64 + 0.4, (1..=n).map(|i| i as f64).collect());
    let mut legend: Vec<Entry> = series
        .iter()
        .map(|s| Entry {
            swatch: Swatch::Line(s.1, s.2),
            text: s.0.clone(),
        })
        .collect();
    legend.push(Entry {
        swatch: Swatch::Note,
        text: "each point: the median\nover the verified runs\nof that run's percentile,\nthe models side by side;\np99 and p99.9 only where\n100 and 1000 requests\ntell them from the max;\nconnection set-up round\ntrips not included".into(),
    });
    let area = frame(
        path,
        &format!("First-byte delay each model met — {subtitle}"),
        &legend,
    )?;
    let x_fmt = |v: &f64| {
        let x = v.round() as usize;
        shown
            .get(x.wrapping_sub(1))
            .map_or_else(String::new, |&i| PERCENTILES[i].0.to_string())
    };
    let mut chart = axes(
        &area,
        x,
        y,
        &AxisText {
            x_desc: "percentile of the run's requests",
            y_desc: "first-byte delay, ms (log scale)",
            x_fmt: &x_fmt,
            y_fmt: &number,
            x_grid: true,
            x_lines: 1,
        },
    )?;
    for (_, color, marker, points) in &series {
        marked_line(&mut chart, points, *color, *marker)?;
    }
    area.present().map_err(err)?;
    Ok(())
}

/// A model's line: its label, request count, style and points.
type Line = (String, u64, RGBColor, Marker, Vec<(f64, f64)>);

/// The lines to draw, named for their legend. `compare` deals every model
/// the same draws, so models that made the same requests met the same
/// delays: one line for each such group, named by all of them, where lines
/// drawn over each other would show only the last.
fn same_draws(lines: Vec<Line>) -> Vec<(String, RGBColor, Marker, Vec<(f64, f64)>)> {
    let mut groups: Vec<(Vec<String>, u64, RGBColor, Marker, Vec<(f64, f64)>)> = Vec::new();
    for (label, count, color, marker, points) in lines {
        match groups.iter_mut().find(|g| g.1 == count && g.4 == points) {
            Some(group) => group.0.push(label),
            None => groups.push((vec![label], count, color, marker, points)),
        }
    }
    let everyone = groups.len() == 1 && groups[0].0.len() > 1;
    groups
        .into_iter()
        .map(|(labels, count, color, marker, points)| {
            let name = match labels.as_slice() {
                [one] => format!("{one} ({count} requests)"),
                _ if everyone => format!("every model ({count} requests,\nthe same draws)"),
                many => format!("{} ({count} requests,\nthe same draws)", many.join(", ")),
            };
            (name, color, marker, points)
        })
        .collect()
}

/// The lines moved apart along each percentile, the first to the left:
/// the models' delays differ by a few per cent when they differ at all,
/// and on one x each line would hide the ones drawn before it. Spread
/// over at most a third of the gap between two percentiles.
fn side_by_side(
    series: Vec<(String, RGBColor, Marker, Vec<(f64, f64)>)>,
) -> Vec<(String, RGBColor, Marker, Vec<(f64, f64)>)> {
    let n = series.len();
    let step = if n > 1 {
        (0.33 / (n - 1) as f64).min(0.08)
    } else {
        0.0
    };
    series
        .into_iter()
        .enumerate()
        .map(|(k, (name, color, marker, points))| {
            let dx = (k as f64 - (n - 1) as f64 / 2.0) * step;
            let moved = points.into_iter().map(|(x, y)| (x + dx, y)).collect();
            (name, color, marker, moved)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_that_met_the_same_draws_share_one_line_named_by_all() {
        let line = |label: &str, count, ms: f64| {
            (
                label.to_string(),
                count,
                RED,
                Marker::Circle,
                vec![(1.0, ms), (2.0, 2.0 * ms)],
            )
        };
        let names = |lines| {
            same_draws(lines)
                .into_iter()
                .map(|s| s.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(vec![
                line("sync", 68, 60.0),
                line("async", 72, 61.0),
                line("threads", 72, 61.0),
            ]),
            [
                "sync (68 requests)",
                "async, threads (72 requests,\nthe same draws)"
            ]
        );
        assert_eq!(
            names(vec![line("sync", 68, 60.0), line("async", 68, 60.0)]),
            ["every model (68 requests,\nthe same draws)"]
        );
        // Lines that remain are set side by side, centred on each
        // percentile, none further than a sixth of the way to the next.
        let xs = |n: usize| -> Vec<f64> {
            side_by_side(
                (0..n)
                    .map(|k| line(&k.to_string(), 68, 60.0 + k as f64))
                    .map(|l| (l.0, l.2, l.3, l.4))
                    .collect(),
            )
            .iter()
            .map(|s| s.3[0].0)
            .collect()
        };
        assert_eq!(xs(1), [1.0]);
        let two = xs(2);
        assert!(
            (two[0] - 0.96).abs() < 1e-9 && (two[1] - 1.04).abs() < 1e-9,
            "{two:?}"
        );
        let ten = xs(10);
        assert!(ten.windows(2).all(|w| w[0] < w[1]), "{ten:?}");
        assert!(ten[0] >= 1.0 - 0.17 && ten[9] <= 1.0 + 0.17, "{ten:?}");
        // The same points from a different number of requests are not
        // the same draws.
        assert_eq!(
            names(vec![line("sync", 68, 60.0), line("async", 69, 60.0)]).len(),
            2
        );
    }
}
