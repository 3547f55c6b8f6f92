//! `compare --sweep PARAM=V1,V2,…`: the whole comparison repeated for each
//! value (one pass through the stages of [`super::comparison`] each, the
//! options set in code, never re-read from the command line; with its own
//! throwaway database and bucket, and always with the ceilings), then one
//! CSV and one line chart of median time per model against the parameter,
//! the ceiling drawn dashed beneath.

use std::path::Path;

use anyhow::{Context, bail};

use super::charts::{LineChart, Series, XScale, line_chart, series_styles};
use super::comparison::{self, CompareArgs};
use super::{outdir, unique};
use crate::models::{Label, Model};
use crate::sim::NetworkPreset;

/// One model's result at one value of the swept parameter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub param: String,
    pub value: f64,
    pub model: Label,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub rows_per_s: f64,
    pub peak_rss_mb: f64,
    /// The analytic network bound (`bound`), empty for `load-only` and
    /// for a real bucket.
    pub bound_s: Option<f64>,
    /// The value as given (`internet` for a network preset, whose `value`
    /// is its median first-byte latency in ms).
    pub value_name: String,
}

/// `base` with the swept parameter set to `value`.
fn with_value(base: &CompareArgs, param: &str, value: &str) -> anyhow::Result<CompareArgs> {
    let mut args = base.clone();
    // The same checks as the flag each value stands for.
    let parsed = || {
        let parse = if param == "files" {
            crate::cli::generated
        } else {
            crate::cli::count
        };
        parse(value).map_err(|e| anyhow::anyhow!("--sweep {param}={value}: {e}"))
    };
    match param {
        "latency" => {
            args.net.latency_ms = Some(
                crate::cli::milliseconds(value)
                    .map_err(|e| anyhow::anyhow!("--sweep latency={value}: {e}"))?,
            )
        }
        "concurrency" => {
            args.knobs.concurrency = parsed()?;
            args.knobs.threads = parsed()?;
        }
        "files" => args.spec.files = Some(parsed()?),
        "workers" => args.workers = parsed()?,
        "network" => args.network.network = Some(preset(value)?),
        other => {
            bail!("cannot sweep {other:?}: choose latency, concurrency, files, workers or network")
        }
    }
    Ok(args)
}

/// A named network preset (not `custom`, which is the other flags).
fn preset(value: &str) -> anyhow::Result<NetworkPreset> {
    match <NetworkPreset as clap::ValueEnum>::from_str(value, true) {
        Ok(NetworkPreset::Custom) | Err(_) => bail!(
            "--sweep network takes presets: local, same-region, cross-region, internet (not {value:?})"
        ),
        Ok(p) => Ok(p),
    }
}

/// Where a value sits on the chart's x axis: the number itself, or for a
/// network preset its median first-byte latency in ms.
fn x_value(param: &str, value: &str) -> anyhow::Result<f64> {
    if param == "network" {
        let p = preset(value)?
            .profile()
            .context("a named preset has numbers")?;
        return Ok(p.median_ms);
    }
    value
        .parse::<f64>()
        .with_context(|| format!("--sweep value {value:?} is not a number"))
}

