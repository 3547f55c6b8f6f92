//! The `ingest` command: its arguments, the database it runs on (the given
//! URL or the embedded server), `--psql`, and the pass loop of `--watch`.
//! The pass itself is [`crate::pass`]; `src/bin/ingest.rs` parses and dispatches.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::bucket::BucketLocation;
use crate::cli::{self, ClientArgs, KnobArgs, S3Args};
use crate::db::{EmbeddedPostgres, Flavor, embedded};
use crate::models::Model;
use crate::pass::{PassConfig, PassOptions, run_pass_with};
use crate::secret;

/// Loads the JSON files of a bucket into PostgreSQL, each key exactly once.
///
/// Short flags: -b bucket, -m model, -w watch, -i interval, -j json,
/// -v/-q more or fewer logs.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Bucket: a base URL (manifest mode: `<URL>/files_list.data` lists the
    /// keys) or `s3://BUCKET[/PREFIX]` (S3 API mode).
    #[arg(short, long, required_unless_present_any = ["psql", "completions"])]
    bucket: Option<String>,
    /// Execution model.
    #[arg(short, long, value_enum, default_value_t = Model::Sync)]
    model: Model,
    /// Repeat passes until interrupted.
    #[arg(short, long)]
    watch: bool,
    /// Seconds between the start of one pass and the next, with --watch.
    #[arg(short, long, default_value_t = 60.0, allow_negative_numbers = true, value_parser = cli::seconds)]
    interval: f64,
    /// Print each pass's summary as one JSON object on stdout.
    #[arg(short, long)]
    json: bool,
    /// Try every key the ledger records as failed again, changed or not
    /// (a failed key whose object changed is always tried again). With
    /// --watch, on the first pass only.
    #[arg(long)]
    retry_failed: bool,
    /// Seconds a listed key's `last_seen_at` may lag before a pass stamps
    /// it again. 0 stamps every listed key on every pass; the default (an
    /// hour) keeps a --watch over many keys from rewriting the whole
    /// ledger each interval.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600.0, allow_negative_numbers = true, value_parser = cli::seconds_or_zero)]
    seen_resolution: f64,
    #[command(flatten)]
    verbosity: cli::Verbosity,
    /// Print a completion script for this shell on stdout and exit
    /// (`ingest --completions bash > /etc/bash_completion.d/ingest`).
    #[arg(long, value_name = "SHELL", help_heading = "Output")]
    completions: Option<clap_complete::Shell>,
    /// PostgreSQL URL or libpq key=value string. Without it, a private server
    /// runs from the installed binaries with its data in --data-dir. Read as
    /// psql reads it: without a password it takes PGPASSWORD or the password
    /// file (PGPASSFILE, else ~/.pgpass); what it leaves out comes from
    /// PGHOST, PGHOSTADDR, PGPORT, PGUSER, PGDATABASE; PGSSLMODE,
    /// PGCHANNELBINDING and PGTARGETSESSIONATTRS are kept; libpq variables
    /// this client cannot honour (PGSERVICE, PGSSLCERT, ...) are refused, as
    /// are such keys in the URL (service, sslcert, ...). Several hosts are
    /// tried in order, each alone, and the search ends at a server that
    /// answers, as in libpq. See the README.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        help_heading = "Database"
    )]
    database_url: Option<String>,
    /// Data directory of the embedded PostgreSQL, kept between runs
    /// [default: $XDG_DATA_HOME/bucketbench/postgres, else
    /// ~/.local/share/bucketbench/postgres; as root
    /// /var/lib/bucketbench/postgres].
    #[arg(long, help_heading = "Database")]
    data_dir: Option<PathBuf>,
    /// Open psql on the database instead of ingesting; what follows is
    /// passed to psql (`--psql -c 'select 1'`), so put it last.
    #[arg(long, num_args = 0.., allow_hyphen_values = true, value_name = "PSQL_ARGS", help_heading = "Database")]
    psql: Option<Vec<String>>,
    #[command(flatten)]
    db_tls: cli::DbTlsArgs,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    knobs: KnobArgs,
}

impl Args {
    /// The shell `--completions` asked a script for, if any.
    pub fn completions(&self) -> Option<clap_complete::Shell> {
        self.completions
    }

