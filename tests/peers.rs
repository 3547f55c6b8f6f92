//! Hostile peers on the HTTP side, each a raw HTTP/1.1 server on loopback
//! that answers as the attack needs: a redirect to another host (which must
//! learn nothing of the first URL), a body that trickles behind a huge
//! announced length, a bucket that refuses HEAD, S3's wrong-region answer
//! with no `Location`. What a user would check: what loaded, what was
//! said, and that every wait ended.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One request as the peer saw it: its method, path and header lines
/// (lower-cased names).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<String>,
}

/// What the peer does with a request.
enum Reply {
    /// A whole answer.
    Full {
        status: &'static str,
        headers: Vec<String>,
        body: Vec<u8>,
    },
    /// Headers announcing `declared` bytes, then a byte a second until the
    /// client hangs up.
    Trickle { declared: u64 },
    /// `Content-Encoding: gzip` with no length: `prefix` at once (a gzip
    /// stream that inflates to far more), then a byte a second.
    GzipTrickle { prefix: Vec<u8> },
    /// A whole body, sent at a steady `per_sec` bytes a second, with
    /// this status and these headers besides its length.
    Paced {
        status: &'static str,
        headers: Vec<String>,
        body: Vec<u8>,
        per_sec: usize,
    },
    /// No answer for a minute, then the connection closes.
    Silent,
    /// `body` with no length and no chunking, then the connection closed:
    /// HTTP/1.0's framing, where a cut body looks whole. `identity`: with
    /// `Transfer-Encoding: identity`, which frames nothing either.
    CloseDelimited { body: Vec<u8>, identity: bool },
    /// `body`'s length declared and its first `after` bytes sent at
    /// `per_sec`, then the connection closed (a body cut short) or, with
    /// `hold`, kept open in silence for a minute (a stalled one).
    Cut {
        headers: Vec<String>,
        body: Vec<u8>,
        per_sec: usize,
        after: usize,
        hold: bool,
    },
}

fn ok(body: &[u8], etag: &str) -> Reply {
    Reply::Full {
        status: "200 OK",
        headers: vec![format!("ETag: \"{etag}\"")],
        body: body.to_vec(),
    }
}

/// Starts a peer answering with `route`; returns its base URL and the
/// requests it has seen.
fn peer(route: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let route = Arc::new(route);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (route, log) = (route.clone(), log.clone());
            std::thread::spawn(move || serve_connection(stream, &*route, &log));
        }
    });
    (base, seen)
}

fn serve_connection(mut stream: TcpStream, route: &dyn Fn(&Seen) -> Reply, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first).map_or(true, |n| n == 0) {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_or(true, |n| n == 0) {
                return;
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            headers.push(line.to_ascii_lowercase());
        }
        let mut words = first.split_whitespace();
        let seen = Seen {
            method: words.next().unwrap_or("").to_string(),
            path: words.next().unwrap_or("/").to_string(),
            headers,
        };
        log.lock().unwrap().push(seen.clone());
        match route(&seen) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
                for h in headers {
                    head.push_str(&h);
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                let body = if seen.method == "HEAD" {
                    &[][..]
                } else {
                    &body
                };
                if stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(body))
                    .is_err()
                {
                    return;
                }
            }
            Reply::GzipTrickle { prefix } => {
                let head = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n";
                if stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(&prefix))
                    .is_err()
                {
                    return;
                }
                while stream.write_all(b"\0").is_ok() {
                    std::thread::sleep(Duration::from_secs(1));
                }
                return;
            }
            Reply::Paced {
                status,
                headers,
                body,
                per_sec,
            } => {
                if !paced(&mut stream, status, &headers, &body, per_sec) {
                    return;
                }
            }
            Reply::Silent => {
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Reply::CloseDelimited { body, identity } => {
                let head = if identity {
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                };
                let _ = stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(&body));
                return;
            }
            Reply::Cut {
                headers,
                body,
                per_sec,
                after,
                hold,
            } => {
                let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len());
                for h in headers {
                    head.push_str(&h);
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for piece in body[..after].chunks((per_sec / 10).max(1)) {
                    if stream.write_all(piece).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if hold {
                    std::thread::sleep(Duration::from_secs(60));
                }
                return;
            }
            Reply::Trickle { declared } => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n[");
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                while stream.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_secs(1));
                }
                return;
            }
        }
    }
}

/// `ingest` on this bucket and database with this model.
fn ingest_with(bucket: &str, db: &str, model: &str) -> std::process::Command {
    let mut cmd = ingest();
    cmd.args(["--bucket", bucket, "--database-url", db, "--model", model]);
    cmd
}

