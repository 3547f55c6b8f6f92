//! The delays the simulated bucket actually applied in each run: the
//! distribution of first-byte latencies it drew (one per request) and,
//! apart, the connection set-up round trips it charged (one per new
//! connection's first response). Taken as the difference of the server's
//! histograms around the run, summarised as percentiles ([`Delays`]),
//! written to `first_byte.csv` and, per model, as medians over its
//! verified measured runs for `comparison.json`, the report and the
//! `first_byte.png` chart.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::runner::Run;
use super::stats::median;
use crate::models::Label;
use crate::sim::network::HistogramSnapshot;
use crate::sim::server::ServerStats;

/// One distribution of delays, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delays {
    /// How many delays were applied (requests, or connections charged).
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The percentiles a [`Delays`] holds, with their names and quantiles, in
/// the order of the chart's x axis.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

/// Whether `count` samples tell quantile `q` apart from their maximum:
/// at least one sample must lie above it.
pub fn resolves(count: u64, q: f64) -> bool {
    q >= 1.0 || count as f64 * (1.0 - q) >= 1.0 - 1e-9
}

/// A resolved percentile for a table, "–" for one the samples cannot tell.
pub fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}

impl Delays {
    /// The summary of `h`; `None` when it holds nothing.
    pub fn of(h: &HistogramSnapshot) -> Option<Delays> {
        let q = |q: f64| h.quantile(q).unwrap_or(0.0);
        Some(Delays {
            count: h.count(),
            mean_ms: h.mean()?,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: q(1.0),
        })
    }

    /// The percentiles in [`PERCENTILES`]' order, `None` for those the
    /// run's requests are too few to tell from the maximum (p99 needs 100
    /// requests, p99.9 a thousand): with 68 requests, "p99" and "p99.9"
    /// would only repeat the slowest one.
    pub fn resolved(&self) -> [Option<f64>; 5] {
        let all = self.percentiles();
        std::array::from_fn(|i| resolves(self.count, PERCENTILES[i].1).then_some(all[i]))
    }

    /// The percentiles in [`PERCENTILES`]' order.
    pub fn percentiles(&self) -> [f64; 5] {
        [
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
        ]
    }

    /// Field by field medians of `all`; `None` when empty.
    pub fn median_of(all: &[Delays]) -> Option<Delays> {
        if all.is_empty() {
            return None;
        }
        let m = |f: fn(&Delays) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
        Some(Delays {
            count: m(|d| d.count as f64).round() as u64,
            mean_ms: m(|d| d.mean_ms),
            p50_ms: m(|d| d.p50_ms),
            p90_ms: m(|d| d.p90_ms),
            p99_ms: m(|d| d.p99_ms),
            p999_ms: m(|d| d.p999_ms),
            max_ms: m(|d| d.max_ms),
        })
    }

    /// The CSV cells of [`COLUMNS`], in order.
    fn cells(d: Option<&Delays>) -> [String; 7] {
        match d {
            Some(d) => [
                // As measured, so `--replot` reads back the same figures.
                d.count.to_string(),
                d.mean_ms.to_string(),
                d.p50_ms.to_string(),
                d.p90_ms.to_string(),
                d.p99_ms.to_string(),
                d.p999_ms.to_string(),
                d.max_ms.to_string(),
            ],
            None => Default::default(),
        }
    }

    /// Read back from [`Delays::cells`]; `None` when any is missing.
    fn parse(cells: &[Option<&str>]) -> Option<Delays> {
        let f = |i: usize| cells.get(i).copied().flatten()?.parse::<f64>().ok();
        Some(Delays {
            count: cells.first().copied().flatten()?.parse().ok()?,
            mean_ms: f(1)?,
            p50_ms: f(2)?,
            p90_ms: f(3)?,
            p99_ms: f(4)?,
            p999_ms: f(5)?,
            max_ms: f(6)?,
        })
    }
}

/// The columns of one [`Delays`], after a prefix (`first_byte_`,
/// `setup_`) in `runs.csv` and as they are in `first_byte.csv`.
pub const COLUMNS: [&str; 7] = [
    "count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
];

