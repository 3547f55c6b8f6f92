//! Runs each model as a child process on emptied tables (in compare's own
//! schema, see [`super::scratch`]), times it, measures its CPU and peak
//! memory, and verifies what it loaded.
//!
//! A child process per run keeps the measurement honest: the simulated
//! bucket (which holds the whole bucket in memory) and the harness live in
//! this process, so the child's peak RSS and CPU time are the model's own.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::cli::{ClientArgs, KnobArgs, S3Args};
use crate::db::WriteStrategy;
use crate::db::watched::Watched;
use crate::models::{Label, Model};
use crate::pass::Shard;
use crate::report::PassSummary;
use crate::sim::{Expected, verify};

/// The hidden subcommand that makes `compare` run one pass as a worker.
pub const WORKER: &str = "__worker";

/// The environment variable that carries a worker's [`WorkerSettings`] as
/// JSON: not argv, which `ps` shows to every user of the machine.
pub const SETTINGS_ENV: &str = "BUCKETBENCH_WORKER_SETTINGS";

/// The environment variable that gives a worker its [`Shard`] of the
/// bucket, `INDEX/COUNT`, when a run's workers cannot share it through the
/// ledger.
pub const SHARD_ENV: &str = "BUCKETBENCH_WORKER_SHARD";

/// Where the runs go.
#[derive(Debug, Clone)]
pub struct Target {
    pub bucket_url: String,
    /// Holds a password: only ever passed to children in the environment.
    /// Its `options` put every name in [`Target::schema`].
    pub database_url: String,
    /// The schema of compare's own that the runs load into and empty.
    pub schema: String,
    /// The generator's expected result; `None` for a real bucket.
    pub expected: Option<Arc<Expected>>,
    /// Checkpoint before each run (compare's own server only), so each
    /// starts from the same state: see [`super::durability::checkpoint`].
    pub checkpoint_between_runs: bool,
    /// What can be measured of the database server's and the bucket's CPU.
    pub cpu: super::cpu::Meters,
}

/// How the child passes are configured: the command line's own option
/// groups, so a new flag in one of them reaches the workers (and
/// `environment.json`) with no code of its own. Never credentials: the
/// database URL and AWS keys travel in their own environment variables.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub knobs: KnobArgs,
    pub client: ClientArgs,
    pub s3: S3Args,
    /// Worker processes per run, all at once (scale-out).
    pub workers: usize,
}

/// Everything one worker process needs, serialised once by the runner and
/// read back by the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSettings {
    pub model: Model,
    pub bucket: String,
    pub knobs: KnobArgs,
    pub client: ClientArgs,
    pub s3: S3Args,
}

/// One timed run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub model: Model,
    /// The write strategy of this run.
    pub write: WriteStrategy,
    /// 1-based; warm-up runs are numbered 0 and not kept in the statistics.
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
    /// Why verification failed, if it did.
    pub problems: String,
    /// Connections the simulated bucket accepted during the run (`None`:
    /// a real bucket, or results written before this was counted).
    pub connections: Option<u64>,
    /// TLS handshakes it completed.
    pub tls_handshakes: Option<u64>,
    /// Requests it refused with `503 SlowDown` (its rate limit).
    pub throttled: Option<u64>,
    /// CPU seconds of the database server (postmaster and every process
    /// under it) from the run's start until the backends of its
    /// connections had exited (at most 3 s after the workers); `None` when
    /// not measurable.
    pub db_cpu_secs: Option<f64>,
    /// CPU seconds of the simulated bucket's threads while the workers
    /// ran; `None` for a real bucket.
    pub bucket_cpu_secs: Option<f64>,
    /// `(cpu_secs + db + bucket) / cores` ([`super::cpu::floor`]); `None`
    /// when read from a `runs.csv` written before it existed.
    pub cpu_floor_secs: Option<f64>,
    /// When the first object's body came in, plus all the CPU spent after
    /// it over the cores ([`super::cpu::arrival_floor`]); `None` where not
    /// measured.
    pub arrival_floor_secs: Option<f64>,
    /// CPU seconds other processes on the machine (or a hypervisor's
    /// other guests) took while the run's workers ran
    /// ([`super::cpu::others`]); `None` where not measured.
    pub other_cpu_secs: Option<f64>,
    /// The first-byte delays the simulated bucket applied during the run
    /// (`harness::firstbyte`); `None` for a real bucket or older results.
    pub first_byte: Option<super::firstbyte::Delays>,
    /// The connection set-up round trips it charged.
    pub setup: Option<super::firstbyte::Delays>,
}

