//! The blocking HTTP client (ureq), used by the `sync` and `threads` models.

use std::sync::Arc;

use anyhow::Context;

use super::breaker::Lost;
use super::budget::Budget;
use super::location::shown;
use super::{ClientConfig, FetchError, Fetched, NetStats};

/// One attempt's failure, classified for the retry loop.
pub(crate) enum Attempt {
    /// An answer worth trying again (5xx, 429, a body cut short).
    Retry(String),
    /// No answer: a transport failure, retried and counted by the breaker.
    Lost(String, Lost),
    Fail(FetchError),
    /// Not a failure: the body grew past its share of the byte budget
    /// while none was free ([`super::budget::Budget::try_grow`]); it is
    /// fetched again, with a first share of the size it showed.
    Outgrew,
}

impl Attempt {
    /// The failure in one line, whatever its kind.
    pub(crate) fn said(self) -> String {
        match self {
            Attempt::Retry(why) | Attempt::Lost(why, _) => why,
            Attempt::Fail(f) => f.to_string(),
            Attempt::Outgrew => "the body outgrew its share of --max-bytes-in-flight".into(),
        }
    }
}

/// Whether [`SyncClient::get_raw`] follows a redirect or answers with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// A manifest may sit behind a redirect (a CDN, a moved site).
    Follow,
    /// S3's answers are read as they come: its 301 is an error in XML.
    Answer,
}

/// An answer [`SyncClient::get_raw`] leaves to its caller to interpret.
pub struct RawResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Where a redirect points (`Location`), when it is not followed.
    pub location: Option<String>,
    /// The region S3 says the bucket is in (`x-amz-bucket-region`), sent
    /// with its wrong-region answers.
    pub bucket_region: Option<String>,
    /// Sent with neither a length nor chunks, the connection closed to end
    /// it (HTTP/1.0's framing): a body cut short looks whole.
    pub close_delimited: bool,
}

/// A ureq agent with bucketbench's timeouts, TLS roots and retry policy.
/// Cheap to clone; clones share the connection pool and the counters.
#[derive(Clone)]
pub struct SyncClient {
    agent: ureq::Agent,
    cfg: ClientConfig,
    pub stats: Arc<NetStats>,
    budget: Budget,
}

/// PEM certificates from `--ca-file`, added to the default roots' place.
pub(crate) fn read_ca_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading --ca-file {}", path.display()))
}

/// A silence longer than the whole download timeout is past any deadline
/// already.
fn per_read(cfg: &ClientConfig) -> std::time::Duration {
    cfg.read_timeout.min(cfg.download_timeout)
}

