//! Where a run's CPU went: the worker processes (measured by the runner
//! with `wait4`), the PostgreSQL server (the postmaster and every process
//! under it) and the simulated bucket (the threads of this process named
//! [`crate::sim::server::THREAD_NAME`]); and the CPU floor they imply, the
//! least wall time a pass could take on this machine's cores.
//!
//! Read from `/proc` on Linux (`utime`, `stime`, `cutime`, `cstime` of
//! `/proc/<pid>/stat`, in clock ticks, usually 10 ms). Elsewhere nothing is
//! measured: every reading is `None`, shown as "n/m", never a guess.

use std::path::Path;

use serde::Serialize;

use super::runner::Run;
use super::stats::median;
use super::summary::ModelSummary;

/// What `compare` can measure besides its workers, found once at start.
#[derive(Debug, Clone, Default)]
pub struct Meters {
    /// The postmaster of the database the runs load into, when it runs on
    /// this machine where we can read its `/proc` entries.
    pub postmaster: Option<i32>,
    /// Whether the bucket is the simulated one, served by this process.
    pub sim_bucket: bool,
    /// Whether the server is `compare`'s own throwaway one, where every
    /// process that starts during a run is the run's ([`Meters::settle`]).
    pub own_server: bool,
}

/// Cumulative CPU seconds at one moment; a run's share is the difference
/// of two ([`Sample::since`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub db: Option<f64>,
    pub bucket: Option<f64>,
    /// The machine's busy CPU seconds ([`machine_busy_secs`]) less this
    /// process's own (whose share, the simulated bucket's threads, is
    /// `bucket`).
    pub machine: Option<f64>,
}

/// CPU seconds one run cost the database server and the simulated bucket;
/// `None` where it could not be measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub db: Option<f64>,
    pub bucket: Option<f64>,
    /// What the whole machine spent outside this process: the workers,
    /// the database, and whatever else ran ([`others`] takes the first two
    /// out).
    pub machine: Option<f64>,
}

impl Meters {
    /// The database server's processes still running now (not those that
    /// have exited, awaiting their reaping; `None`: not measured).
    pub fn server_processes(&self) -> Option<Vec<u32>> {
        let root = self.postmaster?;
        let children = children_of(root)?;
        Some(
            children
                .into_iter()
                .filter(|pid| {
                    read_stat(Path::new(&format!("/proc/{pid}/stat")))
                        .is_some_and(|s| s.ppid == root && s.state != 'Z')
                })
                .collect(),
        )
    }

    /// Waits, at most `limit`, until every server process not among
    /// `before` has exited: the backends of a run's connections end after
    /// its worker does, and what they spend ending (unmapping what they
    /// touched of shared memory) is the run's, not the next run's. 33
    /// `threads` backends spent about 0.25 s of CPU there, which fell into
    /// the next run's reading or into none.
    ///
    /// Only on `compare`'s own server: on one given with `--database-url`,
    /// other clients' backends and autovacuum workers come and go too, and
    /// waiting for them cost up to `limit` a run.
    pub fn settle(&self, before: &Option<Vec<u32>>, limit: std::time::Duration) {
        let Some(before) = before.as_ref().filter(|_| self.own_server) else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            match self.server_processes() {
                Some(now) if now.iter().any(|p| !before.contains(p)) => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => return,
            }
        }
    }

    /// Reads both counters now.
    pub fn sample(&self) -> Sample {
        Sample {
            db: self.postmaster.and_then(process_tree_secs),
            bucket: self
                .sim_bucket
                .then(|| threads_named_secs(crate::sim::server::THREAD_NAME))
                .flatten(),
            machine: machine_busy_secs().map(|m| m - crate::report::own_cpu_seconds()),
        }
    }
}

impl Sample {
    /// What was spent from `before` to this sample. A counter that went
    /// backwards (the server restarted under us) is not measured.
    pub fn since(&self, before: &Sample) -> Spent {
        let delta = |a: Option<f64>, b: Option<f64>| {
            let d = a? - b?;
            (d >= -1e-9).then_some(d.max(0.0))
        };
        Spent {
            db: delta(self.db, before.db),
            bucket: delta(self.bucket, before.bucket),
            // Ticks of several counters read at slightly different moments:
            // a small step back is rounding, not a restart.
            machine: self
                .machine
                .zip(before.machine)
                .map(|(a, b)| (a - b).max(0.0)),
        }
    }
}