    /// Sets up logging at the level `-v`/`-q` ask for.
    pub fn init_logging(&self) {
        self.verbosity.init_logging();
    }
}

/// Whether informational lines (the data directory, spinners) are shown.
fn chatty(args: &Args) -> bool {
    !args.verbosity.quiet
}

/// Runs `ingest`: `--psql`, one pass, or passes on a timer (`--watch`).
pub fn run(args: Args) -> anyhow::Result<()> {
    args.db_tls.apply();
    let model = args.model.ingestor();
    // A bad bucket URL should fail before a database is started for nothing.
    let bucket = match &args.bucket {
        Some(b) if args.psql.is_none() => Some(BucketLocation::parse_with(b, &args.s3.options())?),
        _ => None,
    };
    let cfg_client = args.client.config();
    let mut server = None;
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            // An unreachable bucket is found (its retries said as they
            // happen) before seconds go into starting a server for nothing.
            // A daemon (--watch) starts anyway: the bucket may come back.
            if let (Some(b), false) = (&bucket, args.watch) {
                probe_bucket(b, &cfg_client)?;
            }
            let data_dir = match &args.data_dir {
                Some(d) => d.clone(),
                None => embedded::default_data_dir()?,
            };
            let spinner = (chatty(&args) && std::io::stderr().is_terminal())
                .then(|| crate::pass::spinner("starting the embedded PostgreSQL"));
            let started = EmbeddedPostgres::start(Flavor::Persistent(data_dir))
                .context("starting the embedded PostgreSQL");
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            let pg = started?;
            if chatty(&args) {
                crate::esayln!(
                    "using the embedded PostgreSQL in {} (port {})",
                    pg.data_dir().display(),
                    pg.port()
                );
            }
            let url = pg.default_url();
            server = Some(pg);
            url
        }
    };
    if let Some(psql_args) = &args.psql {
        return open_psql(&database_url, server.as_ref(), psql_args);
    }
    let cfg = PassConfig {
        bucket: bucket.expect("--bucket is required without --psql"),
        database_url,
        client: cfg_client,
        knobs: args.knobs.knobs(),
        progress: crate::pass::Progress::for_stderr(!args.json && chatty(&args)),
    };
    let mut opts = PassOptions {
        retry_failed: args.retry_failed,
        seen_resolution: Some(Duration::from_secs_f64(args.seen_resolution)),
        ..Default::default()
    };
    // Debug-formatted, so a control character in the URL is escaped rather
    // than splitting the log line.
    tracing::info!(database = ?secret::redact_url(&cfg.database_url), "starting");
    loop {
        let started = std::time::Instant::now();
        let read = match run_pass_with(&cfg, model.as_ref(), &opts) {
            Ok(summary) => print_summary(&summary, &args)?,
            Err(e) => {
                // A pass the breaker ended still says what it loaded; its
                // one line comes last.
                let mut read = Read::Yes;
                if let Some(u) = e.downcast_ref::<crate::pass::Unreachable>() {
                    read = print_summary(&u.summary, &args)?;
                }
                // A daemon outlives a blip: report it and try again next
                // time. A schema newer than this build is no blip.
                if !args.watch
                    || e.downcast_ref::<crate::db::schema::SchemaTooNew>()
                        .is_some()
                {
                    return Err(e);
                }
                crate::esayln!(
                    "error: pass failed, retrying next interval: {}",
                    secret::redact_text(&crate::error::chain(&*e))
                );
                read
            }
        };
        // `ingest --watch --json | head -1`: once the reader is gone, as
        // `tail -f` does on SIGPIPE, the watch ends.
        if !args.watch || read == Read::Gone {
            break;
        }
        opts.retry_failed = false;
        let wait = Duration::from_secs_f64(args.interval).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
    }
    drop(server);
    Ok(())
}

/// Whether stdout still has a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Yes,
    Gone,
}

/// Prints a pass's summary on stdout: JSON with `--json`, else text,
/// timestamped with `--watch`.
fn print_summary(summary: &crate::report::PassSummary, args: &Args) -> anyhow::Result<Read> {
    // Reasons quote the errors of HTTP clients, which may
    // quote a URL: the one redaction, on everything printed.
    let text = if args.json {
        crate::report::terminal_json(summary)?
    } else if args.watch {
        summary.render_timestamped(chrono::Local::now())
    } else {
        summary.render()
    };
    // `ingest | head -1`: a reader that stops early is not an error, and
    // `println!` would panic on it (the pass has committed by now).
    use std::io::Write as _;
    match writeln!(std::io::stdout().lock(), "{}", secret::redact_text(&text)) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Read::Gone),
        done => done.map(|()| Read::Yes).context("printing the summary"),
    }
}