impl SyncClient {
    pub fn new(cfg: ClientConfig, stats: Arc<NetStats>) -> anyhow::Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &cfg.ca_file {
            let pem = read_ca_file(path)?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                anyhow::bail!("--ca-file {} holds no PEM certificate", path.display());
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_recv_response(Some(cfg.first_byte_timeout))
            .timeout_per_read(Some(per_read(&cfg)))
            // The threads model keeps one connection per thread alive.
            .max_idle_connections(1024)
            .max_idle_connections_per_host(1024)
            .user_agent(concat!("bucketbench/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .https_only(cfg.https_only)
            // Followed by `following`, by the rule both clients share.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build()
            .into();
        Ok(SyncClient {
            agent,
            cfg,
            stats,
            budget: Budget::unlimited(),
        })
    }

    /// Bodies read by [`SyncClient::get`] reserve their footprint from
    /// `budget` first (unlimited by default).
    pub fn with_budget(self, budget: Budget) -> Self {
        SyncClient { budget, ..self }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn per_read(&self) -> std::time::Duration {
        per_read(&self.cfg)
    }

    /// GETs a listing page or manifest at `url`, waiting up to
    /// `list_timeout` for its headers, with retries on transient failures
    /// only, returning any other answer's status, Content-Type and body for the caller to
    /// interpret (the listing turns S3's XML errors into words and refuses
    /// an HTML page for a manifest). `redirects` says whether a redirect is
    /// followed or answered: S3 says a bucket is in another region with a
    /// 301 that names no `Location`, which a followed redirect turns into a
    /// protocol error retried five times, with the words lost.
    pub fn get_raw(&self, url: &str, redirects: Redirects) -> Result<RawResponse, FetchError> {
        self.with_retries(url, true, || {
            let send = |at: &str| {
                self.agent
                    .get(at)
                    .header("accept-encoding", "gzip")
                    .config()
                    .timeout_recv_response(Some(self.cfg.list_timeout))
                    // ureq's per-read timeout covers the wait for headers too.
                    .timeout_per_read(Some(self.cfg.list_timeout.max(self.per_read())))
                    .build()
                    .call()
            };
            let mut resp = match redirects {
                Redirects::Follow => following(url, send)?,
                Redirects::Answer => send(url).map_err(classify)?,
            };
            let status = resp.status().as_u16();
            if matches!(status, 408 | 429) {
                return Err(Attempt::Retry(format!("HTTP {status} for {}", shown(url))));
            }
            // Part of a listing is not the listing: its cut last line would
            // be taken for a key, and the keys after it silently lost.
            if status == 206 {
                return Err(Attempt::Retry(format!(
                    "HTTP 206 Partial Content for {}, which asked for the whole listing",
                    shown(url)
                )));
            }
            if (500..=599).contains(&status) {
                return Err(Attempt::Lost(
                    format!("HTTP {status} for {}", shown(url)),
                    super::breaker::Lost::ServerError,
                ));
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header("content-type");
            let location = header("location");
            let bucket_region = header("x-amz-bucket-region");
            let declared = declared_length(resp.headers());
            let close_delimited = super::close_delimited(resp.headers());
            let encoding = super::Encoding::of(resp.headers());
            // The headers had their own, longer wait; the body's deadline
            // starts once they are in.
            let started = std::time::Instant::now();
            let limit = self.cfg.max_object_bytes;
            let body = self.read_body(&mut resp, url, started, None, declared, limit)?;
            let body = encoding.decode(body, url, limit)?;
            Ok(RawResponse {
                status,
                content_type,
                body,
                location,
                bucket_region,
                close_delimited,
            })
        })
    }

    fn with_retries<T>(
        &self,
        url: &str,
        announce: bool,
        mut attempt_once: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, FetchError> {
        let mut retrier = super::retry::Retrier::new(&self.cfg.retry, &self.stats, url);
        if announce {
            retrier = retrier.announced();
        }
        loop {
            retrier.begin()?;
            match attempt_once() {
                Ok(f) => {
                    retrier.succeeded();
                    return Ok(f);
                }
                Err(failure) => self.stats.breaker.sleep_blocking(retrier.failed(failure)?),
            }
        }
    }

    /// Reads a body of at most `limit` bytes within its total deadline
    /// (`ClientConfig::download_deadline`), counting the bytes. Objects and
    /// listings alike: a listing trickled a byte a second must not hold a
    /// pass any more than an object may. With `grown`, the body grows its share of the budget as it arrives,
    /// and when none is free it is dropped ([`Attempt::Outgrew`]), with
    /// what the next fetch of it reserves first (none: a body outside the
    /// budget, a listing's).
    fn read_body(
        &self,
        resp: &mut ureq::http::Response<ureq::Body>,
        url: &str,
        started: std::time::Instant,
        mut grown: Option<(&mut super::budget::Reservation, &mut Option<u64>)>,
        declared: Option<u64>,
        limit: u64,
    ) -> Result<Vec<u8>, Attempt> {
        let mut reader = resp.body_mut().with_config().limit(limit).reader();
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // A read waits at most the per-read timeout (itself no longer
            // than the download timeout), so the deadline is overshot by at
            // most that much.
            let n = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| classify(ureq::Error::from(e)))?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
            let received = bytes.len() as u64;
            if let Some((held, learnt)) = grown.as_mut() {
                super::grown(&self.budget, held, received, limit, learnt)?;
            }
            let elapsed = started.elapsed();
            if elapsed > self.cfg.download_deadline(received) {
                return Err(Attempt::Lost(
                    self.cfg.too_slow(url, received, declared, elapsed),
                    Lost::TooSlow,
                ));
            }
        }
        self.stats.add(&self.stats.bytes, bytes.len() as u64);
        Ok(bytes)
    }

    /// [`Self::read_body`] for an object that may be fetched in parts
    /// ([`super::parts`]): once the first bytes show the split pays, the
    /// rest is asked for in byte ranges on threads of their own, and this
    /// connection reads on until they are all in (or it has the whole
    /// body itself: a part that fails or stalls costs nothing the single
    /// GET would not have taken).
    fn read_in_parts(
        &self,
        resp: &mut ureq::http::Response<ureq::Body>,
        url: &str,
        etag: &str,
        total: u64,
        first_byte: std::time::Duration,
        limit: u64,
    ) -> Result<Vec<u8>, Attempt> {
        let started = std::time::Instant::now();
        let mut reader = resp.body_mut().with_config().limit(limit).reader();
        let mut bytes = Vec::with_capacity(total.min(limit) as usize);
        let mut buf = vec![0u8; 64 * 1024];
        let mut planned = false;
        let mut parts: Option<SyncParts> = None;
        loop {
            let received = bytes.len() as u64;
            if !planned
                && let Some(split) = super::parts::plan(
                    self.cfg.ranged_parts,
                    total,
                    received,
                    started.elapsed(),
                    first_byte,
                )
            {
                planned = true;
                tracing::trace!(
                    url = super::location::shown(url),
                    keep = split.keep,
                    parts = split.parts.len(),
                    "splitting"
                );
                parts = Some(self.spawn_parts(url, etag, total, split));
            }
            if let Some(p) = parts.as_mut().filter(|p| received >= p.keep) {
                // This connection has its share: wait for the parts rather
                // than for its next read, which a stalled connection would
                // hold for the whole per-read timeout. Bounded by twice what
                // the rest would take here at its rate so far (a first byte
                // at least): parts that trickle are given up, and this
                // connection, waiting meanwhile, reads on.
                let rate = received as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let rest = std::time::Duration::from_secs_f64(
                    2.0 * (total - received) as f64 / rate.max(1.0),
                );
                let waited = p.wait(Some(
                    std::time::Instant::now() + rest.max(self.cfg.first_byte_timeout),
                ));
                match waited {
                    Ok(Some(tails)) => {
                        super::parts::assemble(&mut bytes, p.keep, tails);
                        break;
                    }
                    Ok(None) => {
                        super::parts::abandoned(url, "the parts are slower than this connection");
                        parts = None;
                    }
                    Err(why) => {
                        super::parts::abandoned(url, &why);
                        parts = None;
                    }
                }
            }
            let read = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| classify(ureq::Error::from(e)))
                .and_then(|n| {
                    let elapsed = started.elapsed();
                    let received = bytes.len() as u64 + n as u64;
                    if elapsed > self.cfg.download_deadline(received) {
                        return Err(Attempt::Lost(
                            self.cfg.too_slow(url, received, Some(total), elapsed),
                            Lost::TooSlow,
                        ));
                    }
                    Ok(n)
                });
            match read {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(failed) => {
                    // This connection failed past its share: the parts may
                    // still make the object whole.
                    if let Some(p) = parts.as_mut().filter(|p| received >= p.keep)
                        && let Ok(Some(tails)) = p.wait(None)
                    {
                        super::parts::assemble(&mut bytes, p.keep, tails);
                        break;
                    }
                    return Err(failed);
                }
            }
        }
        self.stats.add(&self.stats.bytes, bytes.len() as u64);
        Ok(bytes)
    }

    /// Starts one thread per range of `split`, each asking for that part
    /// of the version tagged `etag`. A thread whose part is no longer
    /// wanted finishes its request alone, bounded by the same timeouts.
    fn spawn_parts(
        &self,
        url: &str,
        etag: &str,
        total: u64,
        split: super::parts::Split,
    ) -> SyncParts {
        let (tx, rx) = std::sync::mpsc::channel();
        let n = split.parts.len();
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (i, (first, last)) in split.parts.into_iter().enumerate() {
            let (client, url, etag, sender, cancelled) = (
                self.clone(),
                url.to_string(),
                etag.to_string(),
                tx.clone(),
                cancelled.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("bucket-part".into())
                .spawn(move || {
                    let part = client.get_part(&url, &etag, (first, last, total), &cancelled);
                    let _ = sender.send((i, part));
                });
            if let Err(e) = spawned {
                let _ = tx.send((i, Err(format!("no thread for a part: {e}"))));
            }
        }
        SyncParts {
            keep: split.keep,
            rx,
            done: vec![None; n],
            cancelled,
        }
    }

    /// One range of an object, under the same first-byte, download and
    /// size limits as a whole GET; any failure is said in one line. It
    /// stops at its next read once `cancelled` is set (the object is in
    /// without it): ureq cannot abort a request, and a part left to run to
    /// its own deadline would hold a thread and its bytes outside the budget.
    fn get_part(
        &self,
        url: &str,
        etag: &str,
        (first, last, total): (u64, u64, u64),
        cancelled: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<u8>, String> {
        self.stats.add(&self.stats.requests, 1);
        self.stats.add(&self.stats.ranged, 1);
        let mut resp = following(url, |at| {
            self.agent
                .get(at)
                .header("range", format!("bytes={first}-{last}"))
                .header("if-match", etag)
                .call()
        })
        .map_err(Attempt::said)?;
        super::parts::check_part(
            resp.status().as_u16(),
            resp.headers(),
            etag,
            (first, last, total),
        )?;
        let want = last - first + 1;
        let started = std::time::Instant::now();
        let mut reader = resp.body_mut().with_config().limit(want + 1).reader();
        let mut bytes = Vec::with_capacity(want as usize);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
                return Err("no longer wanted".into());
            }
            let n = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| classify(ureq::Error::from(e)).said())?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
            if bytes.len() as u64 > want {
                return Err(format!("more than the {want} bytes asked for"));
            }
            if started.elapsed() > self.cfg.download_deadline(bytes.len() as u64) {
                return Err("too slow".into());
            }
        }
        super::parts::received(url, (first, last), bytes, started.elapsed())
    }

    /// GETs one object with retries, reading at most `max_object_bytes`.
    pub fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut learnt = None;
        self.with_retries(url, false, || self.try_get(url, &mut learnt))
    }

