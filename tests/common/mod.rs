//! Test support: one throwaway PostgreSQL per test binary, a fresh database
//! per test, and fixture buckets served over loopback HTTP by the simulated
//! bucket server.
#![allow(dead_code)]

pub mod s3;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use bucketbench::bucket::BucketLocation;
use bucketbench::db::{Durability, EmbeddedPostgres, Flavor};
use bucketbench::models::{self, Knobs};
use bucketbench::pass::{PassConfig, run_pass};
use bucketbench::report::PassSummary;
use bucketbench::sim::{Conditions, Object, SimServer, Store};

static PG: OnceLock<EmbeddedPostgres> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The test binary's PostgreSQL server. Fails (never skips) with the
/// install command when the server binaries are missing.
pub fn pg() -> &'static EmbeddedPostgres {
    PG.get_or_init(|| {
        // Relaxed, for speed: the tests check behaviour, not the disk.
        EmbeddedPostgres::start(Flavor::Throwaway(Durability::Relaxed))
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL ({e:#}); install it with `apt-get install -y postgresql`"))
    })
}

/// A new, empty database; returns its URL.
pub fn fresh_db() -> String {
    let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
    pg().create_database(&format!("t{}_{n}", std::process::id()))
        .expect("create database")
}

pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect")
}

/// A store holding these objects, with a manifest listing `manifest`.
pub fn store_with(files: &[(&str, &[u8])], manifest: &str) -> Store {
    let store = Store::new();
    for (k, body) in files {
        store.put(k, Object::new(body.to_vec(), "2021-06-01T00:00:00.000Z"));
    }
    store.put(
        "files_list.data",
        Object::new(manifest.as_bytes().to_vec(), "2021-06-01T00:00:00.000Z"),
    );
    store
}

pub fn serve(store: Store) -> SimServer {
    serve_with(store, Conditions::default())
}

pub fn serve_with(store: Store, conditions: Conditions) -> SimServer {
    SimServer::start(store, conditions, SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("start the simulated bucket")
}

pub fn config(bucket: &str, db: &str) -> PassConfig {
    let mut client = bucketbench::bucket::ClientConfig::default();
    // Keep tests quick when a fault is injected on purpose.
    client.retry.base = std::time::Duration::from_millis(50);
    PassConfig {
        bucket: BucketLocation::parse(bucket).unwrap(),
        database_url: db.to_string(),
        client,
        knobs: Knobs {
            concurrency: 8,
            connections: 4,
            threads: 4,
            ..Knobs::default()
        },
        progress: false,
    }
}

pub fn pass(bucket: &str, db: &str, model: &str) -> PassSummary {
    run_pass(
        &config(bucket, db),
        models::by_name(model).unwrap().as_ref(),
    )
    .expect("pass")
}

pub fn count(db: &mut postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}