/// Sends `body` with its length at `per_sec` bytes a second; false when
/// the client hung up.
fn paced(
    stream: &mut TcpStream,
    status: &str,
    headers: &[String],
    body: &[u8],
    per_sec: usize,
) -> bool {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return false;
    }
    for piece in body.chunks((per_sec / 10).max(1)) {
        if stream.write_all(piece).is_err() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// `ingest` that gives up on a download 2 s in, tries each once, and calls
/// the bucket unreachable after 3 such failures in a row: what it printed,
/// and how long it took.
fn impatient(bucket: &str, db: &str, model: &str) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = ingest_with(bucket, db, model)
        .args(["--download-timeout", "2", "--attempts", "1"])
        .args(["--unreachable-requests", "3", "--unreachable-after", "1"])
        .output()
        .unwrap();
    (out, started.elapsed())
}

const RECORD: &[u8] = br#"[{"type":"song","data":{"title":"Peer","year":1994}}]"#;

fn name(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    path.rsplit('/').next().unwrap_or("")
}

/// reqwest sent the URL it was redirected from as a `Referer`, query
/// string and all (a presigned URL's signature and session token), to the
/// host the redirect named. No model may tell another host anything of
/// the first URL.
#[test]
fn a_redirect_to_another_host_learns_nothing_of_the_first_url() {
    let (elsewhere, seen_elsewhere) = peer(|s| ok(RECORD, &format!("e-{}", name(&s.path))));
    let (bucket, _) = peer(move |s| match name(&s.path) {
        "files_list.data" => ok(b"a.json\n", "m"),
        key => Reply::Full {
            status: "307 Temporary Redirect",
            headers: vec![format!("Location: {elsewhere}/moved/{key}")],
            body: Vec::new(),
        },
    });
    for model in ["sync", "async-fetch", "async", "threads"] {
        let db = fresh_db();
        let url = format!("{bucket}/b?X-Amz-Signature=secret-sig-{model}&token=secret-token");
        let s = pass(&url, &db, model);
        assert_eq!(s.loaded, 1, "{model}: the redirected object loads: {s:?}");
        let seen = seen_elsewhere.lock().unwrap().clone();
        let told: Vec<&String> = seen
            .iter()
            .flat_map(|r| &r.headers)
            .filter(|h| h.starts_with("referer") || h.contains("secret"))
            .collect();
        assert!(
            told.is_empty(),
            "{model}: the other host was told of the first URL: {told:?}"
        );
        assert!(
            seen.iter().all(|r| !r.path.contains("secret")),
            "{model}: {seen:?}"
        );
    }
}

/// A trickle behind a `Content-Length` of 256 MiB had bought over an hour
/// an attempt (the deadline grew with the announced size), and a bucket
/// trickling every object was never declared unreachable: each too-slow
/// body counted as an answer. Only bytes received buy time now, and a
/// streak of too-slow bodies trips the breaker like a streak of silences.
#[test]
fn a_trickle_behind_a_huge_content_length_is_cut_at_the_floor() {
    let (bucket, seen) = peer(|s| match name(&s.path) {
        "files_list.data" => ok(
            (0..8)
                .map(|i| format!("t{i}.json\n"))
                .collect::<String>()
                .as_bytes(),
            "m",
        ),
        _ => Reply::Trickle {
            declared: 268_435_455,
        },
    });
    let db = fresh_db();
    let (out, took) = impatient(&bucket, &db, "sync");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bucket unreachable") && stderr.contains("slower than --min-download-rate"),
        "the pass ends saying why: {stderr}"
    );
    // Three bodies of a byte a second, each cut about 2 s in, then the
    // breaker: far from the hours the announced length had bought.
    assert!(took < Duration::from_secs(60), "took {took:?}: {stderr}");
    let gets = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.contains("/t"))
        .count();
    assert!(
        gets < 8,
        "the breaker stopped the pass before every key: {gets} GETs"
    );
    let mut c = connect(&db);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM processed_files"),
        0,
        "a slow bucket fails no file: they are left for the next pass"
    );
}