    /// One GET. A body that outgrows its share of the budget while none is
    /// free is dropped ([`Attempt::Outgrew`]), and `learnt` says what the
    /// next fetch of it reserves first.
    fn try_get(&self, url: &str, learnt: &mut Option<u64>) -> Result<Fetched, Attempt> {
        let sent = std::time::Instant::now();
        let mut resp = following(url, |at| {
            self.agent.get(at).header("accept-encoding", "gzip").call()
        })?;
        let first_byte = sent.elapsed();
        let limit = self.cfg.max_object_bytes;
        let status = resp.status().as_u16();
        let Some(etag) = admit(status, resp.headers(), url, limit)? else {
            return Ok(Fetched::Missing);
        };
        let splittable = super::parts::splittable(status, resp.headers())
            .filter(|_| self.cfg.ranged_parts > 0)
            .zip(declared_length(resp.headers()));
        let declared = declared_length(resp.headers());
        let close_delimited = super::close_delimited(resp.headers());
        let encoding = super::Encoding::of(resp.headers());
        // Held before the body is read, and grown with it when its size was
        // not declared.
        let mut held = self
            .budget
            .reserve_blocking(self.budget.first_share(declared, *learnt, limit));
        // The body's clock starts once its memory is granted: a file that
        // waited its turn behind others' bodies is not a slow download.
        let bytes = match splittable {
            Some((tag, total)) => {
                self.read_in_parts(&mut resp, url, &tag, total, first_byte, limit)?
            }
            // The body's clock starts once its memory is granted.
            None => {
                let started = std::time::Instant::now();
                let grown = Some((&mut held, &mut *learnt));
                self.read_body(&mut resp, url, started, grown, declared, limit)?
            }
        };
        let bytes = encoding.decode_within(bytes, url, limit, &self.budget, &mut held, learnt)?;
        if close_delimited && super::json_cut_short(&bytes) {
            return Err(Attempt::Retry(cut_short(url, bytes.len())));
        }
        held.shrink_to(self.budget.footprint(bytes.len() as u64));
        self.stats.body_in();
        Ok(Fetched::Object { bytes, etag, held })
    }

