//! Writes the results: `runs.csv`, `summary.csv`, `summary.md`,
//! `environment.json`.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::runner::Run;
use super::summary::ModelSummary;
use crate::db::WriteStrategy;
use crate::models::Label;

/// The columns of `runs.csv`, in order: written by [`write_runs_csv`] and
/// required by [`read_runs_csv`], which reads them by position. Columns
/// added later (such as [`CPU_COLUMNS`]) follow them and are read by name,
/// so an older file still reads.
const RUNS_COLUMNS: [&str; 14] = [
    "model",
    "write",
    "run",
    "wall_seconds",
    "files",
    "rows",
    "rejected",
    "requests",
    "retries",
    "bytes",
    "cpu_seconds",
    "peak_rss_mb",
    "verified",
    "problems",
];

/// The simulated bucket's counts, after [`RUNS_COLUMNS`]; read by name, and
/// empty in files written before they were counted (or for a real bucket).
const NET_COLUMNS: [&str; 3] = ["connections", "tls_handshakes", "throttled"];
/// Where each run's CPU went (`harness::cpu`): empty where not measured.
const CPU_COLUMNS: [&str; 5] = [
    "db_cpu_seconds",
    "bucket_cpu_seconds",
    "cpu_floor_seconds",
    "arrival_floor_seconds",
    "other_cpu_seconds",
];

/// The largest results file read back (`runs.csv`, a baseline, …): far
/// more than 10,000 runs of every model write, and it keeps a device or a
/// runaway file given by mistake (`/dev/zero`) from being read whole.
pub const MAX_RESULT_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a results file whole, refusing, in one line, what is not a
/// regular file or is larger than [`MAX_RESULT_FILE_BYTES`].
pub fn read_result_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "{} is not a regular file: results are read from the files a comparison wrote",
        path.display()
    );
    let too_big = || {
        anyhow::anyhow!(
            "{} is larger than the {} MiB a results file may be: not one this tool wrote",
            path.display(),
            MAX_RESULT_FILE_BYTES >> 20
        )
    };
    if meta.len() > MAX_RESULT_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_RESULT_FILE_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    // It may have grown since its size was read.
    if bytes.len() as u64 > MAX_RESULT_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Whether `path` is a `runs.csv` that [`write_runs_csv`] wrote (its
/// header starts with [`RUNS_COLUMNS`]).
pub fn is_runs_csv(path: &Path) -> bool {
    read_result_file(path)
        .is_ok_and(|t| t.starts_with(format!("{},", RUNS_COLUMNS.join(",")).as_bytes()))
}

pub fn write_runs_csv(path: &Path, runs: &[Run]) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    // Every measure as measured (the shortest text that reads back to the
    // same f64): `--replot` then reaches exactly the figures the comparison
    // printed, where rounded cells had moved them in the last digit.
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let delays = super::firstbyte::runs_columns();
    w.write_record(
        RUNS_COLUMNS
            .iter()
            .chain(&NET_COLUMNS)
            .chain(&CPU_COLUMNS)
            .map(|c| c.to_string())
            .chain(delays),
    )?;
    for r in runs {
        let fixed = [
            r.model.to_string(),
            r.write.as_str().to_string(),
            if r.run == 0 {
                "warmup".into()
            } else {
                r.run.to_string()
            },
            r.wall_secs.to_string(),
            r.files.to_string(),
            r.rows.to_string(),
            r.rejected.to_string(),
            r.requests.to_string(),
            r.retries.to_string(),
            r.bytes.to_string(),
            r.cpu_secs.to_string(),
            r.peak_rss_mb.to_string(),
            r.verified.to_string(),
            r.problems.clone(),
            count(r.connections),
            count(r.tls_handshakes),
            count(r.throttled),
            opt(r.db_cpu_secs),
            opt(r.bucket_cpu_secs),
            opt(r.cpu_floor_secs),
            opt(r.arrival_floor_secs),
            opt(r.other_cpu_secs),
        ];
        w.write_record(fixed.into_iter().chain(super::firstbyte::runs_cells(r)))?;
    }
    w.flush()?;
    Ok(())
}

