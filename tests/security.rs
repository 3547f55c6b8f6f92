//! Security: TLS verified by default (and a private CA accepted only when
//! given), secrets never in any output or file, SQL values always bound.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use bucketbench::models::Model;
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
    let port = free_port();
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
    wait_for_port(port, Duration::from_secs(20), "the test HTTPS server");
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
    let out = ingest()
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

    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let out = ingest()
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
    let server = bucket.serve(Default::default(), any_port()).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let runs = [
        ingest()
            .args(["--bucket", &server.base_url(), "--model", "async"])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap(),
        // A failing run: errors must not print the password either.
        ingest()
            .args([
                "--bucket",
                &server.base_url(),
                "--database-url",
                &db.replace("127.0.0.1", "127.0.0.2")
                    .replace(&url.port().unwrap().to_string(), "1"),
            ])
            .output()
            .unwrap(),
        compare()
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
    let s3 = ingest()
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

/// Every file under `dir`, as text.
fn files_under(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                out.push((p.display().to_string(), text));
            }
        }
    }
    out
}

/// Where `secret` occurs in `text`, with some context, for the failure
/// message.
fn leak_of(text: &str, secret: &str) -> Option<String> {
    let i = text.find(secret)?;
    let start = text[..i].char_indices().rev().nth(80).map_or(0, |(j, _)| j);
    let end = text[i..]
        .char_indices()
        .nth(80)
        .map_or(text.len(), |(j, _)| i + j);
    Some(text[start..end].to_string())
}