    /// The same client (its connections and settings) with counters and a
    /// breaker of its own, which `breaker` configures: for requests whose
    /// failures must not declare the bucket unreachable for the pass (the
    /// change check's HEADs: a server that refuses HEAD still serves GET).
    pub fn detached(&self, breaker: super::breaker::BreakerConfig) -> SyncClient {
        SyncClient {
            agent: self.agent.clone(),
            cfg: ClientConfig {
                breaker: breaker.clone(),
                ..self.cfg.clone()
            },
            stats: Arc::new(NetStats {
                breaker: super::breaker::Breaker::quiet(breaker),
                retry_log: super::retry::RetryLog::quiet(),
                ..NetStats::default()
            }),
            budget: self.budget.clone(),
        }
    }

    /// The object's current version (ETag, else Last-Modified) from a HEAD,
    /// `None` when it is gone or the server names no version. At most two
    /// attempts: a change check must not hold a pass back.
    pub fn head_version(&self, url: &str) -> Result<Option<String>, FetchError> {
        let policy = super::RetryPolicy {
            max_attempts: self.cfg.retry.max_attempts.min(2),
            ..self.cfg.retry.clone()
        };
        let mut retrier = super::retry::Retrier::new(&policy, &self.stats, url);
        loop {
            retrier.begin()?;
            let attempt = following(url, |at| {
                self.agent
                    .head(at)
                    // As the GET asked: a server that gives the gzip
                    // version its own ETag (nginx's weak one, Apache's
                    // `-gzip`) would otherwise call every object changed.
                    .header("accept-encoding", "gzip")
                    .call()
            })
            .and_then(|resp| {
                match admit(resp.status().as_u16(), resp.headers(), url, u64::MAX)? {
                    None => Ok(None),
                    Some(version) => Ok(version),
                }
            });
            match attempt {
                Ok(v) => {
                    retrier.succeeded();
                    return Ok(v);
                }
                Err(failure) => self.stats.breaker.sleep_blocking(retrier.failed(failure)?),
            }
        }
    }
}

