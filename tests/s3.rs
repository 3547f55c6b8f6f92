//! S3 API mode against a real third-party S3 server (moto_server) and
//! against the simulated bucket's S3 subset, with the same test bodies.
//!
//! moto_server checks SigV4 only in an `Authorization` header, never in a
//! presigned query string (what rusty-s3 produces), so it accepts any
//! signature: the access-denied cases run against the simulated bucket,
//! which re-signs each request with the real secret and compares, as S3
//! does.

use crate::common;

use std::sync::Arc;

use bucketbench::bucket::{BucketLocation, S3Options};
use bucketbench::models::{Knobs, Model};
use bucketbench::pass::{PassConfig, run_pass};
use bucketbench::report::PassSummary;
use bucketbench::sim::{
    Conditions, ProfileName, ServeOptions, SimAuth, SimBucket, Spec, Store, verify,
};
use common::s3::*;
use common::*;

#[derive(Clone, Copy, Debug)]
enum Target {
    Moto,
    Sim,
}

/// A bucket on one of the targets, holding the given objects.
struct TestBucket {
    endpoint: String,
    name: String,
    store: Option<Store>,
    _server: Option<bucketbench::sim::SimServer>,
}

impl TestBucket {
    fn new(target: Target, name: &str, objects: &[(String, Vec<u8>)], public_read: bool) -> Self {
        match target {
            Target::Moto => {
                let endpoint = moto().endpoint.clone();
                create_bucket(&endpoint, name, public_read);
                put_objects(&endpoint, name, objects);
                TestBucket {
                    endpoint,
                    name: name.into(),
                    store: None,
                    _server: None,
                }
            }
            Target::Sim => {
                let store = Store::new();
                for (k, b) in objects {
                    store.put(
                        k,
                        bucketbench::sim::Object::new(b.clone(), "2021-06-01T00:00:00.000Z"),
                    );
                }
                let auth = SimAuth {
                    access_key: ACCESS_KEY.into(),
                    secret_key: SECRET_KEY.into(),
                    public_read,
                };
                let server = bucketbench::sim::SimServer::start_with(
                    store.clone(),
                    Conditions::default(),
                    any_port(),
                    ServeOptions {
                        bucket: name.into(),
                        auth: Some(auth),
                    },
                )
                .unwrap();
                TestBucket {
                    endpoint: server.endpoint(),
                    name: name.into(),
                    store: Some(store),
                    _server: Some(server),
                }
            }
        }
    }

    fn add(&self, objects: &[(String, Vec<u8>)]) {
        match &self.store {
            Some(store) => objects.iter().for_each(|(k, b)| {
                store.put(
                    k,
                    bucketbench::sim::Object::new(b.clone(), "2021-06-02T00:00:00.000Z"),
                )
            }),
            None => put_objects(&self.endpoint, &self.name, objects),
        }
    }

    fn location(&self, signed: bool) -> BucketLocation {
        let opts = S3Options {
            endpoint: Some(self.endpoint.clone()),
            ..Default::default()
        };
        let mut loc = BucketLocation::parse_with(&format!("s3://{}", self.name), &opts).unwrap();
        if let BucketLocation::S3(b) = &mut loc {
            b.credentials = signed.then(|| Arc::new(creds()));
        }
        loc
    }
}

fn run(loc: BucketLocation, db: &str, model: &str) -> anyhow::Result<PassSummary> {
    let cfg = PassConfig {
        bucket: loc,
        database_url: db.to_string(),
        client: bucketbench::bucket::ClientConfig {
            retry: bucketbench::bucket::RetryPolicy {
                max_attempts: 2,
                ..Default::default()
            },
            ..Default::default()
        },
        knobs: Knobs {
            concurrency: 16,
            connections: 4,
            threads: 8,
            ..Knobs::default()
        },
        progress: Default::default(),
    };
    run_pass(&cfg, model.parse::<Model>().unwrap().ingestor().as_ref())
}

fn generated(profile: ProfileName) -> (SimBucket, Vec<(String, Vec<u8>)>) {
    let b = SimBucket::generate(Spec::new(profile, 21));
    let store = b.store();
    let objects = store
        .keys()
        .into_iter()
        .map(|k| {
            let body = store.get(&k).unwrap().body.to_vec();
            (k, body)
        })
        .collect();
    (b, objects)
}