impl Run {
    /// A verified run with round figures, for tests.
    #[cfg(test)]
    pub(crate) fn example(model: Model, run: usize, wall_secs: f64) -> Run {
        Run {
            model,
            write: crate::db::WriteStrategy::Copy,
            run,
            wall_secs,
            files: 10,
            rows: 100,
            rejected: 0,
            requests: 11,
            retries: 0,
            bytes: 1000,
            cpu_secs: 0.1,
            peak_rss_mb: 20.0,
            verified: true,
            problems: String::new(),
            connections: None,
            tls_handshakes: None,
            throttled: None,
            db_cpu_secs: None,
            bucket_cpu_secs: None,
            cpu_floor_secs: None,
            arrival_floor_secs: None,
            other_cpu_secs: None,
            first_byte: None,
            setup: None,
        }
    }

    /// The name a run is summarised under: the model, or `model+write` in
    /// a matrix of models and write strategies.
    pub fn label(&self, matrix: bool) -> Label {
        Label::new(self.model, self.write, matrix)
    }
}

/// Empties bucketbench's tables and the ledger, so every run starts alike.
/// Names resolve through the connection's search path: `compare` calls it
/// only on a connection [`super::scratch::ensure_inside`] has checked.
pub fn empty_database(client: &mut postgres::Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            "TRUNCATE songs, movies, apps, rejected_records, processed_files RESTART IDENTITY",
        )
        .context("emptying the database between runs")
}