/// The byte ranges of an object being fetched in parts, as their threads
/// hand them in. Dropped, it tells the threads still reading to stop.
struct SyncParts {
    /// Bytes the first connection delivers; the parts hold the rest.
    keep: u64,
    rx: std::sync::mpsc::Receiver<(usize, Result<Vec<u8>, String>)>,
    done: Vec<Option<Vec<u8>>>,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
}

impl SyncParts {
    /// Every part's bytes in order once all are in, waiting at most until
    /// `deadline` (`None`: as long as the parts' own timeouts let them
    /// run); `Ok(None)` if some part is still out then, or why one is not
    /// to be had.
    fn wait(
        &mut self,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Vec<Vec<u8>>>, String> {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        loop {
            if self.done.iter().all(Option::is_some) {
                return Ok(Some(
                    self.done
                        .iter_mut()
                        .map(|d| d.take().unwrap_or_default())
                        .collect(),
                ));
            }
            // What has come in first, so a part in by the deadline counts.
            let next = match self.rx.try_recv() {
                Ok(part) => Ok(part),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => match deadline {
                    None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(d) => match d.saturating_duration_since(std::time::Instant::now()) {
                        left if left.is_zero() => return Ok(None),
                        left => self.rx.recv_timeout(left),
                    },
                },
            };
            match next {
                Ok((i, r)) => self.done[i] = Some(r?),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("a part's thread ended without its bytes".into());
                }
            }
        }
    }
}

