//! The simulated bucket's HTTP server (axum on loopback).
//!
//! One layout serves both modes: with bucket name `B`, `GET /B/<key>` is
//! both the manifest-mode object URL under base `http://HOST/B` and S3's
//! path-style GetObject; `GET /B?list-type=2` is ListObjectsV2; HEAD is
//! HeadObject. Network conditions (first-byte latency, jitter, bandwidth,
//! errors, stalls) are injected per request; a [`NetworkModel`] adds
//! latency distributions, HTTPS, the round trips a new connection costs and
//! S3's request-rate limit. The server serves each connection itself (not
//! `axum::serve`) so it can count connections and handshakes and charge a
//! connection's set-up to its first response. The server must never be what
//! a benchmark measures: a deep listen backlog, bodies from memory, and
//! little work per request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use percent_encoding::percent_decode_str;

use super::auth::SimAuth;
use super::network::{LatencyHistogram, LatencyRng, NetworkModel, RateLimiter};
use super::store::Store;

/// The name of every thread the server runs on (its accept loop and its
/// tokio runtime's workers): what `compare` sums to charge the simulated
/// bucket's CPU to it rather than to the harness.
pub const THREAD_NAME: &str = "sim-bucket";

/// Per-request network conditions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Conditions {
    /// Time to first byte, in milliseconds.
    pub latency_ms: f64,
    /// Uniform extra delay in [0, jitter_ms) on top of the latency.
    pub jitter_ms: f64,
    /// Per-connection bandwidth in megabits per second (0: unlimited).
    pub bandwidth_mbps: f64,
    /// Share of requests answered 500/503 or cut mid-body.
    pub error_rate: f64,
    /// Share of requests that never answer (client timeouts are exercised).
    pub stall_rate: f64,
}

/// Counters a test or the harness can read.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub requests: AtomicU64,
    pub injected_errors: AtomicU64,
    pub stalls: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// TLS handshakes completed (resumed ones included).
    pub tls_handshakes: AtomicU64,
    /// Of those, resumed from a session ticket.
    pub tls_resumed: AtomicU64,
    /// TLS handshakes that failed or timed out (a client refusing the
    /// certificate shows here).
    pub tls_failures: AtomicU64,
    /// Requests refused with `503 SlowDown` by the rate limit.
    pub throttled: AtomicU64,
    /// The first-byte latencies drawn (set-up round trips excluded).
    pub first_byte_ms: LatencyHistogram,
    /// The set-up round trips charged to a new connection's first
    /// response (TCP and TLS handshakes), one entry per connection charged.
    pub setup_ms: LatencyHistogram,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub connections: u64,
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    pub tls_failures: u64,
    pub throttled: u64,
    pub injected_errors: u64,
    pub stalls: u64,
}

impl ServerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: get(&self.requests),
            connections: get(&self.connections),
            tls_handshakes: get(&self.tls_handshakes),
            tls_resumed: get(&self.tls_resumed),
            tls_failures: get(&self.tls_failures),
            throttled: get(&self.throttled),
            injected_errors: get(&self.injected_errors),
            stalls: get(&self.stalls),
        }
    }
}

struct App {
    store: Store,
    bucket: String,
    conditions: Conditions,
    auth: Option<SimAuth>,
    stats: Arc<ServerStats>,
    model: NetworkModel,
    rng: Arc<Mutex<Draws>>,
    limiter: Option<Mutex<RateLimiter>>,
    started: Instant,
}

/// One connection's state, seen by its requests.
struct Conn {
    /// The set-up round trips not yet charged (to the first response).
    setup_pending: AtomicBool,
    setup_ms: f64,
}

/// Who the server is: its bucket name and, optionally, who may read it.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub bucket: String,
    /// `None`: anyone may read (no signature checked).
    pub auth: Option<SimAuth>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bucket: BUCKET.to_string(),
            auth: None,
        }
    }
}

