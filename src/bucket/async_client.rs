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
            // Followed by `following`, hop by hop, by the rule the blocking
            // client follows too.
            .redirect(reqwest::redirect::Policy::none())
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

    /// The response to the request `make` builds for `url`, following its
    /// redirects by [`super::sync_client::redirect_target`], as the
    /// blocking client does (reqwest's own following is off: it followed
    /// a raw UTF-8 `Location` ureq refuses, and said other schemes in its
    /// own words), each hop within the first-byte timeout.
    async fn following(
        &self,
        url: &str,
        make: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Attempt> {
        let ttfb = self.cfg.first_byte_timeout;
        let mut at = url.to_string();
        for _ in 0..=super::sync_client::MAX_REDIRECTS {
            let resp = match tokio::time::timeout(ttfb, make(&at).send()).await {
                Err(_) => {
                    return Err(Attempt::Lost(
                        format!(
                            "no response from {} within {ttfb:?}",
                            super::location::shown(url)
                        ),
                        Lost::TimedOut,
                    ));
                }
                Ok(r) => r.map_err(|e| classify(e, url))?,
            };
            match super::sync_client::redirect_target(&at, resp.status().as_u16(), resp.headers())?
            {
                Some(next) => at = next,
                None => return Ok(resp),
            }
        }
        Err(Attempt::Fail(FetchError::Client(
            super::sync_client::too_many_redirects(url),
        )))
    }

    /// GETs one object with retries, reading at most `max_object_bytes`.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut retrier = super::retry::Retrier::new(&self.cfg.retry, &self.stats, url);
        let mut learnt = None;
        loop {
            retrier.begin()?;
            match self.try_get(url, &mut learnt).await {
                Ok(f) => {
                    retrier.succeeded();
                    return Ok(f);
                }
                Err(failure) => self.stats.breaker.sleep(retrier.failed(failure)?).await,
            }
        }
    }

    /// One GET. A body that outgrows its share of the budget while none is
    /// free is dropped ([`Attempt::Outgrew`]), and `learnt` says what the
    /// next fetch of it reserves first.
    async fn try_get(&self, url: &str, learnt: &mut Option<u64>) -> Result<Fetched, Attempt> {
        let started = tokio::time::Instant::now();
        let mut resp = self
            .following(url, |at| {
                self.http
                    .get(at)
                    .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            })
            .await?;
        let first_byte = started.elapsed();
        let limit = self.cfg.max_object_bytes;
        let status = resp.status().as_u16();
        let Some(etag) = admit(status, resp.headers(), url, limit)? else {
            return Ok(Fetched::Missing);
        };
        let mut splittable = super::parts::splittable(status, resp.headers())
            .filter(|_| self.cfg.ranged_parts > 0)
            .zip(declared_length(resp.headers()));
        let mut parts: Option<Parts> = None;
        let declared = declared_length(resp.headers());
        let close_delimited = super::close_delimited(resp.headers());
        let encoding = super::Encoding::of(resp.headers());
        // Held before the body is read, and grown with it when its size was
        // not declared.
        let mut held = self
            .budget
            .reserve(self.budget.first_share(declared, *learnt, limit))
            .await;
        // The body's clock starts once its memory is granted: a file that
        // waited its turn behind others' bodies is not a slow download.
        let body_started = tokio::time::Instant::now();
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
        loop {
            let received = body.len() as u64;
            if let Some((tag, total)) = &splittable
                && let Some(split) = super::parts::plan(
                    self.cfg.ranged_parts,
                    *total,
                    received,
                    body_started.elapsed(),
                    first_byte,
                )
            {
                tracing::trace!(
                    url = super::location::shown(url),
                    received,
                    body_ms = body_started.elapsed().as_millis() as u64,
                    keep = split.keep,
                    parts = split.parts.len(),
                    "splitting"
                );
                parts = Some(self.spawn_parts(url, tag, *total, split));
                splittable = None;
            }
            let deadline = body_started + self.cfg.download_deadline(received);
            let next = tokio::time::timeout_at(deadline, resp.chunk());
            // Once this connection has its share, the parts decide; it
            // reads on meanwhile, so a part that fails or stalls costs
            // nothing the single GET would not have taken.
            let chunk = match parts.as_mut().filter(|p| received >= p.keep) {
                Some(p) => tokio::select! {
                    joined = p.join() => match joined {
                        Ok(tails) => {
                            super::parts::assemble(&mut body, p.keep, tails);
                            // The rest of this connection's body is not
                            // wanted: dropping the response closes it.
                            break;
                        }
                        Err(why) => {
                            super::parts::abandoned(url, &why);
                            parts = None;
                            continue;
                        }
                    },
                    c = next => c,
                },
                None => next.await,
            };
            let failed = match chunk {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(classify(e, url)),
                Err(_) => Err(Attempt::Lost(
                    self.cfg
                        .too_slow(url, received, declared, body_started.elapsed()),
                    Lost::TooSlow,
                )),
            };
            let chunk = match failed {
                Ok(c) => c,
                Err(failed) => {
                    // This connection failed past its share: the parts may
                    // still make the object whole.
                    if let Some(p) = parts.as_mut().filter(|p| received >= p.keep)
                        && let Ok(tails) = p.join().await
                    {
                        super::parts::assemble(&mut body, p.keep, tails);
                        break;
                    }
                    return Err(failed);
                }
            };
            let Some(chunk) = chunk else { break };
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Attempt::Fail(FetchError::TooLarge { limit }));
            }
            body.extend_from_slice(&chunk);
            super::grown(&self.budget, &mut held, body.len() as u64, limit, learnt)?;
        }
        drop(resp);
        self.stats.add(&self.stats.bytes, body.len() as u64);
        let body = encoding.decode_within(body, url, limit, &self.budget, &mut held, learnt)?;
        if close_delimited && super::json_cut_short(&body) {
            return Err(Attempt::Retry(cut_short(url, body.len())));
        }
        held.shrink_to(self.budget.footprint(body.len() as u64));
        self.stats.body_in();
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

