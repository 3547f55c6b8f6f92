//! The shape of `comparison.json` and of a saved baseline: every serde
//! struct either file holds, in one place, versioned by
//! [`SCHEMA_VERSION`] (documented in `docs/json-export.md`). Built from the
//! runs and summaries; `html` renders a report from the same value.

use serde::{Deserialize, Serialize};

use super::firstbyte::Delays;
use super::runner::Run;
use super::stats::{self, ChangeVerdict, Speedup};
use super::summary::{self, ModelSummary};
use crate::models::Label;

/// `comparison.json`'s version: bumped on any change that renames,
/// removes, retypes or gives a field another meaning; adding a field does
/// not bump it (readers must ignore fields they do not know). 2: the
/// verdict's `ratio` and `error` are the ratio of medians and its robust
/// error (1: of means), `speedup` gained `ratio_of_medians_error`, and
/// `why` holds the lines that say what limits the models.
pub const SCHEMA_VERSION: u32 = 2;

/// A baseline file's version, apart from `comparison.json`'s: a baseline
/// holds raw wall times, whose meaning has not changed.
pub const BASELINE_SCHEMA_VERSION: u32 = 1;

/// Everything one comparison measured: `comparison.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    /// The program and version that wrote it, e.g. `bucketbench 0.1.0`.
    pub generator: String,
    /// What was compared, e.g. `seed profile, 67 files, 60 ms first byte`.
    pub title: String,
    /// The label every speed ratio is relative to.
    pub reference: String,
    /// The fastest model against the reference; `None` with one model.
    pub verdict: Option<Verdict>,
    /// Why the models ran as fast as they did: what their limits allow
    /// against the reference, what limits the fastest, and which model
    /// sits closest to its own floor (the lines `compare` prints after the
    /// ratios; with a single model too). Empty when nothing bounds the
    /// models (a real bucket without CPU figures).
    #[serde(default)]
    pub why: Vec<String>,
    /// One entry per label (model, or `model+write` in a matrix) with at
    /// least one verified measured run, in the order they ran.
    pub models: Vec<ModelStats>,
    /// The larger of the two ceilings' medians, when both were measured.
    pub ceiling: Option<Ceiling>,
    /// The change against a saved baseline, with `--baseline`.
    pub baseline: Option<BaselineReport>,
    /// The machine and settings (`environment.json`), when known.
    pub environment: Option<serde_json::Value>,
    /// Every run, warm-ups (`run` 0) and failed ones included.
    pub runs: Vec<RunRecord>,
}

/// "`fastest` ran `ratio` ± `error` times faster than `than`", the
/// ratio of medians with its propagated robust error (the headline
/// definition, [`stats::speedup`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub fastest: String,
    /// The reference, or the runner-up when the reference is fastest.
    pub than: String,
    pub ratio: f64,
    pub error: f64,
    pub text: String,
    /// When the two fastest models proper are within each other's noise:
    /// the sentence that says so (the ranking between them is a coin toss
    /// on another run). `None` in results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_noise: Option<String>,
    /// The model `fastest` ties with, when `within_noise` says so: the
    /// headline then names both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tied_with: Option<String>,
}