/// The server's two delay histograms at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    first_byte: HistogramSnapshot,
    setup: HistogramSnapshot,
}

impl Snapshot {
    pub fn of(stats: &ServerStats) -> Snapshot {
        Snapshot {
            first_byte: stats.first_byte_ms.snapshot(),
            setup: stats.setup_ms.snapshot(),
        }
    }
}

/// Sets `run`'s delays from the server's histograms before and after it.
/// A run that met no set-up round trip (RTT 0, or every connection
/// reused) records a count of 0, not an unknown.
pub fn record(run: &mut Run, before: &Snapshot, after: &Snapshot) {
    run.first_byte = Delays::of(&after.first_byte.since(&before.first_byte));
    let setup = after.setup.since(&before.setup);
    run.setup = Some(Delays::of(&setup).unwrap_or(Delays {
        count: 0,
        mean_ms: 0.0,
        p50_ms: 0.0,
        p90_ms: 0.0,
        p99_ms: 0.0,
        p999_ms: 0.0,
        max_ms: 0.0,
    }));
}

/// `runs.csv`'s columns for the delays: `first_byte_count` … then
/// `setup_count` …
pub fn runs_columns() -> Vec<String> {
    ["first_byte_", "setup_"]
        .iter()
        .flat_map(|p| COLUMNS.iter().map(move |c| format!("{p}{c}")))
        .collect()
}

/// `run`'s cells for [`runs_columns`] (empty: not measured).
pub fn runs_cells(run: &Run) -> Vec<String> {
    Delays::cells(run.first_byte.as_ref())
        .into_iter()
        .chain(Delays::cells(run.setup.as_ref()))
        .collect()
}

/// Reads the delays back from a `runs.csv` record by column name; `None`
/// for each in a file written before they were recorded.
pub fn read_runs_cells(
    headers: &csv::StringRecord,
    rec: &csv::StringRecord,
) -> (Option<Delays>, Option<Delays>) {
    let read = |prefix: &str| {
        let cells: Vec<Option<&str>> = COLUMNS
            .iter()
            .map(|c| {
                let name = format!("{prefix}{c}");
                let i = headers.iter().position(|h| h == name)?;
                rec.get(i).filter(|v| !v.is_empty())
            })
            .collect();
        Delays::parse(&cells)
    };
    (read("first_byte_"), read("setup_"))
}