/// The CPU seconds other processes took from a run, or a hypervisor gave
/// its other guests: what the machine spent outside `compare` less the
/// run's workers (`client`) and its database server. The cores a run
/// shares with them are the cores its own work waits for, so a run slower
/// than its siblings beside the most of it is the machine's noise
/// ([`super::summary::ModelSummary::outliers_from_machine`]). `None` where
/// the machine's counters cannot be read. A database server that is not
/// measured counts as other work: on this machine it is, elsewhere its CPU
/// is not in the machine's counters.
pub fn others(client: f64, spent: Spent) -> Option<f64> {
    Some((spent.machine? - client - spent.db.unwrap_or(0.0)).max(0.0))
}

/// The machine's CPU ticks so far (`/proc/stat`'s first line): all of
/// them, the idle ones and those waiting on IO; and its CPUs, counted
/// where the ticks are (a process's own affinity or quota says nothing
/// about the ticks of the others).
#[derive(Debug, Clone, Copy)]
pub struct MachineTicks {
    pub total: u64,
    pub idle: u64,
    pub iowait: u64,
    pub cpus: usize,
}

#[cfg(target_os = "linux")]
pub fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let line = lines.next()?.strip_prefix("cpu ")?;
    // user, nice, system, idle, iowait, irq, softirq, steal: the guest
    // columns after them are already counted in user and nice.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let cpus = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (ticks.len() == 8 && cpus > 0).then(|| MachineTicks {
        total: ticks.iter().sum(),
        idle: ticks[3],
        iowait: ticks[4],
        cpus,
    })
}

#[cfg(not(target_os = "linux"))]
pub fn machine_ticks() -> Option<MachineTicks> {
    None
}

/// CPU seconds the machine has been busy since it started: every tick
/// that was neither idle nor waiting on IO, steal included (a hypervisor's
/// other guests take the cores as much as local work does).
#[cfg(target_os = "linux")]
pub fn machine_busy_secs() -> Option<f64> {
    let t = machine_ticks()?;
    Some(t.total.saturating_sub(t.idle + t.iowait) as f64 * tick_secs())
}

#[cfg(not(target_os = "linux"))]
pub fn machine_busy_secs() -> Option<f64> {
    None
}

/// The cores this process may run on (its affinity mask and cgroup quota
/// included), at least 1.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU floor: all the CPU a pass spent (client, database, bucket; an
/// unmeasured part counts as nothing, so it stays a floor) spread over
/// every core, the least wall time the pass could take on this machine.
pub fn floor(client: f64, spent: Spent, cores: usize) -> f64 {
    (client + spent.db.unwrap_or(0.0) + spent.bucket.unwrap_or(0.0)) / cores.max(1) as f64
}

/// The least wall time a pass could take once its first object's body
/// came in at `first_body_secs`: nothing can be parsed or written before
/// it, so all the CPU spent after it (the worker's `worker_after`, the
/// database's and the bucket's `after`) must fit into the time after it,
/// on every core. Above the [`floor`] when a burst of work follows a wait:
/// on two cores, a pass that waits 0.15 s for its first bodies and then
/// needs 0.3 s of CPU cannot end before 0.3 s, though its CPU floor says
/// 0.15. The CPU read before the first body is left out, so it stays a
/// floor.
pub fn arrival_floor(first_body_secs: f64, worker_after: f64, after: Spent, cores: usize) -> f64 {
    first_body_secs + floor(worker_after, after, cores)
}

/// Microseconds of CPU per loaded row; `None` for a run that loaded none.
pub fn us_per_row(secs: f64, rows: u64) -> Option<f64> {
    (rows > 0 && secs.is_finite()).then(|| secs * 1e6 / rows as f64)
}

