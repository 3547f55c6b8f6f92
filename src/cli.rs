//! Command-line pieces shared by the binaries: client and database options,
//! logging set-up, and the one-line error exit.

use std::path::PathBuf;
use std::time::Duration;

use crate::bucket::{ClientConfig, RetryPolicy};
use crate::models::Knobs;

/// HTTP client options.
#[derive(Debug, Clone, clap::Args)]
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
            retry: RetryPolicy { max_attempts: self.attempts.max(1), ..RetryPolicy::default() },
            ca_file: self.ca_file.clone(),
            ..ClientConfig::default()
        }
    }
}

/// Concurrency knobs of the execution models.
#[derive(Debug, Clone, clap::Args)]
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
}

impl KnobArgs {
    pub fn knobs(&self) -> Knobs {
        Knobs { concurrency: self.concurrency.max(1), connections: self.connections.max(1), threads: self.threads.max(1) }
    }
}

/// Logs go to stderr, at `warn` unless `RUST_LOG` says otherwise, so they
/// never mix with `--json` on stdout.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Prints `error: <cause chain on one line>` and exits non-zero.
pub fn exit_with(e: anyhow::Error) -> ! {
    eprintln!("error: {}", crate::report::chain(&e));
    std::process::exit(1);
}