/// Runs one pass of `model` in a child process and verifies the result.
pub fn run_once(
    target: &Target,
    settings: &RunSettings,
    model: Model,
    write: WriteStrategy,
    run: usize,
    db: &mut Watched,
    progress: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<Run> {
    let schema = target.schema.clone();
    db.quick("compare's emptying of its tables", move |c| {
        super::scratch::ensure_inside(c, &schema)?;
        empty_database(c)
    })?;
    // Rows an earlier run left dirty, for a disk to take in.
    let rows = target.expected.as_ref().map_or(0, |e| e.rows());
    if target.checkpoint_between_runs {
        let limit = db.patience().for_rows(rows);
        db.call("the checkpoint between runs", limit, |c| {
            super::durability::checkpoint(c)
        })?;
    }
    let exe = std::env::current_exe().context("finding the compare executable")?;
    let worker = WorkerSettings {
        model,
        bucket: target.bucket_url.clone(),
        knobs: KnobArgs {
            write,
            ..settings.knobs.clone()
        },
        client: settings.client.clone(),
        s3: settings.s3.clone(),
    };
    let mut cmd = Command::new(exe);
    cmd.arg(WORKER)
        .env(SETTINGS_ENV, serde_json::to_string(&worker)?)
        .env("DATABASE_URL", &target.database_url)
        .envs(crate::db::tls::ca_file().map(|p| ("PGSSLROOTCERT", p)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A process group of its own: a Ctrl-C at the terminal reaches
        // compare alone, whose handler stops the workers; otherwise a
        // worker killed first would be reported as a failed run.
        .process_group(0);
    // Several workers at once on the same bucket and database: scale-out, as
    // separate machines would run it; the ledger coordinates them.
    let server_before = target.cpu.server_processes();
    let cpu_before = target.cpu.sample();
    let n = settings.workers.max(1);
    let workers: Vec<Worker> = (0..n)
        .map(|index| {
            // The models share the bucket through the ledger, as workers on
            // several machines would. The ceilings split it instead:
            // fetch-only keeps no ledger, and load-only would fetch every
            // file in every worker before its timed writes.
            if model.is_ceiling() && n > 1 {
                cmd.env(SHARD_ENV, Shard { index, of: n }.to_string());
            }
            Worker::spawn(&mut cmd, &target.cpu)
        })
        .collect::<anyhow::Result<_>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = progress
        .cloned()
        .map(|bar| spawn_progress_poller(target.database_url.clone(), bar, stop.clone()));
    let started = Instant::now();
    let finished: Vec<Finished> = workers
        .into_iter()
        .map(Worker::wait)
        .collect::<anyhow::Result<_>>()?;
    let elapsed = started.elapsed().as_secs_f64();
    // Before verification, whose queries are the harness's, not the run's.
    // A ceiling that times only part of its pass is charged the CPU of that
    // part, as its time is: from the first worker's timed start.
    let timed_from = finished
        .iter()
        .filter_map(|f| f.timed.as_ref())
        .min_by_key(|t| t.at)
        .map_or(&cpu_before, |t| &t.meters);
    let end = target.cpu.sample();
    let spent = end.since(timed_from);
    let arrival_floor_secs = arrival_floor(&finished, &end);
    // Over the window the workers ran in, before the database's
    // connections end (which [`super::cpu::Meters::settle`] waits for).
    let window = spent;
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = poller {
        // A poll the server stopped answering is left behind: the progress
        // bar is not worth holding the comparison for.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !p.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The database's CPU counts its connections' ends too, which come
    // after the workers' (and would otherwise land in the next run's
    // reading). The arrival floor keeps what was spent while the pass ran.
    target.cpu.settle(&server_before, Duration::from_secs(3));
    let spent = super::cpu::Spent {
        db: target.cpu.sample().since(timed_from).db,
        ..spent
    };
    let mut summaries = Vec::new();
    for Finished {
        status,
        stdout,
        stderr,
        ..
    } in &finished
    {
        if !status_ok(*status) {
            // The worker's own last line already says `error: `.
            let last = stderr.trim().lines().last().unwrap_or("no message");
            bail!(
                "{model} run {run} failed: {}",
                last.strip_prefix("error: ").unwrap_or(last)
            );
        }
        let summary: PassSummary = serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "reading the {model} worker's summary (stderr: {})",
                stderr.trim()
            )
        })?;
        summaries.push(summary);
    }
    let summary = &summaries[0];
    // fetch-only writes nothing by design: there is nothing to verify.
    let mut problems = match &target.expected {
        _ if !model.writes() => Vec::new(),
        Some(e) => {
            let e = e.clone();
            let limit = db.patience().for_rows(e.rows());
            db.call("compare's verification of the run", limit, move |c| {
                verify(c, &e)
            })?
        }
        // Keys that never reach the ledger: gone, unfetchable, refused by
        // the client before a fetch, or left busy for a later pass.
        None => {
            let fetchable = summary.listed
                - summary.missing.len() as u64
                - summary.fetch_errors.len() as u64
                - summary.busy.len() as u64
                - summary.refused.len() as u64;
            let limit = db.patience().for_rows(summary.rows());
            db.call("compare's verification of the run", limit, move |c| {
                verify::consistency(c, fetchable)
            })?
        }
    };
    // A run that could not fetch some files did less than the job: its
    // time is not the job's. With a generator behind the bucket the missing
    // rows already fail verification; with a real bucket only this says so.
    // By key: with several workers, each lists every key and may fail it.
    let unfetched: std::collections::BTreeMap<&str, &str> = summaries
        .iter()
        .flat_map(|s| &s.fetch_errors)
        .map(|f| (f.key.as_str(), f.reason.as_str()))
        .collect();
    if let Some((key, reason)) = unfetched.first_key_value() {
        problems.push(format!(
            "{} not fetched (first {}: {})",
            crate::report::plural(unfetched.len() as u64, "file", "files"),
            crate::report::short_key(key),
            reason
        ));
    }
    let sum = |f: &dyn Fn(&PassSummary) -> u64| summaries.iter().map(f).sum::<u64>();
    let max =
        |f: &dyn Fn(&PassSummary) -> Option<f64>| summaries.iter().filter_map(f).reduce(f64::max);
    let cpu_secs: f64 = finished
        .iter()
        .map(|f| {
            let whole = crate::report::cpu_secs(&f.usage);
            let before = f.timed.as_ref().map_or(0.0, |t| t.worker_secs);
            (whole - before).max(0.0)
        })
        .sum();
    Ok(Run {
        model,
        write,
        run,
        // The pass's own clock (the slowest worker's): listing, subtraction
        // and load, without the process start-up that no user of
        // `ingest --watch` pays per pass.
        wall_secs: max(&|s| s.timed_secs)
            .or(max(&|s| (s.elapsed_secs > 0.0).then_some(s.elapsed_secs)))
            .unwrap_or(elapsed),
        files: sum(&|s| s.loaded + s.failed.len() as u64),
        rows: sum(&|s| s.rows()),
        rejected: sum(&|s| s.rejected),
        requests: sum(&|s| s.requests),
        retries: sum(&|s| s.retries),
        bytes: sum(&|s| s.bytes),
        cpu_secs,
        // Each worker's own VmHWM; ru_maxrss would include this process's
        // memory (see `report::peak_rss_mb`).
        peak_rss_mb: max(&|s| s.peak_rss_mb).unwrap_or(0.0),
        verified: problems.is_empty(),
        problems: problems.join("; "),
        // Filled in by the caller, which holds the simulated bucket.
        connections: None,
        tls_handshakes: None,
        throttled: None,
        db_cpu_secs: spent.db,
        bucket_cpu_secs: spent.bucket,
        cpu_floor_secs: Some(super::cpu::floor(cpu_secs, spent, super::cpu::cores())),
        arrival_floor_secs,
        other_cpu_secs: super::cpu::others(cpu_secs, window),
        first_byte: None,
        setup: None,
    })
}

/// The arrival floor of a run of one worker that timed its whole pass
/// ([`super::cpu::arrival_floor`]): `None` for a ceiling that times only
/// part of its pass, for several workers (each on a clock of its own), or
/// when no object's body came in.
fn arrival_floor(finished: &[Finished], end: &super::cpu::Sample) -> Option<f64> {
    let [one] = finished else { return None };
    if one.timed.is_some() {
        return None;
    }
    let first = one.first_body.as_ref()?;
    let worker_after = (crate::report::cpu_secs(&one.usage) - first.worker_secs).max(0.0);
    Some(super::cpu::arrival_floor(
        first.pass_secs,
        worker_after,
        end.since(&first.meters),
        super::cpu::cores(),
    ))
}

/// A running worker process and the threads draining its output.
struct Worker {
    pid: libc::pid_t,
    _child: std::process::Child,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<(String, Option<TimedStart>, Option<FirstBody>)>,
}

/// The CPU meters read when a worker said its timed phase started
/// ([`crate::report::TIMED_PHASE_STARTS`]).
struct TimedStart {
    at: Instant,
    meters: super::cpu::Sample,
    /// The worker's own CPU seconds so far, as it said.
    worker_secs: f64,
}

/// The CPU meters read when a worker said its first object's body was in
/// ([`crate::report::FIRST_BODY_IN`]).
struct FirstBody {
    /// Seconds into the worker's pass, on the clock its time is measured by.
    pass_secs: f64,
    meters: super::cpu::Sample,
    /// The worker's own CPU seconds so far, as it said.
    worker_secs: f64,
}

/// A worker that has exited.
struct Finished {
    status: i32,
    usage: libc::rusage,
    stdout: String,
    /// Without the timed-phase and first-body lines.
    stderr: String,
    timed: Option<TimedStart>,
    first_body: Option<FirstBody>,
}

impl Worker {
    fn spawn(cmd: &mut Command, meters: &super::cpu::Meters) -> anyhow::Result<Self> {
        let mut child = cmd.spawn().context("starting a worker process")?;
        let pid = child.id() as libc::pid_t;
        live_workers().push(pid);
        let mut stdout = child.stdout.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        // Read line by line, to read the meters the moment the worker says
        // its timed phase starts.
        let stderr = std::io::BufReader::new(child.stderr.take().expect("piped"));
        let meters = meters.clone();
        let err = std::thread::spawn(move || {
            use std::io::BufRead as _;
            let (mut s, mut timed, mut first_body) = (String::new(), None, None);
            for line in stderr.split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                if let Some(worker_secs) = crate::report::read_timed_phase_line(&line) {
                    if timed.is_none() {
                        timed = Some(TimedStart {
                            at: Instant::now(),
                            meters: meters.sample(),
                            worker_secs,
                        });
                    }
                    continue;
                }
                if let Some((pass_secs, worker_secs)) = crate::report::read_first_body_line(&line) {
                    if first_body.is_none() {
                        first_body = Some(FirstBody {
                            pass_secs,
                            meters: meters.sample(),
                            worker_secs,
                        });
                    }
                    continue;
                }
                s.push_str(&line);
                s.push('\n');
            }
            (s, timed, first_body)
        });
        Ok(Worker {
            pid,
            _child: child,
            out,
            err,
        })
    }

    fn wait(self) -> anyhow::Result<Finished> {
        let waited = wait_with_rusage(self.pid);
        live_workers().retain(|p| *p != self.pid);
        let (status, usage) = waited?;
        let (stderr, timed, first_body) = self.err.join().unwrap_or_default();
        Ok(Finished {
            status,
            usage,
            stdout: self.out.join().unwrap_or_default(),
            stderr,
            timed,
            first_body,
        })
    }
}

