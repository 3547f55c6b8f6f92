//! The async HTTP client (reqwest on tokio), used by the `async-fetch` and
//! `async` models. Same timeouts, retries, limits and classification as
//! [`super::sync_client`], so the models differ only in scheduling.

use std::sync::Arc;

use super::sync_client::{Attempt, admit, read_ca_file};
use super::{ClientConfig, FetchError, Fetched, NetStats};

#[derive(Clone)]
pub struct AsyncClient {
    http: reqwest::Client,
    cfg: ClientConfig,
    pub stats: Arc<NetStats>,
}

impl AsyncClient {
    pub fn new(cfg: ClientConfig, stats: Arc<NetStats>) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_max_idle_per_host(1024)
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
        Ok(AsyncClient { http, cfg, stats })
    }

    /// GETs one object with retries, reading at most `max_object_bytes`.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut retrier = super::retry::Retrier::new(&self.cfg.retry, &self.stats, url);
        loop {
            retrier.begin();
            match self.try_get(url).await {
                Ok(f) => return Ok(f),
                Err(failure) => tokio::time::sleep(retrier.failed(failure)?).await,
            }
        }
    }

    async fn try_get(&self, url: &str) -> Result<Fetched, Attempt> {
        let ttfb = self.cfg.first_byte_timeout;
        let mut resp = match tokio::time::timeout(ttfb, self.http.get(url).send()).await {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "no response from {} within {ttfb:?}",
                    super::location::shown(url)
                )));
            }
            Ok(r) => r.map_err(classify)?,
        };
        let limit = self.cfg.max_object_bytes;
        let Some(etag) = admit(resp.status().as_u16(), resp.headers(), url, limit)? else {
            return Ok(Fetched::Missing);
        };
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Attempt::Fail(FetchError::TooLarge { limit }));
            }
            body.extend_from_slice(&chunk);
        }
        self.stats.add(&self.stats.bytes, body.len() as u64);
        Ok(Fetched::Object { bytes: body, etag })
    }
}

fn classify(e: reqwest::Error) -> Attempt {
    // reqwest puts the URL in its messages; a presigned URL holds secrets.
    let e = e.without_url();
    let text = crate::error::chain(&e);
    if e.is_builder() || crate::error::is_certificate_refused(&e) {
        return Attempt::Fail(FetchError::Client(text));
    }
    Attempt::Retry(text)
}
