//! Command-line pieces shared by the binaries: client and database options,
//! logging set-up, and the one-line error exit.

use std::path::PathBuf;
use std::time::Duration;

use crate::bucket::{ClientConfig, RetryPolicy};
use crate::models::Knobs;

pub mod network;

/// HTTP client options.
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
#[command(next_help_heading = "HTTP client")]
pub struct ClientArgs {
    /// Largest object to download, in bytes or with a unit (64MiB, 1GiB);
    /// larger ones are refused while streaming and recorded as failed. Also
    /// bounds the manifest and each listing page.
    #[arg(long, default_value = "256MiB", value_parser = crate::bucket::budget::parse_bytes)]
    pub max_object_bytes: u64,
    /// Attempts per request, the first included (5xx, timeouts and resets
    /// are retried with exponential backoff and jitter).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    /// Seconds to wait for response headers before retrying on a fresh
    /// connection.
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true, value_parser = seconds)]
    pub first_byte_timeout: f64,
    /// Seconds to wait for the headers of a listing page or manifest
    /// before retrying (a server builds a whole page before answering).
    #[arg(long, default_value_t = 15.0, allow_negative_numbers = true, value_parser = seconds)]
    pub list_timeout: f64,
    /// Seconds any object download may take whatever its size, headers
    /// included; each byte that arrives buys more time at --min-download-rate.
    /// A download past its deadline is retried like a stall.
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true, value_parser = seconds)]
    pub download_timeout: f64,
    /// Slowest average download rate, in KiB/s, allowed beyond
    /// --download-timeout: a download may have run download-timeout + N /
    /// min-download-rate seconds once N KiB of it have arrived (what
    /// arrived, not what the server announced).
    #[arg(long, default_value_t = 64.0, allow_negative_numbers = true, value_parser = positive_f64)]
    pub min_download_rate: f64,
    /// PEM file of the root certificates to trust instead of the built-in ones, as curl's
    /// --cacert and the AWS CLI's --ca-bundle do (TLS is always verified).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Seconds in which every request went unanswered or was answered
    /// with a server error (timed out, refused, reset, HTTP 5xx, a body
    /// slower than --min-download-rate; any other answer, a 404 or 403
    /// included, resets the count; the change check's HEADs count apart,
    /// and only against themselves) before the bucket
    /// is declared unreachable: the pass starts no more files, ends with
    /// one line and exits 1; the files it did not attempt are left for the
    /// next pass. Needs --unreachable-requests such requests too.
    #[arg(long, default_value_t = 15.0, allow_negative_numbers = true, value_parser = seconds)]
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after: f64,
    /// Unanswered requests in a row, at least, before the bucket is
    /// declared unreachable (see --unreachable-after).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    #[serde(default = "default_unreachable_requests")]
    pub unreachable_requests: u64,
    /// At most N byte-range requests (0 to 16) beside an object's GET, on
    /// more connections: for an object of 1 MiB or more whose rest, at the
    /// rate its first bytes came, would take longer than one and a half of
    /// its first byte's wait, when splitting saves 20 ms or more. Each is a
    /// request (billed on S3) and may open a connection. Needs
    /// Accept-Ranges and a strong ETag, which every part must match. 0: one
    /// GET per object. Never more than the model's own requests in flight
    /// less one (--concurrency, --threads); `sync` never splits.
    #[arg(long, default_value_t = crate::bucket::parts::DEFAULT_PARTS, value_parser = clap::value_parser!(u64).range(0..=16))]
    #[serde(default = "default_ranged_parts")]
    pub ranged_parts: u64,
}

fn default_ranged_parts() -> u64 {
    crate::bucket::parts::DEFAULT_PARTS
}

fn default_unreachable_after() -> f64 {
    crate::bucket::breaker::BreakerConfig::default()
        .window
        .as_secs_f64()
}

fn default_unreachable_requests() -> u64 {
    crate::bucket::breaker::BreakerConfig::default().requests
}