/// One model's CPU, medians over its verified measured runs (the client's
/// is `ModelSummary::median_cpu_secs`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuSummary {
    pub db_secs: Option<f64>,
    pub bucket_secs: Option<f64>,
    /// Median of the runs' CPU floors.
    pub floor_secs: Option<f64>,
    /// Median of the runs' arrival floors ([`arrival_floor`]).
    pub arrival_floor_secs: Option<f64>,
    /// Median over the runs of the worker's CPU per loaded row.
    pub client_us_per_row: Option<f64>,
    /// Median over the runs of the database server's CPU per loaded row.
    pub db_us_per_row: Option<f64>,
    /// Median of the CPU seconds other processes took during the runs
    /// ([`others`]).
    pub other_secs: Option<f64>,
}

/// The median of the values that were measured; `None` when none was.
fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().filter(|v| v.is_finite()).collect();
    (!v.is_empty()).then(|| median(&v))
}

impl CpuSummary {
    pub fn of(runs: &[&Run]) -> Self {
        CpuSummary {
            db_secs: median_of(runs.iter().map(|r| r.db_cpu_secs)),
            bucket_secs: median_of(runs.iter().map(|r| r.bucket_cpu_secs)),
            floor_secs: median_of(runs.iter().map(|r| r.cpu_floor_secs)),
            arrival_floor_secs: median_of(runs.iter().map(|r| r.arrival_floor_secs)),
            client_us_per_row: median_of(runs.iter().map(|r| us_per_row(r.cpu_secs, r.rows))),
            db_us_per_row: median_of(
                runs.iter()
                    .map(|r| r.db_cpu_secs.and_then(|d| us_per_row(d, r.rows))),
            ),
            other_secs: median_of(runs.iter().map(|r| r.other_cpu_secs)),
        }
    }
}

/// Where a model's median wall time went, in seconds that add up to it
/// (the stacked bar of `median_time.png`): the CPU floor split between
/// client, database and bucket in proportion to their median CPU seconds
/// (each part's CPU spread over the cores), and the rest of the wall time,
/// `waiting`, when not one of the cores' worth of CPU was working (on the
/// network, on locks, or on each other). When the floor exceeds the
/// median (CPU measured around process start-up that the pass's own clock
/// leaves out) waiting is 0 and the parts exceed the median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub client: f64,
    pub db: f64,
    pub bucket: f64,
    pub waiting: f64,
}

impl Split {
    pub fn of(m: &ModelSummary) -> Option<Split> {
        let floor = m.cpu.floor_secs?;
        let parts = [
            m.median_cpu_secs,
            m.cpu.db_secs.unwrap_or(0.0),
            m.cpu.bucket_secs.unwrap_or(0.0),
        ];
        let total: f64 = parts.iter().sum();
        let share = |p: f64| if total > 0.0 { floor * p / total } else { 0.0 };
        Some(Split {
            client: share(parts[0]),
            db: share(parts[1]),
            bucket: share(parts[2]),
            waiting: (m.stats.median - floor).max(0.0),
        })
    }
}

/// The Markdown table of where each model's CPU went ("n/m": not
/// measured).
pub fn markdown(summaries: &[ModelSummary]) -> String {
    let secs = |v: Option<f64>| v.map_or("n/m".to_string(), |v| format!("{v:.2} s"));
    let us = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    let mut s = format!(
        "CPU: the worker's (client), the database server's (until the run's connections had closed) and the simulated bucket's; CPU floor: their sum over the {}, the least wall time the pass could take here.\n\n| model | median | client CPU | DB CPU | bucket CPU | CPU floor | client µs/row | DB µs/row |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        crate::report::plural(cores() as u64, "core", "cores")
    );
    for m in summaries {
        s.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {} | {} | {} | {} | {} |\n",
            m.label,
            m.stats.median,
            m.median_cpu_secs,
            secs(m.cpu.db_secs),
            secs(m.cpu.bucket_secs),
            secs(m.cpu.floor_secs),
            us(m.cpu.client_us_per_row),
            us(m.cpu.db_us_per_row),
        ));
    }
    s
}