/// One label's statistics over its verified measured runs (seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelStats {
    pub model: String,
    /// `fetch-only` or `load-only`: a limit, not a contender.
    pub is_ceiling: bool,
    pub runs: usize,
    pub median_secs: f64,
    pub mean_secs: f64,
    /// Sample standard deviation (n − 1); 0 for a single run.
    pub stddev_secs: f64,
    pub min_secs: f64,
    pub max_secs: f64,
    /// Run numbers (as in `runs[].run`) whose modified z-score exceeds 3.5.
    pub outlier_runs: Vec<usize>,
    /// What the runs say made them outliers ([`super::summary::outlier_causes`]):
    /// the network's draws, the machine's other work; empty when nothing
    /// does, or in files written before this was recorded.
    #[serde(default)]
    pub outlier_causes: Vec<String>,
    /// Measured runs that failed verification (their times are excluded).
    pub failed_runs: usize,
    /// Median rows loaded per second.
    pub rows_per_sec: f64,
    pub median_cpu_secs: f64,
    pub max_peak_rss_mb: f64,
    /// Speed relative to `reference` (1 for the reference itself); `None`
    /// when the reference has no verified run.
    pub speedup: Option<SpeedRatio>,
    /// The analytic network bound, on a simulated bucket.
    pub bound_secs: Option<f64>,
    /// `median_secs / bound_secs`.
    pub x_bound: Option<f64>,
    /// `ceiling.secs / median_secs` (0–1, higher is closer to the limit),
    /// for models proper when both ceilings ran.
    pub efficiency: Option<f64>,
    /// Medians over the verified measured runs of the requests sent and of
    /// what the simulated bucket counted: connections accepted, TLS
    /// handshakes, requests refused with 503 SlowDown. `null` for a real
    /// bucket or results recorded before they were counted.
    #[serde(default)]
    pub median_requests: Option<f64>,
    #[serde(default)]
    pub median_connections: Option<f64>,
    #[serde(default)]
    pub median_tls_handshakes: Option<f64>,
    #[serde(default)]
    pub median_throttled: Option<f64>,
    /// Median CPU seconds of the database server (postmaster and its
    /// children) during a run; `None`: not measured.
    pub median_db_cpu_secs: Option<f64>,
    /// Median CPU seconds of the simulated bucket's threads; `None` for a
    /// real bucket.
    pub median_bucket_cpu_secs: Option<f64>,
    /// Median of the runs' CPU floors: (client + database + bucket CPU) /
    /// cores, the least wall time a pass could take on this machine.
    pub cpu_floor_secs: Option<f64>,
    /// Median of the runs' arrival floors: when the first object's body
    /// came in, plus the CPU spent after it over the cores.
    #[serde(default)]
    pub arrival_floor_secs: Option<f64>,
    /// Median µs of the worker's CPU per loaded row.
    pub client_us_per_row: Option<f64>,
    /// Median µs of the database server's CPU per loaded row.
    pub db_us_per_row: Option<f64>,
    /// The largest of `bound_secs`, `cpu_floor_secs` and
    /// `arrival_floor_secs`: a bound that holds on any machine.
    pub limit_secs: Option<f64>,
    /// Which of the three is `limit_secs`: `network`, `CPU` or `arrival`.
    pub binds: Option<String>,
    /// `limit_secs / median_secs` (0–1): the efficiency the tables show.
    pub limit_efficiency: Option<f64>,
    /// The first-byte delays the simulated bucket applied (count and
    /// percentiles in ms), each the median over the verified measured runs
    /// of the run's own figure; `null` for a real bucket or older results.
    #[serde(default)]
    pub median_first_byte: Option<Delays>,
    /// The same for the connection set-up round trips it charged (one per
    /// new connection's first response).
    #[serde(default)]
    pub median_setup: Option<Delays>,
}

/// How many times faster than the reference, both ways of counting.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SpeedRatio {
    /// Reference median over this median: the headline figure (the
    /// verdict, the tables, the charts, `summary.md`), and what models are
    /// ranked by.
    pub ratio_of_medians: f64,
    /// Its error, propagated from both sides' robust standard deviations
    /// (1.4826 × the median absolute deviation); 0 with a single run.
    #[serde(default)]
    pub ratio_of_medians_error: f64,
    /// Reference mean over this mean, as hyperfine reports it.
    pub ratio_of_means: f64,
    /// Its error, propagated from both standard deviations.
    pub ratio_of_means_error: f64,
}

