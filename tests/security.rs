//! Security: TLS verified by default (and a private CA accepted only when
//! given), secrets never in any output or file, SQL values always bound.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bucketbench::models;
use common::*;

const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys, os
os.chdir(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), http.server.SimpleHTTPRequestHandler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

struct Https {
    child: std::process::Child,
    url: String,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A static HTTPS bucket with a self-signed certificate for 127.0.0.1.
fn https_bucket() -> Https {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("files_list.data"), "a.json\n").unwrap();
    std::fs::write(
        site.join("a.json"),
        r#"[{"type":"song","data":{"title":"over tls"}}]"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(["-c", HTTPS_SERVER])
        .arg(&site)
        .arg(port.to_string())
        .arg(&cert_path)
        .arg(&key_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is needed for this test: apt-get install -y python3");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the test HTTPS server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Https {
        child,
        url: format!("https://127.0.0.1:{port}"),
        ca: cert_path,
        _dir: dir,
    }
}

#[test]
fn a_self_signed_server_is_refused_by_default_and_accepted_with_its_ca() {
    let https = https_bucket();
    let db = fresh_db();
    let out = Command::new(env!("CARGO_BIN_EXE_ingest"))
        .args(["--bucket", &https.url, "--attempts", "1"])
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot list bucket https://127.0.0.1"),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("certificate"),
        "the error names the certificate problem: {stderr}"
    );
    assert_eq!(
        count(&mut connect(&db), "SELECT count(*) FROM processed_files"),
        0
    );

    for model in models::NAMES {
        let db = fresh_db();
        let out = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .args([
                "--bucket",
                &https.url,
                "--model",
                model,
                "--json",
                "--ca-file",
            ])
            .arg(&https.ca)
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (s["loaded"].as_u64(), s["songs"].as_u64()),
            (Some(1), Some(1)),
            "{model}: {s}"
        );
    }
}

#[test]
fn secrets_never_reach_output_logs_or_files() {
    // A role with a password, so the database URL carries a secret.
    let admin = fresh_db();
    let password = "pg-secret-Zq8w3";
    connect(&admin)
        .batch_execute(&format!(
            "CREATE ROLE bb_secret LOGIN PASSWORD '{password}' SUPERUSER"
        ))
        .unwrap_or(());
    let url = url::Url::parse(&admin).unwrap();
    let db = format!(
        "postgres://bb_secret:{password}@{}:{}{}",
        url.host_str().unwrap(),
        url.port().unwrap(),
        url.path()
    );
    let (aws_key, aws_secret) = ("AKIDSECRETTEST123", "aws-secret-Kx9p2");
    let bucket = bucketbench::sim::SimBucket::generate(bucketbench::sim::Spec::new(
        bucketbench::sim::ProfileName::Tiny,
        3,
    ));
    let server = bucket
        .serve(Default::default(), "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let runs = [
        Command::new(env!("CARGO_BIN_EXE_ingest"))
            .args(["--bucket", &server.base_url(), "--model", "async"])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap(),
        // A failing run: errors must not print the password either.
        Command::new(env!("CARGO_BIN_EXE_ingest"))
            .args([
                "--bucket",
                &server.base_url(),
                "--database-url",
                &db.replace("127.0.0.1", "127.0.0.2")
                    .replace(&url.port().unwrap().to_string(), "1"),
            ])
            .output()
            .unwrap(),
        Command::new(env!("CARGO_BIN_EXE_compare"))
            .args([
                "--profile",
                "tiny",
                "--runs",
                "1",
                "--warmup",
                "0",
                "--latency-ms",
                "1",
                "--out",
            ])
            .arg(out_dir.path())
            .env("DATABASE_URL", &db)
            .output()
            .unwrap(),
    ];
    let mut texts: Vec<String> = Vec::new();
    for r in &runs {
        texts.push(String::from_utf8_lossy(&r.stdout).into_owned());
        texts.push(String::from_utf8_lossy(&r.stderr).into_owned());
    }
    assert!(
        runs[0].status.success() && !runs[1].status.success() && runs[2].status.success(),
        "{texts:#?}"
    );
    for entry in std::fs::read_dir(out_dir.path()).unwrap() {
        texts.push(
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned(),
        );
    }
    // Debug logging of an S3 pass with AWS keys in the environment.
    let s3 = Command::new(env!("CARGO_BIN_EXE_ingest"))
        .args([
            "--bucket",
            "s3://sim",
            "--endpoint",
            &server.endpoint(),
            "--model",
            "async-fetch",
        ])
        .env("DATABASE_URL", &db)
        .env("AWS_ACCESS_KEY_ID", aws_key)
        .env("AWS_SECRET_ACCESS_KEY", aws_secret)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    texts.push(String::from_utf8_lossy(&s3.stdout).into_owned());
    texts.push(String::from_utf8_lossy(&s3.stderr).into_owned());
    for t in &texts {
        for secret in [password, aws_key, aws_secret] {
            assert!(!t.contains(secret), "{secret} leaked in:\n{t}");
        }
    }
    assert!(
        texts[3].contains("***") || texts[3].contains("cannot connect"),
        "{}",
        texts[3]
    );
}