/// Finds the postmaster behind a connection, for a server given with
/// `--database-url`: the backend's parent in `/proc`, accepted only when
/// both are `postgres` processes of this pid namespace and, when the
/// server tells (`data_directory` needs superuser or
/// `pg_read_all_settings`), the parent runs in that data directory.
/// `Err` says why it is not measured.
pub fn locate_postmaster(db: &mut postgres::Client) -> Result<i32, String> {
    let backend: i32 = db
        .query_one("SELECT pg_backend_pid()", &[])
        .map_err(|e| format!("asking for the backend's pid: {e}"))?
        .get(0);
    let stat = read_stat(Path::new(&format!("/proc/{backend}/stat")))
        .ok_or("the server is not on this machine (or not readable)")?;
    if stat.comm != "postgres" {
        return Err(format!(
            "pid {backend} here is not a postgres process: the server is elsewhere"
        ));
    }
    let parent = stat.ppid;
    let pstat = read_stat(Path::new(&format!("/proc/{parent}/stat")))
        .ok_or("the backend's parent is not readable")?;
    if pstat.comm != "postgres" {
        return Err("the backend's parent is not a postgres process".into());
    }
    if let Ok(row) = db.query_one("SHOW data_directory", &[]) {
        let dir: String = row.get(0);
        let cwd = std::fs::read_link(format!("/proc/{parent}/cwd"))
            .map_err(|e| format!("reading the postmaster's directory: {e}"))?;
        let same = |a: &Path, b: &Path| a.canonicalize().ok() == b.canonicalize().ok();
        if !same(&cwd, Path::new(&dir)) {
            return Err("the postgres process here runs in another data directory".into());
        }
    }
    Ok(parent)
}

/// The fields of a `/proc/<pid>/stat` (or `task/<tid>/stat`) line that CPU
/// attribution needs; times in clock ticks.
#[derive(Debug, Clone, PartialEq)]
struct Stat {
    comm: String,
    /// `Z`: exited, its CPU final, not yet reaped.
    state: char,
    ppid: i32,
    utime: u64,
    stime: u64,
    /// CPU of reaped children (waited-for descendants).
    cutime: u64,
    cstime: u64,
}

/// Parses a stat line. The command name sits in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from the last
/// `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?.to_string();
    let f: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    // After the name: state (field 3), ppid (4), …, utime (14), stime (15),
    // cutime (16), cstime (17); f[0] is field 3.
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        utime: n(11)?,
        stime: n(12)?,
        cutime: n(13)?,
        cstime: n(14)?,
    })
}

fn read_stat(path: &Path) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

#[cfg(target_os = "linux")]
fn tick_secs() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU seconds of `root` and everything under it: its own time, its reaped
/// children's (`cutime`, `cstime`: a backend that exited is reaped by the
/// postmaster), and each live child's own and reaped time. `None` when
/// `root` cannot be read.
#[cfg(target_os = "linux")]
pub fn process_tree_secs(root: i32) -> Option<f64> {
    let own = |s: &Stat| s.utime + s.stime + s.cutime + s.cstime;
    // A child reaped during the scan is counted twice (live, then in the
    // root's reaped time): read again until the root's reaped time stands
    // still across the scan. Backends exit in a trickle after a worker
    // with many connections ends (`threads`: 33), just as the next run
    // takes its first reading; with a scan of all of /proc (milliseconds)
    // five tries were not enough, and a run was charged a third of its
    // database CPU. The kernel's list of the root's children makes a scan
    // a few reads, so it settles at once.
    let mut ticks = 0;
    for _ in 0..50 {
        let before = read_stat(Path::new(&format!("/proc/{root}/stat")))?;
        let children: u64 = children_of(root)?
            .into_iter()
            .filter_map(|pid| read_stat(Path::new(&format!("/proc/{pid}/stat"))))
            .filter(|s| s.ppid == root)
            .map(|s| own(&s))
            .sum();
        let after = read_stat(Path::new(&format!("/proc/{root}/stat")))?;
        ticks = own(&after) + children;
        if before.cutime + before.cstime == after.cutime + after.cstime {
            break;
        }
    }
    Some(ticks as f64 * tick_secs())
}

