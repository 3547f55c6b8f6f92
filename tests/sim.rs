//! The simulated bucket: determinism, exact expected results, network
//! conditions, churn, the S3 listing, and the `bucket` binary.

use crate::common;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bucketbench::models::Model;
use bucketbench::sim::{Conditions, ProfileName, SimBucket, Spec, verify};
use common::*;

fn snapshot(b: &SimBucket) -> Vec<(String, Vec<u8>)> {
    let store = b.store();
    store
        .keys()
        .into_iter()
        .map(|k| {
            let body = store.get(&k).unwrap().body.to_vec();
            (k, body)
        })
        .collect()
}

#[test]
fn generation_is_deterministic_and_seeded() {
    for profile in [ProfileName::Small, ProfileName::Messy] {
        let a = snapshot(&SimBucket::generate(Spec::new(profile, 7)));
        let b = snapshot(&SimBucket::generate(Spec::new(profile, 7)));
        assert_eq!(a, b, "{profile:?}: same seed, same bytes");
        let c = snapshot(&SimBucket::generate(Spec::new(profile, 8)));
        assert_ne!(a, c, "{profile:?}: another seed differs");
    }
}

#[test]
fn profiles_have_their_documented_shape() {
    let seed = SimBucket::generate(Spec::new(ProfileName::Seed, 42));
    let e = seed.expected();
    assert_eq!(e.files, 67);
    assert_eq!(
        (e.rejected, e.failed_files.len(), e.missing_keys.len()),
        (0, 0, 0),
        "seed is all valid"
    );
    let records = e.rows() + e.skipped;
    assert!(
        (67 * 1000..67 * 3000).contains(&(records as usize)),
        "about 1,500 records a file: {records}"
    );
    let other = e.skipped as f64 / records as f64;
    assert!(
        (0.07..0.13).contains(&other),
        "about 10 % other types: {other}"
    );
    assert!(
        seed.listed_keys()
            .iter()
            .all(|k| k.starts_with("2021/") && k.ends_with(".json"))
    );

    let messy = SimBucket::generate(Spec::new(ProfileName::Messy, 42));
    let m = messy.expected();
    assert_eq!(m.failed_files.len(), 3, "two non-JSON files and one object");
    assert_eq!(m.missing_keys.len(), 2);
    assert!(
        m.rejected > 100,
        "bad records of every kind: {}",
        m.rejected
    );
    let manifest =
        String::from_utf8(messy.store().get("files_list.data").unwrap().body.to_vec()).unwrap();
    assert!(
        manifest.contains("\r\n") && manifest.contains("\r\n\r\n") && manifest.contains("  "),
        "messy manifest"
    );
}

fn load_and_verify(profile: ProfileName, model: &str) {
    let bucket = SimBucket::generate(Spec::new(profile, 42));
    let server = bucket.serve(Conditions::default(), any_port()).unwrap();
    let db = fresh_db();
    let s = pass(&server.base_url(), &db, model);
    let want = bucket.expected();
    assert_eq!(
        (s.songs, s.movies, s.apps, s.rejected, s.skipped),
        (
            want.songs,
            want.movies,
            want.apps,
            want.rejected,
            want.skipped
        )
    );
    let diffs = verify(&mut connect(&db), &want).unwrap();
    assert!(diffs.is_empty(), "{profile:?}: {diffs:#?}");
}

#[test]
fn sync_loads_exactly_the_expected_result_tiny() {
    load_and_verify(ProfileName::Tiny, "sync");
}

#[test]
fn sync_loads_exactly_the_expected_result_small() {
    load_and_verify(ProfileName::Small, "sync");
}

#[test]
fn sync_loads_exactly_the_expected_result_messy() {
    load_and_verify(ProfileName::Messy, "sync");
}

#[test]
fn sync_loads_exactly_the_expected_result_seed() {
    load_and_verify(ProfileName::Seed, "sync");
}

#[test]
fn verify_names_every_difference() {
    let bucket = SimBucket::generate(Spec::new(ProfileName::Messy, 1));
    let server = bucket.serve(Conditions::default(), any_port()).unwrap();
    let db = fresh_db();
    pass(&server.base_url(), &db, "sync");
    let mut c = connect(&db);
    c.batch_execute("DELETE FROM songs WHERE id = (SELECT min(id) FROM songs); UPDATE apps SET version = 'x' WHERE id = (SELECT min(id) FROM apps)").unwrap();
    let diffs = verify(&mut c, &bucket.expected()).unwrap();
    let text = diffs.join("\n");
    assert!(text.contains("songs rows: expected"), "{text}");
    assert!(text.contains("songs content checksum"), "{text}");
    assert!(text.contains("apps content checksum"), "{text}");
    assert!(text.contains("ledger rows disagree"), "{text}");
    assert!(!text.contains("movies"), "{text}");
}

