//! TLS to PostgreSQL with rustls, verified: against Mozilla's roots, or
//! against a CA file alone (`--db-ca-file` or libpq's `PGSSLROOTCERT`). Used whenever the
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

/// Trusts the CAs in this PEM file, and no other (call before the first
/// connection).
pub fn set_ca_file(path: &Path) {
    let _ = CA_FILE.set(path.to_path_buf());
}

/// The CA file in effect: the flag, else `PGSSLROOTCERT`, else libpq's
/// default root file, `~/.postgresql/root.crt`, when it exists (libpq
/// then verifies every server against it, whatever the mode; without it,
/// Mozilla's roots here, where libpq's `verify-full` would refuse).
pub fn ca_file() -> Option<PathBuf> {
    CA_FILE.get().cloned().or_else(|| {
        std::env::var_os("PGSSLROOTCERT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
                let default = PathBuf::from(home).join(".postgresql/root.crt");
                default.is_file().then_some(default)
            })
    })
}

/// The roots the database's certificate must chain to: the CA file's
/// certificates alone when one is given, as libpq's `sslrootcert` (and
/// the bucket's `--ca-file`) mean it, else Mozilla's. A user who names
/// their own CA trusts no public one for the database, and `--psql`,
/// handed the same file, agrees with the job.
fn roots(ca_file: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let Some(path) = ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "reading the database CA file {:?}",
            path.display().to_string()
        )
    })?;
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
    Ok(roots)
}

fn build() -> anyhow::Result<MakeRustlsConnect> {
    let roots = roots(ca_file().as_deref())?;
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

#[cfg(test)]
mod tests {
    /// A CA file replaces the public roots: a certificate a public CA
    /// signed for the database's name is not accepted beside it.
    #[test]
    fn a_ca_file_is_the_only_root() {
        let public = super::roots(None).unwrap();
        assert_eq!(public.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["db.example".to_string()]).unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca.cert.pem()).unwrap();
        assert_eq!(super::roots(Some(&file)).unwrap().len(), 1);
        std::fs::write(&file, "not a certificate").unwrap();
        let e = super::roots(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
