//! A private PostgreSQL server run from the installed binaries, for when no
//! `DATABASE_URL` is given.
//!
//! Two flavours share one helper: `Persistent` keeps its data directory
//! between runs (so `ingest`'s ledger survives), `Throwaway` lives in a
//! temporary directory and is deleted on exit, on error and on Ctrl-C.
//! Both are durable as PostgreSQL ships (fsync, synchronous commit and full
//! page writes on) unless a throwaway server is asked for
//! [`Durability::Relaxed`]. A throwaway server starts with its WAL
//! segments already made (see `warm_wal`), so the first writes measured on
//! it do not pay for creating them.
//!
//! A persistent directory survives an interrupted first run: the cluster is
//! initialised in a staging directory beside it (`.<name>.init-<pid>`),
//! its password file written, and only then renamed into place, so the data
//! directory is either absent or complete; a staging directory left by a
//! killed run is removed by the next. One process at a time runs the server
//! of a data directory: it holds an exclusive `flock` on `.<name>.lock`
//! beside it for as long as the server runs, and a second process waits a
//! bounded time, saying so, then gives up in one line. The server listens on a free port on 127.0.0.1 only, with
//! a random password (scram-sha-256), and runs as the `postgres` system user
//! when this process is root, because `initdb` refuses to run as root.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Which kind of server to run.
#[derive(Debug, Clone)]
pub enum Flavor {
    /// Data kept in this directory between runs.
    Persistent(PathBuf),
    /// Data in a temporary directory, deleted when the server stops.
    Throwaway(Durability),
}

/// Whether the server flushes what it commits, as a real one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// PostgreSQL's defaults: `fsync`, `synchronous_commit` and
    /// `full_page_writes` on. A commit waits for its WAL to reach the disk.
    Full,
    /// `fsync`, `synchronous_commit` and `full_page_writes` off: nothing
    /// waits for the disk, and a crash of the machine may lose or corrupt
    /// data. For data deleted on exit anyway (tests, quick comparisons).
    Relaxed,
}

impl Durability {
    /// The server settings this durability stands for.
    pub fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Durability::Full => &[
                ("fsync", "on"),
                ("synchronous_commit", "on"),
                ("full_page_writes", "on"),
            ],
            Durability::Relaxed => &[
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
            ],
        }
    }
}

/// WAL a throwaway server keeps made between checkpoints (`min_wal_size`): a
/// checkpoint recycles used segments up to this much instead of deleting
/// them, so later writes reuse them instead of creating and zero-filling
/// new 16 MB files.
const MIN_WAL_SIZE: &str = "1GB";
/// Segments made at start (`warm_wal`): 256 MB, more than a `seed` pass
/// writes, made in well under a second on a disk doing 400 MB/s.
const WARM_SEGMENTS: i32 = 16;

/// A running server. Stopped (and, if throwaway, deleted) on drop.
pub struct EmbeddedPostgres {
    pid: i32,
    port: u16,
    password: String,
    data_dir: PathBuf,
    bindir: PathBuf,
    /// Holds the temporary directory of a throwaway server.
    tempdir: Option<tempfile::TempDir>,
    exited: Arc<Mutex<Option<std::process::ExitStatus>>>,
    stopped: bool,
    /// Extra `-c name=value` server settings.
    settings: Vec<(String, String)>,
    durability: Durability,
    /// The data directory's lock (persistent servers), released after the
    /// server has stopped.
    _lock: Option<fs::File>,
}

const PASSWORD_FILE: &str = "bucketbench_password";
const LOG_FILE: &str = "bucketbench_server.log";
const TEMP_PREFIX: &str = "bucketbench-pg-";
/// How long a second process waits for the data directory's lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// How long a server left running by a dead process gets to stop.
const STALE_SERVER_WAIT: Duration = Duration::from_secs(30);
/// How long an administrative step on our own server may take (creating a
/// database, the start-up checkpoint).
const ADMIN_WAIT: Duration = Duration::from_secs(60);
/// The database bucketbench creates and uses in its own server.
pub const DATABASE: &str = "bucketbench";

