//! Hostile buckets: endless and oversized bodies, decompression bombs,
//! unstorable text, odd encodings and keys. The program says what happened,
//! stores what it refused, keeps going, and its memory stays flat.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Stdio;

use bucketbench::models::Model;
use common::*;

const LIMIT: u64 = 1_000_000;

/// Every path asked for under `/redir/`, in order.
static REDIR_SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A deliberately hostile HTTP/1.1 server: `big.json` streams chunks
/// forever (no Content-Length), `bomb.json` is 64 MB of zeros gzipped to
/// ~64 kB, `ok.json` is a normal file; under `/p206/`, the manifest lists
/// `part.json`, answered with 206 Partial Content.
fn hostile_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bomb = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap()
    };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let bomb = bomb.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let send = |stream: &mut std::net::TcpStream,
                            ctype: &str,
                            extra: &str,
                            body: &[u8]| {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body);
                };
                let name = path.rsplit('/').next().unwrap_or("");
                if path.starts_with("/garbage/") && name != "files_list.data" {
                    // Not HTTP at all: the same on every attempt.
                    let _ = stream.write_all(b"HTTP/9.9 what\r\n\r\n");
                    return;
                }
                if path.starts_with("/redir/") {
                    REDIR_SEEN.lock().unwrap().push(path.clone());
                    let location = match name {
                        "file.json" => "file:///etc/passwd",
                        "ftp.json" => "ftp://elsewhere.example/ftp.json",
                        "moved.json" => "real/moved.json?X-Amz-Signature=SEKRIT",
                        // Raw UTF-8, as some servers send it.
                        "utf8.json" => "r\u{e9}al/moved.json",
                        _ => "",
                    };
                    if !location.is_empty() {
                        let _ = stream.write_all(
                            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                        );
                        return;
                    }
                }
                if path.starts_with("/loop/") && name != "files_list.data" {
                    let _ = stream.write_all(
                        format!("HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                    );
                    return;
                }
                match name {
                    "files_list.data" if path.starts_with("/garbage/") => {
                        let keys: String = (0..40).map(|i| format!("g{i}.json\n")).collect();
                        send(&mut stream, "text/plain", "", keys.as_bytes())
                    }
                    "files_list.data" if path.starts_with("/redir/") => send(
                        &mut stream,
                        "text/plain",
                        "",
                        b"file.json\nftp.json\nmoved.json\nutf8.json\n",
                    ),
                    n if (path.starts_with("/redir/real/")
                        || path.starts_with("/redir/r%C3%A9al/"))
                        && n.starts_with("moved.json") =>
                    {
                        send(
                            &mut stream,
                            "application/json",
                            "",
                            br#"[{"type":"song","data":{"title":"moved"}}]"#,
                        )
                    }
                    "files_list.data" if path.starts_with("/loop/") => {
                        send(&mut stream, "text/plain", "", b"a.json\n")
                    }
                    "files_list.data" if path.starts_with("/m206/") => {
                        // The first 12 bytes of "ok.json\npart.json\n".
                        let _ = stream.write_all(b"HTTP/1.1 206 Partial Content\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-11/18\r\nContent-Length: 12\r\nConnection: close\r\n\r\nok.json\npart");
                    }
                    "files_list.data" if path.starts_with("/p206/") => {
                        send(&mut stream, "text/plain", "", b"ok.json\npart.json\n")
                    }
                    "files_list.data" => send(
                        &mut stream,
                        "text/plain",
                        "",
                        b"ok.json\nbig.json\nbomb.json\n",
                    ),
                    // A part nobody asked for (a misbehaving proxy): the
                    // first 20 bytes of a file, as 206 Partial Content.
                    "part.json" => {
                        let body = br#"[{"type":"song","da"#;
                        let head = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Type: application/json\r\nContent-Range: bytes 0-{}/100\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len() - 1,
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(body);
                    }
                    "ok.json" => send(
                        &mut stream,
                        "application/json",
                        "",
                        br#"[{"type":"song","data":{"title":"fine"}}]"#,
                    ),
                    "bomb.json" => send(
                        &mut stream,
                        "application/json",
                        "Content-Encoding: gzip\r\n",
                        &bomb,
                    ),
                    "big.json" => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                        let chunk = vec![b'['; 64 * 1024];
                        // Up to 1 GiB; a client that stops reading ends it sooner.
                        for _ in 0..16_384 {
                            if stream
                                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                                .is_err()
                                || stream.write_all(&chunk).is_err()
                                || stream.write_all(b"\r\n").is_err()
                            {
                                return;
                            }
                        }
                    }
                    _ => {
                        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Runs `ingest` and returns its summary and peak RSS in MB.
// Reaped with `wait4` below, for its rusage, which `Child::wait` cannot give.
#[allow(clippy::zombie_processes)]
fn run_measured(bucket: &str, db: &str, model: &str) -> (serde_json::Value, f64) {
    let child = ingest()
        .args([
            "--bucket",
            bucket,
            "--model",
            model,
            "--json",
            "--max-object-bytes",
            &LIMIT.to_string(),
        ])
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut out = child.stdout.unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 on our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{model}: ingest failed"
    );
    let summary: serde_json::Value = serde_json::from_str(reader.join().unwrap().trim()).unwrap();
    // The process's own high-water mark (ru_maxrss would include this test's).
    let rss = summary["peak_rss_mb"]
        .as_f64()
        .unwrap_or(usage.ru_maxrss as f64 / 1024.0);
    (summary, rss)
}

#[test]
fn endless_and_bomb_bodies_are_refused_while_streaming_and_memory_stays_flat() {
    let url = hostile_server();
    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let (summary, rss_mb) = run_measured(&url, &db, model);
        assert_eq!(summary["loaded"], 1, "{model}: {summary}");
        let failed = summary["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 2, "{model}: {summary}");
        for f in failed {
            assert!(
                f["reason"]
                    .as_str()
                    .unwrap()
                    .contains("larger than the 1000000-byte limit"),
                "{model}: {f}"
            );
        }
        assert_eq!(
            ledger(&mut connect(&db)),
            [
                ("big.json".into(), "failed".into()),
                ("bomb.json".into(), "failed".into()),
                ("ok.json".into(), "loaded".into())
            ]
        );
        // The server offered 1 GiB and 64 MiB; the client kept at most about the limit.
        assert!(rss_mb < 120.0, "{model}: peak RSS {rss_mb:.0} MB");
    }
}

#[test]
fn unstorable_text_odd_encodings_and_odd_keys_are_handled_per_record_and_per_file() {
    let nul = br#"[{"type":"song","data":{"title":"bad\u0000title"}},{"type":"song","data":{"title":"good"}}]"#;
    let bom = b"\xEF\xBB\xBF[{\"type\":\"song\",\"data\":{\"title\":\"bom\"}}]";
    let bad_utf8 = b"[{\"type\":\"song\",\"data\":{\"title\":\"\xff\xfe\"}}]";
    let huge_numbers = br#"[{"type":"app","data":{"name":"n","size_bytes":123456789012345678901234567890}},{"type":"app","data":{"name":"m","rating":1e400}},{"type":"song","data":{"title":"after"}}]"#;
    let ok = br#"[{"type":"song","data":{"title":"odd key"}}]"#;
    let files: Vec<(&str, &[u8])> = vec![
        ("nul.json", nul),
        ("bom.json", bom),
        ("bad-utf8.json", bad_utf8),
        ("numbers.json", huge_numbers),
        ("dir/a b?c#d.json", ok),
        ("dir/../escape.json", ok),
        ("./dot.json", ok),
    ];
    let manifest: String = files.iter().map(|(k, _)| format!("{k}\n")).collect();
    let store = store_with(&files, &manifest);
    let server = serve(store);
    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let s = pass(&server.base_url(), &db, model);
        assert_eq!(s.listed, 7, "{model}");
        let mut c = connect(&db);
        let ledger = ledger_with_reasons(&mut c);
        let status = |k: &str| {
            ledger
                .iter()
                .find(|r| r.0 == k)
                .map(|r| (r.1.clone(), r.2.clone().unwrap_or_default()))
                .unwrap()
        };
        assert_eq!(status("nul.json").0, "loaded");
        assert_eq!(status("bom.json").0, "loaded");
        assert_eq!(status("bad-utf8.json").0, "failed");
        assert!(
            status("bad-utf8.json").1.starts_with("not valid JSON"),
            "{:?}",
            status("bad-utf8.json")
        );
        assert_eq!(status("numbers.json").0, "loaded");
        assert_eq!(
            status("dir/a b?c#d.json").0,
            "loaded",
            "{model}: spaces, ? and # reach the server encoded"
        );
        for dotted in ["dir/../escape.json", "./dot.json"] {
            let (st, reason) = status(dotted);
            assert_eq!(st, "failed", "{model}: {dotted}");
            assert!(reason.contains("path segment"), "{reason}");
        }
        let titles: Vec<String> = column(&mut c, "SELECT title FROM songs ORDER BY title");
        assert_eq!(titles, ["after", "bom", "good", "odd key"], "{model}");
        let rejected: Vec<(String, String, serde_json::Value)> = c
            .query("SELECT source_key, reason, raw FROM rejected_records ORDER BY source_key, record_index", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(rejected.len(), 3, "{model}: {rejected:?}");
        assert_eq!(rejected[0].0, "nul.json");
        assert!(rejected[0].1.contains("NUL"), "{}", rejected[0].1);
        assert_eq!(
            rejected[0].2["data"]["title"], "bad\u{2400}title",
            "the raw record is kept, made storable"
        );
        assert!(
            rejected[1].1.contains("size_bytes") && rejected[2].1.contains("rating"),
            "{rejected:?}"
        );
    }
}

/// How [`looping_listing_server`] never ends its listing.
#[derive(Clone, Copy)]
enum Loop {
    /// A new key, and the same continuation token, on every page.
    SameToken,
    /// No key, and a fresh token, on every page.
    Empty,
    /// The same key on every page, with a fresh token: the listing starts
    /// over each time.
    StartsOver,
}

/// An S3-compatible store whose ListObjectsV2 never ends (see [`Loop`]):
/// a client that trusts it lists forever.
fn looping_listing_server(mode: Loop) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let key = |k: &str| {
                    format!(
                        "<Contents><Key>{k}</Key><ETag>\"e\"</ETag><Size>2</Size><LastModified>2024-01-01T00:00:00.000Z</LastModified><StorageClass>STANDARD</StorageClass></Contents>"
                    )
                };
                let (contents, token) = match mode {
                    Loop::Empty => (String::new(), format!("T{n}")),
                    // Keys in order, so only the token gives it away.
                    Loop::SameToken => (key(&format!("k{n:06}.json")), "SAME".to_string()),
                    Loop::StartsOver => (key("a.json"), format!("T{n}")),
                };
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>loop</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>{contents}<NextContinuationToken>{token}</NextContinuationToken></ListBucketResult>"
                );
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    format!("http://{addr}")
}