/// Reads back a `runs.csv` written by [`write_runs_csv`] (for `--replot`).
pub fn read_runs_csv(path: &Path) -> anyhow::Result<Vec<Run>> {
    let bytes = read_result_file(path)?;
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let headers = r.headers()?.clone();
    // Later columns are optional: files from older versions lack them.
    anyhow::ensure!(
        headers.iter().take(RUNS_COLUMNS.len()).eq(RUNS_COLUMNS),
        "{} does not have the columns this version writes ({})",
        path.display(),
        RUNS_COLUMNS.join(", ")
    );
    let column = |name: &str| headers.iter().position(|h| h == name);
    let [db_cpu, bucket_cpu, cpu_floor, arrival_floor, other_cpu] = CPU_COLUMNS.map(column);
    let mut runs = Vec::new();
    for rec in r.records() {
        let rec = rec.with_context(|| format!("reading {}", path.display()))?;
        let f = |i: usize| rec.get(i).unwrap_or_default();
        let num = |i: usize| f(i).parse::<f64>().unwrap_or(f64::NAN);
        let int = |i: usize| f(i).parse::<u64>().unwrap_or(0);
        let by_name = |name: &str| {
            let i = headers.iter().position(|h| h == name)?;
            f(i).parse::<u64>().ok()
        };
        let opt = |i: Option<usize>| i.and_then(|i| f(i).parse::<f64>().ok());
        let (first_byte, setup) = super::firstbyte::read_runs_cells(&headers, &rec);
        // A hand-edited or damaged file must not turn into a NaN verdict
        // or a negative speed-up: the time and the run number are checked.
        let line = rec.position().map_or(0, |p| p.line());
        let wall_secs = num(3);
        anyhow::ensure!(
            wall_secs > 0.0 && wall_secs <= MAX_RUN_SECS,
            "{} line {line}: wall_seconds {:?} is not the time of a run (more than 0 and at most {MAX_RUN_SECS} s)",
            path.display(),
            f(3)
        );
        let run = match f(2) {
            "warmup" => 0,
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| {
                    format!(
                        "{} line {line}: run {n:?} is neither `warmup` nor a run number",
                        path.display()
                    )
                })?,
        };
        runs.push(Run {
            model: f(0)
                .parse()
                .with_context(|| format!("reading {}", path.display()))?,
            write: <WriteStrategy as clap::ValueEnum>::from_str(f(1), false).map_err(|_| {
                anyhow::anyhow!(
                    "{} names an unknown write strategy {:?}",
                    path.display(),
                    f(1)
                )
            })?,
            run,
            wall_secs,
            files: int(4),
            rows: int(5),
            rejected: int(6),
            requests: int(7),
            retries: int(8),
            bytes: int(9),
            cpu_secs: num(10),
            peak_rss_mb: num(11),
            verified: f(12) == "true",
            problems: f(13).to_string(),
            connections: by_name(NET_COLUMNS[0]),
            tls_handshakes: by_name(NET_COLUMNS[1]),
            throttled: by_name(NET_COLUMNS[2]),
            db_cpu_secs: opt(db_cpu),
            bucket_cpu_secs: opt(bucket_cpu),
            cpu_floor_secs: opt(cpu_floor),
            arrival_floor_secs: opt(arrival_floor),
            other_cpu_secs: opt(other_cpu),
            first_byte,
            setup,
        });
    }
    Ok(runs)
}

/// The longest run a results file may hold, in seconds (a year): past
/// it, a time is damage, and 1e308 turned into "± inf" statistics.
pub const MAX_RUN_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// A count that may be unknown: empty when it is.
fn count(c: Option<u64>) -> String {
    c.map(|c| c.to_string()).unwrap_or_default()
}

/// A median that may be unknown: empty when it is.
fn net_median(
    net: Option<&super::netstats::NetMedians>,
    f: fn(&super::netstats::NetMedians) -> f64,
) -> String {
    net.map(|n| format!("{:.1}", f(n))).unwrap_or_default()
}