/// The owner of the server's files and process: ourselves, or `postgres`
/// when we are root.
#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
    switch: bool,
}

fn owner() -> anyhow::Result<Owner> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        // SAFETY: as above.
        return Ok(Owner {
            uid: euid,
            gid: unsafe { libc::getegid() },
            switch: false,
        });
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns NULL or a pointer to static storage, read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root, PostgreSQL must run as the `postgres` system user, which does not exist \
             (install PostgreSQL with `apt-get install postgresql`, or set DATABASE_URL)"
        );
    }
    // SAFETY: pw is non-null and points at a valid passwd entry.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Owner {
        uid,
        gid,
        switch: true,
    })
}

fn chown(path: &Path, o: Owner) -> anyhow::Result<()> {
    if o.switch {
        std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid))
            .with_context(|| format!("giving {} to the postgres user", path.display()))?;
    }
    Ok(())
}

/// Finds `initdb` and `postgres`: `pg_config --bindir`, then `PATH`, then
/// the newest `/usr/lib/postgresql/*/bin` (Debian puts them off `PATH`).
pub fn find_bindir() -> anyhow::Result<PathBuf> {
    let usable = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && usable(&d) {
            return Ok(d);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| usable(d)) {
            return Ok(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let d = e.path().join("bin");
            usable(&d).then_some((v, d))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, d)) => Ok(d),
        None => bail!(
            "PostgreSQL server binaries (initdb, postgres) not found: install them with \
             `apt-get install postgresql`, or set DATABASE_URL to use an existing server"
        ),
    }
}

