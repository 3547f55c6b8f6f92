//! The bucket client: where the keys come from (a manifest or, later,
//! ListObjectsV2), how each object is fetched, and what to do when the
//! network misbehaves.
//!
//! `manifest`, `location` and `retry` are sans-IO; `sync_client` (ureq) and
//! `async_client` (reqwest) are the two HTTP shells the models use.

pub mod async_client;
pub mod breaker;
pub mod budget;
pub mod list;
pub mod location;
pub mod manifest;
pub mod parts;
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
    /// When the pass last asked the ledger about this key (the listing's
    /// subtraction); `None`: never.
    pub ledger_asked: Option<std::time::Instant>,
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
    /// Time allowed until the headers of a listing page or manifest arrive.
    /// Longer than an object's: the server builds a whole page of 1000 keys
    /// before it answers, and S3-compatible servers (MinIO, moto, Ceph)
    /// take seconds to do it when busy. Giving up at 2 s would fail the
    /// whole pass on a slow page that was on its way.
    pub list_timeout: Duration,
    /// Longest silence allowed between two reads of a body.
    pub read_timeout: Duration,
    /// The time any download may take, whatever its size: the floor of
    /// its total deadline (see [`ClientConfig::download_deadline`]).
    pub download_timeout: Duration,
    /// The slowest average rate, in bytes a second, a download may keep
    /// beyond the floor: a body trickling slower than this is given up on
    /// and retried, since a per-read timeout never fires on a trickle.
    pub min_download_rate: u64,
    pub retry: RetryPolicy,
    /// PEM root certificates trusted instead of the built-in roots (a
    /// private CA): the bucket, and any host it redirects to, must chain
    /// to one of them.
    pub ca_file: Option<std::path::PathBuf>,
    /// When the bucket is declared unreachable and the pass stops.
    pub breaker: breaker::BreakerConfig,
    /// Refuse plain-HTTP URLs, redirects included: set for a bucket given
    /// as https, so that a redirect cannot take the rest of a download off
    /// TLS.
    pub https_only: bool,
    /// At most this many byte-range requests beside an object's GET, to
    /// fetch the rest of a large body over more connections when it would
    /// take longer on one than another request takes to answer (see
    /// [`parts`]); 0: one GET per object. The `sync` model sets 0: it
    /// makes one request at a time.
    pub ranged_parts: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_object_bytes: 256 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(2),
            list_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(10),
            download_timeout: Duration::from_secs(30),
            min_download_rate: 64 * 1024,
            retry: RetryPolicy::default(),
            ca_file: None,
            breaker: breaker::BreakerConfig::default(),
            https_only: false,
            ranged_parts: parts::DEFAULT_PARTS,
        }
    }
}

impl ClientConfig {
    /// How long a download may have run, headers included, once `received`
    /// bytes of it have arrived: the floor plus those bytes at the minimum
    /// rate. The deadline grows only with what arrives, never with what the
    /// server announces: a `Content-Length` of 256 MiB sent a byte every
    /// few seconds had bought over an hour an attempt.
    pub fn download_deadline(&self, received: u64) -> Duration {
        let rate = self.min_download_rate.max(1) as f64;
        self.download_timeout
            // A hostile length (2^64 - 1) must not overflow the Duration.
            .saturating_add(
                Duration::try_from_secs_f64(received as f64 / rate).unwrap_or(Duration::MAX),
            )
    }

    /// The one-line reason a download ran out of time.
    pub(crate) fn too_slow(
        &self,
        url: &str,
        received: u64,
        declared: Option<u64>,
        elapsed: Duration,
    ) -> String {
        let of = declared.map_or(String::new(), |n| format!(" of {n}"));
        format!(
            "download of {} too slow: {received}{of} bytes in {:.1} s, past its {:.1} s deadline ({:.0} s plus what arrived at {} bytes/s; see --download-timeout, --min-download-rate)",
            location::shown(url),
            elapsed.as_secs_f64(),
            self.download_deadline(received).as_secs_f64(),
            self.download_timeout.as_secs_f64(),
            self.min_download_rate,
        )
    }
}

/// Whether a body that arrived whole by the transport's account still
/// ended before its JSON value did. Only a close-delimited body (no
/// Content-Length, not chunked) needs asking: there the end of the
/// connection is the end of the body, so a connection dropped midway looks
/// like a complete response. Such a body is retried, not recorded as a bad
/// file. A body that is complete but not JSON is not cut short: it is the
/// file's fault and the parser reports it.
pub fn json_cut_short(body: &[u8]) -> bool {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => false,
        Err(e) => e.classify() == serde_json::error::Category::Eof,
    }
}