/// A server that refuses HEAD (501, as some S3-compatible stores do) made
/// every change check fail; the failures tripped the pass's breaker, and
/// every later pass ended "bucket unreachable" with its new files never
/// loaded, though GET worked. The checks have a breaker of their own now,
/// and their failures are said in one line a pass, not one per loaded key.
#[test]
fn a_bucket_that_refuses_head_still_loads_its_new_files() {
    // Three listing pages of loaded keys: the check gives up once a pass,
    // not once a page.
    let keys: Vec<String> = (0..2500).map(|i| format!("k{i:04}.json")).collect();
    let with_new = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listed = {
        let (keys, with_new) = (keys.clone(), with_new.clone());
        move || {
            let mut m: String = keys.iter().map(|k| format!("{k}\n")).collect();
            if with_new.load(std::sync::atomic::Ordering::SeqCst) {
                m.push_str("new.json\n");
            }
            m
        }
    };
    let (bucket, _) = peer(move |s| match (s.method.as_str(), name(&s.path)) {
        (_, "files_list.data") => ok(listed().as_bytes(), "m"),
        ("HEAD", _) => Reply::Full {
            status: "501 Not Implemented",
            headers: Vec::new(),
            body: Vec::new(),
        },
        (_, key) => ok(RECORD, key),
    });
    let db = fresh_db();
    let run = || ingest_with(&bucket, &db, "async").output().unwrap();
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    with_new.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "the pass completes: {stderr}");
    assert!(!stderr.contains("unreachable"), "{stderr}");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("1 loaded"), "the new file loads: {stdout}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot tell whether"))
        .collect();
    assert_eq!(said.len(), 1, "one line for the failed checks: {stderr}");
    assert!(
        said[0].contains("HTTP 501") || said[0].contains("501"),
        "{}",
        said[0]
    );
    let mut c = connect(&db);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM processed_files WHERE status = 'loaded'"
        ),
        2501
    );
}