/// Found by an adversary: a store that repeats its continuation token made
/// `ingest` list forever (902 pages in 40 s, no output). Now the pass ends
/// in one line, as it does on a store that pages on without keys.
#[test]
fn a_listing_that_never_ends_is_given_up_in_one_line() {
    let db = fresh_db();
    for (mode, says) in [
        (
            Loop::SameToken,
            "the server gave the same continuation token twice",
        ),
        (Loop::Empty, "100 pages in a row held no key"),
        (
            Loop::StartsOver,
            "a page went back to key a.json after a.json",
        ),
    ] {
        let endpoint = looping_listing_server(mode);
        let child = ingest()
            .args([
                "--bucket",
                "s3://loop",
                "--endpoint",
                &endpoint,
                "-m",
                "async",
            ])
            .args(["--database-url", &db])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, _, err) = finish(child, std::time::Duration::from_secs(60), "ingest");
        assert_eq!(status.code(), Some(1), "{err}");
        let error: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error.len(), 1, "{err}");
        assert!(error[0].contains(says), "{err}");
        assert!(error[0].contains("s3://loop"), "{err}");
    }
}

/// Found by an adversary: `bucket upload` to an endpoint that accepts the
/// connection and never answers waited forever, silently. Now every wait
/// of the upload is bounded and it ends in one line naming the endpoint.
#[test]
fn an_upload_to_an_endpoint_that_never_answers_ends_in_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // Accepts, reads nothing, answers nothing; holds each connection open.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let child = bucket()
        .args([
            "upload",
            "--profile",
            "tiny",
            "s3://blackhole",
            "--endpoint",
            &endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let within = bucketbench::sim::upload::UPLOAD_ANSWER + std::time::Duration::from_secs(30);
    let (status, _, err) = finish(child, within, "bucket upload");
    assert_eq!(status.code(), Some(1), "{err}");
    let error: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{err}");
    assert!(error[0].contains(&endpoint), "{err}");
    assert!(!err.contains("wJalrXUtnFEMI"), "{err}");
}

/// Found by an adversary: a 206 Partial Content answer to a GET for the
/// whole object was parsed as the file, which was then recorded as failed
/// for good ("not valid JSON"). It is a fetch error now: retried, never
/// recorded, so the next pass tries the file again.
#[test]
fn a_part_nobody_asked_for_is_a_fetch_error_not_the_file() {
    let url = format!("{}/p206", hostile_server());
    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let out = ingest()
            .args([
                "--bucket",
                &url,
                "--model",
                model,
                "--json",
                "--attempts",
                "2",
            ])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{model}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(summary["loaded"], 1, "{model}: {summary}");
        assert!(
            summary.to_string().contains("HTTP 206 Partial Content"),
            "{model}: {summary}"
        );
        assert_eq!(
            ledger(&mut connect(&db)),
            [("ok.json".into(), "loaded".into())],
            "{model}: part.json must stay unrecorded"
        );
    }
    // Part of the manifest: retried, then the pass ends in one line,
    // rather than load "part" as a key and lose the keys after it.
    let db = fresh_db();
    let out = ingest()
        .args([
            "--bucket",
            &url.replace("/p206", "/m206"),
            "--attempts",
            "2",
        ])
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HTTP 206 Partial Content"), "{err}");
    assert!(ledger(&mut connect(&db)).is_empty(), "{err}");
}