/// How a response's body is encoded (`Content-Encoding`). The clients
/// decode gzip themselves, after the body is in, rather than letting the
/// HTTP libraries do it as it streams: the download deadline must count
/// the bytes that crossed the wire. Counted after inflating, 200 KB of
/// gzip that inflates to 200 MiB bought the trickle after it an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    /// Anything else (deflate, br, made up): passed on as it came, so a
    /// body nobody asked to be so encoded fails as the malformed file it is.
    Other,
}

impl Encoding {
    pub(crate) fn of(headers: &ureq::http::HeaderMap) -> Encoding {
        match headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("" | "identity") => Encoding::Identity,
            Some("gzip" | "x-gzip") => Encoding::Gzip,
            Some(_) => Encoding::Other,
        }
    }

    /// The body as the object holds it: gzip inflated to at most `limit`
    /// bytes (a bomb is refused as too large, however small on the wire);
    /// anything else as it came. In one go, outside any budget: for
    /// bodies a pass does not hold memory for (a listing, a manifest).
    pub(crate) fn decode(
        self,
        body: Vec<u8>,
        url: &str,
        limit: u64,
    ) -> Result<Vec<u8>, sync_client::Attempt> {
        if self != Encoding::Gzip {
            return Ok(body);
        }
        let mut inflating = Inflating::new(body, limit);
        inflating.inflate(u64::MAX, url)?;
        Ok(inflating.out)
    }

    /// [`Encoding::decode`] for an object's body, which grows its share of
    /// the budget, `held`, as it inflates ([`grown`]).
    pub(crate) fn decode_within(
        self,
        body: Vec<u8>,
        url: &str,
        limit: u64,
        budget: &budget::Budget,
        held: &mut budget::Reservation,
        learnt: &mut Option<u64>,
    ) -> Result<Vec<u8>, sync_client::Attempt> {
        if self != Encoding::Gzip {
            return Ok(body);
        }
        let mut inflating = Inflating::new(body, limit);
        while !inflating.inflate(budget.room(held), url)? {
            grown(budget, held, inflating.len() + 1, limit, learnt)?;
        }
        Ok(inflating.into_body())
    }
}

/// Grows `held` to cover `len` bytes of a body while the budget has room;
/// when it has none, the body is to be dropped ([`sync_client::Attempt::Outgrew`])
/// and `learnt` says what its next fetch reserves first.
pub(crate) fn grown(
    budget: &budget::Budget,
    held: &mut budget::Reservation,
    len: u64,
    limit: u64,
    learnt: &mut Option<u64>,
) -> Result<(), sync_client::Attempt> {
    if budget.try_grow(held, len, limit) {
        return Ok(());
    }
    *learnt = Some(len.saturating_mul(2));
    Err(sync_client::Attempt::Outgrew)
}

/// A gzip body being inflated in steps, so that the memory it grows into
/// can be reserved as it grows ([`budget::Budget::try_grow`]): what a body
/// inflates to is known only once it has.
pub(crate) struct Inflating {
    decoder: flate2::read::MultiGzDecoder<std::io::Cursor<Vec<u8>>>,
    out: Vec<u8>,
    limit: u64,
}

impl Inflating {
    pub(crate) fn new(body: Vec<u8>, limit: u64) -> Self {
        Inflating {
            out: Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize)),
            decoder: flate2::read::MultiGzDecoder::new(std::io::Cursor::new(body)),
            limit,
        }
    }

    /// Bytes inflated so far.
    pub(crate) fn len(&self) -> u64 {
        self.out.len() as u64
    }

    /// Inflates until `room` bytes are out or the stream ends: `true` when
    /// it ended (the body is [`Inflating::into_body`]).
    pub(crate) fn inflate(&mut self, room: u64, url: &str) -> Result<bool, sync_client::Attempt> {
        use std::io::Read as _;
        let cap = room.min(self.limit.saturating_add(1));
        let want = cap.saturating_sub(self.len());
        let n = (&mut self.decoder)
            .take(want)
            .read_to_end(&mut self.out)
            // A gzip stream cut short or garbled: the server's fault, or
            // the network's, not the object's, so tried again.
            .map_err(|e| {
                sync_client::Attempt::Retry(format!(
                    "gzip body of {} does not inflate: {e}",
                    location::shown(url)
                ))
            })?;
        if self.len() > self.limit {
            return Err(sync_client::Attempt::Fail(FetchError::TooLarge {
                limit: self.limit,
            }));
        }
        Ok((n as u64) < want)
    }

    pub(crate) fn into_body(self) -> Vec<u8> {
        self.out
    }
}