fn song(title: &str) -> Vec<u8> {
    format!(r#"[{{"type":"song","data":{{"title":"{title}"}}}}]"#).into_bytes()
}

// --- Bodies ---------------------------------------------------------------

fn private_bucket_signed_every_model_loads_exactly(t: Target) {
    let (sim, objects) = generated(ProfileName::Small);
    let tb = TestBucket::new(
        t,
        &format!("bb-private-{}", format!("{t:?}").to_lowercase()),
        &objects,
        false,
    );
    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let s = run(tb.location(true), &db, model).unwrap();
        assert_eq!(
            s.listed, 20,
            "{model}: the manifest is not listed (suffix .json)"
        );
        let diffs = verify(&mut connect(&db), &sim.expected()).unwrap();
        assert!(diffs.is_empty(), "{t:?} {model}: {diffs:#?}");
        let etags: i64 = count(
            &mut connect(&db),
            "SELECT count(*) FROM processed_files WHERE etag LIKE '\"%\"'",
        );
        assert_eq!(etags, 20, "the ETag from the listing is in the ledger");
    }
}

fn public_bucket_anonymous_loads(t: Target) {
    let (sim, objects) = generated(ProfileName::Tiny);
    let tb = TestBucket::new(
        t,
        &format!("bb-public-{}", format!("{t:?}").to_lowercase()),
        &objects,
        true,
    );
    let db = fresh_db();
    run(tb.location(false), &db, "async").unwrap();
    assert!(
        verify(&mut connect(&db), &sim.expected())
            .unwrap()
            .is_empty()
    );
}

fn many_keys_paginate_and_odd_keys_round_trip(t: Target) {
    let mut objects: Vec<(String, Vec<u8>)> = (0..2500)
        .map(|i| (format!("page/k{i:05}.json"), song(&format!("t{i}"))))
        .collect();
    let odd = [
        "odd/a b.json",
        "odd/a+b.json",
        "odd/100%.json",
        "odd/ünï-код-鍵 x.json",
        "odd/q?h#.json",
    ];
    objects.extend(odd.iter().map(|k| (k.to_string(), song("odd"))));
    let tb = TestBucket::new(
        t,
        &format!("bb-many-{}", format!("{t:?}").to_lowercase()),
        &objects,
        false,
    );
    let db = fresh_db();
    let s = run(tb.location(true), &db, "async").unwrap();
    assert_eq!(
        (s.listed, s.loaded, s.songs),
        (2505, 2505, 2505),
        "{:?}",
        s.fetch_errors.first()
    );
    let mut c = connect(&db);
    for k in odd {
        let n: i64 = c
            .query_one("SELECT count(*) FROM processed_files WHERE key = $1", &[&k])
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{k}");
    }
    // With a prefix, only that part of the bucket is listed.
    let opts = S3Options {
        endpoint: Some(tb.endpoint.clone()),
        ..Default::default()
    };
    let mut loc = BucketLocation::parse_with(&format!("s3://{}/odd/", tb.name), &opts).unwrap();
    if let BucketLocation::S3(b) = &mut loc {
        b.credentials = Some(Arc::new(creds()));
    }
    let again = run(loc, &db, "sync").unwrap();
    assert_eq!(
        (again.listed, again.already_loaded, again.loaded),
        (5, 5, 0)
    );
}

fn objects_added_between_passes_are_the_only_ones_loaded(t: Target) {
    let first: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("a/{i}.json"), song("first")))
        .collect();
    let tb = TestBucket::new(
        t,
        &format!("bb-added-{}", format!("{t:?}").to_lowercase()),
        &first,
        false,
    );
    let db = fresh_db();
    assert_eq!(run(tb.location(true), &db, "threads").unwrap().loaded, 5);
    tb.add(
        &(0..3)
            .map(|i| (format!("b/{i}.json"), song("second")))
            .collect::<Vec<_>>(),
    );
    let s = run(tb.location(true), &db, "async-fetch").unwrap();
    assert_eq!((s.listed, s.already_loaded, s.loaded), (8, 5, 3));
    assert_eq!(
        count(
            &mut connect(&db),
            "SELECT count(*) FROM songs WHERE title = 'second'"
        ),
        3
    );
}

fn a_missing_bucket_is_one_clear_error(t: Target) {
    // A server with another bucket, kept alive for the test.
    let other = matches!(t, Target::Sim).then(|| TestBucket::new(t, "bb-other", &[], false));
    let endpoint = match &other {
        Some(tb) => tb.endpoint.clone(),
        None => moto().endpoint.clone(),
    };
    let opts = S3Options {
        endpoint: Some(endpoint.clone()),
        ..Default::default()
    };
    let mut loc = BucketLocation::parse_with("s3://bb-no-such-bucket", &opts).unwrap();
    if let BucketLocation::S3(b) = &mut loc {
        b.credentials = Some(Arc::new(creds()));
    }
    let db = fresh_db();
    let err = format!("{:#}", run(loc, &db, "sync").unwrap_err());
    assert_eq!(
        err,
        format!("bucket bb-no-such-bucket does not exist at {endpoint}")
    );
    assert_eq!(
        count(&mut connect(&db), "SELECT count(*) FROM processed_files"),
        0,
        "nothing loaded"
    );
}