/// Lists the bucket's first page and stops: the bucket answers, or the
/// run fails with the listing's error.
fn probe_bucket(
    bucket: &BucketLocation,
    client: &crate::bucket::ClientConfig,
) -> anyhow::Result<()> {
    let stats = std::sync::Arc::new(crate::bucket::NetStats::default());
    let lister = crate::bucket::sync_client::SyncClient::new(client.clone(), stats)?;
    let mut answered = false;
    let listed = crate::bucket::list::list(&lister, bucket, &mut |_| {
        answered = true;
        anyhow::bail!("probe: stop after the first page")
    });
    match listed {
        Err(e) if !answered => Err(e),
        _ => Ok(()),
    }
}

/// Runs `psql` on the database, passing the password in the environment so
/// it never shows in the process list.
/// libpq's environment for the connection `url` names, read by the parser
/// every other connection of this program uses (tokio-postgres): a URL or a
/// `key=value` string, percent-decoded, with `?password=`, several hosts (and
/// their `hostaddr`), the TLS mode, channel binding and the session
/// attributes the job requires. libpq's `sslmode=require` does not verify the server, so it
/// becomes `verify-full` against the CA this program trusts (`--db-ca-file`,
/// `PGSSLROOTCERT`, else the system's bundle), as this program's own
/// connections verify it.
fn psql_env(url: &str) -> anyhow::Result<Vec<(&'static str, std::ffi::OsString)>> {
    use std::os::unix::ffi::OsStrExt as _;
    use tokio_postgres::config::{ChannelBinding, Host, SslMode, TargetSessionAttrs};
    // libpq's verify modes and root file, and what the URL leaves out, as
    // the job's own connections take them (psql gets the result, the
    // shell's PG variables cleared).
    let cfg = crate::db::libpq_config(url)?;
    let list = |items: Vec<String>| items.join(",").into();
    let mut env = Vec::new();
    if !cfg.get_hosts().is_empty() {
        let hosts = cfg.get_hosts().iter().map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        });
        env.push(("PGHOST", list(hosts.collect())));
    }
    if !cfg.get_hostaddrs().is_empty() {
        let addrs = cfg.get_hostaddrs().iter().map(|a| a.to_string());
        env.push(("PGHOSTADDR", list(addrs.collect())));
    }
    if !cfg.get_ports().is_empty() {
        env.push((
            "PGPORT",
            list(cfg.get_ports().iter().map(u16::to_string).collect()),
        ));
    }
    if let Some(user) = cfg.get_user() {
        env.push(("PGUSER", user.into()));
    }
    // The password the job's own connections would use: the URL's, else
    // libpq's (PGPASSWORD, the password file), which psql would not see
    // once the shell's PG variables are cleared.
    // With several hosts the file may hold a password for each, which
    // psql looks up host by host when it is given the file itself.
    let password = match cfg.get_password() {
        Some(own) => Some(own.to_vec()),
        None => match crate::db::pgpass::password_for(&cfg) {
            Ok(found) => found,
            Err(per_host) => {
                env.push(("PGPASSFILE", per_host.file.into_os_string()));
                None
            }
        },
    };
    if let Some(password) = password {
        env.push(("PGPASSWORD", std::ffi::OsStr::from_bytes(&password).into()));
    }
    if let Some(db) = cfg.get_dbname() {
        env.push(("PGDATABASE", db.into()));
    }
    if let Some(options) = cfg.get_options() {
        env.push(("PGOPTIONS", options.into()));
    }
    if let Some(app) = cfg.get_application_name() {
        env.push(("PGAPPNAME", app.into()));
    }
    let mode = match cfg.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Require => {
            let system = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
            if let Some(ca) =
                crate::db::tls::ca_file().or_else(|| system.is_file().then(|| system.into()))
            {
                env.push(("PGSSLROOTCERT", ca.into()));
            }
            "verify-full"
        }
        // The job's default: TLS when the server offers it, verified.
        // psql's `prefer` would take any certificate, so psql gets
        // verify-full, with the roots the job trusts, unless the server
        // itself says it has no TLS (as the job's own connection then
        // goes on in plain text). No answer is not a "no".
        _ if refuses_tls(&cfg) => "disable",
        _ => {
            let system = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
            if let Some(ca) =
                crate::db::tls::ca_file().or_else(|| system.is_file().then(|| system.into()))
            {
                env.push(("PGSSLROOTCERT", ca.into()));
            }
            "verify-full"
        }
    };
    env.push(("PGSSLMODE", mode.into()));
    // What the job insists on, psql must too.
    let binding = match cfg.get_channel_binding() {
        ChannelBinding::Disable => "disable",
        ChannelBinding::Require => "require",
        _ => "prefer",
    };
    env.push(("PGCHANNELBINDING", binding.into()));
    let attrs = match cfg.get_target_session_attrs() {
        TargetSessionAttrs::ReadWrite => "read-write",
        TargetSessionAttrs::ReadOnly => "read-only",
        _ => "any",
    };
    env.push(("PGTARGETSESSIONATTRS", attrs.into()));
    Ok(env)
}