/// Whether a response's body is delimited by the connection closing: no
/// Content-Length and no chunked transfer coding.
pub(crate) fn close_delimited(headers: &ureq::http::HeaderMap) -> bool {
    let chunked = headers.get_all("transfer-encoding").iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    !chunked && !headers.contains_key("content-length")
}

/// The result of a GET that did not fail.
#[derive(Debug)]
pub enum Fetched {
    Object {
        bytes: Vec<u8>,
        /// The object's version: its ETag or, without one, its
        /// Last-Modified (what the ledger's `etag` column compares).
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
    #[error("{} (gave up after {})", .0, crate::report::plural(u64::from(*.1), "attempt", "attempts"))]
    Transient(String, u32),
    /// Never sent: the pass's breaker had declared the bucket unreachable.
    #[error("not attempted: the bucket is unreachable")]
    NotAttempted,
}

impl FetchError {
    /// A TLS certificate the client refused (unknown CA, wrong name,
    /// expired): permanent, and the fix is usually a private CA to trust.
    pub(crate) fn certificate_refused(text: &str) -> Self {
        FetchError::Client(format!(
            "TLS error: {text} (the server's certificate is not trusted; for a private CA, give its PEM with --ca-file)"
        ))
    }

    /// A failure that is a property of the object itself, so retrying on
    /// the next pass would fail the same way: the ledger records it.
    pub fn is_object_fault(&self) -> bool {
        matches!(self, FetchError::TooLarge { .. })
    }
}

/// Network counters for a pass, shared by the workers of a model, with
/// the pass's breaker and retry log (state every client of a pass shares).
#[derive(Debug, Default)]
pub struct NetStats {
    pub requests: AtomicU64,
    /// Of `requests`, byte ranges asked for beside an object's GET.
    pub ranged: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
    /// Declares the bucket unreachable (see [`breaker`]).
    pub breaker: breaker::Breaker,
    /// Says retries at `warn`, at most one line a second.
    pub(crate) retry_log: retry::RetryLog,
    /// Whether to say when the first object's body is in (a `compare`
    /// worker: [`crate::report::FIRST_BODY_IN`]), and whether it was said.
    pub say_first_body: std::sync::atomic::AtomicBool,
    first_body: std::sync::OnceLock<()>,
    /// When the pass began, for the time the first body is said at.
    pub pass_started: std::sync::OnceLock<std::time::Instant>,
    /// Held while the pass's database has yet to answer: no retry is said
    /// (nor made) until then (see [`NetStats::hold_retries`]).
    database: Verdict,
}

/// Whether retries may go on (`Some(true)`, unless held), once known.
#[derive(Debug)]
struct Verdict {
    state: std::sync::Mutex<Option<bool>>,
    changed: std::sync::Condvar,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            state: std::sync::Mutex::new(Some(true)),
            changed: std::sync::Condvar::new(),
        }
    }
}

/// See [`NetStats::hold_retries`].
#[must_use = "dropped at once, it gives the held retries up"]
pub struct Held<'a>(&'a Verdict);

impl Held<'_> {
    /// The database answered: the held retries go on.
    pub fn answered(self) {
        self.settle(true);
    }

    fn settle(&self, go: bool) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            *state = Some(go);
            self.0.changed.notify_all();
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.settle(false);
    }
}

impl NetStats {
    /// A pass's counters, with its breaker set as `cfg` says.
    pub fn new(cfg: &ClientConfig) -> Self {
        NetStats {
            breaker: breaker::Breaker::new(cfg.breaker.clone()),
            ..NetStats::default()
        }
    }

    /// An object's body is in, whole: the first one is said when asked.
    pub(crate) fn body_in(&self) {
        if self.say_first_body.load(Ordering::Relaxed) {
            self.first_body.get_or_init(|| {
                let secs = self
                    .pass_started
                    .get()
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                crate::esayln!("{}", crate::report::first_body_line(secs));
            });
        }
    }

    /// Holds every retry until the returned guard says whether the pass's
    /// database answered: the listing's first request goes out beside the
    /// database's connection, but a pass whose database is gone still says
    /// so first, in one line, with no bucket warning before it. Dropped
    /// without [`Held::answered`], the held retries give up, unsaid.
    pub fn hold_retries(&self) -> Held<'_> {
        *self
            .database
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        Held(&self.database)
    }

    /// Whether retries may go on: waits while they are held.
    pub(crate) fn may_retry(&self) -> bool {
        let mut state = self
            .database
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            match *state {
                Some(go) => return go,
                None => {
                    state = self
                        .database
                        .changed
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner())
                }
            }
        }
    }

    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