fn random_password() -> String {
    use rand::RngExt as _;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// The postmaster `pid` and its children (backends, checkpointer, …), from
/// `/proc`.
fn server_processes(pid: i32) -> Vec<i32> {
    let ppid = |stat: &str| -> Option<i32> {
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let mut all = vec![pid];
    if let Ok(entries) = fs::read_dir("/proc") {
        all.extend(entries.flatten().filter_map(|e| {
            let child: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            (ppid(&stat)? == pid).then_some(child)
        }));
    }
    all
}

/// Stops the server whose postmaster is `pid`: resumes its processes first
/// (a stopped one, SIGSTOP or a debugger, would never act on the signal),
/// asks for a fast shutdown (SIGINT), waits up to `grace`, and past it kills
/// what is left, so no server outlives us.
fn stop_server(pid: i32, grace: Duration, exited: impl Fn() -> bool) {
    for p in server_processes(pid) {
        // SAFETY: signals to a postmaster we started and its children.
        unsafe { libc::kill(p, libc::SIGCONT) };
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + grace;
    while !exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !exited() {
        for p in server_processes(pid) {
            // SAFETY: as above; it did not stop within its grace.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

/// Removes throwaway servers whose owning process died without cleaning up
/// (a test binary's static server is never dropped).
fn sweep_stale_throwaways() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let owner_pid = fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if owner_pid.is_some_and(pid_alive) {
            continue;
        }
        // Too new to have written its pid file yet: leave it.
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(60));
        if owner_pid.is_none() && young {
            continue;
        }
        if let Some(pm) = fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok())
        {
            // SAFETY: sending a signal to a pid read from postmaster.pid.
            unsafe { libc::kill(pm, libc::SIGQUIT) };
        }
        let _ = fs::remove_dir_all(&path);
    }
}

/// Servers to stop if the process is interrupted (see [`install_signal_handler`]).
static LIVE: OnceLock<Mutex<Vec<(i32, Option<PathBuf>)>>> = OnceLock::new();

fn live() -> &'static Mutex<Vec<(i32, Option<PathBuf>)>> {
    LIVE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Directories made for a server not yet running (a throwaway's, a
/// cluster being initialised): removed on Ctrl-C or SIGTERM too, once
/// `initdb` has been ended, so a signal during it leaves nothing behind.
static STARTING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The process group of the `initdb` running now, if any.
static INITDB: Mutex<Option<i32>> = Mutex::new(None);

/// Ends a running `initdb` and its bootstrap server (their group), and
/// waits (at most 2 s) until none of them can write any more.
fn end_initdb() {
    let Some(group) = INITDB.lock().ok().and_then(|g| *g) else {
        return;
    };
    // SAFETY: signalling a process group this process started.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    // The group's leader is our child: once killed it lingers as a zombie
    // until reaped, but a zombie writes nothing; its children are gone
    // when only it is left, which `kill` cannot tell, so look at /proc.
    while std::time::Instant::now() < deadline && group_writes(group) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process of `group` other than a zombie is alive.
fn group_writes(group: i32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // Fields after the command's closing parenthesis: state, ppid, pgrp.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(group) && state != Some("Z")
    })
}

/// Work to do first on Ctrl-C, SIGTERM or SIGHUP (see [`on_interrupt`]).
static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Runs `hook` on Ctrl-C or SIGTERM, before the embedded servers stop
/// (`compare` stops its workers and drops its schema).
pub fn on_interrupt(hook: fn()) {
    HOOKS.lock().unwrap_or_else(|p| p.into_inner()).push(hook);
}

/// The line printed on Ctrl-C or SIGTERM, when not plain `interrupted`
/// (see [`on_interrupt_say`]).
static MESSAGE: Mutex<Option<fn() -> String>> = Mutex::new(None);

/// Says `line()` instead of `interrupted` on Ctrl-C or SIGTERM (`compare`
/// says how many runs completed and where they are kept).
pub fn on_interrupt_say(line: fn() -> String) {
    *MESSAGE.lock().unwrap_or_else(|p| p.into_inner()) = Some(line);
}

/// Set once Ctrl-C or SIGTERM arrived (see [`interrupted`]).
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the process is being interrupted: from then on, what fails
/// fails because the servers are being stopped, so logs are held back
/// (the user asked to stop; a lost connection is no news).
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The signal that interrupted the process (0: none yet).
static SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The status a process stopped by `signal` exits with: 128 + its number,
/// as a shell reports a process the signal killed (130 for Ctrl-C, 143
/// for SIGTERM, 129 for SIGHUP), so a supervisor can tell them apart.
fn interrupted_status() -> i32 {
    128 + match SIGNAL.load(std::sync::atomic::Ordering::SeqCst) {
        0 => libc::SIGINT,
        signal => signal,
    }
}

/// For a thread that fails while the signal handler is stopping the
/// servers: waits for the handler to exit (bounded), so the only line
/// printed is the handler's.
pub fn exit_interrupted() -> ! {
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(interrupted_status());
}

/// On Ctrl-C, SIGTERM or SIGHUP: hold back logs, run the [`on_interrupt`]
/// hooks (the progress bar is cleared there), stop every embedded server
/// cleanly (fast shutdown), delete throwaway data, then print
/// `interrupted` and exit with 128 + the signal's number. Binaries call
/// this once at start. The signals are taken on a thread of their own
/// (signal-hook's iterator), so the work runs outside a signal handler.
pub fn install_signal_handler() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // The first signal stops the process; one arriving while it
            // stops waits here and is never taken.
            for signal in signals.forever() {
                // Ctrl-C at a terminal reaches the whole foreground
                // group: while psql runs there, it is psql's (it cancels
                // the query), as a shell leaves it to the command it runs.
                if signal == SIGINT && FOREGROUND_CHILD.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                stop_on(signal);
            }
        });
}

