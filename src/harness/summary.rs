//! Per-model summaries of the measured (non-warm-up, verified) runs.

use serde::Serialize;

use super::bound::{Binds, Limit};
use super::runner::Run;
use super::stats::{Speedup, Stats, median, speedup};
use crate::db::WriteStrategy;
use crate::models::{Label, Model};

/// The reference every speedup is relative to, when it ran.
pub const REFERENCE: Model = Model::Sync;

#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// The model, or model and write strategy in a matrix.
    pub label: Label,
    /// Statistics of wall seconds over verified measured runs.
    pub stats: Stats,
    /// Median rows loaded per second.
    pub rows_per_sec: f64,
    /// Relative to `sync`; `None` for `sync` itself or when it did not run.
    pub speedup: Option<Speedup>,
    pub failed_runs: usize,
    pub median_cpu_secs: f64,
    pub max_peak_rss_mb: f64,
    /// The analytic network bound for this model's requests in flight
    /// (`bound`), when the network is known (a simulated bucket).
    pub bound_secs: Option<f64>,
    /// Medians of requests, connections, TLS handshakes and throttled
    /// requests, when the simulated bucket counted them.
    pub net: Option<super::netstats::NetMedians>,
    /// Where the CPU went, medians over the same runs (`harness::cpu`).
    pub cpu: super::cpu::CpuSummary,
    /// The run numbers of `stats.outliers` that drew the most extreme
    /// first-byte delays of the model's runs: the paired draws, which
    /// every model met alike, made them so, not the machine.
    pub outliers_from_draws: Vec<usize>,
    /// The run numbers of the slow outliers that ran beside more CPU of
    /// other processes than every run of the model that is not an outlier
    /// (`cpu::others`), with those seconds: the machine's noise, measured.
    pub outliers_from_machine: Vec<(usize, f64)>,
}

/// The label speedups are relative to: `sync` (`sync+insert` in a matrix,
/// the original project's way), or the first label when that did not run.
pub fn reference(labels: &[Label], matrix: bool) -> Option<Label> {
    let preferred = Label::new(REFERENCE, WriteStrategy::Insert, matrix);
    if labels.contains(&preferred) {
        Some(preferred)
    } else {
        labels.first().copied()
    }
}

/// Summarises each label (model, or model+write in a matrix) that has at
/// least one verified measured run; speedups are relative to `reference`.
pub fn summarize(
    runs: &[Run],
    labels: &[Label],
    matrix: bool,
    reference: Option<Label>,
) -> Vec<ModelSummary> {
    let mut out: Vec<ModelSummary> = labels
        .iter()
        .filter_map(|m| {
            let measured: Vec<&Run> = runs
                .iter()
                .filter(|r| r.label(matrix) == *m && r.run > 0)
                .collect();
            let good: Vec<&Run> = measured.iter().copied().filter(|r| r.verified).collect();
            let times: Vec<f64> = good.iter().map(|r| r.wall_secs).collect();
            let stats = Stats::of(&times)?;
            let rates: Vec<f64> = good
                .iter()
                .map(|r| r.rows as f64 / r.wall_secs.max(1e-9))
                .collect();
            Some(ModelSummary {
                label: *m,
                rows_per_sec: median(&rates),
                speedup: None,
                failed_runs: measured.len() - good.len(),
                median_cpu_secs: median(&good.iter().map(|r| r.cpu_secs).collect::<Vec<_>>()),
                max_peak_rss_mb: good.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max),
                bound_secs: None,
                net: super::netstats::medians(&good),
                cpu: super::cpu::CpuSummary::of(&good),
                outliers_from_draws: outliers_from_draws(&good, &stats, m.model == Model::Sync),
                outliers_from_machine: outliers_from_machine(&good, &stats),
                stats,
            })
        })
        .collect();
    if let Some(base) = out
        .iter()
        .find(|s| Some(s.label) == reference)
        .map(|s| s.stats.clone())
    {
        // A ceiling is a limit, not a contender: it gets no speed ratio
        // anywhere (table, CSV, JSON, report).
        for s in out
            .iter_mut()
            .filter(|s| Some(s.label) != reference && !s.label.model.is_ceiling())
        {
            s.speedup = Some(speedup(&base, &s.stats));
        }
    }
    out
}

