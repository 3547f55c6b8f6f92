//! A private PostgreSQL server run from the installed binaries, for when no
//! `DATABASE_URL` is given.
//!
//! Two flavours share one helper: `Persistent` keeps its data directory
//! between runs (so `ingest`'s ledger survives), `Throwaway` lives in a
//! temporary directory with durability off and is deleted on exit, on error
//! and on Ctrl-C. The server listens on a free port on 127.0.0.1 only, with
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
    Throwaway,
}

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
}

const PASSWORD_FILE: &str = "bucketbench_password";
const LOG_FILE: &str = "bucketbench_server.log";
const TEMP_PREFIX: &str = "bucketbench-pg-";
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

/// On Ctrl-C or SIGTERM: stop every embedded server cleanly (fast
/// shutdown), delete throwaway data, then exit with status 130. Binaries
/// call this once at start.
pub fn install_signal_handler() {
    let _ = ctrlc::set_handler(|| {
        let servers = live().lock().map(|l| l.clone()).unwrap_or_default();
        for (pid, _) in &servers {
            // SAFETY: pid is a postmaster we started.
            unsafe { libc::kill(*pid, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while servers.iter().any(|(pid, _)| pid_alive(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for (_, dir) in &servers {
            if let Some(d) = dir {
                let _ = fs::remove_dir_all(d);
            }
        }
        eprintln!("interrupted");
        std::process::exit(130);
    });
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
        let (tempdir, data_dir) = match &flavor {
            Flavor::Throwaway => {
                sweep_stale_throwaways();
                let t = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempdir()
                    .context("creating a temporary directory")?;
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
        let password = if data_dir.join("PG_VERSION").is_file() {
            fs::read_to_string(data_dir.join(PASSWORD_FILE))
                .with_context(|| format!("{} holds a PostgreSQL cluster without bucketbench's password file; remove it or pass another --data-dir", data_dir.display()))?
                .trim()
                .to_string()
        } else {
            init_cluster(&bindir, &data_dir, own, throwaway)?
        };

        // A port found free can be taken before the server binds it; retry.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let (pid, exited) = Self::launch(&bindir, &data_dir, port, own, throwaway, &settings)?;
            live()
                .lock()
                .unwrap()
                .push((pid, tempdir.as_ref().map(|t| t.path().to_path_buf())));
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
            };
            match pg.wait_ready() {
                Ok(()) => {
                    pg.tempdir = tempdir;
                    pg.ensure_database()?;
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
        throwaway: bool,
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
        for (k, v) in settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        if throwaway {
            // Durability buys nothing for data deleted on exit.
            cmd.args([
                "-F",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
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
            if let Ok(c) = postgres::Client::connect(&url, postgres::NoTls) {
                drop(c);
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

    fn ensure_database(&self) -> anyhow::Result<()> {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)?;
        let exists = c
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])?
            .is_some();
        if !exists {
            c.batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
        }
        Ok(())
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
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)?;
        let ident = name.replace('"', "");
        c.batch_execute(&format!("CREATE DATABASE \"{ident}\""))?;
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
            throwaway,
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
        // SAFETY: pid is the postmaster we started.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.has_exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.has_exited() {
            // SAFETY: as above; fast shutdown did not finish in time.
            unsafe { libc::kill(self.pid, libc::SIGQUIT) };
        }
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

fn init_cluster(
    bindir: &Path,
    data_dir: &Path,
    own: Owner,
    throwaway: bool,
) -> anyhow::Result<String> {
    if let Some(parent) = data_dir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))?;
    chown(data_dir, own)?;
    if own.switch && !throwaway {
        check_reachable_by_postgres(data_dir)?;
    }
    let password = random_password();
    let pwfile = data_dir.with_file_name(format!(
        ".{}-pwfile-{}",
        data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode_0600()
            .open(&pwfile)?;
        f.write_all(password.as_bytes())?;
    }
    chown(&pwfile, own)?;
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
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
    let out = cmd
        .output()
        .with_context(|| format!("running {}", bindir.join("initdb").display()));
    let _ = fs::remove_file(&pwfile);
    let out = out?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "initdb failed in {}: {}",
            data_dir.display(),
            err.lines()
                .filter(|l| !l.trim().is_empty())
                .last()
                .unwrap_or("no output")
        );
    }
    let pw_path = data_dir.join(PASSWORD_FILE);
    {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode_0600()
            .open(&pw_path)?;
        f.write_all(password.as_bytes())?;
    }
    chown(&pw_path, own)?;
    Ok(password)
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