/// Found by an adversary: a bucket that answers with something that is
/// not HTTP ended the pass blaming a connection "reset or closed", and a
/// redirect loop was retried five times a file as if the bucket were
/// down. Now the breaker's line says what the server sent, and a redirect
/// loop is one attempt and a fetch error.
#[test]
fn answers_that_are_not_http_and_redirect_loops_are_named_for_what_they_are() {
    let base = hostile_server();
    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let out = ingest()
            .args(["--bucket", &format!("{base}/garbage"), "--model", model])
            .args([
                "--attempts",
                "3",
                "--unreachable-requests",
                "3",
                "--unreachable-after",
                "0.3",
            ])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{model}: {err}");
        assert!(
            err.contains("were answered with something that is not HTTP"),
            "{model}: {err}"
        );
        assert!(!err.contains("reset or closed"), "{model}: {err}");

        let out = ingest()
            .args([
                "--bucket",
                &format!("{base}/loop"),
                "--model",
                model,
                "--json",
            ])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{model}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(summary["retries"], 0, "{model}: {summary}");
        let errors = summary["fetch_errors"].to_string();
        assert!(
            errors.contains("a.json") && errors.contains("redirect"),
            "{model}: {summary}"
        );
    }
}

/// Found by an adversary: `sync` and `threads` (ureq) took a redirect to
/// `file:///etc/passwd` for a path on the same host and asked the bucket
/// for it, then called the file missing; `async` said "HTTP 302". Every
/// model now follows the same rule: an http(s) redirect is followed (its
/// signature never shown), any other is refused in one line that names
/// its scheme, and nothing is asked for it.
#[test]
fn a_redirect_to_a_file_url_is_refused_alike_by_every_model() {
    let base = hostile_server();
    for model in Model::MODELS.map(Model::name) {
        let db = fresh_db();
        let out = ingest()
            .args(["--bucket", &format!("{base}/redir"), "--model", model])
            .args(["--json", "-vv"])
            .env("DATABASE_URL", &db)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let (stdout, err) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let summary: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{model}: {e}: {err}"));
        assert_eq!(summary["loaded"], 2, "{model}: {summary}");
        assert_eq!(
            summary["missing"],
            serde_json::json!([]),
            "{model}: {summary}"
        );
        let errors = summary["fetch_errors"].to_string();
        for scheme in ["file", "ftp"] {
            assert!(
                errors.contains(&format!("{scheme}.json"))
                    && errors.contains(&format!(
                        "redirects to a {scheme}: URL, which is not followed"
                    )),
                "{model}: {summary}"
            );
        }
        assert_eq!(
            ledger(&mut connect(&db)),
            [
                ("moved.json".into(), "loaded".into()),
                ("utf8.json".into(), "loaded".into())
            ],
            "{model}"
        );
        assert!(
            !stdout.contains("SEKRIT") && !err.contains("SEKRIT"),
            "{model}: a signature in a Location was shown: {err}"
        );
    }
    let seen = REDIR_SEEN.lock().unwrap();
    assert!(
        seen.iter().all(|p| !p.contains("etc/passwd")),
        "a client asked the bucket for the file: URL as a path: {seen:?}"
    );
}