impl ClientArgs {
    pub fn config(&self) -> ClientConfig {
        ClientConfig {
            max_object_bytes: self.max_object_bytes,
            first_byte_timeout: Duration::from_secs_f64(self.first_byte_timeout.max(0.001)),
            list_timeout: Duration::from_secs_f64(self.list_timeout.max(0.001)),
            download_timeout: Duration::from_secs_f64(self.download_timeout.max(0.001)),
            min_download_rate: (self.min_download_rate.max(0.001) * 1024.0) as u64,
            retry: RetryPolicy {
                max_attempts: self.attempts.max(1),
                ..RetryPolicy::default()
            },
            ca_file: self.ca_file.clone(),
            breaker: crate::bucket::breaker::BreakerConfig {
                requests: self.unreachable_requests.max(1),
                window: Duration::from_secs_f64(self.unreachable_after.max(0.001)),
            },
            ranged_parts: self.ranged_parts,
            ..ClientConfig::default()
        }
    }
}

/// Concurrency knobs of the execution models.
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
#[command(next_help_heading = "Execution model")]
pub struct KnobArgs {
    /// Files in flight in the async models.
    #[arg(long, default_value_t = Knobs::default().concurrency, allow_negative_numbers = true, value_parser = count)]
    pub concurrency: usize,
    /// Database connections in the `async` model's pool.
    #[arg(long, default_value_t = Knobs::default().connections, allow_negative_numbers = true, value_parser = count)]
    pub connections: usize,
    /// Worker threads in the `threads` model.
    #[arg(long, default_value_t = Knobs::default().threads, allow_negative_numbers = true, value_parser = count)]
    pub threads: usize,
    /// How rows are written: a prepared INSERT per row, UNNEST batches, or COPY.
    #[arg(long, value_enum, default_value = "copy")]
    pub write: crate::db::WriteStrategy,
    /// Files one transaction may carry in the `async` model (group commit:
    /// each file still commits whole or not at all). 1: a transaction per file.
    #[arg(long, default_value_t = Knobs::default().files_per_transaction, allow_negative_numbers = true, value_parser = count)]
    pub files_per_transaction: usize,
    /// Memory for files fetched but not yet written, all files of every
    /// model together: each reserves 3.5 times its size (5 with `--write
    /// insert`: body, parsed records and rows to send) before its body is
    /// read, then keeps its rows' share until it commits. A larger file
    /// still goes, alone; one whose size is not known before it is in
    /// (gzip, or no Content-Length) starts from what it is on the wire (1
    /// MiB without a length) and grows, and is fetched again when the
    /// budget has no room for it to grow. Bytes, or with a unit (512MiB,
    /// 2GiB); 0: unlimited.
    #[arg(long, default_value = "512MiB", value_parser = crate::bucket::budget::parse_bytes)]
    pub max_bytes_in_flight: u64,
    /// Seconds PostgreSQL may take to answer a round trip before the
    /// connection is dropped as stalled (a stopped backend never answers,
    /// and no server-side timeout runs in it); a COPY or batch gets 50 µs
    /// more per row. The transaction's files are left busy for a later
    /// pass and the pass goes on with a fresh connection; two stalls in a
    /// row end the pass.
    #[arg(long, value_name = "SECONDS", help_heading = "Database", default_value_t = crate::db::Patience::default().base.as_secs_f64(), allow_negative_numbers = true, value_parser = seconds)]
    #[serde(default = "default_db_timeout")]
    pub db_timeout: f64,
}

fn default_db_timeout() -> f64 {
    crate::db::Patience::default().base.as_secs_f64()
}

impl KnobArgs {
    pub fn knobs(&self) -> Knobs {
        Knobs {
            concurrency: self.concurrency.max(1),
            connections: self.connections.max(1),
            threads: self.threads.max(1),
            write: self.write,
            files_per_transaction: self.files_per_transaction.max(1),
            max_bytes_in_flight: self.max_bytes_in_flight,
            patience: crate::db::Patience::from_secs(self.db_timeout),
        }
    }
}

/// A count of at least one (`--concurrency 0` is refused, not read as 1).
/// The most requests, connections, threads, files per transaction or worker
/// processes a flag may ask for: far past what helps on any machine, and
/// below what would exhaust one (`--threads 4294967297` tried to start that
/// many threads).
pub const MAX_COUNT: usize = 4096;

/// A count of things the program starts or holds at once: at least 1, at
/// most [`MAX_COUNT`].
pub fn count(s: &str) -> Result<usize, String> {
    at_most(at_least_one(s)?, MAX_COUNT, "")
}

/// `v`, or why it is refused: it exceeds `max` (in `unit`).
fn at_most<T: PartialOrd + std::fmt::Display>(v: T, max: T, unit: &str) -> Result<T, String> {
    if v <= max {
        Ok(v)
    } else {
        Err(format!("must be at most {max}{unit}"))
    }
}