/// A running server. Stops when dropped.
pub struct SimServer {
    addr: SocketAddr,
    bucket: String,
    pub stats: Arc<ServerStats>,
    model: NetworkModel,
    /// The first-byte draws, shared with the serving tasks.
    rng: Arc<Mutex<Draws>>,
    /// Holds the CA file while the server runs.
    tls_dir: Option<tempfile::TempDir>,
    ca_file: Option<PathBuf>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The bucket name the server answers to.
pub const BUCKET: &str = "sim";

impl SimServer {
    /// Deals run `run`'s first-byte delays from here on: the sequence
    /// [`LatencyRng::for_run`] gives for this server's seed and `run`.
    /// `compare` deals each run number afresh before every model's run,
    /// so the models' runs `run` meet the same delays, in the order their
    /// requests arrive: the comparison is paired, and what differs between
    /// two models' times in one run is theirs, not the luck of the draw.
    pub fn deal_latencies(&self, run: u64) {
        *self.rng.lock().unwrap() = Draws::for_run(self.model.seed, run);
    }

    /// Serves `store` on `addr` (port 0 for any free port) from a thread of
    /// its own, so sync callers can use it too.
    pub fn start(store: Store, conditions: Conditions, addr: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(store, conditions, addr, ServeOptions::default())
    }

    /// As [`SimServer::start`], with a bucket name and access control.
    pub fn start_with(
        store: Store,
        conditions: Conditions,
        addr: SocketAddr,
        options: ServeOptions,
    ) -> anyhow::Result<Self> {
        Self::start_network(store, conditions, addr, options, NetworkModel::default())
    }

    /// As [`SimServer::start_with`], under a network model: latency shape,
    /// round-trip time, HTTPS (a CA made for this server, see
    /// [`SimServer::ca_file`]) and the request-rate limit.
    pub fn start_network(
        store: Store,
        conditions: Conditions,
        addr: SocketAddr,
        options: ServeOptions,
        model: NetworkModel,
    ) -> anyhow::Result<Self> {
        let (tls_dir, tls) = match model.tls {
            Some(version) => {
                let dir = tempfile::Builder::new()
                    .prefix("sim-bucket-tls")
                    .tempdir()?;
                let tls = super::tls::generate(dir.path(), version)?;
                (Some(dir), Some(tls))
            }
            None => (None, None),
        };
        let ca_file = tls.as_ref().map(|t| t.ca_file.clone());
        let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));
        let std_listener = bind(addr)?;
        let mut addr = std_listener.local_addr()?;
        // Bound to every interface (0.0.0.0, ::): the URLs it prints must
        // still be ones a client can connect to, and its certificate names
        // the loopback addresses.
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let stats = Arc::new(ServerStats::default());
        let bucket = options.bucket.clone();
        let limiter = (model.get_rate_per_prefix > 0.0)
            .then(|| Mutex::new(RateLimiter::new(model.get_rate_per_prefix)));
        let rng = Arc::new(Mutex::new(Draws::for_run(model.seed, 0)));
        let app = Arc::new(App {
            store,
            bucket: options.bucket,
            conditions,
            auth: options.auth,
            stats: stats.clone(),
            rng: rng.clone(),
            limiter,
            started: Instant::now(),
            model: model.clone(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                // Every thread of the server carries the one name, so the
                // harness can tell its CPU from its own (`harness::cpu`).
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(THREAD_NAME)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(accept_loop(std_listener, app, acceptor, rx));
                // Stalled requests hold tasks for a long time; do not wait on them.
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(SimServer {
            addr,
            bucket,
            stats,
            rng,
            model,
            tls_dir,
            ca_file,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The network model the server runs under.
    pub fn model(&self) -> &NetworkModel {
        &self.model
    }

    /// With HTTPS, the PEM file of the CA that signed the server's
    /// certificate (for `--ca-file`); it lives as long as the server.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Copies the CA file to `path` (for a client started later, or after
    /// the server's own directory is gone).
    pub fn write_ca_file(&self, path: &Path) -> anyhow::Result<()> {
        let src = self
            .ca_file
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the server is not serving HTTPS"))?;
        std::fs::copy(src, path)
            .map_err(|e| anyhow::anyhow!("cannot write the CA to {}: {e}", path.display()))?;
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        if self.tls_dir.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The manifest-mode base URL (also the S3 path-style bucket URL).
    pub fn base_url(&self) -> String {
        format!("{}://{}/{}", self.scheme(), self.addr, self.bucket)
    }

    /// The S3 endpoint (for `--endpoint`).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener with a deep backlog: a burst of hundreds of simultaneous
/// connects must not turn into SYN retries (seconds of stall that would look
/// like a slow model).
fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (another process has it: pick another with --addr, or --addr 127.0.0.1:0 for any free port)"
                }
                _ => "",
            };
            anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
        })?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Longest a TLS handshake may take before the connection is dropped: a
/// client that connects and says nothing must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown`, serving each in a task of its own
/// (the TLS handshake included, so a slow handshake never holds back the
/// next accept).
async fn accept_loop(
    std_listener: std::net::TcpListener,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
    let router = axum::Router::new().fallback(handle).with_state(app.clone());
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // Out of descriptors or a connection reset before accept:
                // pause briefly rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        app.stats.connections.fetch_add(1, Ordering::Relaxed);
        // TCP_NODELAY, as real object stores set it: with Nagle on, a
        // body's last partial segment waits for the client's delayed ACK,
        // up to 40 ms a response, which the benchmark would charge to the
        // model.
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let rtt = app.model.rtt_ms;
            match tls {
                None => {
                    let setup = super::network::setup_rtts(None, false);
                    serve_conn(tcp, router, conn_state(setup, rtt)).await;
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            _ => {
                                app.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        };
                    app.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                    let resumed =
                        stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    if resumed {
                        app.stats.tls_resumed.fetch_add(1, Ordering::Relaxed);
                    }
                    let setup = super::network::setup_rtts(app.model.tls, resumed);
                    serve_conn(stream, router, conn_state(setup, rtt)).await;
                }
            }
        });
    }
}