#[test]
fn latency_and_bandwidth_slow_a_fetch() {
    let store = store_with(&[("big.json", &vec![b' '; 125_000])], "big.json\n");
    let fetch = |conditions: Conditions| {
        let server = serve_with(store.clone(), conditions);
        let started = Instant::now();
        let body = ureq::get(&format!("{}/big.json", server.base_url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        assert_eq!(body.len(), 125_000);
        started.elapsed()
    };
    assert!(
        fetch(Conditions {
            latency_ms: 200.0,
            ..Default::default()
        }) >= Duration::from_millis(200)
    );
    // 125 kB at 2 Mbit/s is half a second.
    assert!(
        fetch(Conditions {
            bandwidth_mbps: 2.0,
            ..Default::default()
        }) >= Duration::from_millis(450)
    );
}

#[test]
fn retries_reach_the_exact_result_despite_a_20_percent_error_rate() {
    let bucket = SimBucket::generate(Spec::new(ProfileName::Small, 3));
    let server = bucket
        .serve(
            Conditions {
                error_rate: 0.2,
                ..Default::default()
            },
            any_port(),
        )
        .unwrap();
    let db = fresh_db();
    let mut cfg = config(&server.base_url(), &db);
    cfg.client.retry.max_attempts = 8;
    let s = bucketbench::pass::run_pass(&cfg, Model::Sync.ingestor().as_ref()).unwrap();
    assert!(s.retries > 0, "errors were injected, so there were retries");
    assert!(
        server
            .stats
            .injected_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let diffs = verify(&mut connect(&db), &bucket.expected()).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn after_churn_a_second_pass_loads_exactly_the_new_files() {
    let bucket = SimBucket::generate(Spec::new(ProfileName::Tiny, 5));
    let server = bucket.serve(Conditions::default(), any_port()).unwrap();
    let db = fresh_db();
    let first_listing = bucket.listed_keys();
    pass(&server.base_url(), &db, "sync");
    let (added, deleted) = bucket.churn(3, 2);
    assert_eq!((added.len(), deleted.len()), (3, 2));
    let second = pass(&server.base_url(), &db, "sync");
    assert_eq!(second.loaded, 3);
    let mut union = first_listing;
    union.extend(bucket.listed_keys());
    let diffs = verify(&mut connect(&db), &bucket.expected_for(&union)).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
    let mut c = connect(&db);
    for k in &added {
        assert_eq!(
            count(
                &mut c,
                &format!("SELECT count(*) FROM processed_files WHERE key = '{k}'")
            ),
            1
        );
    }
}

#[test]
fn list_objects_v2_pages_return_every_key_once() {
    let bucket =
        SimBucket::generate(Spec::new(ProfileName::Small, 1).with_overrides(Some(53), Some(2)));
    let server = bucket.serve(Conditions::default(), any_port()).unwrap();
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!(
            "{}?list-type=2&max-keys=7&prefix=2021%2F",
            server.base_url()
        );
        if let Some(t) = &token {
            url.push_str(&format!("&continuation-token={t}"));
        }
        let xml = ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let page = rusty_s3::actions::ListObjectsV2::parse_response(&xml).unwrap();
        pages += 1;
        assert!(page.contents.len() <= 7);
        keys.extend(page.contents.iter().map(|o| o.key.clone()));
        match page.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 8);
    let mut want = bucket.listed_keys();
    want.sort();
    assert_eq!(
        keys, want,
        "every key once, in order, the manifest excluded by the prefix"
    );
    let head = ureq::head(&format!("{}/{}", server.base_url(), want[0]))
        .call()
        .unwrap();
    assert!(head.headers().get("etag").is_some() && head.headers().get("last-modified").is_some());
}

#[test]
fn bucket_generate_then_a_static_web_server_loads_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = bucket()
        .args(["generate", "--profile", "messy", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: bucketbench::sim::Expected =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    assert_eq!(
        expected,
        SimBucket::generate(Spec::new(ProfileName::Messy, 42)).expected()
    );

    let port = free_port();
    let mut http = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is needed for this test: apt-get install -y python3");
    let base = format!("http://127.0.0.1:{port}");
    wait_for_port(port, Duration::from_secs(10), "python3's http.server");
    let db = fresh_db();
    pass(&base, &db, "sync");
    let _ = http.kill();
    let _ = http.wait();
    let diffs = verify(&mut connect(&db), &expected).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn bucket_serve_prints_its_url_first_and_serves_the_expected_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let expected_path = dir.path().join("expected.json");
    let mut child = bucket()
        .args([
            "serve",
            "--profile",
            "tiny",
            // Every interface: the URL printed must still be one to connect to.
            "--addr",
            "0.0.0.0:0",
            "--latency-ms",
            "5",
            "--expected",
        ])
        .arg(&expected_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let db = fresh_db();
    let out = ingest()
        .args(["--bucket", &url, "--database-url", &db, "--json"])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: bucketbench::sim::Expected =
        serde_json::from_slice(&std::fs::read(&expected_path).unwrap()).unwrap();
    let diffs = verify(&mut connect(&db), &expected).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}