impl AsyncClient {
    /// Starts one request per range of `split`, each for that part of the
    /// version tagged `etag`.
    fn spawn_parts(&self, url: &str, etag: &str, total: u64, split: super::parts::Split) -> Parts {
        let tasks = split
            .parts
            .into_iter()
            .map(|(first, last)| {
                let (client, url, etag) = (self.clone(), url.to_string(), etag.to_string());
                tokio::spawn(async move { client.get_part(&url, &etag, first, last, total).await })
            })
            .collect();
        Parts {
            keep: split.keep,
            tasks,
            done: Vec::new(),
        }
    }

    /// One range of an object, under the same first-byte, download and
    /// size limits as a whole GET; any failure is said in one line (the
    /// caller falls back on the body it is still reading, so it is never
    /// retried here).
    async fn get_part(
        &self,
        url: &str,
        etag: &str,
        first: u64,
        last: u64,
        total: u64,
    ) -> Result<Vec<u8>, String> {
        self.stats.add(&self.stats.requests, 1);
        self.stats.add(&self.stats.ranged, 1);
        let started = tokio::time::Instant::now();
        let mut resp = self
            .following(url, |at| {
                self.http
                    .get(at)
                    .header(reqwest::header::RANGE, format!("bytes={first}-{last}"))
                    .header(reqwest::header::IF_MATCH, etag)
            })
            .await
            .map_err(Attempt::said)?;
        super::parts::check_part(
            resp.status().as_u16(),
            resp.headers(),
            etag,
            (first, last, total),
        )?;
        let want = last - first + 1;
        let mut body = Vec::with_capacity(want as usize);
        let body_started = tokio::time::Instant::now();
        while let Some(chunk) = {
            let deadline = body_started + self.cfg.download_deadline(body.len() as u64);
            tokio::time::timeout_at(deadline, resp.chunk())
                .await
                .map_err(|_| "too slow".to_string())?
                .map_err(|e| crate::error::chain(&e.without_url()))?
        } {
            if (body.len() + chunk.len()) as u64 > want {
                return Err(format!("more than the {want} bytes asked for"));
            }
            body.extend_from_slice(&chunk);
        }
        super::parts::received(url, (first, last), body, started.elapsed())
    }
}

/// The extra requests of an object being fetched in parts. Dropped, it
/// cancels them: a GET that failed for another reason leaves none behind.
struct Parts {
    /// Bytes the first connection delivers; the parts hold the rest.
    keep: u64,
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<u8>, String>>>,
    /// What each task gave, kept as it comes: [`Parts::join`] is raced
    /// against the first connection's next read and may be cancelled.
    done: Vec<Option<Vec<u8>>>,
}

impl Parts {
    /// The parts' bytes in order, or why one of them is not to be had.
    /// Cancel-safe: a part that finished is not awaited twice.
    async fn join(&mut self) -> Result<Vec<Vec<u8>>, String> {
        self.done.resize(self.tasks.len(), None);
        for (task, done) in self.tasks.iter_mut().zip(&mut self.done) {
            if done.is_none() {
                *done = Some(task.await.map_err(|e| e.to_string())??);
            }
        }
        Ok(self
            .done
            .iter_mut()
            .map(|d| d.take().unwrap_or_default())
            .collect())
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn classify(e: reqwest::Error, url: &str) -> Attempt {
    // The URL asked for: a redirect's target, when a hop failed.
    let target = e.url().map(|u| u.to_string());
    // reqwest puts the URL in its messages; a presigned URL holds secrets.
    let e = e.without_url();
    let text = crate::error::chain(&e);
    if crate::error::is_certificate_refused(&e) {
        return Attempt::Fail(FetchError::certificate_refused(&text));
    }
    // `https_only` refusing a hop to plain HTTP (`following` sends each).
    if text.contains("URL scheme is not allowed") {
        return Attempt::Fail(FetchError::Client(format!(
            "{} ({})",
            super::sync_client::REFUSED_PLAIN_REDIRECT,
            super::location::shown(target.as_deref().unwrap_or(url))
        )));
    }
    if e.is_builder() {
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