/// Set while an interactive child (psql) runs in the foreground.
static FOREGROUND_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// That child's process id (0: none), ended with this process on SIGTERM
/// or SIGHUP: a signal sent to this process alone must not leave it running.
static FOREGROUND_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Runs `cmd` (an interactive child, such as `--psql`) to its end with
/// Ctrl-C left to it: SIGINT no longer stops this process while it runs;
/// SIGTERM and SIGHUP still do, and end the child first.
pub fn run_foreground(
    cmd: &mut std::process::Command,
) -> std::io::Result<std::process::ExitStatus> {
    use std::sync::atomic::Ordering::SeqCst;
    FOREGROUND_CHILD.store(true, SeqCst);
    let status = cmd.spawn().and_then(|mut child| {
        FOREGROUND_PID.store(child.id() as i32, SeqCst);
        let status = child.wait();
        FOREGROUND_PID.store(0, SeqCst);
        status
    });
    FOREGROUND_CHILD.store(false, SeqCst);
    status
}

fn stop_on(signal: i32) -> ! {
    SIGNAL.store(signal, std::sync::atomic::Ordering::SeqCst);
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    let child = FOREGROUND_PID.load(std::sync::atomic::Ordering::SeqCst);
    if child > 0 {
        // SAFETY: signalling a child this process started and still waits on.
        unsafe { libc::kill(child, libc::SIGTERM) };
    }
    let hooks = HOOKS.lock().map(|h| h.clone()).unwrap_or_default();
    for hook in hooks {
        hook();
    }
    let servers = live().lock().map(|l| l.clone()).unwrap_or_default();
    std::thread::scope(|s| {
        for (pid, _) in &servers {
            s.spawn(|| stop_server(*pid, Duration::from_secs(20), || !pid_alive(*pid)));
        }
    });
    for (_, dir) in &servers {
        if let Some(d) = dir {
            let _ = fs::remove_dir_all(d);
        }
    }
    end_initdb();
    for d in STARTING.lock().map(|s| s.clone()).unwrap_or_default() {
        let _ = fs::remove_dir_all(d);
    }
    let line = MESSAGE.lock().ok().and_then(|m| *m);
    crate::esayln!(
        "{}",
        line.map_or_else(|| "interrupted".to_string(), |f| f())
    );
    std::process::exit(interrupted_status());
}

/// Environment variable naming the data directory used when running as
/// root (default [`ROOT_DATA_DIR`]); tests point it at a temporary directory.
pub const ROOT_DATA_DIR_ENV: &str = "BUCKETBENCH_ROOT_DATA_DIR";

/// The embedded server's data directory when running as root: the server
/// runs as the `postgres` system user, which cannot enter a home directory
/// of mode 700, so the cluster lives where a system service's would.
pub const ROOT_DATA_DIR: &str = "/var/lib/bucketbench/postgres";

/// The default data directory of `ingest`'s embedded server, the same from
/// any working directory (cron, systemd, another shell): as root
/// [`ROOT_DATA_DIR`] (or `$BUCKETBENCH_ROOT_DATA_DIR`); otherwise
/// `$XDG_DATA_HOME/bucketbench/postgres`, else
/// `~/.local/share/bucketbench/postgres`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(std::env::var_os(ROOT_DATA_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(ROOT_DATA_DIR)));
    }
    user_data_dir()
}

/// The per-user data directory (XDG base directories).
fn user_data_dir() -> anyhow::Result<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").and_then(absolute) {
        return Ok(xdg.join("bucketbench/postgres"));
    }
    let home = std::env::var_os("HOME")
        .and_then(absolute)
        .context("neither XDG_DATA_HOME nor HOME names an absolute directory; pass --data-dir")?;
    Ok(home.join(".local/share/bucketbench/postgres"))
}

impl EmbeddedPostgres {
    /// Starts a server of the given flavour, creating its cluster if needed,
    /// and makes sure the `bucketbench` database exists.
    pub fn start(flavor: Flavor) -> anyhow::Result<Self> {
        Self::start_with_settings(flavor, &[])
    }