/// The adversarial pass's findings, at `RUST_LOG=trace`: database URLs
/// with several hosts, an invalid port, `key = 'value'` connection strings
/// with spaces and quotes, bucket URLs with userinfo (in errors and in the
/// `--json` fetch errors), and an S3 bucket with AWS keys and a session
/// token whose presigned URLs the HTTP clients would log. Each against a
/// real server and against unreachable ones, through `ingest` and
/// `compare`; stdout, stderr and every file written are searched.
#[test]
fn secrets_in_every_form_stay_out_of_output_logs_and_files_at_trace_level() {
    let admin = fresh_db();
    let parsed = url::Url::parse(&admin).unwrap();
    let port = parsed.port().unwrap();
    let dbname = parsed.path().trim_start_matches('/').to_string();
    let (pw_url, pw_kv) = ("pg-url-Aq7x", "pg kv'Bq7x Tz9tail");
    let mut c = connect(&admin);
    c.batch_execute(&format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bb_url') THEN
             CREATE ROLE bb_url LOGIN SUPERUSER PASSWORD '{pw_url}';
           END IF;
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bb_kv') THEN
             CREATE ROLE bb_kv LOGIN SUPERUSER PASSWORD '{}';
           END IF;
         END $$",
        pw_kv.replace('\'', "''")
    ))
    .unwrap();
    let kv_quoted = pw_kv.replace('\\', "\\\\").replace('\'', "\\'");
    let url_plain = format!("postgres://bb_url:{pw_url}@127.0.0.1:{port}/{dbname}");
    // The first host refuses at once; the second is the real server.
    let url_multi = format!("postgres://bb_url:{pw_url}@127.0.0.2:1,127.0.0.1:{port}/{dbname}");
    let kv =
        format!("host=127.0.0.1 port={port} user=bb_kv password = '{kv_quoted}' dbname={dbname}");
    let unreachable = [
        format!("postgres://bb_url:{pw_url}@127.0.0.1:1,127.0.0.2:1/{dbname}"),
        format!("postgres://bb_url:{pw_url}@127.0.0.1:99999/{dbname}"),
        format!("host=127.0.0.1 port=1 user=bb_kv password='{kv_quoted}' dbname={dbname}"),
        format!("postgresql://bb_url@127.0.0.1:1/{dbname}?password={pw_url}"),
    ];

    let (bucket_pw, aws_key, aws_secret, aws_token) = (
        "bucket-pw-Wq4x",
        "AKIDTRACETEST0042",
        "aws-secret-Jm5x",
        "aws-session-token-Hy6x",
    );
    let sas_sig = "sas-sig-Vn8x";
    let failing = failing_bucket();
    let tiny = bucketbench::sim::SimBucket::generate(bucketbench::sim::Spec::new(
        bucketbench::sim::ProfileName::Tiny,
        5,
    ));
    let plain_bucket = tiny.serve(Default::default(), any_port()).unwrap();
    let s3 = bucketbench::sim::SimServer::start_with(
        tiny.store(),
        Default::default(),
        any_port(),
        bucketbench::sim::ServeOptions {
            bucket: "sim".into(),
            auth: Some(bucketbench::sim::SimAuth {
                access_key: aws_key.into(),
                secret_key: aws_secret.into(),
                public_read: false,
            }),
        },
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();

    let traced = |mut cmd: Command| {
        cmd.env("RUST_LOG", "trace")
            .env("AWS_ACCESS_KEY_ID", aws_key)
            .env("AWS_SECRET_ACCESS_KEY", aws_secret)
            .env("AWS_SESSION_TOKEN", aws_token)
            .stdin(Stdio::null());
        cmd
    };
    // (what, expected to succeed, output)
    let mut runs: Vec<(String, bool, std::process::Output)> = Vec::new();
    for (what, db) in [
        ("url", &url_plain),
        ("multi-host", &url_multi),
        ("key=value", &kv),
    ] {
        db_pass(
            &mut runs,
            what,
            traced(ingest()).args([
                "--bucket",
                &plain_bucket.base_url(),
                "--model",
                "async",
                "--database-url",
                db,
            ]),
        );
    }
    for db in &unreachable {
        runs.push((
            format!(
                "unreachable {}",
                db.split('@').next_back().unwrap_or_default()
            ),
            false,
            traced(ingest())
                .args(["--bucket", &plain_bucket.base_url(), "--database-url", db])
                .output()
                .unwrap(),
        ));
    }
    // A bucket URL with userinfo: in fetch errors (--json and text), and
    // unreachable.
    let with_userinfo = format!("http://bkuser:{bucket_pw}@127.0.0.1:{}", failing.port);
    for json in [true, false] {
        let mut cmd = traced(ingest());
        cmd.args([
            "--bucket",
            &with_userinfo,
            "--attempts",
            "1",
            "--database-url",
            &url_plain,
        ]);
        if json {
            cmd.arg("--json");
        }
        runs.push((
            "bucket userinfo, fetch errors".into(),
            true,
            cmd.output().unwrap(),
        ));
    }
    runs.push((
        "bucket userinfo, unreachable".into(),
        false,
        traced(ingest())
            .args([
                "--bucket",
                &format!("http://bkuser:{bucket_pw}@127.0.0.1:1/b"),
                "--attempts",
                "1",
            ])
            .args(["--database-url", &url_plain])
            .output()
            .unwrap(),
    ));
    runs.push((
        "bucket userinfo, bad port".into(),
        false,
        traced(ingest())
            .args([
                "--bucket",
                &format!("http://bkuser:{bucket_pw}@127.0.0.1:99999/b"),
            ])
            .args(["--database-url", &url_plain])
            .output()
            .unwrap(),
    ));
    // A manifest-mode base URL carrying a shared-access token in its query:
    // sent on every request, through both HTTP clients, shown nowhere.
    let sas = format!("{}?sv=2024-01&sig={sas_sig}", plain_bucket.base_url());
    for model in ["sync", "async"] {
        db_pass(
            &mut runs,
            &format!("manifest token {model}"),
            traced(ingest()).args([
                "--bucket",
                &sas,
                "--model",
                model,
                "--database-url",
                &url_plain,
            ]),
        );
    }
    runs.push((
        "manifest token, fetch errors".into(),
        true,
        traced(ingest())
            .args([
                "--bucket",
                &format!("http://127.0.0.1:{}/b?token={sas_sig}", failing.port),
                "--attempts",
                "1",
                "--json",
                "--database-url",
                &url_plain,
            ])
            .output()
            .unwrap(),
    ));
    // S3 mode, signed with a session token, through both HTTP clients.
    for model in Model::MODELS.map(Model::name) {
        runs.push((
            format!("s3 {model}"),
            true,
            traced(ingest())
                .args([
                    "--bucket",
                    "s3://sim",
                    "--endpoint",
                    &s3.endpoint(),
                    "--model",
                    model,
                ])
                .args(["--database-url", &url_plain])
                .output()
                .unwrap(),
        ));
    }
    // compare: on the S3 bucket with a multi-host URL, and on its simulated
    // bucket with a key=value connection string in the environment.
    let base = [
        "--runs",
        "1",
        "--warmup",
        "0",
        "--no-ceilings",
        "--latency-ms",
        "1",
        "--out",
    ];
    runs.push((
        "compare s3, multi-host".into(),
        true,
        traced(compare())
            .args([
                "--bucket",
                "s3://sim",
                "--endpoint",
                &s3.endpoint(),
                "--models",
                "sync,async",
            ])
            .args(base)
            .arg(out_dir.path().join("s3"))
            .args(["--database-url", &url_multi])
            .output()
            .unwrap(),
    ));
    runs.push((
        "compare sim, key=value".into(),
        true,
        traced(compare())
            .args(["--profile", "tiny", "--models", "async-fetch,threads"])
            .args(base)
            .arg(out_dir.path().join("sim"))
            .env("DATABASE_URL", &kv)
            .output()
            .unwrap(),
    ));
    runs.push((
        "compare unreachable".into(),
        false,
        traced(compare())
            .args(["--profile", "tiny", "--models", "sync"])
            .args(base)
            .arg(out_dir.path().join("none"))
            .args(["--database-url", &unreachable[0]])
            .output()
            .unwrap(),
    ));

    let mut texts: Vec<(String, String)> = Vec::new();
    for (what, ok, out) in &runs {
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.success(),
            *ok,
            "{what}: stdout {stdout}\nstderr (last 3000 bytes) {}",
            &stderr[stderr.len().saturating_sub(3000)..]
        );
        if !ok {
            let last = stderr.lines().last().unwrap_or_default();
            assert!(last.starts_with("error: "), "{what}: {last}");
        }
        texts.push((format!("{what} stdout"), stdout));
        texts.push((format!("{what} stderr"), stderr));
    }
    // The runs really produced what is searched: a fetch error naming the
    // bucket, the clients' trace logging, and the compare files.
    let all: String = texts.iter().map(|(_, t)| t.as_str()).collect();
    assert!(all.contains("fetch_errors"), "no --json summary");
    assert!(
        all.contains("HTTP 500 for http://"),
        "no fetch error naming the bucket"
    );
    assert!(all.contains("TRACE"), "RUST_LOG=trace logged nothing");
    let files = files_under(out_dir.path());
    assert!(
        files.iter().any(|(p, _)| p.ends_with("environment.json")),
        "{files:?}"
    );
    texts.extend(files);

    let mut leaks = Vec::new();
    let secrets = [
        pw_url, "Bq7x", "Tz9tail", bucket_pw, aws_key, aws_secret, aws_token, sas_sig,
    ];
    for (what, text) in &texts {
        for secret in secrets {
            if let Some(context) = leak_of(text, secret) {
                leaks.push(format!("{secret} in {what}: …{context}…"));
            }
        }
        // A presigned URL's signature is derived from the secret key: none
        // may be shown either.
        for param in [
            "X-Amz-Signature=",
            "X-Amz-Credential=",
            "X-Amz-Security-Token=",
        ] {
            for (i, _) in text.match_indices(param) {
                if !text[i + param.len()..].starts_with("***") {
                    leaks.push(format!(
                        "{param} in {what}: …{}…",
                        &text[i..(i + 80).min(text.len())]
                    ));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// Runs an ingest that must succeed against the real database.
fn db_pass(runs: &mut Vec<(String, bool, std::process::Output)>, what: &str, cmd: &mut Command) {
    runs.push((format!("database {what}"), true, cmd.output().unwrap()));
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
                    || line.contains("CREATE SCHEMA {schema}")
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
    let probe = bucketbench::db::EmbeddedPostgres::start(bucketbench::db::Flavor::Throwaway(
        bucketbench::db::Durability::Relaxed,
    ))
    .unwrap();
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
        bucketbench::db::Flavor::Throwaway(bucketbench::db::Durability::Relaxed),
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
    let server = bucket.serve(Default::default(), any_port()).unwrap();
    let ingest = |db: &str, model: &str, ca: bool| {
        let mut cmd = common::ingest();
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
    for model in Model::MODELS.map(Model::name) {
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
    // libpq's own spelling, as cloud providers document it: the strictest
    // mode and a root file in the URL, no flag.
    let libpq = ingest(
        &format!("{url}?sslmode=verify-full&sslrootcert={}", crt.display()),
        "sync",
        false,
    );
    assert!(
        libpq.status.success(),
        "{}",
        String::from_utf8_lossy(&libpq.stderr)
    );
    // `--psql` holds psql to what the job holds itself to: on the default
    // URL (no sslmode), a server offering TLS is verified, never taken on
    // trust (psql's own default, `prefer`, would take any certificate).
    let bindir = bucketbench::db::embedded::find_bindir().unwrap();
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let psql = |ca: bool| {
        let mut cmd = common::ingest();
        cmd.env("PATH", &path)
            .env("DATABASE_URL", &url)
            .env_remove("PGSSLROOTCERT")
            .env("HOME", dir.path())
            // libpq variables left in the shell must not redirect psql
            // away from the server the job reads from the URL (a PGHOST
            // the URL overrides; a service file no PGSERVICE names).
            .env("PGHOST", "127.0.0.2")
            .env("PGSERVICEFILE", "/nonexistent/pg_service.conf");
        if ca {
            cmd.arg("--db-ca-file").arg(&crt);
        }
        cmd.args([
            "--psql",
            "-tAc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ]);
        cmd.output().unwrap()
    };
    let unverified = psql(false);
    assert!(
        !unverified.status.success(),
        "psql took an unverified certificate: {}",
        String::from_utf8_lossy(&unverified.stdout)
    );
    let verified = psql(true);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "t");
    // An address given apart from the name (`hostaddr`), as libpq takes
    // it: psql is held to TLS there too, not sent in plain text because
    // the name itself does not resolve.
    let admin_url = pg.url("postgres");
    let password = admin_url
        .split_once("postgres:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .unwrap()
        .0;
    let conninfo = format!(
        "host=nosuch.invalid hostaddr=127.0.0.1 port={} user=postgres password={password} dbname=postgres",
        pg.port()
    );
    let out = common::ingest()
        .env("PATH", &path)
        .env("DATABASE_URL", &conninfo)
        .env_remove("PGSSLROOTCERT")
        .env("HOME", dir.path())
        .arg("--db-ca-file")
        .arg(&crt)
        .args([
            "--psql",
            "-tAc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .output()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "f",
        "psql went in plain text to a server that offers TLS"
    );
    assert!(
        !out.status.success(),
        "the certificate does not name nosuch.invalid"
    );
}

/// A bucket whose certificate no trusted CA signed is refused at once, by
/// both HTTP clients: a refused certificate is permanent, so it is not
/// retried like a network error (it used to be, five times over 12 s).
#[test]
fn a_refused_certificate_is_not_retried() {
    use bucketbench::sim::{Conditions, NetworkModel, ServeOptions, SimBucket, Spec, TlsVersion};
    let bucket = SimBucket::generate(Spec::new(bucketbench::sim::ProfileName::Tiny, 1));
    let served = bucket
        .serve_network(
            Conditions::default(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ServeOptions::default(),
            NetworkModel {
                tls: Some(TlsVersion::Tls13),
                ..NetworkModel::default()
            },
        )
        .unwrap();
    let db = fresh_db();
    for model in [Model::Sync, Model::Async] {
        let out = ingest()
            .env("DATABASE_URL", &db)
            .args(["-b", &served.base_url(), "--model", model.name()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{model}: {stderr}");
        assert!(stderr.contains("certificate"), "{model}: {stderr}");
        assert!(
            stderr.contains("--ca-file"),
            "{model}: says how to trust a private CA: {stderr}"
        );
        assert!(
            !stderr.contains("attempt 1 of"),
            "{model}: a refused certificate was retried: {stderr}"
        );
    }
}

const REDIRECTING_HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
plain = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("files_list.data"):
            body = b"a.json\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:" + plain + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

/// Found by an adversary: an https bucket that redirected each object to
/// plain http had every file loaded over plain HTTP, without a word. A
/// bucket reached over TLS now stays on TLS: the redirect is refused and
/// the file left for a later pass, in every model.
#[test]
fn a_redirect_from_https_to_plain_http_is_refused() {
    let plain = https_bucket(); // only for its directory and certificate
    let site = plain._dir.path().join("site");
    let plain_port = free_port();
    let _plain_server = KillOnDrop(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &plain_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for this test: apt-get install -y python3"),
    );
    wait_for_port(plain_port, Duration::from_secs(20), "the plain HTTP server");
    let port = free_port();
    let dir = plain._dir.path();
    let _redirecting = KillOnDrop(
        Command::new("python3")
            .args(["-c", REDIRECTING_HTTPS_SERVER])
            .arg(port.to_string())
            .arg(plain_port.to_string())
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for this test: apt-get install -y python3"),
    );
    wait_for_port(
        port,
        Duration::from_secs(20),
        "the redirecting HTTPS server",
    );
    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let out = ingest()
            .args([
                "--bucket",
                &format!("https://127.0.0.1:{port}"),
                "--model",
                model,
            ])
            .arg("--ca-file")
            .arg(&plain.ca)
            .args(["--json", "--attempts", "1"])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{model}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(summary["loaded"], 0, "{model}: {summary}");
        assert!(
            summary["fetch_errors"]
                .to_string()
                .contains("refused a redirect to plain HTTP"),
            "{model}: {summary}"
        );
        assert_eq!(
            count(&mut connect(&db), "select count(*) from songs"),
            0,
            "{model}: a row came over plain HTTP"
        );
    }
}

/// A server process stopped when the test ends, failed or not (a leaked
/// one holds the test's inherited file descriptors open).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host name with several addresses is tried address by address as
/// libpq tries them: past an address that cannot be reached, never past a
/// server that answered. tokio-postgres, handed the name, tried the next
/// address after a refused login and sent the password there too. Both
/// the blocking client and the async one (the writers' and the pool's).
#[test]
fn a_name_with_several_addresses_stops_at_the_first_server_that_answers() {
    use bucketbench::db::connect::{connect_blocking_via, connect_via};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Two servers on one port, one address each: 127.0.0.2 refuses every
    // login, 127.0.0.1 counts who reaches it.
    let counting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = counting.local_addr().unwrap().port();
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    std::thread::spawn(move || {
        for conn in counting.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    let refusing = std::net::TcpListener::bind(("127.0.0.2", port))
        .expect("127.0.0.2 is a loopback address on Linux");
    common::refuse_every_login(refusing);
    fn both(_: &str, _: u16) -> Vec<std::net::IpAddr> {
        vec![[127, 0, 0, 2].into(), [127, 0, 0, 1].into()]
    }
    let cfg: tokio_postgres::Config =
        format!("host=db.test port={port} user=u password=hunter2 dbname=d connect_timeout=5")
            .parse()
            .unwrap();
    let tls = || bucketbench::db::tls::connector().unwrap();
    let named = |tried: &bucketbench::db::connect::Tried| {
        let said = format!(
            "{:#}",
            bucketbench::db::connect_error("postgres://u:hunter2@db.test/d", tried)
        );
        assert_eq!(tried.failures.len(), 1, "{said}");
        assert!(tried.stopped_early, "{said}");
        assert!(
            said.contains(&format!("db.test (127.0.0.2) port {port}: db error: FATAL: no pg_hba.conf entry for this test"))
                && said.contains("the hosts after it were not tried")
                && !said.contains("hunter2"),
            "{said}"
        );
    };
    let Err(tried) = connect_blocking_via(&cfg, tls(), both) else {
        panic!("a refused login connected")
    };
    named(&tried);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Err(tried) = runtime.block_on(connect_via(&cfg, tls(), both)) else {
        panic!("a refused login connected")
    };
    named(&tried);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the password went on to the next address"
    );
    // An address that cannot be reached is passed, for the next.
    fn closed_first(_: &str, _: u16) -> Vec<std::net::IpAddr> {
        vec![[127, 0, 0, 3].into(), [127, 0, 0, 1].into()]
    }
    let Err(tried) = connect_blocking_via(&cfg, tls(), closed_first) else {
        panic!("the counting server is no PostgreSQL")
    };
    assert_eq!(tried.failures.len(), 2);
    assert!(tried.failures[0].0.starts_with("db.test (127.0.0.3) port"));
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}