/// The outliers its first-byte draws explain, when they explain them all:
/// each slow outlier drew the slowest delays of the model's runs, each fast
/// one the kindest. The measure is the one the model waits for: the mean,
/// which a model with one request in flight (`sync`) pays in full, or the
/// maximum, which one that sends many keys at once waits for. `compare`
/// deals every model the same draws in a run, so such a run is the
/// network's luck, not the machine's. An outlier the draws do not explain
/// is the machine's, and then none is put down to the draws: the same noise
/// may have moved them all. [`ModelSummary::keep_draws_if_network_bound`]
/// drops the claim for a model the network does not bind.
fn outliers_from_draws(good: &[&Run], stats: &Stats, one_in_flight: bool) -> Vec<usize> {
    let drawn: Vec<f64> = good
        .iter()
        .filter_map(|r| {
            r.first_byte
                .map(|f| if one_in_flight { f.mean_ms } else { f.max_ms })
        })
        .collect();
    if drawn.len() != good.len() || drawn.len() < 2 || stats.outliers.is_empty() {
        return Vec::new();
    }
    // The run's figure beyond every other run's: a tie (every run drew
    // the same, as on a fixed latency) explains nothing.
    let beyond_all = |i: usize, slow: bool| {
        drawn
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .all(|(_, &d)| if slow { drawn[i] > d } else { drawn[i] < d })
    };
    let explained: Vec<usize> = stats
        .outliers
        .iter()
        .filter_map(|&i| Some((i, good.get(i)?)))
        .filter(|(i, r)| beyond_all(*i, r.wall_secs > stats.median))
        .map(|(_, r)| r.run)
        .collect();
    if explained.len() == stats.outliers.len() {
        explained
    } else {
        Vec::new()
    }
}

/// The slow outliers the machine's other work explains, each with the CPU
/// seconds other processes took during it: more than during any run that
/// is not an outlier, by at least a quarter of the time the run lost
/// against the median (on cores a pass shares, other work of X CPU
/// seconds can delay it by up to X) and by more than the counters' two
/// ticks. A run with no reading explains nothing.
fn outliers_from_machine(good: &[&Run], stats: &Stats) -> Vec<(usize, f64)> {
    let Some(others) = good
        .iter()
        .map(|r| r.other_cpu_secs)
        .collect::<Option<Vec<f64>>>()
    else {
        return Vec::new();
    };
    let typical = others
        .iter()
        .enumerate()
        .filter(|(i, _)| !stats.outliers.contains(i))
        .map(|(_, &o)| o)
        .fold(f64::NEG_INFINITY, f64::max);
    stats
        .outliers
        .iter()
        .filter_map(|&i| Some((good.get(i)?, *others.get(i)?)))
        .filter(|(r, other)| {
            let lost = r.wall_secs - stats.median;
            lost > 0.0 && *other > typical + 0.02 && other - typical >= 0.25 * lost
        })
        .map(|(r, other)| (r.run, other))
        .collect()
}