/// Worker processes running now, for [`kill_workers`].
static LIVE_WORKERS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

fn live_workers() -> std::sync::MutexGuard<'static, Vec<libc::pid_t>> {
    LIVE_WORKERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kills every running worker (on Ctrl-C, before compare's schema is
/// dropped under them).
pub fn kill_workers() {
    for pid in live_workers().iter() {
        // SAFETY: pid is a worker we spawned and have not reaped yet.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
}

fn status_ok(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Waits for the child and returns its resource usage (CPU time, peak RSS),
/// which `std::process::Child::wait` does not expose.
fn wait_with_rusage(pid: libc::pid_t) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is a child we spawned and have not reaped.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for a worker");
        }
    }
}

/// Shows files done by reading the ledger every 250 ms: the child needs no
/// progress protocol, and the ledger is the truth anyway.
fn spawn_progress_poller(
    url: String,
    bar: indicatif::ProgressBar,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    // The previous run's count would otherwise stand beside this run's
    // label until the first poll (or for good, if it cannot connect).
    bar.set_message("");
    std::thread::spawn(move || {
        let Ok(mut c) = crate::db::connect_sync(&url) else {
            return;
        };
        while !stop.load(Ordering::Relaxed) {
            if let Ok(row) = c.query_one("SELECT count(*) FROM processed_files", &[]) {
                bar.set_message(format!("{} files done", row.get::<_, i64>(0)));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}
