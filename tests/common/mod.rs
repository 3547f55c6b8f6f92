//! Test support: one throwaway PostgreSQL per test binary (the suite's, or
//! tests/memory.rs's), a fresh database per test, fixture buckets served
//! over loopback HTTP by the simulated bucket server, the binaries as
//! commands, the ledger as pairs, and CSVs read by header name.
#![allow(dead_code)]

pub mod s3;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use bucketbench::bucket::BucketLocation;
use bucketbench::db::{Durability, EmbeddedPostgres, Flavor};
use bucketbench::models::{Knobs, Model};
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
    SimServer::start(store, conditions, any_port()).expect("start the simulated bucket")
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
        progress: Default::default(),
    }
}

pub fn pass(bucket: &str, db: &str, model: &str) -> PassSummary {
    run_pass(
        &config(bucket, db),
        model.parse::<Model>().unwrap().ingestor().as_ref(),
    )
    .expect("pass")
}

pub fn count(db: &mut postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// A binary of the crate with nothing inherited that changes what it does:
/// no `DATABASE_URL`, `RUST_LOG` or libpq variable that redirects or
/// refuses a URL's connection from the shell running the tests (a test sets
/// what it means), and `compare` measuring with the test build rather than
/// building the release one (`cargo test` sets `CARGO`).
fn binary(path: &str) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("PGHOSTADDR")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .env("BUCKETBENCH_MEASURE_UNOPTIMISED", "1");
    cmd
}

/// The `ingest` binary (see [`binary`]).
pub fn ingest() -> Command {
    binary(env!("CARGO_BIN_EXE_ingest"))
}

/// The `compare` binary (see [`binary`]).
pub fn compare() -> Command {
    binary(env!("CARGO_BIN_EXE_compare"))
}

/// The `bucket` binary (see [`binary`]).
pub fn bucket() -> Command {
    binary(env!("CARGO_BIN_EXE_bucket"))
}

/// A loopback address with port 0: the server the test starts binds any
/// free port and says which.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback port free a moment ago, for a process that must be told its
/// port (or a URL where nothing listens).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(any_port())
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to `within` for something to listen on loopback `port`;
/// fails the test, naming `what`, if nothing does.
pub fn wait_for_port(port: u16, within: std::time::Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start listening within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The rows of a one-column query.
pub fn column<T>(db: &mut postgres::Client, sql: &str) -> Vec<T>
where
    T: for<'a> postgres::types::FromSql<'a>,
{
    db.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The rows of a two-column query, as pairs.
pub fn pairs<A, B>(db: &mut postgres::Client, sql: &str) -> Vec<(A, B)>
where
    A: for<'a> postgres::types::FromSql<'a>,
    B: for<'a> postgres::types::FromSql<'a>,
{
    db.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `sql` (a count) on the ledger of `db`, or 0 while the ledger does not
/// exist yet (a worker killed or watched before it created the schema).
pub fn ledger_count(db: &str, sql: &str) -> i64 {
    ledger_count_on(&mut connect(db), sql)
}

/// [`ledger_count`] on an open connection, for polling: opening one per
/// poll can cost more than a small pass has left on a loaded machine.
pub fn ledger_count_on(c: &mut postgres::Client, sql: &str) -> i64 {
    if count(
        c,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'processed_files'",
    ) == 0
    {
        return 0;
    }
    count(c, sql)
}

/// The ledger as (key, status) pairs, in key order.
pub fn ledger(db: &mut postgres::Client) -> Vec<(String, String)> {
    pairs(db, "SELECT key, status FROM processed_files ORDER BY key")
}

/// The ledger as (key, status, reason) triples, in key order.
pub fn ledger_with_reasons(db: &mut postgres::Client) -> Vec<(String, String, Option<String>)> {
    db.query(
        "SELECT key, status, reason FROM processed_files ORDER BY key",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// A CSV file read by header name: its header row and its rows, each a map
/// from column name to value.
pub struct Csv {
    pub headers: Vec<String>,
    pub rows: Vec<HashMap<String, String>>,
}

impl Csv {
    /// Reads `path`; fails the test with the path when it is not a CSV.
    pub fn read(path: &Path) -> Csv {
        let mut r =
            csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let rows = r
            .records()
            .map(|rec| {
                let rec = rec.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                headers
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(str::to_string))
                    .collect()
            })
            .collect();
        Csv { headers, rows }
    }

    /// Every row's value in column `name`; fails the test when there is
    /// no such column.
    pub fn column(&self, name: &str) -> Vec<&str> {
        assert!(
            self.headers.iter().any(|h| h == name),
            "no column {name:?} in {:?}",
            self.headers
        );
        self.rows.iter().map(|r| r[name].as_str()).collect()
    }
}

const FAILING_BUCKET: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0].endswith("/files_list.data"):
            body, status = b"a.json\nb.json\n", 200
        else:
            body, status = b"try later", 500
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// A manifest-mode bucket whose manifest lists two keys and whose GETs all
/// answer 500: every file ends in the summary's fetch errors.
pub struct FailingBucket {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for FailingBucket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn failing_bucket() -> FailingBucket {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-c", FAILING_BUCKET])
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 is needed for this test: apt-get install -y python3");
    wait_for_port(
        port,
        std::time::Duration::from_secs(20),
        "the test HTTP server",
    );
    FailingBucket { child, port }
}

/// The child's exit status, stdout and stderr, once it ends; killed and
/// failed if it runs past `within` (a pass hanging on a frozen bucket).
pub fn finish(
    mut child: std::process::Child,
    within: std::time::Duration,
    what: &str,
) -> (std::process::ExitStatus, String, String) {
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    // Read as they come, so a full pipe never blocks the child.
    let out = std::thread::spawn(move || std::io::read_to_string(&mut out).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut err).unwrap_or_default());
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {within:?}: {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Serves `listener` as a PostgreSQL server that refuses every login: it
/// declines TLS, reads the startup message and answers with an error
/// ("no pg_hba.conf entry for this test"), as a server whose pg_hba.conf
/// or role list says no. Returns at once; the server runs on a thread.
pub fn refuse_every_login(listener: std::net::TcpListener) {
    use std::io::{Read as _, Write as _};
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let message = |conn: &mut std::net::TcpStream| -> Option<Vec<u8>> {
                let mut len = [0u8; 4];
                conn.read_exact(&mut len).ok()?;
                let len = (u32::from_be_bytes(len) as usize).checked_sub(4)?;
                let mut body = vec![0u8; len.min(1 << 16)];
                conn.read_exact(&mut body).ok()?;
                Some(body)
            };
            // An SSLRequest (code 80877103) first, then the startup.
            if message(&mut conn).is_some_and(|m| m == [4, 210, 22, 47]) {
                let _ = conn.write_all(b"N");
                let _ = message(&mut conn);
            }
            let fields = b"SFATAL\0C28000\0Mno pg_hba.conf entry for this test\0\0";
            let mut reply = vec![b'E'];
            reply.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
            reply.extend_from_slice(fields);
            let _ = conn.write_all(&reply);
        }
    });
}
