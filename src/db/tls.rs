//! TLS to PostgreSQL with rustls, verified: Mozilla's roots plus an optional
//! CA file (`--db-ca-file` or libpq's `PGSSLROOTCERT`). Used whenever the
//! server offers TLS (`sslmode=prefer`, the default) or the URL demands it
//! (`sslmode=require`); unlike libpq, `require` still verifies the
//! certificate, because unverified TLS protects against nothing active.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres_rustls::MakeRustlsConnect;

static CA_FILE: OnceLock<PathBuf> = OnceLock::new();
static CONNECTOR: OnceLock<Result<MakeRustlsConnect, String>> = OnceLock::new();

/// Trusts the CA in this PEM file too (call before the first connection).
pub fn set_ca_file(path: &Path) {
    let _ = CA_FILE.set(path.to_path_buf());
}

/// The CA file in effect: the flag, else `PGSSLROOTCERT`.
pub fn ca_file() -> Option<PathBuf> {
    CA_FILE.get().cloned().or_else(|| {
        std::env::var_os("PGSSLROOTCERT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

fn build() -> anyhow::Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file() {
        let pem = std::fs::read(&path)
            .with_context(|| format!("reading the database CA file {}", path.display()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        anyhow::ensure!(
            !certs.is_empty(),
            "{} holds no PEM certificate",
            path.display()
        );
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("adding the CA in {}", path.display()))?;
        }
    }
    // Named explicitly: two crypto providers are compiled in (ring, aws-lc).
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("configuring TLS")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The process's connector (built once).
pub fn connector() -> anyhow::Result<MakeRustlsConnect> {
    CONNECTOR
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}