/// Writes `first_byte.csv`: one row per run and kind of delay
/// (`first_byte`, `setup`), warm-ups included (`run` 0), with the
/// percentiles in milliseconds. Nothing is written when no run has them (a
/// real bucket); returns whether the file was written.
pub fn write_csv(path: &Path, runs: &[Run], matrix: bool) -> anyhow::Result<bool> {
    if runs
        .iter()
        .all(|r| r.first_byte.is_none() && r.setup.is_none())
    {
        return Ok(false);
    }
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    let head = ["label", "model", "write", "run", "verified", "delay"];
    w.write_record(head.iter().chain(&COLUMNS))?;
    for r in runs {
        for (kind, d) in [("first_byte", &r.first_byte), ("setup", &r.setup)] {
            let Some(d) = d else { continue };
            let row = [
                r.label(matrix).to_string(),
                r.model.to_string(),
                r.write.as_str().to_string(),
                r.run.to_string(),
                r.verified.to_string(),
                kind.to_string(),
            ];
            w.write_record(row.into_iter().chain(Delays::cells(Some(d))))?;
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// Whether `first_byte.png` has anything to draw: a run that met a
/// first-byte delay above 0 (on a log axis, 0 has no place).
pub fn charted(runs: &[Run]) -> bool {
    runs.iter()
        .any(|r| r.run > 0 && r.verified && r.first_byte.is_some_and(|f| f.max_ms > 0.0))
}

/// A label's first-byte and set-up delays: medians over its verified
/// measured runs of each run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelDelays {
    pub label: Label,
    pub first_byte: Option<Delays>,
    pub setup: Option<Delays>,
}

/// The medians of `runs` (a label's verified measured runs).
pub fn medians(runs: &[&Run]) -> (Option<Delays>, Option<Delays>) {
    let of = |f: fn(&Run) -> Option<Delays>| {
        Delays::median_of(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
    };
    (of(|r| r.first_byte), of(|r| r.setup))
}

/// Each label's medians, in `labels`' order, skipping labels with no
/// first-byte figures.
pub fn by_label(runs: &[Run], labels: &[Label], matrix: bool) -> Vec<LabelDelays> {
    labels
        .iter()
        .filter_map(|label| {
            let good: Vec<&Run> = runs
                .iter()
                .filter(|r| r.run > 0 && r.verified && r.label(matrix) == *label)
                .collect();
            let (first_byte, setup) = medians(&good);
            first_byte.map(|_| LabelDelays {
                label: *label,
                first_byte,
                setup,
            })
        })
        .collect()
}

/// The Markdown table for `summary.md`; empty when no run has delays.
pub fn markdown(runs: &[Run], labels: &[Label], matrix: bool) -> String {
    let rows = by_label(runs, labels, matrix);
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "First-byte delays the simulated bucket applied (ms; medians over the verified runs of each run's percentiles), and the connection set-up round trips it charged (TCP and TLS handshakes, once per new connection). A percentile is shown only when a run has enough requests to tell it from the slowest (p99: 100, p99.9: 1000).\n\n| model | requests | mean | p50 | p90 | p99 | p99.9 | max | set-ups | set-up each |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let Some(f) = r.first_byte else { continue };
        let setup = match r.setup {
            Some(d) if d.count > 0 => (d.count.to_string(), format!("{:.1}", d.p50_ms)),
            Some(_) => ("0".into(), "–".into()),
            None => ("–".into(), "–".into()),
        };
        let p = f.resolved().map(cell);
        s.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.label, f.count, f.mean_ms, p[0], p[1], p[2], p[3], p[4], setup.0, setup.1
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Model;

    fn run() -> Run {
        Run::example(Model::Sync, 1, 1.0)
    }

    #[test]
    fn a_runs_delays_are_those_between_its_snapshots() {
        let stats = ServerStats::default();
        for _ in 0..50 {
            stats.first_byte_ms.record(500.0);
        }
        let before = Snapshot::of(&stats);
        for i in 1..=200 {
            stats.first_byte_ms.record(i as f64 / 2.0);
        }
        stats.setup_ms.record(40.0);
        let after = Snapshot::of(&stats);
        let mut run = run();
        record(&mut run, &before, &after);
        let f = run.first_byte.unwrap();
        assert_eq!(f.count, 200);
        assert!((f.p50_ms / 50.0 - 1.0).abs() < 0.011, "{f:?}");
        assert!((f.max_ms / 100.0 - 1.0).abs() < 0.011, "{f:?}");
        let s = run.setup.unwrap();
        assert_eq!(s.count, 1);
        assert!((s.p50_ms / 40.0 - 1.0).abs() < 0.011, "{s:?}");
        // None charged: a count of 0, not unknown.
        record(&mut run, &after, &after);
        assert_eq!(run.first_byte, None);
        assert_eq!(run.setup.unwrap().count, 0);
    }

    #[test]
    fn percentiles_the_requests_cannot_resolve_are_left_out() {
        let d = |count| Delays {
            count,
            mean_ms: 150.0,
            p50_ms: 140.0,
            p90_ms: 280.0,
            p99_ms: 700.0,
            p999_ms: 700.0,
            max_ms: 700.0,
        };
        // 68 requests: p99 and p99.9 would repeat the slowest.
        assert_eq!(
            d(68).resolved(),
            [Some(140.0), Some(280.0), None, None, Some(700.0)]
        );
        assert_eq!(d(100).resolved()[2], Some(700.0));
        assert_eq!(d(999).resolved()[3], None);
        assert_eq!(d(1000).resolved()[3], Some(700.0));
        assert_eq!(d(9).resolved()[1], None);
        assert_eq!(cell(None), "–");
        assert_eq!(cell(Some(282.54)), "282.5");
    }
}