/// The `bound_s` column of a `summary.csv`, by model (for `--replot`).
pub fn read_bounds(path: &Path) -> anyhow::Result<Vec<(Label, f64)>> {
    let bytes = read_result_file(path)?;
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let h = r.headers()?.clone();
    let Some(col) = h.iter().position(|c| c == "bound_s") else {
        return Ok(Vec::new());
    };
    Ok(r.records()
        .filter_map(Result::ok)
        .filter_map(|rec| Some((rec.get(0)?.parse().ok()?, rec.get(col)?.parse().ok()?)))
        .collect())
}

pub fn write_summary_csv(
    path: &Path,
    summaries: &[ModelSummary],
    reference: Option<Label>,
) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    w.write_record([
        "model",
        "runs",
        "median_s",
        "min_s",
        "max_s",
        "mean_s",
        "stddev_s",
        "rows_per_s",
        "speedup",
        "speedup_error",
        "speedup_of_means",
        "speedup_of_means_error",
        "outlier_runs",
        "failed_runs",
        "median_cpu_s",
        "max_peak_rss_mb",
        "bound_s",
        "x_bound",
        "median_requests",
        "median_connections",
        "median_tls_handshakes",
        "median_throttled",
        "median_db_cpu_s",
        "median_bucket_cpu_s",
        "cpu_floor_s",
        "arrival_floor_s",
        "client_us_per_row",
        "db_us_per_row",
        "limit_s",
        "binds",
        "limit_efficiency",
    ])?;
    let fmt =
        |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_default();
    for s in summaries {
        let st = &s.stats;
        let limit = s.limit();
        let [ratio, err, mean_ratio, mean_err] = match s.speedup {
            Some(x) => [x.ratio, x.error, x.mean_ratio, x.mean_error].map(|v| format!("{v:.3}")),
            None if Some(s.label) == reference => {
                ["1.000", "0.000", "1.000", "0.000"].map(String::from)
            }
            None => Default::default(),
        };
        w.write_record([
            s.label.to_string(),
            st.runs.to_string(),
            format!("{:.4}", st.median),
            format!("{:.4}", st.min),
            format!("{:.4}", st.max),
            format!("{:.4}", st.mean),
            format!("{:.4}", st.stddev),
            format!("{:.0}", s.rows_per_sec),
            ratio,
            err,
            mean_ratio,
            mean_err,
            st.outliers
                .iter()
                .map(|i| (i + 1).to_string())
                .collect::<Vec<_>>()
                .join(" "),
            s.failed_runs.to_string(),
            format!("{:.3}", s.median_cpu_secs),
            format!("{:.1}", s.max_peak_rss_mb),
            // As computed: `--replot` reads it back for `× bound`.
            s.bound_secs.map(|b| b.to_string()).unwrap_or_default(),
            s.bound_secs
                .map(|b| format!("{:.3}", st.median / b))
                .unwrap_or_default(),
            net_median(s.net.as_ref(), |n| n.requests),
            net_median(s.net.as_ref(), |n| n.connections),
            net_median(s.net.as_ref(), |n| n.tls_handshakes),
            net_median(s.net.as_ref(), |n| n.throttled),
            fmt(s.cpu.db_secs, 3),
            fmt(s.cpu.bucket_secs, 3),
            fmt(s.cpu.floor_secs, 4),
            fmt(s.cpu.arrival_floor_secs, 4),
            fmt(s.cpu.client_us_per_row, 2),
            fmt(s.cpu.db_us_per_row, 2),
            fmt(limit.map(|l| l.secs), 4),
            limit.map(|l| l.binds.to_string()).unwrap_or_default(),
            fmt(limit.map(|l| l.efficiency(st.median)), 3),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// The runs left out of the statistics and why, for `summary.md`: without
/// it a comparison whose runs all failed reads as a table with no rows.
/// Empty when every run was verified.
pub fn failed_runs_markdown(runs: &[Run], matrix: bool) -> String {
    let failed: Vec<&Run> = runs.iter().filter(|r| !r.verified).collect();
    if failed.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "Runs left out: each loaded something other than the expected result, so its time is not \
         the job's (runs.csv keeps them, with `verified` false).\n\n| model | run | why |\n|---|---:|---|\n",
    );
    for r in failed {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            r.label(matrix),
            r.run,
            r.problems.replace('|', "\\|")
        ));
    }
    s
}

