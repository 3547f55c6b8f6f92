//! `compare --sweep PARAM=V1,V2,…`: the whole comparison repeated for each
//! value (each in a `compare` child process of its own, with its own
//! throwaway database and bucket, and always with the ceilings), then one
//! CSV and one line chart of median time per model against the parameter,
//! the ceiling drawn dashed beneath.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::charts::{LineChart, Series, XScale, line_chart, series_styles};
use super::{export, unique};
use crate::models::is_ceiling;
use anyhow::{Context, bail};

/// One model's result at one value of the swept parameter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub param: String,
    pub value: f64,
    pub model: String,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub rows_per_s: f64,
    pub peak_rss_mb: f64,
    /// The analytic network bound (`bound`), empty for `load-only` and
    /// for a real bucket.
    pub bound_s: Option<f64>,
}

/// The flags that set the parameter in a child `compare`.
fn flags(param: &str, value: &str) -> anyhow::Result<Vec<String>> {
    Ok(match param {
        "latency" => vec!["--latency-ms".into(), value.into()],
        "concurrency" => vec![
            "--concurrency".into(),
            value.into(),
            "--threads".into(),
            value.into(),
        ],
        "files" => vec!["--files".into(), value.into()],
        "workers" => vec!["--workers".into(), value.into()],
        other => bail!("cannot sweep {other:?}: choose latency, concurrency, files or workers"),
    })
}

/// The command line without `--sweep X` and `--out Y`, to pass on.
fn passthrough() -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in std::env::args().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if a == "--resume" {
            continue;
        }
        if a == "--sweep" || a == "--out" {
            skip = true;
            continue;
        }
        if a.starts_with("--sweep=") || a.starts_with("--out=") {
            continue;
        }
        out.push(a);
    }
    out
}

/// Runs the sweep; returns whether every run of every value was verified.
pub fn run(sweep: &str, out: Option<PathBuf>, profile: &str, resume: bool) -> anyhow::Result<bool> {
    let (param, values) = sweep
        .split_once('=')
        .context("--sweep takes PARAM=V1,V2,… (for example latency=0,5,20,60,150)")?;
    let values: Vec<&str> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    anyhow::ensure!(
        !values.is_empty(),
        "--sweep {param}= needs at least one value"
    );
    for v in &values {
        v.parse::<f64>()
            .with_context(|| format!("--sweep value {v:?} is not a number"))?;
        flags(param, v)?;
    }
    let out =
        out.unwrap_or_else(|| PathBuf::from("results").join(format!("{profile}-sweep-{param}")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let exe = std::env::current_exe()?;
    let mut points = Vec::new();
    let mut all_ok = true;
    for v in &values {
        let dir = out.join(format!("{param}-{v}"));
        if resume && dir.join("summary.csv").is_file() {
            eprintln!(
                "sweep {param}={v}: kept the results already in {}",
                dir.display()
            );
        } else {
            eprintln!(
                "sweep {param}={v}: comparing (results in {})",
                dir.display()
            );
            // The ceilings are what each value's chart line is drawn
            // against; they cost two short runs.
            let mut args = passthrough();
            if !args.iter().any(|a| a == "--ceilings") {
                args.push("--ceilings".into());
            }
            let status = Command::new(&exe)
                .args(args)
                .args(flags(param, v)?)
                .arg("--out")
                .arg(&dir)
                .status()?;
            all_ok &= status.success();
        }
        points.extend(read_summary(&dir.join("summary.csv"), param, v.parse()?)?);
    }
    let csv_path = out.join(format!("sweep_{param}.csv"));
    let mut w = csv::Writer::from_path(&csv_path)?;
    for p in &points {
        w.serialize(p)?;
    }
    w.flush()?;
    let png = out.join(format!("sweep_{param}.png"));
    chart(&png, &points, param)?;
    println!("{}", export::sweep_table(&points, param));
    println!("wrote {} and {}", csv_path.display(), png.display());
    Ok(all_ok)
}

fn read_summary(path: &Path, param: &str, value: f64) -> anyhow::Result<Vec<Point>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let h = r.headers()?.clone();
    let col = |name: &str| {
        h.iter()
            .position(|c| c == name)
            .with_context(|| format!("{} lacks {name}", path.display()))
    };
    let (m, med, min, max, rps, rss) = (
        col("model")?,
        col("median_s")?,
        col("min_s")?,
        col("max_s")?,
        col("rows_per_s")?,
        col("max_peak_rss_mb")?,
    );
    // Results written before the bound existed lack the column.
    let bound = col("bound_s").ok();
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        let f = |i: usize| rec[i].parse::<f64>().unwrap_or(f64::NAN);
        out.push(Point {
            param: param.into(),
            value,
            model: rec[m].to_string(),
            median_s: f(med),
            min_s: f(min),
            max_s: f(max),
            rows_per_s: f(rps),
            peak_rss_mb: f(rss),
            bound_s: bound.and_then(|i| rec[i].parse().ok()),
        });
    }
    Ok(out)
}

/// The models proper, without the ceilings.
pub(crate) fn models(points: &[Point]) -> Vec<String> {
    unique(
        points
            .iter()
            .filter(|p| !is_ceiling(&p.model))
            .map(|p| p.model.clone()),
    )
}

/// The ceiling at each value: the larger median of `fetch-only` and
/// `load-only`, as in `summary::efficiency`.
pub(crate) fn ceilings(points: &[Point]) -> Vec<(f64, f64)> {
    unique(points.iter().map(|p| p.value))
        .into_iter()
        .filter_map(|v| {
            points
                .iter()
                .filter(|p| p.value == v && is_ceiling(&p.model))
                .map(|p| p.median_s)
                .reduce(f64::max)
                .map(|c| (v, c))
        })
        .collect()
}

/// Median time per model against the swept value (the shared line chart),
/// the ceiling dashed beneath.
fn chart(path: &Path, points: &[Point], param: &str) -> anyhow::Result<()> {
    let (x_desc, x) = match param {
        // Latency starts at 0, so its axis is linear; the others span decades.
        "latency" => ("first-byte latency (ms)", XScale::Linear),
        "concurrency" => ("files in flight / threads (log scale)", XScale::Log),
        "workers" => ("ingest processes at once (log scale)", XScale::Log),
        _ => ("files in the bucket (log scale)", XScale::Log),
    };
    let models = models(points);
    let series = models
        .iter()
        .zip(series_styles(&models))
        .map(|(m, (color, marker))| Series {
            label: m.clone(),
            color,
            marker,
            points: points
                .iter()
                .filter(|p| &p.model == m)
                .map(|p| (p.value, p.median_s))
                .collect(),
        })
        .collect();
    let ceiling = ceilings(points);
    line_chart(
        path,
        &LineChart {
            caption: &format!("Median pass time as {param} grows"),
            x_desc,
            y_desc: "median seconds per pass (log scale)",
            x,
            series,
            ceiling: (!ceiling.is_empty()).then(|| {
                (
                    "ceiling: the slower of\nfetch-only and load-only".to_string(),
                    ceiling,
                )
            }),
        },
    )
}