/// Whether the server `cfg` names says, when asked, that it has no TLS:
/// the protocol's SSLRequest, answered `N`, before any credential is sent.
/// Every address is asked (a host's `hostaddr` when given, as libpq
/// connects, else every address its name resolves to); a Unix socket has
/// no TLS. Any address that answers `S`, or none answering within 2 s,
/// makes it "no": psql then insists on TLS, and fails rather than send a
/// password in plain text to a server that offers TLS.
fn refuses_tls(cfg: &tokio_postgres::Config) -> bool {
    use std::io::{Read as _, Write as _};
    use tokio_postgres::config::Host;
    let wait = std::time::Duration::from_secs(2);
    let ports = cfg.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let mut addrs: Vec<std::net::SocketAddr> = Vec::new();
    let mut sockets = 0;
    for (i, h) in cfg.get_hosts().iter().enumerate() {
        match cfg.get_hostaddrs().get(i) {
            Some(ip) => addrs.push((*ip, port(i)).into()),
            None => match h {
                Host::Tcp(name) => {
                    match std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port(i))) {
                        Ok(resolved) => addrs.extend(resolved),
                        // Unresolvable: psql will fail on it either way.
                        Err(_) => return false,
                    }
                }
                Host::Unix(_) => sockets += 1,
            },
        }
    }
    if cfg.get_hosts().is_empty() {
        addrs.extend(
            cfg.get_hostaddrs()
                .iter()
                .enumerate()
                .map(|(i, ip)| std::net::SocketAddr::from((*ip, port(i)))),
        );
    }
    let answer = |addr: &std::net::SocketAddr| -> Option<u8> {
        let mut s = std::net::TcpStream::connect_timeout(addr, wait).ok()?;
        s.set_read_timeout(Some(wait)).ok()?;
        // Length 8, then the SSLRequest code 80877103.
        s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).ok()?;
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).ok()?;
        Some(byte[0])
    };
    // Only Unix sockets (libpq's default when no host is given) carry no TLS.
    if addrs.is_empty() {
        return sockets > 0 || cfg.get_hosts().is_empty();
    }
    // A dead host among several says nothing (libpq goes on to the next);
    // but one that answers `S`, or none answering at all, is not a "no".
    let answers: Vec<u8> = addrs.iter().filter_map(answer).collect();
    !answers.is_empty() && answers.iter().all(|&a| a == b'N')
}

fn open_psql(url: &str, server: Option<&EmbeddedPostgres>, extra: &[String]) -> anyhow::Result<()> {
    let psql = server
        .map(|s| s.bindir().join("psql"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"));
    let mut cmd = std::process::Command::new(psql);
    // psql reads libpq's variables from the environment too: a PGHOST or
    // PGHOSTADDR left in the shell would send it (and the password) to a
    // server other than the one the URL names and the TLS check asked. Only
    // what the URL says goes through.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(psql_env(url)?).args(extra);
    let status = crate::db::embedded::run_foreground(&mut cmd).context("running psql")?;
    anyhow::ensure!(status.success(), "psql exited with {status}");
    Ok(())
}
