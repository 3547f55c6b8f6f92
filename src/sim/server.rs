//! The simulated bucket's HTTP server (axum on loopback).
//!
//! One layout serves both modes: with bucket name `B`, `GET /B/<key>` is
//! both the manifest-mode object URL under base `http://HOST/B` and S3's
//! path-style GetObject; `GET /B?list-type=2` is ListObjectsV2; HEAD is
//! HeadObject. Network conditions (first-byte latency, jitter, bandwidth,
//! errors, stalls) are injected per request. The server must never be what
//! a benchmark measures: a deep listen backlog, bodies from memory, and
//! little work per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use percent_encoding::percent_decode_str;

use super::auth::SimAuth;
use super::store::Store;

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
}

struct App {
    store: Store,
    bucket: String,
    conditions: Conditions,
    auth: Option<SimAuth>,
    stats: Arc<ServerStats>,
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
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The bucket name the server answers to.
pub const BUCKET: &str = "sim";

impl SimServer {
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
        let std_listener = bind(addr)?;
        let addr = std_listener.local_addr()?;
        let stats = Arc::new(ServerStats::default());
        let bucket = options.bucket.clone();
        let app = Arc::new(App {
            store,
            bucket: options.bucket,
            conditions,
            auth: options.auth,
            stats: stats.clone(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sim-bucket".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    // TCP_NODELAY, as real object stores set it: with Nagle
                    // on, a body's last partial segment waits for the
                    // client's delayed ACK, up to 40 ms a response, which
                    // the benchmark would charge to the model.
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("listener")
                        .tap_io(|tcp| {
                            let _ = tcp.set_nodelay(true);
                        });
                    let router = axum::Router::new().fallback(handle).with_state(app);
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
                // Stalled requests hold tasks for a long time; do not wait on them.
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(SimServer {
            addr,
            bucket,
            stats,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The manifest-mode base URL (also the S3 path-style bucket URL).
    pub fn base_url(&self) -> String {
        format!("http://{}/{}", self.addr, self.bucket)
    }

    /// The S3 endpoint (for `--endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
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
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
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

fn chance(p: f64) -> bool {
    use rand::RngExt as _;
    p > 0.0 && rand::rng().random::<f64>() < p
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    let c = &app.conditions;
    if chance(c.stall_rate) {
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
    let delay = c.latency_ms
        + if c.jitter_ms > 0.0 {
            rand::random::<f64>() * c.jitter_ms
        } else {
            0.0
        };
    if delay > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
    }
    let injected_error = chance(c.error_rate);
    if injected_error {
        app.stats.injected_errors.fetch_add(1, Ordering::Relaxed);
        // A third each: 500, 503 SlowDown, and a body cut short below.
        match rand::random::<u8>() % 3 {
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
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, obj.body.len())
        .header(
            header::ETAG,
            HeaderValue::from_str(&obj.etag).expect("hex etag"),
        )
        .header(
            header::LAST_MODIFIED,
            super::listing::http_date(&obj.last_modified),
        )
        .header(header::CONTENT_TYPE, "application/json");
    match *req.method() {
        Method::HEAD => builder.body(Body::empty()).expect("valid response"),
        Method::GET => {
            let cut = injected_error.then_some(obj.body.len() / 2);
            builder
                .body(paced_body(obj.body, c.bandwidth_mbps, cut))
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
