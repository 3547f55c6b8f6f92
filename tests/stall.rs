//! A bucket that stops answering mid-pass: a real `bucket serve` process
//! frozen with SIGSTOP. The pass must end within a bound with one line,
//! leave the files it did not attempt out of the ledger, and a rerun once
//! the bucket is back must load everything exactly; a bucket back before
//! the breaker trips must not end the pass at all. And a PostgreSQL
//! backend stopped the same way must hold a pass no longer than
//! `--db-timeout` allows.

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bucketbench::db::{Durability, EmbeddedPostgres, Flavor};
use bucketbench::models::Model;
use bucketbench::report::PassSummary;
use bucketbench::sim::{ProfileName, SimBucket, Spec, verify};
use common::*;

const FILES: usize = 200;
const RECORDS: usize = 20;
const SEED: u64 = 21;

/// `bucket serve` in a child process, so it can be frozen like a server
/// that stopped answering (its kernel still accepts connections).
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start() -> Served {
        let mut child = common::bucket()
            .args(["serve", "--profile", "small", "--addr", "127.0.0.1:0"])
            .args(["--seed", &SEED.to_string()])
            .args(["--files", &FILES.to_string()])
            .args(["--records", &RECORDS.to_string()])
            // Slow enough that every model's pass is under way when frozen.
            .args([
                "--latency-ms",
                "40",
                "--jitter-ms",
                "0",
                "--bandwidth-mbps",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bucket serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("bucket serve prints its URL");
        Served {
            child,
            url: line.trim().to_string(),
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ingest` with short timeouts and a breaker that trips after 3 s.
fn ingest(url: &str, db: &str, model: &str) -> Command {
    let mut cmd = common::ingest();
    cmd.args(["--bucket", url, "--model", model, "--json"])
        .args(["--concurrency", "4", "--threads", "4"])
        .args(["--first-byte-timeout", "0.3", "--download-timeout", "2"])
        .args(["--unreachable-after", "3", "--unreachable-requests", "3"])
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits until `at_least` files are in the ledger (the pass is under way).
fn wait_for_files(db: &str, at_least: i64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger_count(db, "SELECT count(*) FROM processed_files") < at_least {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pass ended too soon"
        );
        assert!(Instant::now() < deadline, "the pass never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn expected() -> bucketbench::sim::Expected {
    SimBucket::generate(
        Spec::new(ProfileName::Small, SEED).with_overrides(Some(FILES), Some(RECORDS)),
    )
    .expected()
}

/// Each model on a bucket server of its own, all four at once: the test
/// is waiting on timeouts, not working, so this costs a quarter of the time.
#[test]
fn a_frozen_bucket_ends_the_pass_in_one_line_and_a_rerun_loads_the_rest() {
    let want = expected();
    std::thread::scope(|s| {
        let runs: Vec<_> = Model::MODELS
            .map(Model::name)
            .into_iter()
            .map(|model| (model, s.spawn(|| frozen_then_rerun(model, &want))))
            .collect();
        for (model, run) in runs {
            if let Err(panic) = run.join() {
                eprintln!("{model} failed");
                std::panic::resume_unwind(panic);
            }
        }
    });
}

fn frozen_then_rerun(model: &str, want: &bucketbench::sim::Expected) {
    let server = Served::start();
    {
        let db = fresh_db();
        let mut child = ingest(&server.url, &db, model).spawn().unwrap();
        wait_for_files(&db, 10, &mut child);
        server.signal(libc::SIGSTOP);
        let frozen = Instant::now();
        let (status, stdout, stderr) = finish(child, Duration::from_secs(30), model);
        let took = frozen.elapsed();
        server.signal(libc::SIGCONT);
        // Trips 3 s into the streak; the rest is waking the waits.
        assert!(
            took < Duration::from_secs(15),
            "{model}: the pass took {took:?} to end on a frozen bucket: {stderr}"
        );
        assert_eq!(status.code(), Some(1), "{model}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: bucket unreachable: ")
                && last.contains("consecutive requests timed out over")
                && last.ends_with("not attempted; rerun to continue"),
            "{model}: last line: {last}"
        );
        // Retries are said at the default level, as they happen.
        assert!(
            stderr.contains("WARN") && stderr.contains("attempt 1 of 5 failed"),
            "{model}: {stderr}"
        );
        let summary: PassSummary =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{model}: {e}: {stdout}"));
        assert!(summary.not_attempted > 0, "{model}: {summary:?}");
        assert!(
            last.contains(&format!("; {} files not attempted", summary.not_attempted)),
            "{model}: {last}"
        );
        // Nothing the freeze touched is recorded failed: the next pass takes it up.
        assert_eq!(
            ledger_count(
                &db,
                "SELECT count(*) FROM processed_files WHERE status <> 'loaded'"
            ),
            0,
            "{model}"
        );
        let loaded = ledger_count(&db, "SELECT count(*) FROM processed_files");
        assert!(
            loaded < FILES as i64,
            "{model}: all {loaded} loaded before the freeze"
        );

        let rerun = ingest(&server.url, &db, model).spawn().unwrap();
        let (status, _, stderr) = finish(rerun, Duration::from_secs(30), model);
        assert!(status.success(), "{model}: {stderr}");
        let diffs = verify(&mut connect(&db), want).unwrap();
        assert!(diffs.is_empty(), "{model}: {diffs:#?}");
    }
}

#[test]
fn a_bucket_back_before_the_breaker_trips_loads_everything_in_one_pass() {
    let server = Served::start();
    let want = expected();
    for model in ["sync", "async"] {
        let db = fresh_db();
        let mut child = ingest(&server.url, &db, model).spawn().unwrap();
        wait_for_files(&db, 10, &mut child);
        server.signal(libc::SIGSTOP);
        std::thread::sleep(Duration::from_millis(1200));
        server.signal(libc::SIGCONT);
        let (status, stdout, stderr) = finish(child, Duration::from_secs(30), model);
        assert!(status.success(), "{model}: {stderr}");
        let summary: PassSummary = serde_json::from_str(&stdout).unwrap();
        assert!(summary.retries > 0, "{model}: the freeze caused no retry");
        assert_eq!(summary.not_attempted, 0, "{model}");
        assert!(summary.fetch_errors.is_empty(), "{model}: {summary:?}");
        let diffs = verify(&mut connect(&db), &want).unwrap();
        assert!(diffs.is_empty(), "{model}: {diffs:#?}");
    }
}

/// A PostgreSQL backend frozen with SIGSTOP; resumed when dropped.
struct StoppedBackend {
    pid: i32,
    at: Instant,
}

impl StoppedBackend {
    /// Stops a backend of `db` that is inside a transaction holding claims
    /// (it has a transaction id) while it waits for its client, as soon as
    /// one is seen.
    fn in_a_transaction(db: &str, child: &mut Child) -> StoppedBackend {
        Self::first(
            db,
            "backend_xid IS NOT NULL AND (state = 'idle in transaction' OR wait_event = 'ClientRead')",
            child,
        )
    }

    /// Stops the first backend of `db` (other than the one asking) that
    /// matches `condition` on `pg_stat_activity`, while `child` runs.
    fn first(db: &str, condition: &str, child: &mut Child) -> StoppedBackend {
        let pid = first_backend(db, condition, child, |pid| {
            // SAFETY: a signal to a process we are allowed to signal (root).
            unsafe { libc::kill(pid, libc::SIGSTOP) == 0 }
        });
        StoppedBackend {
            pid,
            at: Instant::now(),
        }
    }
}

/// Waits for a backend of `db` (other than the one asking) matching
/// `condition` on `pg_stat_activity` while `child` runs, and does `act` to
/// the first one for which it succeeds; returns its pid.
fn first_backend(
    db: &str,
    condition: &str,
    child: &mut Child,
    mut act: impl FnMut(i32) -> bool,
) -> i32 {
    let mut c = connect(db);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = c
            .query(
                &format!(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                       AND {condition}"
                ),
                &[],
            )
            .unwrap();
        if let Some(pid) = found.iter().map(|r| r.get(0)).find(|&pid| act(pid)) {
            return pid;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before a backend ({condition}) could be found"
        );
        assert!(
            Instant::now() < deadline,
            "no backend was seen with {condition}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Drop for StoppedBackend {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }
}

/// No server-side timeout runs in a stopped backend, and TCP keepalive sees
/// nothing wrong (its kernel still acknowledges), so only the client can
/// bound the wait. Each model's pass must end while the backend is still
/// stopped: either the files of the stopped transaction are reported busy
/// and the pass goes on, or (when the stopped backend held a lock every
/// other session needs, such as the WAL's) the pass ends in one line. Both
/// leave nothing recorded wrongly, and a rerun once the backend resumes
/// loads exactly the expected result.
#[test]
fn a_stopped_database_backend_holds_a_pass_only_for_the_db_timeout() {
    // A server of its own: a backend stopped while it holds the WAL stalls
    // every session of its server, and other tests share the common one.
    let pg = EmbeddedPostgres::start(Flavor::Throwaway(Durability::Relaxed)).unwrap_or_else(|e| {
        panic!("cannot start PostgreSQL ({e:#}); install it with `apt-get install -y postgresql`")
    });
    let server = Served::start();
    let want = expected();
    for (i, model) in Model::MODELS.map(Model::name).into_iter().enumerate() {
        let db = pg.create_database(&format!("stopped_{i}")).unwrap();
        let mut child = ingest(&server.url, &db, model)
            .args(["--db-timeout", "2"])
            .spawn()
            .unwrap();
        wait_for_files(&db, 10, &mut child);
        let stopped = StoppedBackend::in_a_transaction(&db, &mut child);
        let (status, stdout, stderr) = finish(child, Duration::from_secs(60), model);
        let took = stopped.at.elapsed();
        // The rest of the pass at 40 ms a file is at most 8 s of it.
        assert!(
            took < Duration::from_secs(30),
            "{model}: the pass went on {took:?} after the backend stopped: {stderr}"
        );
        // Whatever the stopped backend was doing, its next answer was waited
        // for only --db-timeout, and the user was told.
        assert!(
            // 2 s, plus 50 µs a row for a COPY.
            stderr.contains("PostgreSQL did not answer") && stderr.contains(" within 2"),
            "{model}: {stderr}"
        );
        if status.success() {
            // Stopped mid-transaction, its files are reported busy; stopped
            // between files, the check that found it stalled reconnected.
            let summary: PassSummary =
                serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{model}: {e}: {stdout}"));
            assert_eq!(
                summary.loaded + summary.busy.len() as u64,
                FILES as u64,
                "{model}: {summary:?}"
            );
        } else {
            let last = stderr.lines().last().unwrap_or_default();
            assert_eq!(status.code(), Some(1), "{model}: {stderr}");
            assert!(
                last.starts_with("error: ") && last.contains("PostgreSQL stopped answering"),
                "{model}: last line: {last}"
            );
        }
        drop(stopped);
        assert_eq!(
            ledger_count(
                &db,
                "SELECT count(*) FROM processed_files WHERE status <> 'loaded'"
            ),
            0,
            "{model}"
        );
        let rerun = ingest(&server.url, &db, model).spawn().unwrap();
        let (status, _, stderr) = finish(rerun, Duration::from_secs(60), model);
        assert!(status.success(), "{model}: {stderr}");
        let diffs = verify(&mut connect(&db), &want).unwrap();
        assert!(diffs.is_empty(), "{model}: {diffs:#?}");
    }
}

/// The bound is per round trip, not per transaction: a file written row by
/// row (`--write insert`, a statement a row) on a server that takes 0.2 ms
/// a row takes far longer than `--db-timeout` plus 50 µs a row, yet loads
/// whole while the server keeps answering. A bound on the whole
/// transaction dropped such files as stalled on every pass, so they never
/// loaded.
#[test]
fn a_file_written_row_by_row_is_never_cut_short_by_the_db_timeout() {
    let bucket = SimBucket::generate(
        Spec::new(ProfileName::Small, SEED).with_overrides(Some(2), Some(5_000)),
    );
    let server = bucket
        .serve(bucketbench::sim::Conditions::default(), any_port())
        .unwrap();
    let db = fresh_db();
    // A slow server that keeps answering: every row costs it 0.2 ms at least,
    // whatever this machine's speed.
    bucketbench::pass::prepare_database(&db)
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(0.0002); RETURN NEW; END $$; \
             CREATE TRIGGER slow BEFORE INSERT ON songs FOR EACH ROW EXECUTE FUNCTION slow_row(); \
             CREATE TRIGGER slow BEFORE INSERT ON movies FOR EACH ROW EXECUTE FUNCTION slow_row(); \
             CREATE TRIGGER slow BEFORE INSERT ON apps FOR EACH ROW EXECUTE FUNCTION slow_row();",
        )
        .unwrap();
    let mut cmd = common::ingest();
    cmd.args(["--bucket", &server.base_url(), "--model", "sync", "--json"])
        .args(["--write", "insert", "--db-timeout", "0.5"])
        .env("DATABASE_URL", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let (status, stdout, stderr) = finish(cmd.spawn().unwrap(), Duration::from_secs(300), "sync");
    assert!(status.success(), "{stderr}");
    let summary: PassSummary = serde_json::from_str(&stdout).unwrap();
    assert_eq!((summary.loaded, summary.busy.len()), (2, 0), "{stderr}");
    // The premise: on average, a file's transaction outlasted what a bound
    // on the whole transaction (0.5 s + 50 µs a row) would have allowed.
    let rows = summary.songs + summary.movies + summary.apps;
    let per_transaction = 0.5 + (rows as f64 / 2.0) * 50e-6;
    let took = started.elapsed().as_secs_f64();
    assert!(
        took / 2.0 > per_transaction,
        "the files loaded too fast to test anything: {took:.1} s for {rows} rows"
    );
    let diffs = verify(&mut connect(&db), &bucket.expected()).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}

/// `compare` on `db` with `--db-timeout 2`, two runs of `sync` on the tiny
/// profile.
fn compare_two_runs(db: &str, out: &std::path::Path) -> Child {
    common::compare()
        .env("DATABASE_URL", db)
        .args(["--profile", "tiny", "--models", "sync", "--runs", "2"])
        .args(["--warmup", "0", "--no-ceilings", "--db-timeout", "2"])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// compare's own connection, idle after emptying the tables for a run.
const COMPARES_OWN: &str = "state = 'idle' AND query LIKE 'TRUNCATE%'";

/// `compare`'s own connection (emptying the tables between runs,
/// verifying each run) is bounded by `--db-timeout` too: with its backend
/// stopped while a run's workers load, the comparison goes on, on a fresh
/// connection, instead of waiting for the backend forever.
#[test]
fn a_stopped_backend_under_compares_own_connection_does_not_hold_the_comparison() {
    let db = fresh_db();
    let out = tempfile::tempdir().unwrap();
    let mut child = compare_two_runs(&db, out.path());
    let stopped = StoppedBackend::first(&db, COMPARES_OWN, &mut child);
    let (status, _, stderr) = finish(child, Duration::from_secs(90), "compare");
    assert!(
        stopped.at.elapsed() < Duration::from_secs(60),
        "compare went on {:?} after its backend stopped: {stderr}",
        stopped.at.elapsed()
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL did not answer compare's")
            && stderr.contains("within 2")
            && stderr.contains("trying again on a fresh connection"),
        "{stderr}"
    );
    let runs = Csv::read(&out.path().join("runs.csv"));
    assert_eq!(runs.column("verified"), ["true", "true"], "{stderr}");
    drop(stopped);
}

/// A backend of compare's terminated by an administrator (or lost in a
/// restart) is reconnected the same way: the comparison goes on.
#[test]
fn a_terminated_backend_under_compares_own_connection_is_reconnected() {
    let db = fresh_db();
    let out = tempfile::tempdir().unwrap();
    let mut child = compare_two_runs(&db, out.path());
    let mut admin = connect(&db);
    first_backend(&db, COMPARES_OWN, &mut child, |pid| {
        admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap()
            .get(0)
    });
    let (status, _, stderr) = finish(child, Duration::from_secs(90), "compare");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("trying again on a fresh connection"),
        "{stderr}"
    );
    let runs = Csv::read(&out.path().join("runs.csv"));
    assert_eq!(runs.column("verified"), ["true", "true"], "{stderr}");
}