fn conn_state(setup_rtts: u32, rtt_ms: f64) -> Arc<Conn> {
    Arc::new(Conn {
        setup_pending: AtomicBool::new(rtt_ms > 0.0),
        setup_ms: setup_rtts as f64 * rtt_ms,
    })
}

/// HTTP/1.1 on one connection (S3 speaks no HTTP/2), each request tagged
/// with the connection's state.
async fn serve_conn<S>(io: S, router: axum::Router, conn: Arc<Conn>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tower = hyper_util::service::TowerToHyperService::new(router);
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn.clone());
            hyper::service::Service::call(&tower, req)
        });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

fn s3_error(status: StatusCode, code: &str, message: &str, resource: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>{}</Resource><RequestId>sim</RequestId></Error>",
        xml_escape(resource)
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(Body::from(body))
        .expect("valid response")
}

pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a fault with probability `p` strikes this request, drawn from
/// the server's seeded fault stream: a sequential client meets the same
/// faults run after run, so a test of retries cannot pass a run that
/// happened to draw none. No draw is taken when `p` is 0, so the latency
/// draws `compare` pairs its runs on do not depend on the fault rates.
fn chance(app: &App, p: f64) -> bool {
    p > 0.0 && app.rng.lock().unwrap().faults.unit() < p
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    let c = &app.conditions;
    if chance(&app, c.stall_rate) {
        app.stats.stalls.fetch_add(1, Ordering::Relaxed);
        // Long enough for any client timeout; bounded so nothing hangs forever.
        tokio::time::sleep(Duration::from_secs(30)).await;
        return s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Stalled",
            req.uri().path(),
        );
    }
    // Judged on arrival, answered after the latency like any response.
    let throttled = match &app.limiter {
        Some(limiter) if matches!(*req.method(), Method::GET | Method::HEAD) => {
            let path = req.uri().path().trim_start_matches('/');
            let key = path.split_once('/').map_or("", |(_, k)| k);
            let prefix = super::network::rate_prefix(key);
            let now = app.started.elapsed().as_secs_f64();
            !limiter.lock().unwrap().admit(prefix, now)
        }
        _ => false,
    };
    let first_byte = {
        let mut draws = app.rng.lock().unwrap();
        let rng = if req.headers().contains_key(header::RANGE) {
            &mut draws.ranges
        } else {
            &mut draws.whole
        };
        app.model.latency.draw(rng, c.latency_ms, c.jitter_ms)
    };
    app.stats.first_byte_ms.record(first_byte);
    let setup = req
        .extensions()
        .get::<Arc<Conn>>()
        .filter(|conn| conn.setup_pending.swap(false, Ordering::Relaxed))
        .map_or(0.0, |conn| conn.setup_ms);
    if setup > 0.0 {
        app.stats.setup_ms.record(setup);
    }
    let delay = first_byte + setup;
    if delay > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
    }
    if throttled {
        app.stats.throttled.fetch_add(1, Ordering::Relaxed);
        return s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
            req.uri().path(),
        );
    }
    let injected_error = chance(&app, c.error_rate);
    if injected_error {
        app.stats.injected_errors.fetch_add(1, Ordering::Relaxed);
        // A third each: 500, 503 SlowDown, and a body cut short below.
        match (app.rng.lock().unwrap().faults.unit() * 3.0) as u8 {
            0 => {
                return s3_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    req.uri().path(),
                );
            }
            1 => {
                return s3_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "Please reduce your request rate.",
                    req.uri().path(),
                );
            }
            _ => {}
        }
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let raw = path.trim_start_matches('/');
    let (bucket, key_enc) = raw.split_once('/').unwrap_or((raw, ""));
    if bucket != app.bucket {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
            &path,
        );
    }
    let key = percent_decode_str(key_enc).decode_utf8_lossy().into_owned();
    if let Some(auth) = &app.auth {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let params = super::listing::params(&query);
        let request = super::auth::Request {
            host,
            bucket: &app.bucket,
            head: *req.method() == Method::HEAD,
            key: &key,
            query: &params,
        };
        if let Err((code, message)) = super::auth::check(auth, &request) {
            return s3_error(StatusCode::FORBIDDEN, code, &message, &path);
        }
    }
    if key.is_empty() {
        if *req.method() != Method::GET {
            return s3_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
                &path,
            );
        }
        return super::listing::list_objects_v2(&app.store, &app.bucket, &query);
    }
    let Some(obj) = app.store.get(&key) else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
            &key,
        );
    };
    if let Some(wanted) = req.headers().get(header::IF_MATCH) {
        // S3 compares the quoted ETag; `*` matches any existing object.
        let wanted = wanted.to_str().unwrap_or("");
        if wanted.trim() != "*" && !wanted.split(',').any(|t| t.trim() == obj.etag) {
            return s3_error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                &key,
            );
        }
    }
    let total = obj.body.len() as u64;
    let range = match req.headers().get(header::RANGE) {
        Some(v) if *req.method() == Method::GET => {
            match ByteRange::parse(v.to_str().unwrap_or(""), total) {
                Ok(r) => r,
                Err(()) => {
                    let mut resp = s3_error(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "InvalidRange",
                        "The requested range is not satisfiable",
                        &key,
                    );
                    resp.headers_mut().insert(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes */{total}")).expect("ascii"),
                    );
                    return resp;
                }
            }
        }
        _ => None,
    };
    let body = match range {
        Some(ByteRange { first, last }) => obj.body.slice(first as usize..=last as usize),
        None => obj.body,
    };
    let mut builder = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::ETAG,
            HeaderValue::from_str(&obj.etag).expect("hex etag"),
        )
        .header(
            header::LAST_MODIFIED,
            super::listing::http_date(&obj.last_modified),
        )
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(ByteRange { first, last }) = range {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{total}"),
        );
    }
    match *req.method() {
        Method::HEAD => builder.body(Body::empty()).expect("valid response"),
        Method::GET => {
            let cut = injected_error.then_some(body.len() / 2);
            builder
                .body(paced_body(body, c.bandwidth_mbps, cut))
                .expect("valid response")
        }
        _ => s3_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            &path,
        ),
    }
}