/// The most measured (or warm-up) runs a comparison may ask for: days of
/// runs on `seed`, and far below what the runs' bookkeeping can hold
/// (`--warmup 4294967296` aborted on a 64 GB allocation).
pub const MAX_RUNS: usize = 10_000;

/// Measured runs per model: at least 1, at most [`MAX_RUNS`].
pub fn runs(s: &str) -> Result<usize, String> {
    at_most(at_least_one(s)?, MAX_RUNS, "")
}

/// Warm-up runs per model: 0 to [`MAX_RUNS`].
pub fn warmups(s: &str) -> Result<usize, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    runs(s).map_err(|e| {
        if e == "must be at least 1" {
            "must be 0 or more".to_string()
        } else {
            e
        }
    })
}

/// The most files a generated bucket, or records a generated file, may
/// hold: the generator keeps each file's description in memory, and
/// `--files 4294967297` aborted on an 800 GB allocation.
pub const MAX_GENERATED: usize = 1_000_000;

/// A generated bucket's file count or a file's record count: at least 1,
/// at most [`MAX_GENERATED`].
pub fn generated(s: &str) -> Result<usize, String> {
    at_most(at_least_one(s)?, MAX_GENERATED, "")
}

/// A bandwidth in Mbit/s: 0 (unlimited), or at least 1 kbit/s (a slower
/// one would make a single byte's delay overflow the server's clock).
pub fn bandwidth(s: &str) -> Result<f64, String> {
    let v = non_negative_f64(s)?;
    if v == 0.0 || v >= 0.001 {
        Ok(v)
    } else {
        Err("must be 0 (unlimited) or at least 0.001 Mbit/s".into())
    }
}

pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 && n <= usize::MAX as i128 => Ok(n as usize),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

fn number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a number")),
    }
}

/// The longest wait any flag takes, in seconds (about 31 years): a
/// `Duration` cannot hold much more than 10^19, and nothing waits this long.
pub const MAX_SECONDS: f64 = 1e9;

/// A timeout or an interval in seconds: above zero, at most [`MAX_SECONDS`].
pub fn seconds(s: &str) -> Result<f64, String> {
    at_most(positive_f64(s)?, MAX_SECONDS, " seconds")
}

/// A number of seconds where zero means "none": at most [`MAX_SECONDS`].
pub fn seconds_or_zero(s: &str) -> Result<f64, String> {
    at_most(non_negative_f64(s)?, MAX_SECONDS, " seconds")
}

/// A simulated delay in milliseconds: zero allowed, at most
/// [`MAX_SECONDS`] in all.
pub fn milliseconds(s: &str) -> Result<f64, String> {
    at_most(non_negative_f64(s)?, MAX_SECONDS * 1000.0, " milliseconds")
}

/// A number of seconds or a rate that must be above zero.
pub fn positive_f64(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("must be greater than 0".into())
    }
}

/// A delay or a bandwidth: zero allowed, negative refused.
pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err("must not be negative".into())
    }
}

/// A share between 0 and 1.
pub fn share(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

/// `-v`/`-q`: how much is logged. Given, they override `RUST_LOG` (a flag
/// typed is the later word); without them `RUST_LOG` decides, `warn` when unset.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Output")]
pub struct Verbosity {
    /// More logs: -v info (each retry, each step), -vv debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Errors only: no warnings, no progress bars, no informational lines.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Verbosity {
    /// The log level these flags ask for.
    pub fn level(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "info",
            (false, _) => "debug",
        }
    }

    /// Starts logging: `RUST_LOG` when set and no flag was given, else the
    /// flags' level.
    pub fn init_logging(&self) {
        if self.quiet || self.verbose > 0 {
            init_logging_with(Some(self.level()));
        } else {
            init_logging();
        }
    }
}

/// Crates whose own logging prints request URLs (presigned: with the AWS
/// key ID, session token and signature), headers or connection details at
/// debug and trace. They are held at `info` whatever `RUST_LOG` asks.
/// Targets match by prefix: `ureq` covers `ureq_proto`, `hyper` covers
/// `hyper_util` and `hyper_rustls`.
const CHATTY_CLIENTS: &[&str] = &[
    "ureq",
    "reqwest",
    "hyper",
    "h2",
    "http",
    "rustls",
    "tokio_postgres",
    "postgres",
    "deadpool",
    "tower",
];