impl From<SpeedRatio> for Speedup {
    /// Back to the statistics' type, for its one way of showing a ratio.
    fn from(x: SpeedRatio) -> Self {
        Speedup {
            ratio: x.ratio_of_medians,
            error: x.ratio_of_medians_error,
            // Two runs a side leave some spread in one of the two.
            spread: x.ratio_of_medians_error > 0.0 || x.ratio_of_means_error > 0.0,
            mean_ratio: x.ratio_of_means,
            mean_error: x.ratio_of_means_error,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ceiling {
    /// The larger of the two: no model can beat it.
    pub secs: f64,
    /// Median of `fetch-only`: the network and parsing alone.
    pub fetch_only_secs: f64,
    /// Median of `load-only`: the writes alone.
    pub load_only_secs: f64,
}

/// One run, as `runs.csv` has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub model: String,
    pub write: String,
    /// 1-based; 0 is a warm-up (not in the statistics).
    pub run: usize,
    pub wall_secs: f64,
    pub files: u64,
    pub rows: u64,
    pub rejected: u64,
    pub requests: u64,
    pub retries: u64,
    pub bytes: u64,
    pub cpu_secs: f64,
    pub peak_rss_mb: f64,
    pub verified: bool,
    pub problems: String,
    /// What the simulated bucket counted during the run (`null`: a real
    /// bucket, or results recorded before they were counted).
    #[serde(default)]
    pub connections: Option<u64>,
    #[serde(default)]
    pub tls_handshakes: Option<u64>,
    #[serde(default)]
    pub throttled: Option<u64>,
    /// The database server's CPU seconds during the run; `None`: not
    /// measured.
    pub db_cpu_secs: Option<f64>,
    /// The simulated bucket's CPU seconds; `None` for a real bucket.
    pub bucket_cpu_secs: Option<f64>,
    /// `(cpu_secs + db_cpu_secs + bucket_cpu_secs) / cores`.
    pub cpu_floor_secs: Option<f64>,
    /// When the first object's body came in, plus the CPU spent after it
    /// over the cores; `None` where not measured.
    #[serde(default)]
    pub arrival_floor_secs: Option<f64>,
    /// CPU seconds other processes on the machine (or a hypervisor's other
    /// guests) took while the run's workers ran; `None` where not
    /// measured, or recorded before it was.
    #[serde(default)]
    pub other_cpu_secs: Option<f64>,
    /// The first-byte delays the simulated bucket applied during the run
    /// (`null`: a real bucket, or results recorded before they were).
    #[serde(default)]
    pub first_byte: Option<Delays>,
    /// The connection set-up round trips it charged during the run.
    #[serde(default)]
    pub setup: Option<Delays>,
}

/// The comparison against a saved baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineReport {
    pub name: String,
    /// The file it was read from.
    pub path: String,
    /// When and at which revision the baseline was saved.
    pub saved_at: String,
    pub git_revision: String,
    /// Changes smaller than this (percent) are "no change".
    pub noise_threshold_pct: f64,
    /// Of the intervals (0.95).
    pub confidence: f64,
    /// Bootstrap resamples behind each interval.
    pub resamples: usize,
    pub models: Vec<BaselineChange>,
    /// Labels on one side only (not compared).
    pub only_in_baseline: Vec<String>,
    pub only_in_this_run: Vec<String>,
    /// Differences in bucket, network or settings between the two.
    pub warnings: Vec<String>,
}

/// One label's change in median against the baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineChange {
    pub model: String,
    pub baseline_runs: usize,
    pub runs: usize,
    pub baseline_median_secs: f64,
    pub median_secs: f64,
    /// Relative change of the median, percent (negative is faster).
    pub change_pct: f64,
    /// Bootstrap interval of `change_pct`; `None` with fewer than two runs
    /// on a side.
    pub ci_low_pct: Option<f64>,
    pub ci_high_pct: Option<f64>,
    pub verdict: ChangeVerdict,
}

/// A saved baseline: `baselines/NAME.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineFile {
    pub schema_version: u32,
    pub name: String,
    pub saved_at: String,
    pub git_revision: String,
    pub title: String,
    pub environment: Option<serde_json::Value>,
    pub models: Vec<BaselineSamples>,
}

/// One label's verified measured wall times, in run order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineSamples {
    pub model: String,
    pub wall_secs: Vec<f64>,
}