/// The first-byte draws of a run: one sequence for whole requests, one for
/// byte-range requests. A model that fetches a large body in parts takes
/// its parts' delays from the second, so the GETs of every model's run
/// *k* still meet the same delays in the same order (the pairing
/// `compare` relies on), however many parts each model asked for. Faults
/// (errors, stalls) draw from a third, seeded like the others.
struct Draws {
    whole: LatencyRng,
    ranges: LatencyRng,
    faults: LatencyRng,
}

impl Draws {
    fn for_run(seed: u64, run: u64) -> Self {
        Draws {
            whole: LatencyRng::for_run(seed, run),
            // Another seed's stream k: independent of every run's own.
            ranges: LatencyRng::for_run(seed ^ 0x9e37_79b9_7f4a_7c15, run),
            faults: LatencyRng::for_run(seed ^ 0x5851_f42d_4c95_7f2d, run),
        }
    }
}

/// One byte range of an object, both ends inclusive, as a `Range` header
/// asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRange {
    first: u64,
    last: u64,
}

impl ByteRange {
    /// `bytes=A-B`, `bytes=A-` or `bytes=-N` of an object of `total` bytes.
    /// `Ok(None)`: answer the whole object, as S3 does for a header it does
    /// not take (several ranges, another unit, garbage). `Err`: nothing of
    /// the object is in the range (416).
    fn parse(header: &str, total: u64) -> Result<Option<ByteRange>, ()> {
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return Ok(None);
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let Some((a, b)) = spec.split_once('-') else {
            return Ok(None);
        };
        let (a, b) = (a.trim(), b.trim());
        let number = |s: &str| s.parse::<u64>().ok();
        let (first, last) = match (a.is_empty(), b.is_empty()) {
            (true, false) => match number(b) {
                Some(0) => return Err(()),
                Some(n) => (total.saturating_sub(n), total.saturating_sub(1)),
                None => return Ok(None),
            },
            (false, true) => match number(a) {
                Some(first) => (first, total.saturating_sub(1)),
                None => return Ok(None),
            },
            (false, false) => match (number(a), number(b)) {
                (Some(first), Some(last)) if first <= last => {
                    (first, last.min(total.saturating_sub(1)))
                }
                _ => return Ok(None),
            },
            (true, true) => return Ok(None),
        };
        if total == 0 || first >= total {
            return Err(());
        }
        Ok(Some(ByteRange { first, last }))
    }
}