/// The Markdown table printed at the end and written to `summary.md`.
/// With a known network it also gives each model's median against its
/// analytic bound (`bound`): near 1× the model is waiting on the network.
pub fn summary_markdown(summaries: &[ModelSummary], reference: Option<Label>) -> String {
    let reference_name = reference.map(|r| r.to_string()).unwrap_or_default();
    let bounds = summaries.iter().any(|m| m.bound_secs.is_some());
    let net = summaries.iter().any(|m| m.net.is_some());
    let mut s = format!(
        "| model | runs | median | min | max | mean ± σ | rows/s | vs {reference_name} | CPU | peak RSS |{}{}\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}{}\n",
        if bounds { " network bound |" } else { "" },
        if net {
            " requests | connections | TLS handshakes | throttled |"
        } else {
            ""
        },
        if bounds { "---:|" } else { "" },
        if net { "---:|---:|---:|---:|" } else { "" },
    );
    for m in summaries {
        let st = &m.stats;
        let rel = match m.speedup {
            // A ceiling is a limit, not a contender: no speed ratio.
            _ if m.label.model.is_ceiling() => "–".into(),
            Some(x) => format!("{}×", x.text(x.decimals())),
            None if Some(m.label) == reference => "1.0×".into(),
            None => "–".into(),
        };
        let flags = super::summary::runs_note(st.outliers.len(), m.failed_runs);
        let bound = match (bounds, m.bound_secs) {
            (false, _) => String::new(),
            (true, Some(b)) => format!(" {b:.2} s ({:.2}×) |", st.median / b),
            (true, None) => " – |".into(),
        };
        let counts = match (net, m.net) {
            (false, _) => String::new(),
            (true, Some(n)) => format!(
                " {:.0} | {:.0} | {:.0} | {:.0} |",
                n.requests, n.connections, n.tls_handshakes, n.throttled
            ),
            (true, None) => " – | – | – | – |".into(),
        };
        s.push_str(&format!(
            "| {} | {}{} | {:.2} s | {:.2} s | {:.2} s | {:.2} ± {:.2} s | {:.0} | {} | {:.2} s | {:.0} MB |{bound}{counts}\n",
            m.label, st.runs, flags, st.median, st.min, st.max, st.mean, st.stddev, m.rows_per_sec, rel, m.median_cpu_secs, m.max_peak_rss_mb
        ));
    }
    for m in summaries {
        for cause in super::summary::outlier_causes(m) {
            s.push_str(&format!("\nOutliers of {}: {cause}.\n", m.label));
        }
    }
    if bounds {
        s.push_str(&format!(
            "\nNetwork bound: {}; the ratio is the median over it.\n",
            super::bound::EXPLAINED
        ));
    }
    if net {
        s.push_str("\nRequests: sent by the workers (retries included); connections, TLS handshakes and throttled (503 SlowDown) requests: counted by the simulated bucket during each run. Medians over the verified runs.\n");
    }
    s
}

/// The machine and settings a result was measured with.
#[derive(Debug, Serialize)]
pub struct Environment {
    pub bucketbench_version: &'static str,
    pub git_revision: String,
    pub date: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu_model: String,
    pub os: String,
    pub postgres_version: String,
    pub bucket: serde_json::Value,
    pub network: serde_json::Value,
    pub settings: serde_json::Value,
    pub models: Vec<crate::models::Model>,
    pub runs: usize,
    pub warmup: usize,
    /// The server's fsync, synchronous_commit and full_page_writes.
    pub durability: super::durability::ServerDurability,
    /// How the measuring binary was built: times from an unoptimised one
    /// are not the models' own.
    pub build: super::binary::Build,
    /// The machine's load average over the minute before the comparison
    /// started its servers (`/proc/loadavg`): what else was running.
    pub load_average_at_start: Option<f64>,
    /// How many cores other processes kept busy in the moment before the
    /// comparison started its servers ([`cores_busy`]): what decides the
    /// busy warning, as the load average still holds a previous run's minute.
    pub cores_busy_at_start: Option<f64>,
}