/// Every SQL statement in the source is a constant or built from constant
/// pieces: no `format!` puts a value into SQL. The two exceptions create
/// databases from identifiers the program itself chooses.
#[test]
fn sql_is_never_built_from_values() {
    let mut offenders = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                let l = line.to_uppercase();
                let builds_sql = l.contains("FORMAT!(\"")
                    && [
                        "SELECT ",
                        "INSERT ",
                        "UPDATE ",
                        "DELETE ",
                        "CREATE ",
                        "TRUNCATE ",
                        "COPY ",
                    ]
                    .iter()
                    .any(|k| l.contains(k));
                let allowed = line.contains("CREATE DATABASE")
                    || line.contains("FROM {table}")
                    || line.contains("coalesce(length({c})");
                if builds_sql && !allowed {
                    offenders.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL built with format!: {offenders:#?}"
    );
}

/// A PostgreSQL that accepts the test role only over TLS, with a
/// self-signed certificate: `sslmode=require` works with rustls when the CA
/// is given, and is refused (certificate unverified) when it is not.
#[test]
fn database_tls_with_sslmode_require_is_verified() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (crt, key, hba) = (
        dir.path().join("server.crt"),
        dir.path().join("server.key"),
        dir.path().join("pg_hba.conf"),
    );
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The test role over TLS only; the superuser (used by the harness to
    // start and check the server) over either.
    std::fs::write(&hba, "hostssl all all 127.0.0.1/32 scram-sha-256\nhost all postgres 127.0.0.1/32 scram-sha-256\n").unwrap();
    let probe =
        bucketbench::db::EmbeddedPostgres::start(bucketbench::db::Flavor::Throwaway).unwrap();
    for f in [&crt, &key, &hba] {
        probe.give_to_server(f).unwrap();
    }
    drop(probe);
    let (crt_s, key_s, hba_s) = (
        crt.display().to_string(),
        key.display().to_string(),
        hba.display().to_string(),
    );
    let pg = bucketbench::db::EmbeddedPostgres::start_with_settings(
        bucketbench::db::Flavor::Throwaway,
        &[
            ("ssl", "on"),
            ("ssl_cert_file", &crt_s),
            ("ssl_key_file", &key_s),
            ("hba_file", &hba_s),
        ],
    )
    .unwrap();
    let mut admin = connect(&pg.url("postgres"));
    admin
        .batch_execute("CREATE ROLE bb_tls LOGIN PASSWORD 'tls-pass'")
        .unwrap();
    let url = format!("postgres://bb_tls:tls-pass@127.0.0.1:{}/tlsdb", pg.port());
    let bucket = bucketbench::sim::SimBucket::generate(bucketbench::sim::Spec::new(
        bucketbench::sim::ProfileName::Tiny,
        4,
    ));
    let server = bucket
        .serve(Default::default(), "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let ingest = |db: &str, model: &str, ca: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingest"));
        cmd.args(["--bucket", &server.base_url(), "--model", model])
            .env("DATABASE_URL", db)
            .env_remove("PGSSLROOTCERT");
        if ca {
            cmd.arg("--db-ca-file").arg(&crt);
        }
        cmd.output().unwrap()
    };
    admin
        .batch_execute("CREATE DATABASE tlsdb OWNER bb_tls")
        .unwrap();
    // Plain text is refused by the server: what follows really is TLS.
    let plain = ingest(&format!("{url}?sslmode=disable"), "sync", true);
    assert!(!plain.status.success());
    // Unverified: refused by us, in one line, with the way out.
    let unverified = ingest(&format!("{url}?sslmode=require"), "sync", false);
    let stderr = String::from_utf8_lossy(&unverified.stderr);
    assert!(!unverified.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("--db-ca-file"),
        "{stderr}"
    );
    assert!(!stderr.contains("tls-pass"));
    for model in models::NAMES {
        admin
            .batch_execute("DROP DATABASE IF EXISTS tlsdb WITH (FORCE)")
            .unwrap();
        admin
            .batch_execute("CREATE DATABASE tlsdb OWNER bb_tls")
            .unwrap();
        let out = ingest(&format!("{url}?sslmode=require"), model, true);
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let diffs =
            bucketbench::sim::verify(&mut connect(&pg.url("tlsdb")), &bucket.expected()).unwrap();
        assert!(diffs.is_empty(), "{model}: {diffs:#?}");
    }
}