impl Drop for SyncParts {
    fn drop(&mut self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Most redirects followed for one request (ureq's and reqwest's default).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// The response to the request `send` makes for `url`, following its
/// redirects by [`redirect_target`]'s rule, the one the `async` client's
/// answers are read by too. ureq's own following would take a `Location`
/// its URI parser cannot read (`file:///etc/passwd`) for a path on the
/// same host. Each hop is a request of its own, so ureq still refuses a
/// plain-HTTP hop under `https_only`.
fn following(
    url: &str,
    mut send: impl FnMut(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ureq::http::Response<ureq::Body>, Attempt> {
    let mut at = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let resp = send(&at).map_err(classify)?;
        match redirect_target(&at, resp.status().as_u16(), resp.headers())? {
            Some(next) => at = next,
            None => return Ok(resp),
        }
    }
    Err(Attempt::Fail(FetchError::Client(too_many_redirects(url))))
}

/// What both clients say of a request redirected more than
/// [`MAX_REDIRECTS`] times.
pub(crate) fn too_many_redirects(url: &str) -> String {
    format!("more than {MAX_REDIRECTS} redirects from {}", shown(url))
}

/// Where a redirect from `url` leads: `None` when the answer is not a
/// redirect to follow (not 301, 302, 303, 307 or 308, or no `Location`),
/// the absolute URL when it names an http or https one, and a failure,
/// said in one line that names the scheme and never the rest of the
/// `Location` (it may hold a signature), when it names anything else or
/// nothing readable. Both clients read their answers by it, so a
/// redirect to `file:` fails the same way in every model.
pub(crate) fn redirect_target(
    url: &str,
    status: u16,
    headers: &ureq::http::HeaderMap,
) -> Result<Option<String>, Attempt> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = headers.get("location") else {
        return Ok(None);
    };
    let refused = |why: String| {
        Attempt::Fail(FetchError::Client(format!(
            "HTTP {status} for {}: {why}",
            shown(url)
        )))
    };
    // UTF-8, not only visible ASCII: a server that sends `/réal/a.json` raw
    // means what its percent-encoding would say.
    let mut target = std::str::from_utf8(location.as_bytes())
        .ok()
        .zip(url::Url::parse(url).ok())
        .and_then(|(location, base)| base.join(location.trim()).ok())
        .ok_or_else(|| refused("its Location is not a URL".into()))?;
    match target.scheme() {
        "http" | "https" => {
            // Credentials a redirect names are the redirecting server's,
            // not the bucket's: never sent on (ureq would send them as
            // Basic authentication, reqwest would not).
            let _ = target.set_username("");
            let _ = target.set_password(None);
            Ok(Some(target.into()))
        }
        other => Err(refused(format!(
            "it redirects to a {other}: URL, which is not followed (only http and https are)"
        ))),
    }
}

/// The declared body length, when the server gave one.
pub(crate) fn declared_length(headers: &ureq::http::HeaderMap) -> Option<u64> {
    headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
}

/// The one-line reason a close-delimited body is taken as cut short.
pub(crate) fn cut_short(url: &str, received: usize) -> String {
    format!(
        "response for {} cut short: the connection closed after {received} bytes, before the JSON value ended (no Content-Length)",
        shown(url)
    )
}

/// What both clients decide from a GET's status and headers, before reading
/// the body: `None` for a 404, else the object's [`version`]; a failure for other errors and
/// for a declared length over `limit`.
pub(crate) fn admit(
    status: u16,
    headers: &ureq::http::HeaderMap,
    url: &str,
    limit: u64,
) -> Result<Option<Option<String>>, Attempt> {
    if let Some(fail) = status_failure(status, url) {
        return Err(fail);
    }
    if status == 404 {
        return Ok(None);
    }
    // Every GET asks for the whole object: a part of it (a misbehaving
    // proxy or cache) is not the file, and parsing it would record the
    // file as failed for good. Retried, like any answer not worth keeping.
    if status == 206 {
        return Err(Attempt::Retry(format!(
            "HTTP 206 Partial Content for {}, which asked for the whole object",
            shown(url)
        )));
    }
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(Attempt::Fail(FetchError::TooLarge { limit }));
    }
    Ok(Some(version(headers)))
}

/// An object's version as the ledger's `etag` column holds it: the ETag or,
/// from a server that sends none, the Last-Modified date.
pub(crate) fn version(headers: &ureq::http::HeaderMap) -> Option<String> {
    ["etag", "last-modified"].iter().find_map(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    })
}