    /// As [`EmbeddedPostgres::start`], with extra server settings (for
    /// example `ssl=on` and its certificate files).
    pub fn start_with_settings(flavor: Flavor, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let bindir = find_bindir()?;
        let own = owner()?;
        let durability = match flavor {
            Flavor::Throwaway(d) => d,
            Flavor::Persistent(_) => Durability::Full,
        };
        let (tempdir, data_dir) = match &flavor {
            Flavor::Throwaway(_) => {
                sweep_stale_throwaways();
                let t = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempdir()
                    .context("creating a temporary directory")?;
                STARTING
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(t.path().to_path_buf());
                fs::write(t.path().join("owner.pid"), std::process::id().to_string())?;
                chown(t.path(), own)?;
                let d = t.path().join("data");
                (Some(t), d)
            }
            Flavor::Persistent(d) => {
                let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
                (None, d)
            }
        };
        let throwaway = tempdir.is_some();
        let lock = if throwaway {
            None
        } else {
            let lock = lock_data_dir(&data_dir)?;
            // Holding the lock: nobody else is initialising or running here.
            remove_leftovers(&data_dir);
            stop_stale_server(&data_dir)?;
            Some(lock)
        };
        let password = if data_dir.join("PG_VERSION").is_file() {
            fs::read_to_string(data_dir.join(PASSWORD_FILE))
                .with_context(|| format!("{} holds a PostgreSQL cluster without bucketbench's password file (not made by this version of bucketbench); remove it or pass another --data-dir", data_dir.display()))?
                .trim()
                .to_string()
        } else {
            init_cluster(&bindir, &data_dir, own, throwaway)?
        };
        let mut lock = lock;

        // A port found free can be taken before the server binds it; retry.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let (pid, exited) = Self::launch(
                &bindir,
                &data_dir,
                port,
                own,
                (throwaway, durability),
                &settings,
            )?;
            live()
                .lock()
                .unwrap()
                .push((pid, tempdir.as_ref().map(|t| t.path().to_path_buf())));
            if let Some(t) = &tempdir {
                // Its server's entry removes it from here on.
                STARTING
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|d| d != t.path());
            }
            let mut pg = EmbeddedPostgres {
                pid,
                port,
                password: password.clone(),
                data_dir: data_dir.clone(),
                bindir: bindir.clone(),
                tempdir: None,
                exited,
                stopped: false,
                settings: settings.clone(),
                durability,
                _lock: None,
            };
            match pg.wait_ready() {
                Ok(()) => {
                    pg.tempdir = tempdir;
                    pg._lock = lock.take();
                    pg.ensure_database()?;
                    // A persistent cluster keeps its segments between runs.
                    if pg.tempdir.is_some() {
                        pg.warm_wal()?;
                    }
                    return Ok(pg);
                }
                Err(e) => {
                    let port_taken = pg.has_exited() && pg.log_tail().contains("could not bind");
                    drop(pg);
                    if !port_taken {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("could not start PostgreSQL")))
    }

    /// Runs `postgres` as a child of a thread that lives as long as the
    /// server, so the parent-death signal fires when this process dies (it
    /// is tied to the creating thread, not the process).
    fn launch(
        bindir: &Path,
        data_dir: &Path,
        port: u16,
        own: Owner,
        (throwaway, durability): (bool, Durability),
        settings: &[(String, String)],
    ) -> anyhow::Result<(i32, Arc<Mutex<Option<std::process::ExitStatus>>>)> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join(LOG_FILE))
            .with_context(|| format!("opening the server log in {}", data_dir.display()))?;
        let mut cmd = Command::new(bindir.join("postgres"));
        cmd.arg("-D")
            .arg(data_dir)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            .args(["-c", "max_connections=300", "-c", "shared_buffers=256MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if throwaway {
            // A persistent server keeps PostgreSQL's 80 MB: its disk is the user's.
            cmd.arg("-c").arg(format!("min_wal_size={MIN_WAL_SIZE}"));
        }
        // Durability first, so an explicit setting below wins.
        for (k, v) in durability.settings() {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        for (k, v) in settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        if own.switch {
            cmd.uid(own.uid).gid(own.gid);
        }
        // Persistent: SIGINT is a clean fast shutdown. Throwaway: SIGQUIT,
        // an immediate stop, since the data is about to be deleted anyway.
        let death_signal = if throwaway {
            libc::SIGQUIT
        } else {
            libc::SIGINT
        };
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong);
                Ok(())
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let exited = Arc::new(Mutex::new(None));
        let exited2 = exited.clone();
        std::thread::Builder::new()
            .name("postgres-child".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id() as i32));
                    let status = child.wait();
                    *exited2.lock().unwrap() = status.ok();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })?;
        let pid = rx
            .recv()
            .context("starting postgres")?
            .with_context(|| format!("starting {}", bindir.join("postgres").display()))?;
        Ok((pid, exited))
    }

    fn has_exited(&self) -> bool {
        self.exited.lock().unwrap().is_some()
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.data_dir.join(LOG_FILE)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.url("postgres");
        loop {
            if self.has_exited() {
                bail!(
                    "PostgreSQL exited during start-up; its log ends: {}",
                    self.log_tail()
                );
            }
            // Each attempt bounded too: a postmaster that is stopped still
            // has its socket accept connections, and never answers them.
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = url.clone();
            let answered = super::watched::on_thread(
                left.max(Duration::from_secs(1)),
                "the connection",
                move || postgres::Client::connect(&attempt, postgres::NoTls).map(drop),
            );
            if let Ok(Ok(())) = answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "PostgreSQL did not accept connections within 60 s; its log ends: {}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the WAL segments the first writes would otherwise create: a
    /// fresh cluster has one, and each new 16 MB segment is zero-filled
    /// (and, durable, flushed) by whichever backend first needs it, which
    /// charged a fresh server's first pass for it (8 % of its database
    /// CPU). Writes a little WAL and switches segment `WARM_SEGMENTS`
    /// times, then checkpoints: the checkpoint recycles the used segments
    /// as future ones (up to `min_wal_size`) instead of deleting them.
    fn warm_wal(&self) -> anyhow::Result<()> {
        self.admin("making the server's WAL segments", |c| {
            c.execute(
                "SELECT count(*) FROM (SELECT pg_logical_emit_message(false, 'bucketbench', 'warm'), pg_switch_wal() \
                 FROM generate_series(1, $1)) s",
                &[&WARM_SEGMENTS],
            )?;
            Ok(c.batch_execute("CHECKPOINT")?)
        })
    }

    /// Runs `f` on a connection to the `postgres` database as the server's
    /// owner, within [`ADMIN_WAIT`]: a server of ours that stops answering
    /// (a stopped checkpointer holds a start-up CHECKPOINT) fails its start
    /// in one line instead of holding it.
    fn admin<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut postgres::Client) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let url = self.url("postgres");
        super::watched::on_thread(ADMIN_WAIT, what, move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
            f(&mut c)
        })?
        .with_context(|| what)
    }

    /// The durability the server runs with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    fn ensure_database(&self) -> anyhow::Result<()> {
        self.admin("creating the bucketbench database", |c| {
            let exists = c
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])?
                .is_some();
            if !exists {
                c.batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
            }
            Ok(())
        })
    }

    /// Connection URL for a database on this server. It holds the password:
    /// pass it to clients, never print it (see [`crate::secret::redact_url`]).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            self.password, self.port, database
        )
    }

    /// The URL of the `bucketbench` database.
    pub fn default_url(&self) -> String {
        self.url(DATABASE)
    }

    /// The postmaster's process id (its backends are its children).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Gives a file to the user the server runs as (it must own its key file).
    pub fn give_to_server(&self, path: &Path) -> anyhow::Result<()> {
        chown(path, owner()?)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Creates a fresh, empty database (tests use one per test).
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let ident = name.replace('"', "");
        let create = format!("CREATE DATABASE \"{ident}\"");
        self.admin(
            "creating a database",
            move |c| Ok(c.batch_execute(&create)?),
        )?;
        Ok(self.url(&ident))
    }

    /// Stops the server (fast shutdown, as `pg_ctl restart -m fast` does)
    /// and starts it again on the same port and data. Clients see their
    /// connections dropped; tests use this to prove the models recover.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let throwaway = self.tempdir.is_some();
        self.shutdown();
        let (pid, exited) = Self::launch(
            &self.bindir,
            &self.data_dir,
            self.port,
            owner()?,
            (throwaway, self.durability),
            &self.settings,
        )?;
        live()
            .lock()
            .unwrap()
            .push((pid, self.tempdir.as_ref().map(|t| t.path().to_path_buf())));
        self.pid = pid;
        self.exited = exited;
        self.stopped = false;
        self.wait_ready()
    }

    /// Stops the server cleanly and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        stop_server(self.pid, Duration::from_secs(30), || self.has_exited());
        if let Ok(mut l) = live().lock() {
            l.retain(|(p, _)| *p != self.pid);
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `<parent>/.<name>.<suffix>`: a file or directory beside `data_dir`.
fn beside(data_dir: &Path, suffix: &str) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    data_dir.with_file_name(format!(".{name}.{suffix}"))
}