/// "run 4 ran beside 0.61 s of CPU other processes took …", for the
/// outliers the machine's other work explains
/// (`ModelSummary::outliers_from_machine`) and the draws do not; `None`
/// when there are none.
pub fn from_machine(m: &ModelSummary) -> Option<String> {
    let runs: Vec<&(usize, f64)> = m
        .outliers_from_machine
        .iter()
        .filter(|(run, _)| !m.outliers_from_draws.contains(run))
        .collect();
    let (which, secs) = match runs.as_slice() {
        [] => return None,
        [(k, s)] => (format!("run {k} ran"), format!("{s:.2} s")),
        ks => (
            format!(
                "runs {} ran",
                ks.iter()
                    .map(|(k, _)| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "{} s",
                ks.iter()
                    .map(|(_, s)| format!("{s:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    let typical = m
        .cpu
        .other_secs
        .map_or(String::new(), |t| format!(" (median {t:.2} s)"));
    Some(format!(
        "{which} beside {secs} of CPU that other processes took from this machine's cores{typical}: the machine's noise, not the model"
    ))
}

/// Why a model's outliers are outliers, as far as the runs say: the draws
/// of the network, the machine's other work; empty when neither explains
/// them.
pub fn outlier_causes(m: &ModelSummary) -> Vec<String> {
    [from_draws(&m.outliers_from_draws), from_machine(m)]
        .into_iter()
        .flatten()
        .collect()
}

/// "run 2 drew the most extreme first-byte delays …", for the outliers the
/// paired draws explain (`ModelSummary::outliers_from_draws`); `None` when
/// there are none.
pub fn from_draws(runs: &[usize]) -> Option<String> {
    let which = match runs {
        [] => return None,
        [k] => format!("run {k}"),
        ks => format!(
            "runs {}",
            ks.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Some(format!(
        "{which} drew the most extreme first-byte delays of its runs, which every model met alike: the network's luck, not the machine"
    ))
}

/// The ceiling, when both were measured: the larger median of
/// `fetch-only` and `load-only`, then each of the two.
pub fn ceiling(summaries: &[ModelSummary]) -> Option<(f64, f64, f64)> {
    let median = |model: Model| {
        summaries
            .iter()
            .find(|s| s.label.model == model)
            .map(|s| s.stats.median)
    };
    let (fetch, load) = (median(Model::FetchOnly)?, median(Model::LoadOnly)?);
    Some((fetch.max(load), fetch, load))
}

/// The models proper, without the ceilings (which reports show as limits,
/// not as contenders).
pub fn models_only(summaries: &[ModelSummary]) -> impl Iterator<Item = &ModelSummary> {
    summaries.iter().filter(|s| !s.label.model.is_ceiling())
}

/// What a runs cell adds after the count: ` (2 outliers)`, ` (1 outlier,
/// 1 failed)`, or nothing; `summary.md` and `report.html` both use it.
pub fn runs_note(outliers: usize, failed: usize) -> String {
    let parts: Vec<String> = [
        (outliers > 0).then(|| crate::report::plural(outliers as u64, "outlier", "outliers")),
        (failed > 0).then(|| format!("{failed} failed")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

impl ModelSummary {
    /// How many times faster than `reference`'s median this model would run
    /// at its limit: the most it could show on this network and machine.
    /// A ratio the model is asked to reach above this is out of reach of
    /// scheduling; only a faster network, fewer requests in a row or less
    /// CPU can raise it.
    pub fn at_limit_vs(&self, reference: &ModelSummary) -> Option<f64> {
        Some(reference.stats.median / self.limit()?.secs)
    }

    /// The largest of the network bound, the CPU floor and the arrival
    /// floor, and which binds.
    pub fn limit(&self) -> Option<Limit> {
        Limit::of(
            self.bound_secs,
            self.cpu.floor_secs,
            self.cpu.arrival_floor_secs,
        )
    }

    /// Keeps outliers put down to the first-byte draws only for a model the
    /// network binds: a CPU-bound model's time does not follow its draws,
    /// and a slow run of it is the machine's (called once the bounds are in).
    pub fn keep_draws_if_network_bound(&mut self) {
        if self.limit().map(|l| l.binds) != Some(Binds::Network) {
            self.outliers_from_draws.clear();
        }
    }
}

/// Each model's median against its limit (the larger of its network bound
/// and its CPU floor: bounds that hold on any machine, see [`Limit`]) and,
/// when both ceilings ran, against the measured ceiling; as Markdown.
/// Why an efficiency can read above 100 %, said wherever one does.
pub const BEYOND_LIMIT: &str = "above 100 %: the median beat its limit, which is measured (the CPU floor) or modelled from the mean first byte (the network bound) and noisy on a shared machine: read it as at the limit.";

/// A ratio as "14.9×", or "0.14×" below 1 (where one decimal would
/// round a model ten times slower down to nothing).
pub fn times(x: f64) -> String {
    if x < 1.0 {
        format!("{x:.2}×")
    } else {
        format!("{x:.1}×")
    }
}

/// Whether an efficiency reads above 100 % as [`percent`] shows it (1.003
/// shows as "100 %", which needs no note).
pub fn beyond(efficiency: f64) -> bool {
    (100.0 * efficiency).round() > 100.0
}

/// An efficiency as a percentage, marked with `mark` above 100 %.
pub fn percent(efficiency: f64, mark: &str) -> String {
    let pct = format!("{:.0} %", 100.0 * efficiency);
    if beyond(efficiency) {
        format!("{pct}{mark}")
    } else {
        pct
    }
}

pub fn efficiency(summaries: &[ModelSummary], reference: Option<Label>) -> String {
    let ceiling = ceiling(summaries);
    let reference = reference.and_then(|r| summaries.iter().find(|s| s.label == r));
    if ceiling.is_none() && models_only(summaries).all(|m| m.limit().is_none()) {
        return String::new();
    }
    let mut s = String::new();
    if let Some((ceiling, fetch, load)) = ceiling {
        let (fetch_only, load_only) = (Model::FetchOnly, Model::LoadOnly);
        s.push_str(&format!(
            "Ceiling: {ceiling:.2} s ({fetch_only} {fetch:.2} s: the network and parsing alone; {load_only} {load:.2} s: the writes alone).\n\n"
        ));
    }
    s.push_str(&format!(
        "Efficiency: the model's limit over its median; the limit is the largest of its network bound, its CPU floor (all the CPU the pass spent, client, database and bucket, spread over the cores) and its arrival floor (when its first object's body came in, plus the CPU spent after it over the cores: nothing is parsed or written before it), and binds says which.{}\n\n| model | median | network bound | CPU floor | arrival floor | binds | efficiency |{}{}\n|---|---:|---:|---:|---:|---|---:|{}{}\n",
        reference.map_or(String::new(), |r| format!(
            " At its limit: how many times faster than {}'s median the model would be at its limit, the most it could show here.",
            r.label
        )),
        if reference.is_some() { " at its limit |" } else { "" },
        if ceiling.is_some() { " × ceiling |" } else { "" },
        if reference.is_some() { "---:|" } else { "" },
        if ceiling.is_some() { "---:|" } else { "" },
    ));
    let secs = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2} s"));
    let mut beyond = false;
    for m in models_only(summaries) {
        let limit = m.limit();
        beyond |= limit.is_some_and(|l| self::beyond(l.efficiency(m.stats.median)));
        s.push_str(&format!(
            "| {} | {:.2} s | {} | {} | {} | {} | {} |{}{}\n",
            m.label,
            m.stats.median,
            secs(m.bound_secs),
            secs(m.cpu.floor_secs),
            secs(m.cpu.arrival_floor_secs),
            limit.map_or("–".into(), |l| l.binds.to_string()),
            limit.map_or("–".into(), |l| percent(l.efficiency(m.stats.median), "¹")),
            reference.map_or(String::new(), |r| format!(
                " {} |",
                m.at_limit_vs(r).map_or("–".into(), times)
            )),
            ceiling.map_or(String::new(), |(c, _, _)| format!(
                " {:.2}× |",
                m.stats.median / c
            )),
        ));
    }
    if beyond {
        s.push_str(&format!("\n¹ {BEYOND_LIMIT}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference run's sync: run 2 (15.24 s) is an outlier, and it drew
    /// the highest mean first byte of the five.
    #[test]
    fn an_outlier_that_drew_the_slowest_first_bytes_is_put_down_to_the_draws() {
        use crate::harness::firstbyte::Delays;
        let runs_with = |means: [f64; 5]| -> Vec<Run> {
            [14.11, 15.24, 14.35, 13.41, 14.18]
                .iter()
                .zip(means)
                .enumerate()
                .map(|(i, (&t, mean_ms))| {
                    let mut r = Run::example(Model::Sync, i + 1, t);
                    r.first_byte = Some(Delays {
                        count: 68,
                        mean_ms,
                        p50_ms: 145.0,
                        p90_ms: 280.0,
                        p99_ms: 700.0,
                        p999_ms: 700.0,
                        max_ms: 4.0 * mean_ms,
                    });
                    r
                })
                .collect()
        };
        let labels = [Label::new(Model::Sync, WriteStrategy::Copy, false)];
        let summarized = |runs: &[Run]| summarize(runs, &labels, false, None).remove(0);
        let paired = runs_with([163.3, 179.8, 167.5, 153.2, 165.1]);
        let s = summarized(&paired);
        assert_eq!(s.stats.outliers, vec![1], "{:?}", s.stats);
        assert_eq!(s.outliers_from_draws, vec![2]);
        assert!(
            from_draws(&s.outliers_from_draws)
                .unwrap()
                .starts_with("run 2 drew")
        );
        // The same times with run 2's draws in the middle: the machine's.
        let unexplained = runs_with([163.3, 160.0, 167.5, 153.2, 165.1]);
        assert!(summarized(&unexplained).outliers_from_draws.is_empty());
        // Every run drew the same (a fixed latency): nothing to explain.
        let fixed = runs_with([160.0; 5]);
        assert!(summarized(&fixed).outliers_from_draws.is_empty());
        assert_eq!(from_draws(&[]), None);
        // Network-bound, the claim stands; bound by the CPU, it is dropped.
        let mut bound = s.clone();
        bound.bound_secs = Some(14.0);
        bound.keep_draws_if_network_bound();
        assert_eq!(bound.outliers_from_draws, vec![2]);
        let mut cpu_bound = s.clone();
        cpu_bound.bound_secs = Some(1.0);
        cpu_bound.cpu.floor_secs = Some(13.0);
        cpu_bound.keep_draws_if_network_bound();
        assert!(cpu_bound.outliers_from_draws.is_empty());
    }

    /// A new user's `same-region` run: two of `async`'s five runs were
    /// outliers, and the draws explained only one (the other had drawn the
    /// kindest delays): the machine was busy, and nothing is put down to
    /// the network.
    #[test]
    fn outliers_are_put_down_to_the_draws_only_when_the_draws_explain_them_all() {
        use crate::harness::firstbyte::Delays;
        let runs: Vec<Run> = [0.342, 0.374, 0.342, 0.343, 0.377]
            .iter()
            // Run 2 drew the slowest; run 5, as slow a run, the kindest.
            .zip([120.0, 140.0, 130.0, 110.0, 100.0])
            .enumerate()
            .map(|(i, (&t, max_ms))| {
                let mut r = Run::example(Model::Async, i + 1, t);
                r.first_byte = Some(Delays {
                    count: 68,
                    mean_ms: 40.0,
                    p50_ms: 35.0,
                    p90_ms: 80.0,
                    p99_ms: max_ms,
                    p999_ms: max_ms,
                    max_ms,
                });
                r
            })
            .collect();
        let labels = [Label::new(Model::Async, WriteStrategy::Copy, false)];
        let s = summarize(&runs, &labels, false, None).remove(0);
        assert_eq!(s.stats.outliers, vec![1, 4], "{:?}", s.stats);
        assert!(
            s.outliers_from_draws.is_empty(),
            "{:?}",
            s.outliers_from_draws
        );
    }

    /// A slow run beside the most CPU other processes took is put down to
    /// the machine, with the figure; one beside as little as its siblings
    /// is not, nor is any run when the counters could not be read.
    #[test]
    fn slow_outliers_beside_other_work_are_put_down_to_the_machine() {
        let runs_with = |others: [Option<f64>; 5]| -> Vec<Run> {
            [0.342, 0.344, 0.341, 0.343, 0.52]
                .iter()
                .zip(others)
                .enumerate()
                .map(|(i, (&t, other))| {
                    let mut r = Run::example(Model::AsyncFetch, i + 1, t);
                    r.other_cpu_secs = other;
                    r
                })
                .collect()
        };
        let labels = [Label::new(Model::AsyncFetch, WriteStrategy::Copy, false)];
        let summarized = |runs: &[Run]| summarize(runs, &labels, false, None).remove(0);
        let busy = summarized(&runs_with([0.01, 0.03, 0.0, 0.02, 0.61].map(Some)));
        assert_eq!(busy.stats.outliers, vec![4], "{:?}", busy.stats);
        assert_eq!(busy.outliers_from_machine, vec![(5, 0.61)]);
        let said = outlier_causes(&busy).join("; ");
        assert!(
            said.starts_with("run 5 ran beside 0.61 s of CPU that other processes took")
                && said.contains("(median 0.02 s)"),
            "{said}"
        );
        // Beside no more than the others: the machine's counters do not
        // explain it, and nothing is said.
        let quiet = summarized(&runs_with([0.01, 0.03, 0.0, 0.02, 0.03].map(Some)));
        assert!(quiet.outliers_from_machine.is_empty());
        assert!(outlier_causes(&quiet).is_empty());
        // A few ticks more than the others is no explanation of 0.18 s.
        let ticks = summarized(&runs_with([0.01, 0.03, 0.0, 0.02, 0.07].map(Some)));
        assert!(ticks.outliers_from_machine.is_empty());
        let unread = summarized(&runs_with([
            Some(0.0),
            None,
            Some(0.0),
            Some(0.0),
            Some(0.6),
        ]));
        assert!(unread.outliers_from_machine.is_empty());
    }

    #[test]
    fn a_runs_note_counts_in_the_singular_and_the_plural() {
        assert_eq!(runs_note(0, 0), "");
        assert_eq!(runs_note(1, 0), " (1 outlier)");
        assert_eq!(runs_note(2, 0), " (2 outliers)");
        assert_eq!(runs_note(0, 1), " (1 failed)");
        assert_eq!(runs_note(3, 2), " (3 outliers, 2 failed)");
    }
}