impl From<&Run> for RunRecord {
    fn from(r: &Run) -> Self {
        RunRecord {
            model: r.model.to_string(),
            write: r.write.as_str().to_string(),
            run: r.run,
            wall_secs: r.wall_secs,
            files: r.files,
            rows: r.rows,
            rejected: r.rejected,
            requests: r.requests,
            retries: r.retries,
            bytes: r.bytes,
            cpu_secs: r.cpu_secs,
            peak_rss_mb: r.peak_rss_mb,
            verified: r.verified,
            problems: r.problems.clone(),
            connections: r.connections,
            tls_handshakes: r.tls_handshakes,
            throttled: r.throttled,
            db_cpu_secs: r.db_cpu_secs,
            bucket_cpu_secs: r.bucket_cpu_secs,
            cpu_floor_secs: r.cpu_floor_secs,
            arrival_floor_secs: r.arrival_floor_secs,
            other_cpu_secs: r.other_cpu_secs,
            first_byte: r.first_byte,
            setup: r.setup,
        }
    }
}

/// The verified measured runs of `label`, in order: what its statistics
/// (and a baseline) are computed over.
pub fn measured<'a>(runs: &'a [Run], label: &'a str, matrix: bool) -> Vec<&'a Run> {
    runs.iter()
        .filter(|r| r.run > 0 && r.verified && r.label(matrix).to_string() == label)
        .collect()
}

/// Whether `runs` form a matrix (more than one write strategy).
pub fn is_matrix(runs: &[Run]) -> bool {
    super::unique(runs.iter().map(|r| r.write.as_str())).len() > 1
}

impl Comparison {
    pub fn build(
        runs: &[Run],
        summaries: &[ModelSummary],
        reference: Option<Label>,
        title: &str,
        environment: Option<serde_json::Value>,
    ) -> Comparison {
        let matrix = is_matrix(runs);
        let ceiling = summary::ceiling(summaries).map(|(secs, fetch, load)| Ceiling {
            secs,
            fetch_only_secs: fetch,
            load_only_secs: load,
        });
        let has_reference = summaries.iter().any(|s| Some(s.label) == reference);
        let models = summaries
            .iter()
            .map(|s| {
                let st = &s.stats;
                let name = s.label.to_string();
                let good = measured(runs, &name, matrix);
                let is_ceiling = s.label.model.is_ceiling();
                let delays = super::firstbyte::medians(&good);
                let speedup = match s.speedup {
                    Some(x) => Some(ratio(x)),
                    None if has_reference && Some(s.label) == reference => Some(SpeedRatio {
                        ratio_of_medians: 1.0,
                        ratio_of_medians_error: 0.0,
                        ratio_of_means: 1.0,
                        ratio_of_means_error: 0.0,
                    }),
                    None => None,
                };
                ModelStats {
                    model: name.clone(),
                    is_ceiling,
                    runs: st.runs,
                    median_secs: st.median,
                    mean_secs: st.mean,
                    stddev_secs: st.stddev,
                    min_secs: st.min,
                    max_secs: st.max,
                    outlier_runs: st
                        .outliers
                        .iter()
                        .filter_map(|&i| good.get(i).map(|r| r.run))
                        .collect(),
                    outlier_causes: super::summary::outlier_causes(s),
                    failed_runs: s.failed_runs,
                    rows_per_sec: s.rows_per_sec,
                    median_cpu_secs: s.median_cpu_secs,
                    max_peak_rss_mb: s.max_peak_rss_mb,
                    speedup,
                    bound_secs: s.bound_secs,
                    x_bound: s.bound_secs.map(|b| st.median / b),
                    efficiency: ceiling.filter(|_| !is_ceiling).map(|c| c.secs / st.median),
                    median_requests: s.net.map(|n| n.requests),
                    median_connections: s.net.map(|n| n.connections),
                    median_tls_handshakes: s.net.map(|n| n.tls_handshakes),
                    median_throttled: s.net.map(|n| n.throttled),
                    median_db_cpu_secs: s.cpu.db_secs,
                    median_bucket_cpu_secs: s.cpu.bucket_secs,
                    cpu_floor_secs: s.cpu.floor_secs,
                    arrival_floor_secs: s.cpu.arrival_floor_secs,
                    client_us_per_row: s.cpu.client_us_per_row,
                    db_us_per_row: s.cpu.db_us_per_row,
                    limit_secs: s.limit().map(|l| l.secs),
                    binds: s.limit().map(|l| l.binds.to_string()),
                    limit_efficiency: s.limit().map(|l| l.efficiency(st.median)),
                    median_first_byte: delays.0,
                    median_setup: delays.1,
                }
            })
            .collect::<Vec<_>>();
        Comparison {
            schema_version: SCHEMA_VERSION,
            generator: format!("bucketbench {}", env!("CARGO_PKG_VERSION")),
            title: title.to_string(),
            reference: reference.map(|r| r.to_string()).unwrap_or_default(),
            verdict: verdict(summaries, reference),
            why: super::terminal::why(summaries, reference),
            models,
            ceiling,
            baseline: None,
            environment,
            runs: runs.iter().map(RunRecord::from).collect(),
        }
    }
}