/// The processes whose parent is `root`: the kernel's list of each of its
/// threads' children where it keeps one (`CONFIG_PROC_CHILDREN`), else
/// every process of /proc (the caller checks each one's parent).
#[cfg(target_os = "linux")]
fn children_of(root: i32) -> Option<Vec<u32>> {
    let pids = |dir: &str| -> Option<Vec<u32>> {
        Some(
            std::fs::read_dir(dir)
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect(),
        )
    };
    let listed: Option<Vec<u32>> = pids(&format!("/proc/{root}/task"))?
        .into_iter()
        .map(|tid| {
            let list = std::fs::read_to_string(format!("/proc/{root}/task/{tid}/children")).ok()?;
            Some(
                list.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>(),
            )
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.concat());
    listed.or_else(|| pids("/proc"))
}

/// CPU seconds of this process's live threads called `name` (a thread's
/// name is its `comm`, cut to 15 bytes). `None` when none is running.
/// Each thread's time is read in nanoseconds from its `schedstat` (time on
/// a CPU) where the kernel has it, else in clock ticks from its `stat`:
/// the bucket's share of a short run is a few milliseconds.
#[cfg(target_os = "linux")]
pub fn threads_named_secs(name: &str) -> Option<f64> {
    let mut found = false;
    let secs: f64 = std::fs::read_dir("/proc/self/task")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| Some((read_stat(&e.path().join("stat"))?, e.path())))
        .filter(|(s, _)| s.comm == name)
        .inspect(|_| found = true)
        .map(|(s, dir)| {
            std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
                .map_or((s.utime + s.stime) as f64 * tick_secs(), |ns| {
                    ns as f64 / 1e9
                })
        })
        .sum();
    found.then_some(secs)
}

#[cfg(not(target_os = "linux"))]
pub fn process_tree_secs(_root: i32) -> Option<f64> {
    None
}

#[cfg(not(target_os = "linux"))]
pub fn threads_named_secs(_name: &str) -> Option<f64> {
    None
}

