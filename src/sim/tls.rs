//! HTTPS for the simulated bucket: a throwaway CA and a server certificate
//! for `localhost`/`127.0.0.1`/`::1`, made fresh for each server, and the
//! rustls configuration that serves them. The CA's PEM is written to a file
//! so clients verify the server through `--ca-file`, verification on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::network::TlsVersion;

/// A generated CA and the server configuration signed by it.
pub struct SimTls {
    pub config: Arc<rustls::ServerConfig>,
    /// The CA certificate (PEM), for `--ca-file`.
    pub ca_file: PathBuf,
}

/// Makes a CA and a server certificate, writes the CA PEM as `ca.pem` under
/// `dir`, and returns a server configuration speaking only `version`
/// (so the handshake costs what that version costs) and only HTTP/1.1, as
/// S3 does.
pub fn generate(dir: &Path, version: TlsVersion) -> anyhow::Result<SimTls> {
    let ca_key = rcgen::KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bucketbench simulated bucket CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate().context("generating the server key")?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the server certificate")?;

    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem())
        .with_context(|| format!("writing {}", ca_file.display()))?;

    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(cert.der().to_vec()),
                CertificateDer::from(ca_cert.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .context("server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(SimTls {
        config: Arc::new(config),
        ca_file,
    })
}