/// `ingest` listing `s3://far-away` at `endpoint`, anonymously, configured
/// for eu-west-1: its exit status and what it said.
fn list_far_away(endpoint: &str) -> (Option<i32>, String) {
    let out = ingest()
        .args(["--bucket", "s3://far-away", "--endpoint", endpoint])
        .args(["--database-url", &fresh_db()])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_REGION", "eu-west-1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// S3 says a bucket lives in another region with a 301 that names no
/// `Location`. Followed as a redirect, it was a protocol error retried five
/// times and reported as "cannot reach the S3 endpoint", the region never
/// named.
#[test]
fn s3s_wrong_region_answer_is_said_in_one_line_without_retries() {
    let (endpoint, seen) = peer(|_| {
        Reply::Full {
        status: "301 Moved Permanently",
        headers: vec!["Content-Type: application/xml".into()],
        body: b"<?xml version=\"1.0\"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message></Error>".to_vec(),
    }
    });
    let (code, stderr) = list_far_away(&endpoint);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("bucket far-away is not in region eu-west-1")
            && stderr.contains("--region"),
        "{stderr}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "an answer is not retried");
}

/// Once only bytes received bought download time, a file that waited for
/// its memory (`--max-bytes-in-flight`) longer than `--download-timeout`
/// was cut as too slow on its first chunk, though the bucket was healthy.
/// The clock starts when the memory is granted.
#[test]
fn a_file_that_waits_for_memory_is_not_a_slow_download() {
    // Four files of 1 MB, each sent at 512 KB/s (about 2 s), with memory
    // for one at a time: the last waits about 6 s, far past the 1 s floor.
    let body: Vec<u8> = {
        let record = br#"{"type":"song","data":{"title":"Paced","year":1994}},"#;
        let mut b = b"[".to_vec();
        while b.len() < 1_000_000 {
            b.extend_from_slice(record);
        }
        b.pop();
        b.push(b']');
        b
    };
    let (bucket, _) = peer(move |s| match name(&s.path) {
        "files_list.data" => ok(b"p0.json\np1.json\np2.json\np3.json\n", "m"),
        _ => Reply::Paced {
            status: "200 OK",
            headers: Vec::new(),
            body: body.clone(),
            per_sec: 512 * 1024,
        },
    });
    for model in ["async", "threads"] {
        let db = fresh_db();
        let out = ingest_with(&bucket, &db, model)
            .args(["--max-bytes-in-flight", "4MiB", "--download-timeout", "1"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{model}: {stderr}");
        assert!(
            stdout.contains("4 loaded") && stdout.contains("(0 retries)"),
            "{model}: every file loads at its first attempt: {stdout}{stderr}"
        );
    }
}

/// Other 3xx answers to an S3 listing say what they are: AWS's wrong-region
/// 301 with `x-amz-bucket-region` names the bucket's real region, and a
/// redirect with a `Location` (a proxy moving http to https) names where it
/// points, instead of the wrong-region advice or a bare "HTTP 302".
#[test]
fn s3_redirects_name_the_region_or_where_they_point() {
    let cases: [(&str, Vec<String>, &str); 3] = [
        (
            "301 Moved Permanently",
            vec!["x-amz-bucket-region: ap-south-1".into()],
            "bucket far-away is in region ap-south-1, not eu-west-1 (set --region ap-south-1",
        ),
        (
            "301 Moved Permanently",
            vec!["Location: https://127.0.0.1:1/far-away?list-type=2".into()],
            "with a redirect to https://127.0.0.1:1/far-away",
        ),
        (
            "302 Found",
            vec!["Location: https://elsewhere.example/far-away".into()],
            "answered HTTP 302 with a redirect to https://elsewhere.example/far-away",
        ),
    ];
    for (status, headers, said) in cases {
        let (endpoint, seen) = peer(move |_| Reply::Full {
            status,
            headers: headers.clone(),
            body: Vec::new(),
        });
        let (code, stderr) = list_far_away(&endpoint);
        assert_eq!(code, Some(1), "{status}: {stderr}");
        assert!(
            stderr.contains(said),
            "{status}: expected {said:?} in {stderr}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "{status}: not followed, not retried"
        );
    }
}

/// The deadline counted the bytes after the HTTP library had inflated them:
/// 20 KB of gzip that inflates to 20 MiB bought the trickle after it over
/// five minutes an attempt (an hour with the default size limit). The
/// clients inflate gzip themselves now, once the body is in, and the
/// deadline counts the bytes that crossed the wire.
#[test]
fn a_gzip_trickle_buys_no_time_with_what_it_inflates_to() {
    let prefix = {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(b"[").unwrap();
        let spaces = vec![b' '; 1 << 20];
        for _ in 0..20 {
            enc.write_all(&spaces).unwrap();
        }
        enc.flush().unwrap();
        enc.get_ref().clone()
    };
    assert!(prefix.len() < 100_000, "{} bytes on the wire", prefix.len());
    let (bucket, _) = peer(move |s| match name(&s.path) {
        "files_list.data" => ok(b"g0.json\ng1.json\ng2.json\ng3.json\n", "m"),
        _ => Reply::GzipTrickle {
            prefix: prefix.clone(),
        },
    });
    for model in ["sync", "async"] {
        let (out, took) = impatient(&bucket, &fresh_db(), model);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Each body cut about 2 s in (20 MiB inflated would have bought
        // 320 s more): `sync`'s one after another until the breaker trips,
        // `async`'s side by side.
        assert!(
            said.contains("too slow: ") || said.contains("slower than --min-download-rate"),
            "{model}: {said}"
        );
        assert!(
            took < Duration::from_secs(40),
            "{model} took {took:?}: {said}"
        );
    }
}

/// A server that gives the gzip version of an object an ETag of its own
/// (Apache's `-gzip`, nginx's weak ETag) answers a HEAD without
/// `Accept-Encoding` with the plain version's. The GET asked for gzip and
/// the HEAD did not, so every loaded object read as changed, every pass.
#[test]
fn the_change_check_asks_for_the_same_version_as_the_get() {
    let (bucket, _) = peer(|s| {
        let gzip = s
            .headers
            .iter()
            .any(|h| h.starts_with("accept-encoding:") && h.contains("gzip"));
        match name(&s.path) {
            "files_list.data" => ok(b"v0.json\nv1.json\n", "m"),
            key => ok(RECORD, &format!("{key}{}", if gzip { "-gzip" } else { "" })),
        }
    });
    let db = fresh_db();
    for pass in 1..=2 {
        let out = ingest_with(&bucket, &db, "sync").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "pass {pass}: {stdout}");
        assert!(!stdout.contains("changed"), "pass {pass}: {stdout}");
    }
}

/// A JSON array of songs titled `{tag}-0`, `{tag}-1`, … of at least
/// `bytes` bytes, and how many songs it holds.
fn songs(tag: &str, bytes: usize) -> (Vec<u8>, i64) {
    let mut b = b"[".to_vec();
    let mut n = 0;
    while b.len() < bytes {
        b.extend_from_slice(
            format!(r#"{{"type":"song","data":{{"title":"{tag}-{n:07}","year":1994}}}},"#)
                .as_bytes(),
        );
        n += 1;
    }
    b.pop();
    b.push(b']');
    (b, n)
}

/// The titles loaded, by the tag before their dash, and how many of each.
fn titles_by_tag(db: &str) -> Vec<(String, i64)> {
    pairs(
        &mut connect(db),
        "SELECT split_part(title, '-', 1), count(*) FROM songs GROUP BY 1 ORDER BY 1",
    )
}

/// A peer that serves `body` as one object `big.json` at 256 KB/s, with
/// `Accept-Ranges` and a strong ETag, and answers a range request as
/// `range` says.
fn ranged_peer(
    body: Vec<u8>,
    range: impl Fn(&Seen, &[u8]) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    peer(move |s| match name(&s.path) {
        "files_list.data" => ok(b"big.json\n", "m"),
        _ if s.headers.iter().any(|h| h.starts_with("range:")) => range(s, &body),
        _ => Reply::Paced {
            status: "200 OK",
            headers: vec!["Accept-Ranges: bytes".into(), "ETag: \"v1\"".into()],
            body: body.clone(),
            per_sec: 256 * 1024,
        },
    })
}

/// The `first-last` of a request's `Range: bytes=first-last`.
fn asked_range(s: &Seen) -> (usize, usize) {
    let h = s
        .headers
        .iter()
        .find_map(|h| h.strip_prefix("range: bytes="))
        .unwrap();
    let (a, b) = h.split_once('-').unwrap();
    (a.trim().parse().unwrap(), b.trim().parse().unwrap())
}

fn range_requests(seen: &Mutex<Vec<Seen>>) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.headers.iter().any(|h| h.starts_with("range:")))
        .count()
}

/// `async` and `threads` each load `bucket`'s one object once, all `n`
/// songs of its first version, having asked for byte ranges: each pass's
/// summary and how long it took.
fn loads_v1_once_in_parts(
    bucket: &str,
    seen: &Mutex<Vec<Seen>>,
    n: i64,
) -> Vec<(&'static str, bucketbench::report::PassSummary, Duration)> {
    ["async", "threads"]
        .into_iter()
        .map(|model| {
            let db = fresh_db();
            let before = range_requests(seen);
            let started = Instant::now();
            let s = pass(bucket, &db, model);
            let took = started.elapsed();
            assert_eq!(s.loaded, 1, "{model}: {s:?}");
            assert!(
                range_requests(seen) > before,
                "{model}: ranges were asked for"
            );
            assert_eq!(titles_by_tag(&db), vec![("v1".to_string(), n)], "{model}");
            (model, s, took)
        })
        .collect()
}

/// On a slow connection a large object's rest is fetched in byte ranges
/// over more connections by every model with several requests in flight;
/// `sync`, one request at a time, never sends one, nor does anyone with
/// `--ranged-parts 0`. Whatever the split, the rows are the object's, once.
#[test]
fn a_large_slow_object_is_fetched_in_parts_by_the_concurrent_models_only() {
    let (big, n) = songs("big", 1_500_000);
    let (small, m) = songs("small", 20_000);
    let server = serve_with(
        store_with(
            &[("big.json", &big), ("small.json", &small)],
            "big.json\nsmall.json\n",
        ),
        bucketbench::sim::Conditions {
            latency_ms: 20.0,
            bandwidth_mbps: 4.0,
            ..Default::default()
        },
    );
    for (model, parts, split) in [
        ("sync", 4, false),
        ("async-fetch", 4, true),
        ("async", 4, true),
        ("threads", 4, true),
        ("async", 0, false),
        ("threads", 0, false),
    ] {
        let db = fresh_db();
        let mut cfg = config(&server.base_url(), &db);
        cfg.client.ranged_parts = parts;
        let before = server.stats().requests;
        let s = bucketbench::pass::run_pass(
            &cfg,
            model
                .parse::<bucketbench::models::Model>()
                .unwrap()
                .ingestor()
                .as_ref(),
        )
        .unwrap();
        let sent = server.stats().requests - before;
        assert_eq!(s.loaded, 2, "{model}: {s:?}");
        assert_eq!(s.requests, sent, "{model}: every request counted");
        assert_eq!(s.ranged, sent - 3, "{model}: the byte ranges said apart");
        if split {
            assert!(
                sent > 3,
                "{model}: the large body came in parts ({sent} requests)"
            );
        } else {
            assert_eq!(sent, 3, "{model} --ranged-parts {parts}: one GET an object");
        }
        assert_eq!(
            titles_by_tag(&db),
            vec![("big".to_string(), n), ("small".to_string(), m)],
            "{model}: each song once"
        );
    }
}

/// A store that says it serves ranges but answers each with the whole
/// object (200): nothing of it is joined, and the object loads once from
/// its own GET.
#[test]
fn a_store_that_answers_ranges_whole_loads_each_object_once() {
    let (big, n) = songs("v1", 1_500_000);
    let (bucket, seen) = ranged_peer(big, |_, body| Reply::Paced {
        status: "200 OK",
        headers: vec!["ETag: \"v1\"".into()],
        body: body.to_vec(),
        per_sec: 256 * 1024,
    });
    loads_v1_once_in_parts(&bucket, &seen, n);
}

/// The object is replaced between its GET and its parts, on a store that
/// ignores `If-Match` and answers each range from the new version, same
/// size and all. A part of another version is never joined to the first:
/// the rows are all the first version's, once.
#[test]
fn an_object_replaced_between_its_get_and_its_parts_loads_as_one_version() {
    let (v1, n) = songs("v1", 1_500_000);
    let (mut v2, _) = songs("v2", 1_500_000);
    v2.resize(v1.len(), b' ');
    let (bucket, seen) = ranged_peer(v1.clone(), move |s, _| {
        let (first, last) = asked_range(s);
        Reply::Paced {
            status: "206 Partial Content",
            headers: vec![
                "ETag: \"v2\"".into(),
                format!("Content-Range: bytes {first}-{last}/{}", v2.len()),
            ],
            body: v2[first..=last].to_vec(),
            per_sec: 256 * 1024,
        }
    });
    loads_v1_once_in_parts(&bucket, &seen, n);
}

/// Ranges that are never answered hold the object back no longer than its
/// own GET: the first connection reads on, and the pass ends when it has
/// the body, not when the parts give up (30 s here).
#[test]
fn parts_that_never_answer_hold_the_object_back_no_longer_than_its_get() {
    let (big, n) = songs("v1", 1_500_000);
    let (bucket, seen) = ranged_peer(big, |_, _| Reply::Silent);
    for model in ["async", "threads"] {
        let db = fresh_db();
        let before = range_requests(&seen);
        let started = Instant::now();
        let out = ingest_with(&bucket, &db, model)
            .args(["--first-byte-timeout", "30", "--download-timeout", "60"])
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{model}: {stderr}");
        assert!(
            range_requests(&seen) > before,
            "{model}: ranges were asked for"
        );
        // The GET alone takes about 6 s at 256 KB/s.
        assert!(took < Duration::from_secs(15), "{model}: took {took:?}");
        assert_eq!(titles_by_tag(&db), vec![("v1".to_string(), n)], "{model}");
    }
}

/// A peer whose first connection delivers 600 KB of a 1.5 MB object (its
/// share, about 340 KB, and more) and then fails, closing (`hold` false) or
/// falling silent (`hold` true), while the parts, slower, bring the rest.
fn failing_first_connection(hold: bool) -> (String, Arc<Mutex<Vec<Seen>>>, i64) {
    let (big, n) = songs("v1", 1_500_000);
    let ranged = big.clone();
    let (bucket, seen) = peer(move |s| match name(&s.path) {
        "files_list.data" => ok(b"big.json\n", "m"),
        _ if s.headers.iter().any(|h| h.starts_with("range:")) => {
            let (first, last) = asked_range(s);
            Reply::Paced {
                status: "206 Partial Content",
                headers: vec![
                    "ETag: \"v1\"".into(),
                    format!("Content-Range: bytes {first}-{last}/{}", ranged.len()),
                ],
                body: ranged[first..=last].to_vec(),
                per_sec: 48 * 1024,
            }
        }
        _ => Reply::Cut {
            headers: vec!["Accept-Ranges: bytes".into(), "ETag: \"v1\"".into()],
            body: big.clone(),
            per_sec: 256 * 1024,
            after: 600_000,
            hold,
        },
    });
    (bucket, seen, n)
}

/// The first connection is cut after it has delivered its share and
/// before the slower parts are in: the parts make the object whole,
/// without a retry.
#[test]
fn a_first_connection_cut_past_its_share_is_made_whole_by_the_parts() {
    let (bucket, seen, n) = failing_first_connection(false);
    for (model, s, _) in loads_v1_once_in_parts(&bucket, &seen, n) {
        assert_eq!(s.retries, 0, "{model}: {s:?}");
    }
}

/// The same connection falls silent instead: the parts, once in, end the
/// wait; no model waits out the silence (a read may wait 10 s) or retries.
#[test]
fn a_first_connection_stalled_past_its_share_is_made_whole_by_the_parts() {
    let (bucket, seen, n) = failing_first_connection(true);
    for (model, s, took) in loads_v1_once_in_parts(&bucket, &seen, n) {
        assert_eq!(s.retries, 0, "{model}: {s:?}");
        // The parts take about 6 s at 48 KB/s; the silence would add 10.
        assert!(took < Duration::from_secs(10), "{model}: took {took:?}");
    }
}

/// A 403 to the change check's HEAD is that key's answer, not a sign that
/// the store refuses HEAD (a reader allowed to GET some objects and not to
/// HEAD others, or presigned GETs). Sixteen in a row used to stop the
/// check for the pass, at the same place every pass, so a failed file
/// listed after them was never tried again once its object was fixed.
#[test]
fn forbidden_heads_do_not_stop_the_change_check_short_of_a_fixed_file() {
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let now_fixed = fixed.clone();
    let manifest: String = (0..60)
        .map(|i| format!("k{i:02}.json\n"))
        .chain(["bad.json\n".to_string()])
        .collect();
    let (bucket, _) = peer(move |s| match name(&s.path) {
        "files_list.data" => ok(manifest.as_bytes(), "m"),
        "bad.json" if now_fixed.load(std::sync::atomic::Ordering::SeqCst) => ok(RECORD, "v2"),
        "bad.json" => ok(b"not json", "v1"),
        _ if s.method == "HEAD" => Reply::Full {
            status: "403 Forbidden",
            headers: vec![],
            body: vec![],
        },
        key => ok(RECORD, key),
    });
    let db = fresh_db();
    let pass = || -> bucketbench::report::PassSummary {
        let out = ingest_with(&bucket, &db, "sync")
            .args(["--json", "-q"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let first = pass();
    assert_eq!((first.loaded, first.failed.len()), (60, 1), "{first:?}");
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = pass();
    assert_eq!(second.retried, ["bad.json"], "{second:?}");
    assert_eq!(second.loaded, 1, "{second:?}");
}

/// A manifest names no versions, so each pass asks the bucket, by HEAD,
/// whether a loaded object changed. Those answers must not hold back the
/// keys nobody has loaded yet: the check used to run before a page's new
/// keys went to the model, so a bucket slow to answer HEAD (thousands of
/// loaded keys, a fraction of a second each) delayed a new file by
/// minutes. Here every HEAD waits until the new file's GET has arrived (or
/// 10 s): the new file must be fetched while the check is still waiting,
/// and the check must still report what changed and retry what was fixed.
#[test]
fn the_change_check_holds_back_no_new_key() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    for model in ["sync", "async"] {
        let second_pass = Arc::new(AtomicBool::new(false));
        let new_fetched = Arc::new(AtomicBool::new(false));
        let heads_answered_before = Arc::new(AtomicUsize::new(0));
        let (second, fetched, answered) = (
            second_pass.clone(),
            new_fetched.clone(),
            heads_answered_before.clone(),
        );
        let loaded: Vec<String> = (0..16).map(|i| format!("k{i:02}.json")).collect();
        let first_manifest: String = loaded.iter().map(|k| format!("{k}\n")).collect();
        let (bucket, _) = peer(move |s| {
            let later = second.load(SeqCst);
            match (name(&s.path), s.method.as_str()) {
                ("files_list.data", _) if later => ok(
                    format!("{first_manifest}bad.json\nnew.json\n").as_bytes(),
                    "m2",
                ),
                ("files_list.data", _) => {
                    ok(format!("{first_manifest}bad.json\n").as_bytes(), "m1")
                }
                (key, "HEAD") => {
                    let waited = Instant::now();
                    while !fetched.load(SeqCst) && waited.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if !fetched.load(SeqCst) {
                        answered.fetch_add(1, SeqCst);
                    }
                    match key {
                        "k03.json" => ok(b"", "k03-v2"),
                        "bad.json" => ok(b"", "bad-v2"),
                        key => ok(b"", key),
                    }
                }
                ("new.json", _) => {
                    fetched.store(true, SeqCst);
                    ok(RECORD, "new")
                }
                ("bad.json", _) if later => ok(RECORD, "bad-v2"),
                ("bad.json", _) => ok(b"not json", "bad-v1"),
                (key, _) => ok(RECORD, key),
            }
        });
        let db = fresh_db();
        let pass = || -> bucketbench::report::PassSummary {
            let out = ingest_with(&bucket, &db, model)
                .args(["--json", "-q", "--first-byte-timeout", "30"])
                .output()
                .unwrap();
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
        };
        let first = pass();
        assert_eq!(
            (first.loaded, first.failed.len()),
            (16, 1),
            "{model}: {first:?}"
        );
        second_pass.store(true, SeqCst);
        let second = pass();
        assert_eq!(
            heads_answered_before.load(SeqCst),
            0,
            "{model}: HEADs of loaded keys were answered before the new key was fetched: the change check held it back"
        );
        assert_eq!(
            second.loaded, 2,
            "{model}: new.json and the fixed bad.json: {second:?}"
        );
        assert_eq!(second.retried, ["bad.json"], "{model}: {second:?}");
        assert_eq!(second.etag_changed, ["k03.json"], "{model}: {second:?}");
        assert_eq!(second.already_loaded, 16, "{model}: {second:?}");
        assert_eq!(second.failed_earlier, 0, "{model}: {second:?}");
        assert_eq!(second.listed, 18, "{model}: {second:?}");
    }
}

/// A manifest sent without a length (closed to end it, HTTP/1.0's
/// framing) looks whole when the connection is cut: a key cut mid-line was
/// taken for a key (`2021/` loaded, its real key missed). A close-delimited
/// manifest whose last line has no newline is read again, and its last
/// line taken only when two reads agree; one that legitimately ends
/// without a newline still loads every key.
#[test]
fn a_manifest_cut_mid_line_without_a_length_is_read_again() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let whole = "a.json\nb.json\nlong-name-c.json\n";
    let reads = Arc::new(AtomicUsize::new(0));
    let count = reads.clone();
    let (bucket, seen) = peer(move |s| match name(&s.path) {
        // The first read cut mid-way through its last key.
        "files_list.data" if count.fetch_add(1, SeqCst) == 0 => Reply::CloseDelimited {
            body: whole.as_bytes()[..whole.len() - 8].to_vec(),
            identity: true,
        },
        "files_list.data" => Reply::CloseDelimited {
            body: whole.as_bytes().to_vec(),
            identity: false,
        },
        key => ok(RECORD, key),
    });
    let db = fresh_db();
    let out = ingest_with(&bucket, &db, "sync")
        .args(["--json", "-q"])
        .output()
        .unwrap();
    let summary: bucketbench::report::PassSummary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let asked: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "GET" && !s.path.ends_with("files_list.data"))
        .map(|s| name(&s.path).to_string())
        .collect();
    let mut asked = asked;
    asked.sort();
    assert_eq!(
        asked,
        ["a.json", "b.json", "long-name-c.json"],
        "the cut key was fetched, or the whole one missed"
    );
    assert_eq!((summary.listed, summary.loaded), (3, 3), "{summary:?}");
    // Legitimately without a final newline, every read alike: all load.
    let (bucket, _) = peer(move |s| match name(&s.path) {
        "files_list.data" => Reply::CloseDelimited {
            body: b"x.json\ny.json".to_vec(),
            identity: false,
        },
        key => ok(RECORD, key),
    });
    let out = ingest_with(&bucket, &fresh_db(), "sync")
        .args(["--json", "-q"])
        .output()
        .unwrap();
    let summary: bucketbench::report::PassSummary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!((summary.listed, summary.loaded), (2, 2), "{summary:?}");
}

/// The same over more pages of loaded keys than the check used to queue
/// (64 of 1,000): the listing must not wait for the check however many
/// pages come before a new key. The ledger's rows are written directly,
/// as a long history of passes would have left them.
#[test]
fn a_new_key_after_many_pages_of_loaded_keys_waits_for_no_head() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    const LOADED: usize = 66_000;
    let new_fetched = Arc::new(AtomicBool::new(false));
    let heads_answered_before = Arc::new(AtomicUsize::new(0));
    let (fetched, answered) = (new_fetched.clone(), heads_answered_before.clone());
    let manifest: String = (0..LOADED)
        .map(|i| format!("k{i:06}.json\n"))
        .chain(["new.json\n".to_string()])
        .collect();
    let (bucket, seen) = peer(move |s| match (name(&s.path), s.method.as_str()) {
        ("files_list.data", _) => ok(manifest.as_bytes(), "m"),
        (key, "HEAD") => {
            let waited = Instant::now();
            while !fetched.load(SeqCst) && waited.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !fetched.load(SeqCst) {
                answered.fetch_add(1, SeqCst);
            }
            ok(b"", key)
        }
        ("new.json", _) => {
            fetched.store(true, SeqCst);
            ok(RECORD, "new")
        }
        (key, _) => ok(RECORD, key),
    });
    let db = fresh_db();
    // Migrate, then record the loaded keys as a long history would have.
    drop(bucketbench::pass::prepare_database(&db).unwrap());
    let mut c = connect(&db);
    c.execute(
        &format!(
            "INSERT INTO processed_files (key, etag, size_bytes, status, model) \
             SELECT format('k%s.json', lpad(i::text, 6, '0')), format('\"k%s.json\"', lpad(i::text, 6, '0')), 0, 'loaded', 'sync' \
             FROM generate_series(0, {}) i",
            LOADED - 1
        ),
        &[],
    )
    .unwrap();
    let out = ingest_with(&bucket, &db, "async")
        .args(["--json", "-q", "--first-byte-timeout", "60"])
        .output()
        .unwrap();
    let summary: bucketbench::report::PassSummary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        heads_answered_before.load(SeqCst),
        0,
        "HEADs were answered before the new key was fetched: the check held it back"
    );
    assert_eq!(
        (summary.loaded, summary.already_loaded),
        (1, LOADED as u64),
        "{summary:?}"
    );
    assert!(summary.etag_changed.is_empty(), "{summary:?}");
    let heads = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "HEAD")
        .count();
    assert_eq!(heads, LOADED, "every loaded key is checked");
}