/// Runs the sweep; returns whether every run of every value was verified.
pub fn run(base: &CompareArgs) -> anyhow::Result<bool> {
    let sweep = base.sweep.as_deref().context("no --sweep to run")?;
    let (profile, resume) = (base.spec.profile.as_str(), base.resume);
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
    let mut xs: Vec<(f64, &str)> = Vec::new();
    for v in &values {
        let x = x_value(param, v)?;
        with_value(base, param, v)?;
        // Two values at one point of the chart would measure the same
        // thing twice and draw one over the other.
        if let Some((_, first)) = xs.iter().find(|(seen, _)| *seen == x) {
            bail!("--sweep {param} lists the same value twice ({first} and {v}); give each once");
        }
        xs.push((x, v));
    }
    // Without --out, a directory of its own under results/runs/; --resume
    // continues the newest sweep of this profile and parameter there.
    let name = format!("{profile}-sweep-{param}");
    let runs_dir = Path::new(outdir::RUNS_DIR);
    let out = match (&base.out, resume) {
        (Some(dir), _) => dir.clone(),
        (None, true) => outdir::newest(runs_dir, &name).with_context(|| {
            format!(
                "--resume found no earlier sweep {name}-* in {}; give its directory with --out",
                runs_dir.display()
            )
        })?,
        (None, false) => outdir::fresh(runs_dir, &name)?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut points = Vec::new();
    let mut all_ok = true;
    for v in &values {
        let dir = out.join(format!("{param}-{v}"));
        let mut args = with_value(base, param, v)?;
        // The ceilings are what each value's chart line is drawn against;
        // they cost two short runs, and --no-ceilings leaves them out.
        args.ceilings = !base.no_ceilings;
        args.sweep = None;
        args.resume = false;
        args.out = Some(dir.clone());
        let settings = fingerprint(&args);
        let settings_path = dir.join(SETTINGS_FILE);
        if resume && dir.join("summary.csv").is_file() {
            // Results measured with other settings would be charted as if
            // they were this sweep's.
            let kept = std::fs::read_to_string(&settings_path).with_context(|| {
                format!(
                    "--resume: {} does not record the settings it was measured with (an older release's sweep, or not a sweep value); run without --resume, or give another --out",
                    dir.display()
                )
            })?;
            anyhow::ensure!(
                kept == settings,
                "--resume: {} was measured with other settings than this sweep's (profile, network, models, runs or knobs differ); run without --resume, or give another --out",
                dir.display()
            );
            crate::esayln!(
                "sweep {param}={v}: kept the results already in {}",
                dir.display()
            );
        } else {
            crate::esayln!(
                "sweep {param}={v}: comparing (results in {})",
                dir.display()
            );
            match comparison::Plan::from_args(args).and_then(|plan| comparison::run_plan(&plan)) {
                Ok(ok) => {
                    all_ok &= ok;
                    std::fs::write(&settings_path, &settings)
                        .with_context(|| format!("writing {}", settings_path.display()))?;
                }
                // Interrupted: the signal handler says so, in one line.
                Err(_) if crate::db::embedded::interrupted() => {
                    crate::db::embedded::exit_interrupted()
                }
                Err(e) => {
                    crate::esayln!("error: sweep {param}={v}: {}", crate::error::chain(&*e));
                    all_ok = false;
                }
            }
        }
        let mut read = read_summary(&dir.join("summary.csv"), param, x_value(param, v)?)?;
        for p in &mut read {
            p.value_name = (*v).to_string();
        }
        points.extend(read);
    }
    let csv_path = out.join(format!("sweep_{param}.csv"));
    let mut w = csv::Writer::from_path(&csv_path)?;
    for p in &points {
        w.serialize(p)?;
    }
    w.flush()?;
    let png = out.join(format!("sweep_{param}.png"));
    chart(&png, &points, param)?;
    crate::say!("{}", super::terminal::sweep(&points, param));
    crate::sayln!("wrote {} and {}", csv_path.display(), png.display());
    Ok(all_ok)
}

/// Where a sweep value's directory records the settings it was measured
/// with, for `--resume` to compare.
const SETTINGS_FILE: &str = "sweep_settings.txt";

/// The settings of one value's comparison that decide what it measures,
/// as text: the bucket, network, models, runs and knobs, never the
/// database URL (which may hold a password) nor where results go.
fn fingerprint(a: &CompareArgs) -> String {
    format!(
        "models {:?}\nruns {} warmup {} workers {} ceilings {} matrix {}\nspec {:?}\nnet {:?}\nnetwork {:?}\nno_tls {}\nknobs {:?}\nclient {:?}\nbucket {:?}\nrelaxed_durability {}\n",
        a.models,
        a.runs,
        a.warmup,
        a.workers,
        a.ceilings,
        a.matrix,
        a.spec,
        a.net,
        a.network,
        a.no_tls,
        a.knobs,
        a.client,
        a.bucket.as_deref().map(crate::bucket::location::shown),
        a.relaxed_durability,
    )
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
            model: rec[m]
                .parse()
                .with_context(|| format!("reading {}", path.display()))?,
            median_s: f(med),
            min_s: f(min),
            max_s: f(max),
            rows_per_s: f(rps),
            peak_rss_mb: f(rss),
            bound_s: bound.and_then(|i| rec[i].parse().ok()),
            value_name: String::new(),
        });
    }
    Ok(out)
}

/// The models proper, without the ceilings.
pub(crate) fn models(points: &[Point]) -> Vec<Label> {
    unique(
        points
            .iter()
            .filter(|p| !p.model.model.is_ceiling())
            .map(|p| p.model),
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
                .filter(|p| p.value == v && p.model.model.is_ceiling())
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
        "network" => (
            "network preset, by median first byte (ms): local 0, same-region 20, cross-region 100, internet 150",
            XScale::Linear,
        ),
        _ => ("files in the bucket (log scale)", XScale::Log),
    };
    let models = models(points);
    let names: Vec<String> = models.iter().map(Label::to_string).collect();
    let series = models
        .iter()
        .zip(series_styles(&names))
        .map(|(m, (color, marker))| Series {
            label: m.to_string(),
            color,
            marker,
            points: points
                .iter()
                .filter(|p| p.model == *m)
                .map(|p| (p.value, p.median_s))
                .collect(),
        })
        .collect();
    let ceiling = ceilings(points);
    line_chart(
        path,
        &LineChart {
            caption: &if param == "network" {
                "Median pass time on each network preset".to_string()
            } else {
                format!("Median pass time as {param} grows")
            },
            x_desc,
            y_desc: "median seconds per pass (log scale)",
            x,
            series,
            ceiling: (!ceiling.is_empty()).then(|| {
                (
                    format!(
                        "ceiling: the slower of\n{} and {}",
                        Model::FetchOnly,
                        Model::LoadOnly
                    ),
                    ceiling,
                )
            }),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_sweeps_take_the_named_presets_at_their_median_first_byte() {
        assert_eq!(x_value("network", "local").unwrap(), 0.0);
        assert_eq!(x_value("network", "internet").unwrap(), 150.0);
        assert_eq!(x_value("latency", "60").unwrap(), 60.0);
        assert!(x_value("network", "custom").is_err());
        assert!(x_value("network", "moon").is_err());
    }
}