/// Logs go to stderr, at `warn` unless `RUST_LOG` says otherwise, so they
/// never mix with `--json` on stdout. Two guards keep secrets out of them:
/// the HTTP and database clients are capped at `info` (a second filter, so
/// no `RUST_LOG` directive, however specific, lifts it), and every line is
/// passed through [`crate::secret::redact_text`] on its way out.
pub fn init_logging() {
    init_logging_with(None)
}

/// [`init_logging`] at `level` whatever `RUST_LOG` says, when given.
pub fn init_logging_with(level: Option<&str>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let wanted = match level {
        Some(l) => l.into(),
        None => {
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into())
        }
    };
    let cap = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CHATTY_CLIENTS.iter().map(|t| (*t, LevelFilter::INFO)))
        // A pooled connection that ends is met, and said in the project's
        // words with the server named, by the writer that next uses it;
        // deadpool's own line names no server, one per idle connection.
        .with_target("deadpool.postgres", LevelFilter::ERROR);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| RedactingStderr(std::io::stderr()))
        .with_filter(wanted.and(cap));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Standard error with secrets removed from each log line. The fmt layer
/// formats an event whole and hands it over in one write, so a secret is
/// never split between two writes.
struct RedactingStderr(std::io::Stderr);

/// Set, under its lock, when [`exit_with`] says the line that ends the run:
/// a log line a thread still at work writes after it (the listing's, whose
/// first request goes out beside the database's connection) is dropped, so
/// the error stays the last line.
static LAST_WORD: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Being interrupted: the servers are stopping under the workers,
        // whose complaints would bury the one line that matters.
        if crate::db::embedded::interrupted() {
            return Ok(buf.len());
        }
        let said = LAST_WORD.lock().unwrap_or_else(|p| p.into_inner());
        if *said {
            return Ok(buf.len());
        }
        let line = crate::secret::redact_text(&String::from_utf8_lossy(buf));
        crate::pass::with_bar_hidden(|| self.0.write_all(line.as_bytes()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Prints `error: <cause chain on one line>`, secrets removed, and exits
/// non-zero (128 + the signal when the run was interrupted, like a shell: 130 for Ctrl-C).
pub fn exit_with(e: anyhow::Error) -> ! {
    if crate::db::embedded::interrupted() {
        crate::db::embedded::exit_interrupted();
    }
    // Held to the exit: no log line can follow this one.
    let mut said = LAST_WORD.lock().unwrap_or_else(|p| p.into_inner());
    *said = true;
    crate::esayln!(
        "error: {}",
        crate::secret::redact_text(&crate::error::chain(&*e))
    );
    std::process::exit(1);
}

/// Prints `bin`'s completion script for `shell` on stdout (`--completions`,
/// `bucket completions`).
pub fn print_completions<A: clap::CommandFactory>(shell: clap_complete::Shell, bin: &str) {
    // Into a buffer first: `generate` panics when stdout's reader has gone
    // (`ingest --completions bash | head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut A::command(), bin, &mut script);
    crate::say!("{}", String::from_utf8_lossy(&script));
}

/// Which simulated bucket to generate.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Simulated bucket")]
pub struct SpecArgs {
    /// Bucket profile.
    #[arg(long, value_enum, default_value = "seed")]
    pub profile: crate::sim::ProfileName,
    /// Generator seed: the same profile and seed give byte-identical objects.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Override the profile's file count.
    #[arg(long, allow_negative_numbers = true, value_parser = generated)]
    pub files: Option<usize>,
    /// Override the profile's median records per file.
    #[arg(long, allow_negative_numbers = true, value_parser = generated)]
    pub records: Option<usize>,
}

/// The most records a generated bucket may hold in all (files × records
/// per file): about 3 GB of JSON, which the simulated bucket holds in
/// memory. Each of `--files` and `--records` alone is capped at
/// [`MAX_GENERATED`], but their product was not, and `--files 1000000
/// --records 1000000` grew until the allocator failed.
pub const MAX_GENERATED_RECORDS: usize = 20_000_000;

impl SpecArgs {
    /// The bucket these flags describe, or why it is refused: too large to
    /// hold in memory.
    pub fn spec(&self) -> anyhow::Result<crate::sim::Spec> {
        let spec =
            crate::sim::Spec::new(self.profile, self.seed).with_overrides(self.files, self.records);
        let total = spec.files.saturating_mul(spec.records);
        anyhow::ensure!(
            total <= MAX_GENERATED_RECORDS,
            "a bucket of {} files × {} records ({total} records) is more than the {MAX_GENERATED_RECORDS} records a generated bucket may hold (it is held in memory); lower --files or --records",
            spec.files,
            spec.records
        );
        Ok(spec)
    }
}

/// What the `custom` network preset starts from where a flag does not say
/// otherwise (the fixed network `compare` used before the presets): 60 ms to
/// first byte with 20 ms of jitter, and 100 Mbit/s per connection.
pub const DEFAULT_NETWORK: crate::sim::Conditions = crate::sim::Conditions {
    latency_ms: 60.0,
    jitter_ms: 20.0,
    bandwidth_mbps: 100.0,
    error_rate: 0.0,
    stall_rate: 0.0,
};

/// Network conditions the simulated bucket injects per request.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Simulated network")]
pub struct NetArgs {
    /// Time to first byte, in milliseconds (fixed; replaces the preset's
    /// distribution). [default: the preset's; 60 with custom]
    #[arg(long, allow_negative_numbers = true, value_parser = milliseconds)]
    pub latency_ms: Option<f64>,
    /// Extra uniform random delay up to this many milliseconds.
    /// [default: the preset's; 20 with custom]
    #[arg(long, allow_negative_numbers = true, value_parser = milliseconds)]
    pub jitter_ms: Option<f64>,
    /// Bandwidth per connection in megabits per second (0: unlimited).
    /// [default: the preset's; 100 with custom]
    #[arg(long, allow_negative_numbers = true, value_parser = bandwidth)]
    pub bandwidth_mbps: Option<f64>,
    /// Share of requests answered 500/503 or cut mid-body (0 to 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = share)]
    pub error_rate: f64,
    /// Share of requests that never answer (0 to 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = share)]
    pub stall_rate: f64,
}

impl NetArgs {
    /// The conditions, with `defaults` filling what was not given.
    pub fn conditions(&self, defaults: crate::sim::Conditions) -> crate::sim::Conditions {
        crate::sim::Conditions {
            latency_ms: self.latency_ms.unwrap_or(defaults.latency_ms),
            jitter_ms: self.jitter_ms.unwrap_or(defaults.jitter_ms),
            bandwidth_mbps: self.bandwidth_mbps.unwrap_or(defaults.bandwidth_mbps),
            error_rate: self.error_rate.clamp(0.0, 1.0),
            stall_rate: self.stall_rate.clamp(0.0, 1.0),
        }
    }
}

/// S3 API mode options (for `--bucket s3://NAME[/PREFIX]`). Credentials come
/// from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`;
/// without them requests are anonymous.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[command(next_help_heading = "S3 API mode")]
pub struct S3Args {
    /// S3 endpoint for S3-compatible stores (MinIO, Ceph, R2, moto); default
    /// AWS_ENDPOINT_URL, then AWS itself.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Region; default AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1.
    #[arg(long)]
    pub region: Option<String>,
    /// Path-style URLs even on AWS (always used for custom endpoints).
    #[arg(long)]
    pub path_style: bool,
    /// Only load keys ending with this (S3 listing).
    #[arg(long, default_value = ".json")]
    pub suffix: String,
    /// List keys from this manifest object instead of ListObjectsV2.
    #[arg(long)]
    pub manifest: Option<String>,
}

impl S3Args {
    pub fn options(&self) -> crate::bucket::S3Options {
        crate::bucket::S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            suffix: Some(self.suffix.clone()),
            manifest: self.manifest.clone(),
        }
    }
}

/// `--db-ca-file`: the PEM CAs to trust, alone, for the database's TLS
/// certificate.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Database")]
pub struct DbTlsArgs {
    /// PEM file of the CA that signed the PostgreSQL server's certificate
    /// (default PGSSLROOTCERT), trusted in place of the public roots, as
    /// libpq's sslrootcert is. TLS is used whenever the server offers it
    /// and always verified.
    #[arg(long)]
    pub db_ca_file: Option<PathBuf>,
}

impl DbTlsArgs {
    pub fn apply(&self) {
        if let Some(p) = &self.db_ca_file {
            crate::db::tls::set_ca_file(p);
        }
    }
}
