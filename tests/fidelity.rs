//! Fidelity of the simulated bucket: HTTPS verified through a per-run CA,
//! connection and handshake counts, the round trips a new connection costs,
//! log-normal first-byte latency, S3's request-rate limit with `503
//! SlowDown`, and the named network presets of `bucket serve`. Real HTTP(S)
//! over loopback with the project's own clients.

use crate::common;

use std::io::{BufRead as _, Read as _, Write as _};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bucketbench::bucket::async_client::AsyncClient;
use bucketbench::bucket::sync_client::SyncClient;
use bucketbench::bucket::{ClientConfig, FetchError, Fetched, NetStats};
use bucketbench::sim::network::S3_GET_RATE_PER_PREFIX;
use bucketbench::sim::{
    Conditions, LatencyShape, NetworkModel, NetworkPreset, Object, ServeOptions, SimServer, Store,
    TlsVersion,
};
use common::any_port;

fn small_store(n: usize, prefix: &str) -> Store {
    let store = Store::new();
    for i in 0..n {
        store.put(
            &format!("{prefix}{i:04}.json"),
            Object::new(
                format!(r#"[{{"type":"song","data":{{"title":"t{i}"}}}}]"#),
                "2021-06-01T00:00:00Z",
            ),
        );
    }
    store
}

fn serve(store: Store, conditions: Conditions, model: NetworkModel) -> SimServer {
    SimServer::start_network(
        store,
        conditions,
        any_port(),
        ServeOptions::default(),
        model,
    )
    .unwrap()
}

fn client_config(server: &SimServer) -> ClientConfig {
    ClientConfig {
        ca_file: server.ca_file().map(|p| p.to_path_buf()),
        ..ClientConfig::default()
    }
}

fn body(f: Fetched) -> Vec<u8> {
    match f {
        Fetched::Object { bytes, .. } => bytes,
        other => panic!("expected an object, got {other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn https_is_verified_through_the_servers_ca_and_counts_connections_and_handshakes() {
    let store = small_store(20, "a/");
    let model = NetworkModel {
        tls: Some(TlsVersion::Tls13),
        get_rate_per_prefix: 0.0,
        ..NetworkModel::default()
    };
    let server = serve(store.clone(), Conditions::default(), model);
    assert!(server.base_url().starts_with("https://127.0.0.1:"));
    let ca = server
        .ca_file()
        .expect("an HTTPS server reports its CA file");
    assert!(
        std::fs::read_to_string(ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // Sync client (ureq), verification on, trusting the server's CA.
    let sync = SyncClient::new(client_config(&server), Arc::new(NetStats::default())).unwrap();
    for i in 0..10 {
        let key = format!("a/{i:04}.json");
        let got = body(sync.get(&format!("{}/{key}", server.base_url())).unwrap());
        assert_eq!(got, store.get(&key).unwrap().body.to_vec());
    }
    // Async client (reqwest), ten at once.
    let rt = runtime();
    let client = AsyncClient::new(client_config(&server), Arc::new(NetStats::default())).unwrap();
    let base = server.base_url();
    let got = rt.block_on(futures::future::join_all((10..20).map(|i| {
        let (client, base) = (client.clone(), base.clone());
        async move { client.get(&format!("{base}/a/{i:04}.json")).await }
    })));
    assert!(got.into_iter().all(|r| r.is_ok()));

    // reqwest may open a connection it then has no request for (one is
    // returned to the pool as it dials): that connection's handshake ends a
    // moment after the requests do, or fails if the client drops it first.
    let settled = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = server.stats();
        if s.tls_handshakes + s.tls_failures == s.connections || Instant::now() > settled {
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(s.requests, 20);
    assert!(s.connections >= 2, "{s:?}");
    // One for ureq, at most one per request in flight for reqwest, and
    // that stray one.
    assert!(s.connections <= 12, "keep-alive reuses connections: {s:?}");
    assert_eq!(
        s.tls_handshakes + s.tls_failures,
        s.connections,
        "every connection's handshake is counted: {s:?}"
    );
    assert!(s.tls_failures <= 1, "{s:?}");
    let failures_before = s.tls_failures;

    // Without the CA the client refuses the server, and says why.
    let strict = SyncClient::new(
        ClientConfig {
            retry: bucketbench::bucket::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            },
            ..ClientConfig::default()
        },
        Arc::new(NetStats::default()),
    )
    .unwrap();
    let err = strict
        .get(&format!("{}/a/0000.json", server.base_url()))
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stats().tls_failures == failures_before {
        assert!(
            Instant::now() < deadline,
            "the refused handshake is counted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.stats().requests, 20);
}

/// The time of one GET on a fresh client (a new connection) and of a second
/// GET on the same client (a reused one).
fn cold_and_warm(server: &SimServer) -> (Duration, Duration) {
    let client = SyncClient::new(client_config(server), Arc::new(NetStats::default())).unwrap();
    let url = format!("{}/a/0000.json", server.base_url());
    let t = Instant::now();
    client.get(&url).unwrap();
    let cold = t.elapsed();
    let t = Instant::now();
    client.get(&url).unwrap();
    (cold, t.elapsed())
}

#[test]
fn a_new_connection_pays_the_handshake_round_trips_of_its_network() {
    let rtt = 100.0;
    let rtt_d = Duration::from_millis(100);
    for (tls, rtts) in [
        (None, 1),
        (Some(TlsVersion::Tls13), 2),
        (Some(TlsVersion::Tls12), 3),
    ] {
        let model = NetworkModel {
            rtt_ms: rtt,
            tls,
            ..NetworkModel::default()
        };
        let server = serve(small_store(1, "a/"), Conditions::default(), model);
        let (cold, warm) = cold_and_warm(&server);
        assert!(
            cold >= rtt_d * rtts,
            "{tls:?}: a new connection costs {rtts} RTT, took {cold:?}"
        );
        assert!(
            cold < rtt_d * (rtts + 1),
            "{tls:?}: no more than {rtts} RTT, took {cold:?}"
        );
        assert!(
            warm < rtt_d,
            "{tls:?}: a reused connection pays no set-up, took {warm:?}"
        );
        let s = server.stats();
        assert_eq!((s.requests, s.connections), (2, 1), "{tls:?}: {s:?}");
    }
}

#[test]
fn first_byte_latency_follows_the_internet_presets_distribution() {
    let (conditions, mut model) = NetworkPreset::Internet.apply(Conditions::default(), false);
    let profile = NetworkPreset::Internet.profile().unwrap();
    let LatencyShape::LogNormal { median_ms, p99_ms } = model.latency else {
        panic!("the internet preset draws from a log-normal");
    };
    assert_eq!((median_ms, p99_ms), (profile.median_ms, profile.p99_ms));
    model.seed = 2021;
    let server = serve(small_store(1, "a/"), conditions, model);
    let url = format!("{}/a/0000.json", server.base_url());
    let rt = runtime();
    let client = AsyncClient::new(client_config(&server), Arc::new(NetStats::default())).unwrap();
    const CONCURRENCY: usize = 50;
    let timed = |n: usize| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            use futures::StreamExt as _;
            futures::stream::iter(0..n)
                .map(|_| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let t = Instant::now();
                        client.get(&url).await.unwrap();
                        t.elapsed().as_secs_f64() * 1000.0
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<f64>>()
                .await
        }
    };
    // Open the connections first, so the measured GETs pay no set-up RTT.
    rt.block_on(timed(CONCURRENCY));
    let before = server.stats().connections;
    let mut ms = rt.block_on(timed(1000));
    // The pool may open a stray connection when a request goes out as
    // another is being returned; a few cannot move the quantiles.
    let opened = server.stats().connections - before;
    assert!(opened <= 5, "connections were reused ({opened} new)");
    ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| ms[(q * ms.len() as f64).ceil() as usize - 1];
    let (p50, p99) = (quantile(0.5), quantile(0.99));
    // With a seeded generator the draws are the same every run; 1,000 draws
    // pin a p99 to within about 6 % (one standard error), a median to 3 %.
    assert!(
        (p50 / median_ms - 1.0).abs() < 0.10,
        "client-measured median {p50:.1} ms vs {median_ms} ms"
    );
    assert!(
        (p99 / p99_ms - 1.0).abs() < 0.10,
        "client-measured p99 {p99:.1} ms vs {p99_ms} ms"
    );
    let h = &server.stats.first_byte_ms;
    assert_eq!(h.count(), 1000 + CONCURRENCY as u64);
    let (s50, s99) = (h.quantile(0.5).unwrap(), h.quantile(0.99).unwrap());
    assert!(
        (s50 / median_ms - 1.0).abs() < 0.10,
        "server median {s50:.1}"
    );
    assert!((s99 / p99_ms - 1.0).abs() < 0.10, "server p99 {s99:.1}");
}

#[test]
fn past_the_get_rate_a_prefix_answers_503_slowdown_in_s3s_xml() {
    let model = NetworkModel {
        get_rate_per_prefix: 1.0,
        ..NetworkModel::default()
    };
    let server = serve(small_store(2, "a/"), Conditions::default(), model);
    let raw_get = |key: &str| {
        let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
        write!(
            tcp,
            "GET /sim/{key} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).unwrap();
        out
    };
    assert!(raw_get("a/0000.json").starts_with("HTTP/1.1 200"));
    let refused = raw_get("a/0001.json");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains(
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
        ),
        "{refused}"
    );
    assert_eq!(server.stats().throttled, 1);
}

#[test]
fn a_burst_past_the_rate_limit_is_throttled_and_every_object_still_loads() {
    // 100 GET/s on the prefix, 300 objects asked for at once: the first
    // second's worth passes, the rest is refused with 503 SlowDown and
    // loads on the clients' retries with backoff.
    let store = small_store(300, "burst/");
    let model = NetworkModel {
        get_rate_per_prefix: 100.0,
        ..NetworkModel::default()
    };
    let server = serve(store.clone(), Conditions::default(), model);
    let rt = runtime();
    let stats = Arc::new(NetStats::default());
    let client = AsyncClient::new(client_config(&server), stats.clone()).unwrap();
    let base = server.base_url();
    let results = rt.block_on(futures::future::join_all((0..300).map(|i| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let key = format!("burst/{i:04}.json");
            (client.get(&format!("{base}/{key}")).await, key)
        }
    })));
    for (result, key) in results {
        let got = body(result.unwrap_or_else(|e: FetchError| panic!("{key}: {e}")));
        assert_eq!(got, store.get(&key).unwrap().body.to_vec(), "{key}");
    }
    let s = server.stats();
    assert!(s.throttled >= 150, "the burst was throttled: {s:?}");
    assert_eq!(s.requests, 300 + s.throttled, "{s:?}");
    assert_eq!(
        NetStats::get(&stats.retries),
        s.throttled,
        "each refusal was retried"
    );
}

/// `bucket serve` with a preset and HTTPS: prints an https base URL first,
/// the CA file on stderr, and serves the bucket to a verifying client.
#[test]
fn bucket_serve_takes_a_network_preset_and_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    /// Kills the server if the test fails before stopping it.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = common::bucket()
        .args(["serve", "--profile", "tiny", "--addr", "127.0.0.1:0"])
        .args(["--network", "same-region", "--tls", "--tls-version", "1.2"])
        .arg("--ca-out")
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let mut first = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first.trim().to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let fetched = {
        let client = SyncClient::new(
            ClientConfig {
                ca_file: Some(ca.clone()),
                ..ClientConfig::default()
            },
            Arc::new(NetStats::default()),
        )
        .unwrap();
        body(client.get(&format!("{base}/files_list.data")).unwrap())
    };
    // SIGTERM: the server stops cleanly and reports what it served.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.0.wait().unwrap().success(), "{stderr}");
    assert!(!fetched.is_empty());
    assert!(
        stderr.contains(&format!("ca-file: {}", ca.display())),
        "{stderr}"
    );
    // One line names the preset and its numbers.
    assert!(
        stderr.contains("network same-region: first byte median 20 ms, p99 80 ms"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTPS (TLS 1.2)"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{S3_GET_RATE_PER_PREFIX} GET/s per prefix before 503 SlowDown"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("served 1 request on 1 connection (1 TLS handshake, "),
        "{stderr}"
    );
}