fn ratio(x: Speedup) -> SpeedRatio {
    SpeedRatio {
        ratio_of_medians: x.ratio,
        ratio_of_medians_error: x.error,
        ratio_of_means: x.mean_ratio,
        ratio_of_means_error: x.mean_error,
    }
}

/// The fastest model proper (by median, the headline's measure) against the
/// reference; when the reference is itself the fastest, against the
/// runner-up.
pub fn verdict(summaries: &[ModelSummary], reference: Option<Label>) -> Option<Verdict> {
    let reference = reference?;
    let contenders: Vec<&ModelSummary> = summary::models_only(summaries).collect();
    let fastest = contenders
        .iter()
        .min_by(|a, b| a.stats.median.total_cmp(&b.stats.median))?;
    let base = contenders.iter().find(|s| s.label == reference)?;
    let (fast, slow) = if fastest.label == reference {
        let runner_up = contenders
            .iter()
            .filter(|s| s.label != reference)
            .min_by(|a, b| a.stats.median.total_cmp(&b.stats.median))?;
        (*fastest, *runner_up)
    } else {
        (*fastest, *base)
    };
    let x = stats::speedup(&slow.stats, &fast.stats);
    let tie = tie(&contenders);
    Some(Verdict {
        fastest: fast.label.to_string(),
        than: slow.label.to_string(),
        ratio: x.ratio,
        error: x.error,
        text: x.sentence(&fast.label.to_string(), &slow.label.to_string(), 2),
        within_noise: tie.as_ref().map(|t| t.0.clone()),
        tied_with: tie.map(|t| t.1.to_string()),
    })
}

/// "async and async-fetch are within each other's noise: …" when the
/// fastest model proper is not faster than the runner-up by more than the
/// error of the ratio (the robust spreads propagated as the verdict's).
/// The errors treat the models' runs as independent; with paired draws
/// they are correlated, so this errs towards calling a tie.
pub fn within_noise(contenders: &[&ModelSummary]) -> Option<String> {
    tie(contenders).map(|t| t.0)
}

/// [`within_noise`]'s sentence, and the runner-up the fastest ties with.
fn tie(contenders: &[&ModelSummary]) -> Option<(String, Label)> {
    let mut by_median: Vec<&&ModelSummary> = contenders.iter().collect();
    by_median.sort_by(|a, b| a.stats.median.total_cmp(&b.stats.median));
    let [first, second, ..] = by_median[..] else {
        return None;
    };
    let x = stats::speedup(&second.stats, &first.stats);
    // Equal as shown (no spread to judge by, or identical times) is a tie too.
    let equal = (x.ratio * 100.0).round() <= 100.0;
    let sentence = x.sentence(&first.label.to_string(), &second.label.to_string(), 2);
    if !x.has_error() {
        // One run a side: no spread to judge by, only equal times.
        return equal.then(|| {
            let line = format!(
                "{} and {} took the same time: {sentence}, and one run each cannot order them",
                first.label, second.label
            );
            (line, second.label)
        });
    }
    (x.ratio - x.error <= 1.0 || equal).then(|| {
        let line = format!(
            "{} and {} are within each other's noise: {sentence}, and the spread allows either order",
            first.label, second.label,
        );
        (line, second.label)
    })
}