/// Maps a non-2xx status to an attempt outcome; `None` for 2xx and 404.
pub(crate) fn status_failure(status: u16, url: &str) -> Option<Attempt> {
    let url = shown(url);
    match status {
        200..=299 | 404 => None,
        401 | 403 => Some(Attempt::Fail(FetchError::Denied(format!(
            "HTTP {status} for {url}"
        )))),
        500..=599 => Some(Attempt::Lost(
            format!("HTTP {status} for {url}"),
            super::breaker::Lost::ServerError,
        )),
        408 | 429 => Some(Attempt::Retry(format!("HTTP {status} for {url}"))),
        _ => Some(Attempt::Fail(FetchError::Client(format!(
            "HTTP {status} for {url}"
        )))),
    }
}

/// Why a redirect off TLS was not followed (see `ClientConfig::https_only`).
pub(crate) const REFUSED_PLAIN_REDIRECT: &str =
    "refused a redirect to plain HTTP: the bucket is reached over TLS, so its objects must be too";

fn classify(e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::RequireHttpsOnly(url) => Attempt::Fail(FetchError::Client(format!(
            "{REFUSED_PLAIN_REDIRECT} ({})",
            shown(&url)
        ))),
        ureq::Error::BodyExceedsLimit(limit) => Attempt::Fail(FetchError::TooLarge { limit }),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            Attempt::Fail(FetchError::Client(format!("TLS error: {e}")))
        }
        ureq::Error::BadUri(_) | ureq::Error::InvalidProxyUrl => {
            Attempt::Fail(FetchError::Client(e.to_string()))
        }
        // A refused certificate arrives wrapped as an IO error during the
        // handshake: it is permanent, not a network hiccup to retry.
        ureq::Error::Io(ref io) if crate::error::is_certificate_refused(io) => {
            Attempt::Fail(FetchError::certificate_refused(&e.to_string()))
        }
        // The same answer comes back on every attempt: not an outage.
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            Attempt::Fail(FetchError::Client(e.to_string()))
        }
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => {
            Attempt::Lost(e.to_string(), Lost::Garbled)
        }
        ureq::Error::Timeout(_) => Attempt::Lost(e.to_string(), Lost::TimedOut),
        ureq::Error::Io(ref io) => Attempt::Lost(e.to_string(), lost_io(io)),
        other => Attempt::Lost(other.to_string(), Lost::Broken),
    }
}

/// How an IO error left a request unanswered.
pub(crate) fn lost_io(e: &std::io::Error) -> Lost {
    use std::io::ErrorKind::*;
    match e.kind() {
        TimedOut | WouldBlock => Lost::TimedOut,
        ConnectionRefused => Lost::Refused,
        _ => Lost::Broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(status: u16, location: Option<&str>) -> Result<Option<String>, String> {
        let mut headers = ureq::http::HeaderMap::new();
        if let Some(l) = location {
            headers.insert("location", l.parse().unwrap());
        }
        redirect_target("https://h.example/b/k.json?sig=S", status, &headers).map_err(Attempt::said)
    }

    #[test]
    fn redirects_lead_to_http_urls_only() {
        let to = |l| target(302, Some(l));
        for (location, followed) in [
            ("other.json", "https://h.example/b/other.json"),
            ("/x/y.json", "https://h.example/x/y.json"),
            ("//cdn.example/y", "https://cdn.example/y"),
            ("http://plain.example/y", "http://plain.example/y"),
            ("/réal/a.json", "https://h.example/r%C3%A9al/a.json"),
            ("http://u:p@cdn.example/y", "http://cdn.example/y"),
        ] {
            assert_eq!(to(location), Ok(Some(followed.into())), "{location}");
        }
        let refused = to("file:///etc/passwd").unwrap_err();
        assert!(refused.contains("redirects to a file: URL"), "{refused}");
        assert!(
            !refused.contains("passwd") && !refused.contains("sig=S"),
            "{refused}"
        );
        assert!(
            to("http://[::1")
                .unwrap_err()
                .contains("its Location is not a URL")
        );
        // Not a redirect to follow: the caller reads the answer as it is.
        assert_eq!(target(302, None), Ok(None));
        assert_eq!(target(200, Some("elsewhere")), Ok(None));
        assert_eq!(target(304, Some("elsewhere")), Ok(None));
    }
}