macro_rules! both {
    ($($body:ident => $moto:ident, $sim:ident;)*) => {$(
        #[test]
        fn $moto() {
            $body(Target::Moto);
        }
        #[test]
        fn $sim() {
            $body(Target::Sim);
        }
    )*};
}

both! {
    private_bucket_signed_every_model_loads_exactly => moto_private_bucket_signed_every_model_loads_exactly, sim_private_bucket_signed_every_model_loads_exactly;
    public_bucket_anonymous_loads => moto_public_bucket_anonymous_loads, sim_public_bucket_anonymous_loads;
    many_keys_paginate_and_odd_keys_round_trip => moto_2500_keys_paginate_and_odd_keys_round_trip, sim_2500_keys_paginate_and_odd_keys_round_trip;
    objects_added_between_passes_are_the_only_ones_loaded => moto_objects_added_between_passes_are_the_only_ones_loaded, sim_objects_added_between_passes_are_the_only_ones_loaded;
    a_missing_bucket_is_one_clear_error => moto_a_missing_bucket_is_one_clear_error, sim_a_missing_bucket_is_one_clear_error;
}

// --- Access control (the simulated bucket checks signatures) ----------------

#[test]
fn sim_private_bucket_anonymous_is_access_denied() {
    let tb = TestBucket::new(
        Target::Sim,
        "bb-private-anon",
        &[("a.json".into(), song("x"))],
        false,
    );
    let db = fresh_db();
    let err = format!("{:#}", run(tb.location(false), &db, "sync").unwrap_err());
    assert!(
        err.starts_with("access denied to bucket bb-private-anon"),
        "{err}"
    );
    assert!(err.contains("anonymous"), "{err}");
    assert_eq!(
        count(&mut connect(&db), "SELECT count(*) FROM processed_files"),
        0
    );
}

#[test]
fn sim_wrong_secret_key_is_access_denied_in_one_line() {
    let tb = TestBucket::new(
        Target::Sim,
        "bb-wrong-secret",
        &[("a.json".into(), song("x"))],
        false,
    );
    let db = fresh_db();
    let out = ingest()
        .args([
            "--bucket",
            "s3://bb-wrong-secret",
            "--endpoint",
            &tb.endpoint,
            "--database-url",
            &db,
        ])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-9d2b")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: access denied to bucket bb-wrong-secret (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY): SignatureDoesNotMatch"
    );
    assert!(!stderr.contains("not-the-secret"));
    assert_eq!(
        count(&mut connect(&db), "SELECT count(*) FROM processed_files"),
        0
    );
}

#[test]
fn sim_public_bucket_still_checks_signed_requests() {
    let tb = TestBucket::new(
        Target::Sim,
        "bb-public-signed",
        &[("a.json".into(), song("x"))],
        true,
    );
    let mut loc = tb.location(true);
    if let BucketLocation::S3(b) = &mut loc {
        b.credentials = Some(Arc::new(rusty_s3::Credentials::new(ACCESS_KEY, "wrong")));
    }
    let err = format!("{:#}", run(loc, &fresh_db(), "sync").unwrap_err());
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
}

#[test]
fn an_unreachable_endpoint_is_one_clear_error() {
    let port = free_port();
    let out = ingest()
        .args([
            "--bucket",
            "s3://data",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--database-url",
            &fresh_db(),
            "--attempts",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach the S3 endpoint http://127.0.0.1:{port} for bucket data"
        )),
        "{stderr}"
    );
}

// --- The binaries against moto, as a user would run them ---------------------

#[test]
fn ingest_and_compare_against_moto_with_credentials_in_the_environment() {
    let (sim, objects) = generated(ProfileName::Small);
    let endpoint = moto().endpoint.clone();
    create_bucket(&endpoint, "bb-binaries", false);
    put_objects(&endpoint, "bb-binaries", &objects);
    let db = fresh_db();
    let out = ingest()
        .args([
            "--bucket",
            "s3://bb-binaries",
            "--endpoint",
            &endpoint,
            "--model",
            "async",
            "--json",
        ])
        .env("DATABASE_URL", &db)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        verify(&mut connect(&db), &sim.expected())
            .unwrap()
            .is_empty()
    );
    for secret in [SECRET_KEY, ACCESS_KEY] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked into the output (debug logging on)"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = compare()
        .args([
            "--bucket",
            "s3://bb-binaries",
            "--endpoint",
            &endpoint,
            "--runs",
            "1",
            "--warmup",
            "0",
            "--out",
        ])
        .arg(dir.path())
        .env("DATABASE_URL", &db)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every run passed the consistency check"),
        "{stdout}"
    );
    for model in Model::MODELS.map(Model::name) {
        // A row of the aligned table.
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{model} "))),
            "{stdout}"
        );
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY),
            "a secret leaked into a result file"
        );
    }
}