#[cfg(not(target_os = "linux"))]
fn children_of(_root: i32) -> Option<Vec<u32>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn spin(d: Duration) {
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < d {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    fn a_stat_line_is_read_past_a_name_with_spaces_and_parentheses() {
        let line = "4242 (post gres) (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 30 7 2 20 0 1 0 12345 1000000 200 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                comm: "post gres) (x)".into(),
                state: 'S',
                ppid: 17,
                utime: 250,
                stime: 30,
                cutime: 7,
                cstime: 2,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_floor_spreads_all_the_cpu_over_the_cores() {
        let spent = Spent {
            db: Some(1.5),
            bucket: Some(0.5),
            machine: None,
        };
        assert!((floor(2.0, spent, 2) - 2.0).abs() < 1e-12);
        // An unmeasured part adds nothing: still a floor.
        let db_unknown = Spent {
            db: None,
            bucket: Some(0.5),
            machine: None,
        };
        assert!((floor(2.0, db_unknown, 4) - 0.625).abs() < 1e-12);
        assert_eq!(us_per_row(0.5, 0), None);
        assert_eq!(us_per_row(0.5, 250_000), Some(2.0));
    }

    /// The machine's busy time sees another process's CPU (a lower bound:
    /// on a shared machine others' may show too).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_machine_meter_sees_other_processes() {
        let meters = Meters::default();
        let before = meters.sample();
        let mut spinner = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        spinner.kill().unwrap();
        spinner.wait().unwrap();
        let mid = meters.sample();
        let spun = mid.since(&before).machine.unwrap();
        assert!(
            spun >= 0.2,
            "a spinner for 0.4 s: the machine spent {spun:.2} s"
        );
    }

    #[test]
    fn a_backwards_counter_is_not_measured() {
        let before = Sample {
            db: Some(5.0),
            bucket: Some(1.0),
            machine: Some(10.0),
        };
        let after = Sample {
            db: Some(2.0),
            bucket: Some(1.25),
            machine: Some(12.5),
        };
        let spent = after.since(&before);
        assert_eq!(
            spent,
            Spent {
                db: None,
                bucket: Some(0.25),
                machine: Some(2.5),
            }
        );
        // The machine's 2.5 s less the workers' 1.5 s: the unmeasured
        // database counts as other work.
        assert_eq!(others(1.5, spent), Some(1.0));
        assert_eq!(
            others(
                0.5,
                Spent {
                    db: Some(1.5),
                    ..spent
                }
            ),
            Some(0.5)
        );
        assert_eq!(others(3.0, spent), Some(0.0));
    }

    /// This thread's own CPU seconds.
    #[cfg(target_os = "linux")]
    fn thread_cpu() -> f64 {
        // SAFETY: clock_gettime fills the timespec we own.
        let mut t: libc::timespec = unsafe { std::mem::zeroed() };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_spinning_thread_is_charged_to_its_name() {
        let name = "cpu-test-spin";
        assert_eq!(threads_named_secs(name), None);
        let (spun_tx, spun) = std::sync::mpsc::channel::<f64>();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // 0.3 s of CPU, however busy the machine (bounded in wall time).
                let deadline = Instant::now() + Duration::from_secs(30);
                while thread_cpu() < 0.3 && Instant::now() < deadline {
                    spin(Duration::from_millis(5));
                }
                spun_tx.send(thread_cpu()).unwrap();
                // Stay alive until read: a thread's time leaves its task
                // entry when it exits.
                let _ = done_rx.recv_timeout(Duration::from_secs(30));
            })
            .unwrap();
        let own = spun.recv().unwrap();
        let measured = threads_named_secs(name).expect("the thread is running");
        done.send(()).unwrap();
        t.join().unwrap();
        assert!(own >= 0.3, "the machine never gave the thread 0.3 s");
        assert!(
            (measured - own).abs() < 0.02,
            "the thread counted {own} s of its own CPU, /proc gave {measured} s"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn settling_waits_for_the_processes_a_run_started_to_end() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        // A parent whose child, started after the first reading, lives
        // 0.3 s: a backend ending after its worker has.
        let mut parent = Command::new("sh")
            .args(["-c", "read go; sleep 0.3 & read done; wait"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = parent.stdin.take().unwrap();
        let meters = Meters {
            postmaster: Some(parent.id() as i32),
            sim_bucket: false,
            own_server: true,
        };
        let before = meters.server_processes();
        assert_eq!(before.as_deref(), Some(&[][..]));
        stdin.write_all(b"go\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while meters.server_processes().is_some_and(|p| p.is_empty()) {
            assert!(Instant::now() < deadline, "the child never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        meters.settle(&before, Duration::from_secs(30));
        assert_eq!(
            meters.server_processes().as_deref(),
            Some(&[][..]),
            "settled before the child ended"
        );
        stdin.write_all(b"done\n").unwrap();
        parent.wait().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_tree_counts_live_and_reaped_children() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        // A parent (sh) with two spinning children in turn. The first stops
        // at a CPU-time limit of 1 s (so what it spends does not depend on
        // how busy the machine is) and is reaped: only the parent's cutime
        // can show it. The second spins until told, and is counted live.
        // Nothing spins before the first line: the starting point is taken
        // first (a child already spinning would hide its first ticks in it).
        let script = "read s; ( ulimit -t 1; while :; do :; done ); read a; \
                      ( ulimit -t 10; while :; do :; done ) & read b; kill $!; wait";
        let mut parent = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = parent.stdin.take().unwrap();
        let root = parent.id() as i32;
        let start = process_tree_secs(root).expect("our own child is readable");
        stdin.write_all(b"start\n").unwrap();
        let until = |at_least: f64| {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut seen = 0.0;
            while Instant::now() < deadline && seen < at_least {
                std::thread::sleep(Duration::from_millis(50));
                seen = process_tree_secs(root).expect("still running") - start;
            }
            seen
        };
        // The limit is kept to the scheduler's clock, while /proc reports
        // ticks scaled to it; on a loaded VM (steal time) the reaped child
        // has been seen at 0.92 s. Not counting reaped children would show 0.
        let reaped = until(0.85);
        stdin.write_all(b"go\n").unwrap();
        let with_live = until(1.2);
        stdin.write_all(b"stop\n").unwrap();
        parent.wait().unwrap();
        assert!(
            reaped >= 0.85,
            "the reaped child spent 1 s, measured {reaped} s"
        );
        assert!(
            with_live >= 1.2,
            "the live child spins on top of the reaped 1 s, measured {with_live} s"
        );
        assert_eq!(process_tree_secs(i32::MAX), None);
    }
}
