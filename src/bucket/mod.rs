//! The bucket client: where the keys come from (a manifest or, later,
//! ListObjectsV2), how each object is fetched, and what to do when the
//! network misbehaves.
//!
//! `manifest`, `location` and `retry` are sans-IO; `sync_client` (ureq) and
//! `async_client` (reqwest) are the two HTTP shells the models use.

pub mod async_client;
pub mod budget;
pub mod list;
pub mod location;
pub mod manifest;
pub mod retry;
pub mod sync_client;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use location::{BucketLocation, S3Options};
pub use retry::RetryPolicy;

/// One object to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub key: String,
    /// Known from a listing; manifest mode learns it from the GET.
    pub etag: Option<String>,
}

/// Client settings shared by both HTTP clients.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Objects larger than this are refused while streaming.
    pub max_object_bytes: u64,
    pub connect_timeout: Duration,
    /// Time allowed until the response headers arrive. AWS's guidance for
    /// S3: a small GET slower than about 2 s is worth retrying on a fresh
    /// connection.
    pub first_byte_timeout: Duration,
    /// Longest silence allowed between two reads of a body.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    /// Extra PEM root certificates to trust (for a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_object_bytes: 256 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            ca_file: None,
        }
    }
}

/// The result of a GET that did not fail.
#[derive(Debug)]
pub enum Fetched {
    Object {
        bytes: Vec<u8>,
        etag: Option<String>,
        /// The body's share of the pass's byte budget, held until the
        /// file is written.
        held: budget::Reservation,
    },
    /// 404: listed but gone. Skipped and reported, never fatal.
    Missing,
}

/// Why a GET failed after its retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The object is bigger than `max_object_bytes`. Permanent.
    #[error("object is larger than the {limit}-byte limit (raise it with --max-object-bytes)")]
    TooLarge { limit: u64 },
    /// The server refused us (401/403). Permanent for this run.
    #[error("access denied ({0})")]
    Denied(String),
    /// A 4xx other than 404/403/429. Permanent.
    #[error("{0}")]
    Client(String),
    /// 5xx, timeouts, resets, refused connections: still failing after every retry.
    #[error("{0} (gave up after {1} attempts)")]
    Transient(String, u32),
}

impl FetchError {
    /// A failure that is a property of the object itself, so retrying on
    /// the next pass would fail the same way: the ledger records it.
    pub fn is_object_fault(&self) -> bool {
        matches!(self, FetchError::TooLarge { .. })
    }
}

/// Network counters for a pass, shared by the workers of a model.
#[derive(Debug, Default)]
pub struct NetStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
}

impl NetStats {
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
