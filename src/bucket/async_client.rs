//! The async HTTP client (reqwest on tokio), used by the `async-fetch` and
//! `async` models. Same timeouts, retries, limits and classification as
//! [`super::sync_client`], so the models differ only in scheduling.

use std::sync::Arc;

use super::breaker::Lost;
use super::budget::Budget;
use super::sync_client::{Attempt, admit, cut_short, declared_length, read_ca_file};
use super::{ClientConfig, FetchError, Fetched, NetStats};

#[derive(Clone)]
pub struct AsyncClient {
    http: reqwest::Client,
    cfg: ClientConfig,
    pub stats: Arc<NetStats>,
    budget: Budget,
}

impl AsyncClient {
    pub fn new(cfg: ClientConfig, stats: Arc<NetStats>) -> anyhow::Result<Self> {
        // reqwest's own default provider is aws-lc-rs, whose random number
        // generator seeds each thread from a CPU-jitter entropy source:
        // tens of milliseconds of CPU per process before the first
        // handshake, which `compare` charged to every HTTPS run. ring, which
        // the database's TLS and the simulated bucket already use, reads the
        // OS's generator. Installing it fails harmlessly when a provider is
        // already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_max_idle_per_host(1024)
            .https_only(cfg.https_only)
            // reqwest sends the URL it was redirected from as a Referer,
            // query string and all: a presigned URL's signature and session
            // token, to whatever host the redirect names.
            .referer(false)
            .user_agent(concat!("bucketbench/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = read_ca_file(path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "--ca-file {} holds no PEM certificate",
                path.display()
            );
            b = b.tls_certs_only(certs);
        }
        let http = b
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        Ok(AsyncClient {
            http,
            cfg,
            stats,
            budget: Budget::unlimited(),
        })
    }

    /// Bodies read by [`AsyncClient::get`] reserve their footprint from
    /// `budget` first (unlimited by default).
    pub fn with_budget(self, budget: Budget) -> Self {
        AsyncClient { budget, ..self }
    }

    /// GETs one object with retries, reading at most `max_object_bytes`.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut retrier = super::retry::Retrier::new(&self.cfg.retry, &self.stats, url);
        loop {
            retrier.begin()?;
            match self.try_get(url).await {
                Ok(f) => {
                    retrier.succeeded();
                    return Ok(f);
                }
                Err(failure) => self.stats.breaker.sleep(retrier.failed(failure)?).await,
            }
        }
    }

    async fn try_get(&self, url: &str) -> Result<Fetched, Attempt> {
        let started = tokio::time::Instant::now();
        let ttfb = self.cfg.first_byte_timeout;
        let request = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip");
        let mut resp = match tokio::time::timeout(ttfb, request.send()).await {
            Err(_) => {
                return Err(Attempt::Lost(
                    format!(
                        "no response from {} within {ttfb:?}",
                        super::location::shown(url)
                    ),
                    Lost::TimedOut,
                ));
            }
            Ok(r) => r.map_err(classify)?,
        };
        let first_byte = started.elapsed();
        let limit = self.cfg.max_object_bytes;
        let Some(etag) = admit(resp.status().as_u16(), resp.headers(), url, limit)? else {
            return Ok(Fetched::Missing);
        };
        let declared = declared_length(resp.headers());
        let close_delimited = super::close_delimited(resp.headers());
        let encoding = super::Encoding::of(resp.headers());
        // Held before the body is read; a body of unknown length may be as
        // large as the limit until it is in.
        let mut held = self
            .budget
            .reserve(
                self.budget
                    .footprint(encoding.expected(declared).unwrap_or(limit).min(limit)),
            )
            .await;
        // The body's clock starts once its memory is granted: a file that
        // waited its turn behind others' bodies is not a slow download.
        let body_started = tokio::time::Instant::now();
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
        loop {
            let received = body.len() as u64;
            let deadline = body_started + self.cfg.download_deadline(received);
            let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
                Err(_) => {
                    return Err(Attempt::Lost(
                        self.cfg
                            .too_slow(url, received, declared, body_started.elapsed()),
                        Lost::TooSlow,
                    ));
                }
                Ok(c) => c.map_err(classify)?,
            };
            let Some(chunk) = chunk else { break };
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Attempt::Fail(FetchError::TooLarge { limit }));
            }
            body.extend_from_slice(&chunk);
        }
        self.stats.add(&self.stats.bytes, body.len() as u64);
        let body = encoding.decode(body, url, limit)?;
        if close_delimited && super::json_cut_short(&body) {
            return Err(Attempt::Retry(cut_short(url, body.len())));
        }
        held.shrink_to(self.budget.footprint(body.len() as u64));
        tracing::trace!(
            url = super::location::shown(url),
            bytes = body.len(),
            first_byte_ms = first_byte.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "fetched"
        );
        Ok(Fetched::Object {
            bytes: body,
            etag,
            held,
        })
    }
}

fn classify(e: reqwest::Error) -> Attempt {
    // reqwest puts the URL in its messages; a presigned URL holds secrets.
    let e = e.without_url();
    let text = crate::error::chain(&e);
    if crate::error::is_certificate_refused(&e) {
        return Attempt::Fail(FetchError::certificate_refused(&text));
    }
    if e.is_builder() {
        return Attempt::Fail(FetchError::Client(text));
    }
    if e.is_redirect() && text.contains("URL scheme is not allowed") {
        return Attempt::Fail(FetchError::Client(
            super::sync_client::REFUSED_PLAIN_REDIRECT.to_string(),
        ));
    }
    // A redirect loop, or one to a scheme no client follows, comes back
    // the same on every attempt: not an outage.
    if e.is_redirect() {
        return Attempt::Fail(FetchError::Client(text));
    }
    let how = if e.is_timeout() {
        Lost::TimedOut
    } else if hyper_cause(&e).is_some_and(|h| h.is_parse() || h.is_parse_too_large()) {
        Lost::Garbled
    } else {
        io_cause(&e).map_or(Lost::Broken, super::sync_client::lost_io)
    };
    Attempt::Lost(text, how)
}

/// The hyper error beneath a reqwest error, if any: it tells an answer
/// that is not HTTP from a connection that failed.
fn hyper_cause<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e hyper::Error> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        cause = c.source();
    }
    None
}

/// The IO error beneath a reqwest error, if any (hyper wraps it).
fn io_cause<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e std::io::Error> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}