/// The load average over the last minute, where the system gives one.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How long [`cores_busy`] samples before a comparison: long enough for a
/// few of the kernel's 10 ms ticks per core, short beside any run.
pub const BUSY_SAMPLE: std::time::Duration = std::time::Duration::from_millis(500);

/// How many cores' worth of CPU the machine spent over `window`, this
/// process's own CPU taken out (`/proc/stat`'s busy time, steal included:
/// a hypervisor's other guests compete as much as local work). The load
/// average cannot say this: it decays over a minute, so right after a
/// previous comparison it still reads that comparison's load on an idle
/// machine.
pub fn cores_busy(window: std::time::Duration) -> Option<f64> {
    use super::cpu::machine_ticks as totals;
    let own = crate::report::own_cpu_seconds;
    let (before, own0) = (totals()?, own());
    std::thread::sleep(window);
    let (after, own1) = (totals()?, own());
    let elapsed = after.total.checked_sub(before.total).filter(|&t| t > 0)? as f64;
    // Linux's iowait count may step backwards; idle's does not.
    let idle = after.idle.saturating_sub(before.idle) + after.iowait.saturating_sub(before.iowait);
    let busy = (elapsed - idle as f64).max(0.0) / elapsed * after.cpus as f64;
    Some((busy - (own1 - own0) / window.as_secs_f64()).max(0.0))
}

/// [`busy_warning`] from a comparison's `environment.json`; results
/// written before the sample was taken are judged by their load average.
pub fn busy_warning_of(env: &serde_json::Value) -> Option<String> {
    let cores = env.get("cores")?.as_u64()? as usize;
    match env.get("cores_busy_at_start") {
        // A sample that could not be taken tells nothing either way.
        Some(busy) => busy_warning(busy.as_f64()?, cores),
        None => load_warning(env.get("load_average_at_start")?.as_f64()?, cores),
    }
}

/// A warning when other work kept at least a quarter of the cores busy just
/// before the comparison began: it then competes with the models for the
/// cores, and their times vary more (with outliers) than the models alone
/// would make them.
pub fn busy_warning(busy: f64, cores: usize) -> Option<String> {
    (busy >= 0.25 * cores as f64).then(|| {
        format!(
            "WARNING: the machine was busy before the comparison began (other processes kept {busy:.1} of its {cores} cores busy): they compete with the models, so their times vary more than on a quiet machine"
        )
    })
}

/// The warning results from before [`cores_busy`] carry, from the load
/// average alone.
fn load_warning(load: f64, cores: usize) -> Option<String> {
    (load > 0.75 * cores as f64).then(|| {
        format!(
            "WARNING: the machine was busy before the comparison began (a load average of {load:.2} over the last minute, on {cores} cores): other work competes with the models, so their times vary more than on a quiet machine"
        )
    })
}

pub fn machine() -> (usize, f64, String, String) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))?
                .split(':')
                .nth(1)
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.into());
    // Two decimals: a figure to read, not 23.540576934814453.
    let gib = (mem_kb / 1024.0 / 1024.0 * 100.0).round() / 100.0;
    (cores, gib, cpu, os)
}

/// The git revision the binary was built from (`build.rs`), `-dirty` when
/// the checkout had uncommitted changes; not the directory it runs in,
/// which may be another checkout or none.
pub fn git_revision() -> String {
    env!("BUCKETBENCH_GIT_REVISION").to_string()
}

pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_machine_is_said_before_the_runs() {
        let w = busy_warning(1.2, 2).unwrap();
        assert!(
            w.contains("other processes kept 1.2 of its 2 cores busy"),
            "{w}"
        );
        assert_eq!(busy_warning(0.3, 2), None, "a blip is not a busy machine");
        // Results from before the sample are judged by their load average.
        let old = serde_json::json!({"cores": 2, "load_average_at_start": 2.45});
        let w = busy_warning_of(&old).unwrap();
        assert!(
            w.contains("a load average of 2.45 over the last minute, on 2 cores"),
            "{w}"
        );
        let quiet_now = serde_json::json!({"cores": 2, "load_average_at_start": 2.45, "cores_busy_at_start": 0.1});
        assert_eq!(
            busy_warning_of(&quiet_now),
            None,
            "a load average left by a previous run does not make an idle machine busy"
        );
        let not_sampled = serde_json::json!({"cores": 2, "load_average_at_start": 2.45, "cores_busy_at_start": null});
        assert_eq!(
            busy_warning_of(&not_sampled),
            None,
            "a replot says what the run said when no sample could be taken"
        );
    }

    /// A process spinning on one core is seen; this process's own spinning
    /// is not.
    #[test]
    fn cores_busy_sees_other_processes_and_not_this_one() {
        let ticks = |pid: u32| -> f64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<f64> = after.split(' ').map(|x| x.parse().unwrap_or(0.0)).collect();
            (f[11] + f[12]) / 100.0
        };
        let mut spinner = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let before = ticks(spinner.id());
        let busy = cores_busy(BUSY_SAMPLE).unwrap();
        let spun = (ticks(spinner.id()) - before) / BUSY_SAMPLE.as_secs_f64();
        spinner.kill().unwrap();
        spinner.wait().unwrap();
        assert!(spun > 0.3, "the spinner ran: {spun:.2} of a core");
        assert!(
            busy >= spun - 0.15,
            "a process spinning on {spun:.2} of a core: {busy:.2} cores busy"
        );
        let spin = std::thread::spawn(|| {
            let end =
                std::time::Instant::now() + BUSY_SAMPLE + std::time::Duration::from_millis(100);
            while std::time::Instant::now() < end {
                std::hint::black_box(0u64);
            }
        });
        let own = cores_busy(BUSY_SAMPLE).unwrap();
        spin.join().unwrap();
        assert!(
            own < 0.6,
            "one core of this process's own spinning is not counted: {own:.2} cores busy"
        );
    }

    /// A device or a runaway file given as a result is refused in one
    /// line, not read until memory runs out.
    #[test]
    fn what_is_not_a_results_file_is_refused_before_it_is_read() {
        let err = format!("{:#}", read_runs_csv(Path::new("/dev/zero")).unwrap_err());
        assert_eq!(
            err,
            "/dev/zero is not a regular file: results are read from the files a comparison wrote"
        );
        assert!(!is_runs_csv(Path::new("/dev/zero")));
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("runs.csv");
        // Sparse: no disk is spent on it.
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_RESULT_FILE_BYTES + 1)
            .unwrap();
        let err = format!("{:#}", read_runs_csv(&huge).unwrap_err());
        assert!(
            err.ends_with(
                "is larger than the 256 MiB a results file may be: not one this tool wrote"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_runs_csv_from_before_the_cpu_columns_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.csv");
        std::fs::write(
            &path,
            format!(
                "{}\nsync,copy,1,6.7,67,24766,40,68,0,3485930,1.2,20.5,true,\n",
                RUNS_COLUMNS.join(",")
            ),
        )
        .unwrap();
        let runs = read_runs_csv(&path).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].cpu_secs, 1.2);
        assert_eq!(
            (
                runs[0].db_cpu_secs,
                runs[0].bucket_cpu_secs,
                runs[0].cpu_floor_secs
            ),
            (None, None, None),
            "not measured then: none of them is guessed"
        );

        // And what this version writes reads back, an unmeasured part empty.
        let mut run = runs[0].clone();
        run.db_cpu_secs = None;
        run.bucket_cpu_secs = Some(0.25);
        run.cpu_floor_secs = Some(0.725);
        write_runs_csv(&path, &[run]).unwrap();
        let back = read_runs_csv(&path).unwrap();
        assert_eq!(back[0].db_cpu_secs, None);
        assert_eq!(back[0].bucket_cpu_secs, Some(0.25));
        assert_eq!(back[0].cpu_floor_secs, Some(0.725));
        assert_eq!((back[0].first_byte, back[0].setup), (None, None));

        // The first-byte and set-up delays close each row and read back.
        let mut run = back[0].clone();
        let d = super::super::firstbyte::Delays {
            count: 101,
            mean_ms: 23.5,
            p50_ms: 20.25,
            p90_ms: 37.5,
            p99_ms: 79.125,
            p999_ms: 96.5,
            max_ms: 96.5,
        };
        run.first_byte = Some(d);
        run.setup = Some(super::super::firstbyte::Delays { count: 0, ..d });
        run.other_cpu_secs = Some(0.125);
        write_runs_csv(&path, &[run]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.ends_with("cpu_floor_seconds,arrival_floor_seconds,other_cpu_seconds,first_byte_count,first_byte_mean_ms,first_byte_p50_ms,first_byte_p90_ms,first_byte_p99_ms,first_byte_p999_ms,first_byte_max_ms,setup_count,setup_mean_ms,setup_p50_ms,setup_p90_ms,setup_p99_ms,setup_p999_ms,setup_max_ms"),
            "{header}"
        );
        let back = read_runs_csv(&path).unwrap();
        assert_eq!(back[0].first_byte, Some(d));
        assert_eq!(back[0].setup.unwrap().count, 0);
        assert_eq!(back[0].other_cpu_secs, Some(0.125));
    }

    fn summary(model: crate::models::Model, times: &[f64]) -> ModelSummary {
        ModelSummary {
            label: Label { model, write: None },
            stats: super::super::stats::Stats::of(times).unwrap(),
            rows_per_sec: 1000.0,
            speedup: None,
            failed_runs: 0,
            median_cpu_secs: 1.0,
            max_peak_rss_mb: 40.0,
            bound_secs: None,
            net: None,
            cpu: super::super::cpu::CpuSummary::default(),
            outliers_from_draws: Vec::new(),
            outliers_from_machine: Vec::new(),
        }
    }

    #[test]
    fn summary_md_gives_ceilings_no_ratio_and_counts_outliers_in_words() {
        use crate::models::Model;
        let mut s = vec![
            summary(Model::Sync, &[10.0, 10.1, 10.2, 10.1, 10.0]),
            summary(Model::Async, &[1.0, 1.01, 1.02, 1.0, 1.01]),
            summary(Model::FetchOnly, &[0.5, 0.51, 0.5, 0.52, 0.5]),
            summary(Model::LoadOnly, &[0.8, 0.81, 0.8, 0.82, 0.8]),
        ];
        let base = s[0].stats.clone();
        for m in s.iter_mut().skip(1) {
            m.speedup = Some(super::super::stats::speedup(&base, &m.stats));
        }
        s[1].stats.outliers = vec![4];
        s[0].stats.outliers = vec![1, 3];
        let md = summary_markdown(&s, Some(s[0].label));
        let row = |name: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {name} |")))
                .unwrap_or_else(|| panic!("no {name} row in\n{md}"))
                .to_string()
        };
        // The ratio is the 8th cell: `| model | runs | median | min | max |
        // mean | rows/s | vs sync |`.
        let ratio = |name: &str| row(name).split('|').nth(8).unwrap().trim().to_string();
        assert_eq!(ratio("fetch-only"), "–", "{md}");
        assert_eq!(ratio("load-only"), "–", "{md}");
        assert!(ratio("async").ends_with('×'), "{md}");
        assert_eq!(ratio("sync"), "1.0×", "{md}");
        assert!(row("async").contains("| 5 (1 outlier) |"), "{md}");
        assert!(row("sync").contains("| 5 (2 outliers) |"), "{md}");
    }
}