/// Takes the data directory's lock, waiting up to [`LOCK_WAIT`] for a
/// process that holds it (saying so once), and writes our pid in it.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<fs::File> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::FileExt as _;
    if let Some(parent) = data_dir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let path = beside(data_dir, "lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut said = false;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
            _ => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let holder = fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map_or_else(
                || "another process".to_string(),
                |pid| format!("process {pid}"),
            );
        if Instant::now() >= deadline {
            bail!(
                "{holder} is running the embedded PostgreSQL in {} (waited {} s); stop it, pass another --data-dir, or set DATABASE_URL to share one server",
                data_dir.display(),
                LOCK_WAIT.as_secs()
            );
        }
        if !said {
            crate::esayln!(
                "waiting up to {} s for {holder}, which is running the embedded PostgreSQL in {}",
                LOCK_WAIT.as_secs(),
                data_dir.display()
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)?;
    file.write_at(pid.as_bytes(), 0)?;
    Ok(file)
}

/// Removes what a killed first run leaves beside the data directory: its
/// staging directory (and the password file older versions kept there).
/// Only called with the lock held, so none of it is in use.
fn remove_leftovers(data_dir: &Path) {
    let Some(parent) = data_dir.parent() else {
        return;
    };
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = format!(".{name}.init-");
    let old_pwfile = format!(".{name}-pwfile-");
    for e in fs::read_dir(parent).into_iter().flatten().flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with(&staging) {
            let _ = fs::remove_dir_all(e.path());
        } else if f.starts_with(&old_pwfile) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A server left running in `data_dir` by a process that died (its
/// parent-death signal asks it to stop, which takes a moment): wait for it
/// to go, asking again, so that ours can start.
fn stop_stale_server(data_dir: &Path) -> anyhow::Result<()> {
    let Some(pid) = fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    let is_postgres = |pid: i32| {
        pid_alive(pid)
            && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
    };
    if !is_postgres(pid) {
        return Ok(());
    }
    // SAFETY: a postmaster of this data directory, whose owner is gone (we
    // hold the lock): a fast shutdown.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + STALE_SERVER_WAIT;
    while is_postgres(pid) {
        if Instant::now() >= deadline {
            bail!(
                "a PostgreSQL server (pid {pid}) left by an earlier run is still running in {} after {} s; stop it and try again",
                data_dir.display(),
                STALE_SERVER_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Creates the cluster of `data_dir`: `initdb` in a staging directory
/// beside it, the password file written and synced, then one rename into
/// place, so an interruption at any instant leaves no half-made cluster
/// where a later run would find it.
fn init_cluster(
    bindir: &Path,
    data_dir: &Path,
    own: Owner,
    throwaway: bool,
) -> anyhow::Result<String> {
    let parent = data_dir
        .parent()
        .with_context(|| format!("{} has no parent directory", data_dir.display()))?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    if fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} is not empty and holds no PostgreSQL cluster (no PG_VERSION); remove it or pass another --data-dir",
            data_dir.display()
        );
    }
    let stage = beside(data_dir, &format!("init-{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir(&stage).with_context(|| format!("creating {}", stage.display()))?;
    let starting = || STARTING.lock().unwrap_or_else(|p| p.into_inner());
    starting().push(stage.clone());
    let result = init_staged(bindir, data_dir, &stage, own, throwaway);
    let _ = fs::remove_dir_all(&stage);
    starting().retain(|d| *d != stage);
    result
}

fn init_staged(
    bindir: &Path,
    data_dir: &Path,
    stage: &Path,
    own: Owner,
    throwaway: bool,
) -> anyhow::Result<String> {
    fs::set_permissions(stage, fs::Permissions::from_mode(0o700))?;
    chown(stage, own)?;
    if own.switch && !throwaway {
        check_reachable_by_postgres(stage)?;
    }
    let password = random_password();
    let pwfile = stage.join("pwfile");
    write_secret(&pwfile, &password, own)?;
    let staged = stage.join("data");
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(&staged)
        .args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .env("LC_ALL", "C.UTF-8");
    if throwaway {
        cmd.arg("--no-sync");
    }
    if own.switch {
        cmd.uid(own.uid).gid(own.gid);
    }
    // SAFETY: only async-signal-safe calls between fork and exec. initdb
    // dies with us instead of finishing a cluster nobody will rename.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    // A group of its own, so that a signal's handler can end initdb and the
    // bootstrap server it runs before removing what they write.
    cmd.process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("running {}", bindir.join("initdb").display()))?;
    *INITDB.lock().unwrap_or_else(|p| p.into_inner()) = Some(child.id() as i32);
    let out = child.wait_with_output();
    *INITDB.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let out = out.with_context(|| format!("running {}", bindir.join("initdb").display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "initdb failed for {}: {}",
            data_dir.display(),
            err.lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no output")
        );
    }
    write_secret(&staged.join(PASSWORD_FILE), &password, own)?;
    // An empty directory is replaced by rename(2) as a missing one is.
    fs::rename(&staged, data_dir).with_context(|| {
        format!(
            "moving the new cluster from {} to {}",
            staged.display(),
            data_dir.display()
        )
    })?;
    if !throwaway {
        if let Some(parent) = data_dir.parent() {
            fs::File::open(parent).and_then(|d| d.sync_all())?;
        }
    }
    Ok(password)
}

/// Writes a file only its owner (the server's user) can read, and syncs it.
fn write_secret(path: &Path, secret: &str, own: Owner) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode_0600()
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    chown(path, own)
}

/// `postgres` must be able to enter every parent of its data directory; a
/// project under `/root` (mode 0700) is the usual trap.
fn check_reachable_by_postgres(data_dir: &Path) -> anyhow::Result<()> {
    for dir in data_dir.ancestors().skip(1) {
        if let Ok(meta) = fs::metadata(dir) {
            if meta.permissions().mode() & 0o001 == 0 {
                bail!(
                    "the postgres system user cannot enter {} (mode {:o}), so it cannot use the data directory {}; \
                     pass --data-dir somewhere it can reach (for example /var/lib/bucketbench), or set DATABASE_URL",
                    dir.display(),
                    meta.permissions().mode() & 0o777,
                    data_dir.display()
                );
            }
        }
    }
    Ok(())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}