/// Streams `body` at `mbps` (0: all at once). With `cut`, sends that many
/// bytes and then fails the stream, which aborts the connection mid-body
/// (the client sees a short read, as with a reset).
fn paced_body(body: Bytes, mbps: f64, cut: Option<usize>) -> Body {
    if mbps <= 0.0 && cut.is_none() {
        return Body::from(body);
    }
    let bytes_per_sec = if mbps > 0.0 {
        mbps * 1e6 / 8.0
    } else {
        f64::INFINITY
    };
    // ~10 ms of data per chunk: smooth pacing without a wake-up per byte.
    let chunk = ((bytes_per_sec / 100.0) as usize).clamp(1024, 256 * 1024);
    let limit = cut.unwrap_or(body.len());
    let stream = async_stream(body, chunk, bytes_per_sec, limit, cut.is_some());
    Body::from_stream(stream)
}

fn async_stream(
    body: Bytes,
    chunk: usize,
    bytes_per_sec: f64,
    limit: usize,
    fail_at_end: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let start = tokio::time::Instant::now();
    futures::stream::unfold(0usize, move |sent| {
        let body = body.clone();
        async move {
            if sent >= limit {
                if fail_at_end && sent < body.len() {
                    // Returned once; the stream then ends with the error.
                    return Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "injected cut",
                        )),
                        usize::MAX,
                    ));
                }
                return None;
            }
            let end = (sent + chunk).min(limit);
            if bytes_per_sec.is_finite() {
                let due = start + Duration::from_secs_f64(end as f64 / bytes_per_sec);
                tokio::time::sleep_until(due).await;
            }
            Some((Ok(body.slice(sent..end)), end))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn a_range_header_is_read_as_s3_reads_it() {
        let r = |first, last| Ok(Some(ByteRange { first, last }));
        assert_eq!(ByteRange::parse("bytes=0-9", 100), r(0, 9));
        assert_eq!(ByteRange::parse("bytes=90-", 100), r(90, 99));
        assert_eq!(ByteRange::parse("bytes=-10", 100), r(90, 99));
        assert_eq!(
            ByteRange::parse("bytes=50-500", 100),
            r(50, 99),
            "clipped at the end"
        );
        assert_eq!(ByteRange::parse("bytes=100-", 100), Err(()), "past the end");
        assert_eq!(ByteRange::parse("bytes=-0", 100), Err(()));
        // What S3 does not take is answered whole.
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-9",
            "bytes=9-0",
            "bytes=x-y",
            "bytes=-",
        ] {
            assert_eq!(ByteRange::parse(ignored, 100), Ok(None), "{ignored}");
        }
    }
}
