//! Command-line pieces shared by the binaries: client and database options,
//! logging set-up, and the one-line error exit.

use std::path::PathBuf;
use std::time::Duration;

use crate::bucket::{ClientConfig, RetryPolicy};
use crate::models::Knobs;

/// HTTP client options.
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct ClientArgs {
    /// Largest object to download, in bytes; larger ones are refused while
    /// streaming and recorded as failed.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub max_object_bytes: u64,
    /// Attempts per request, the first included (5xx, timeouts and resets
    /// are retried with exponential backoff and jitter).
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    /// Seconds to wait for response headers before retrying on a fresh
    /// connection.
    #[arg(long, default_value_t = 2.0)]
    pub first_byte_timeout: f64,
    /// PEM file of extra root certificates to trust (TLS is always verified).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

impl ClientArgs {
    pub fn config(&self) -> ClientConfig {
        ClientConfig {
            max_object_bytes: self.max_object_bytes,
            first_byte_timeout: Duration::from_secs_f64(self.first_byte_timeout.max(0.001)),
            retry: RetryPolicy {
                max_attempts: self.attempts.max(1),
                ..RetryPolicy::default()
            },
            ca_file: self.ca_file.clone(),
            ..ClientConfig::default()
        }
    }
}

/// Concurrency knobs of the execution models.
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct KnobArgs {
    /// Files in flight in the async models.
    #[arg(long, default_value_t = Knobs::default().concurrency)]
    pub concurrency: usize,
    /// Database connections in the `async` model's pool.
    #[arg(long, default_value_t = Knobs::default().connections)]
    pub connections: usize,
    /// Worker threads in the `threads` model.
    #[arg(long, default_value_t = Knobs::default().threads)]
    pub threads: usize,
    /// How rows are written: a prepared INSERT per row, UNNEST batches, or COPY.
    #[arg(long, value_enum, default_value = "copy")]
    pub write: crate::db::WriteStrategy,
    /// Files one transaction may carry in the `async` model (group commit:
    /// each file still commits whole or not at all). 1: a transaction per file.
    #[arg(long, default_value_t = Knobs::default().files_per_transaction)]
    pub files_per_transaction: usize,
}

impl KnobArgs {
    pub fn knobs(&self) -> Knobs {
        Knobs {
            concurrency: self.concurrency.max(1),
            connections: self.connections.max(1),
            threads: self.threads.max(1),
            write: self.write,
            files_per_transaction: self.files_per_transaction.max(1),
        }
    }
}

/// Logs go to stderr, at `warn` unless `RUST_LOG` says otherwise, so they
/// never mix with `--json` on stdout.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints `error: <cause chain on one line>` and exits non-zero.
pub fn exit_with(e: anyhow::Error) -> ! {
    eprintln!("error: {}", crate::error::chain(&*e));
    std::process::exit(1);
}

/// Which simulated bucket to generate.
#[derive(Debug, Clone, clap::Args)]
pub struct SpecArgs {
    /// Bucket profile.
    #[arg(long, value_enum, default_value = "seed")]
    pub profile: crate::sim::ProfileName,
    /// Generator seed: the same profile and seed give byte-identical objects.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Override the profile's file count.
    #[arg(long)]
    pub files: Option<usize>,
    /// Override the profile's median records per file.
    #[arg(long)]
    pub records: Option<usize>,
}

impl SpecArgs {
    pub fn spec(&self) -> crate::sim::Spec {
        crate::sim::Spec::new(self.profile, self.seed).with_overrides(self.files, self.records)
    }
}

/// Network conditions the simulated bucket injects per request.
#[derive(Debug, Clone, clap::Args)]
pub struct NetArgs {
    /// Time to first byte, in milliseconds.
    #[arg(long)]
    pub latency_ms: Option<f64>,
    /// Extra uniform random delay up to this many milliseconds.
    #[arg(long)]
    pub jitter_ms: Option<f64>,
    /// Bandwidth per connection in megabits per second (0: unlimited).
    #[arg(long)]
    pub bandwidth_mbps: Option<f64>,
    /// Share of requests answered 500/503 or cut mid-body (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests that never answer (0 to 1).
    #[arg(long, default_value_t = 0.0)]
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

/// `--db-ca-file`: a PEM CA to trust for the database's TLS certificate.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DbTlsArgs {
    /// PEM file of the CA that signed the PostgreSQL server's certificate
    /// (default PGSSLROOTCERT). TLS is used whenever the server offers it
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
