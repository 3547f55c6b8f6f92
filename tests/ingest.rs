//! `ingest` end to end: real PostgreSQL, real HTTP over loopback.

use crate::common;

use std::process::Command;

use chrono::NaiveDate;
use common::*;

const FIXTURE: &str = r#"[
  {"type": "song", "data": {"artist_name": "Nirvana", "title": "Come as You Are", "year": 1992, "release": "Nevermind"}},
  {"type": "song", "data": {"title": "Tab\tand\\backslash", "year": "1994", "artist_name": null}},
  {"type": "song", "data": {"title": "Whole float", "year": 1994.0, "release": 7}},
  {"type": "movie", "data": {"original_title": "Star Wars: The Force Awakens", "original_language": "en", "budget": "245000000", "is_adult": "FALSE", "release_date": "2015-12-18"}},
  {"type": "movie", "data": {"original_title:": "Amélie", "budget": 10000000000, "is_adult": true, "release_date": null}},
  {"type": "movie", "data": {"original_title": "Spider-Man:  No Way Home", "budget": 2e8}},
  {"type": "app", "data": {"name": "Notes", "genre": "Productivity", "rating": "4.5", "version": 2.10, "size_bytes": "3000000000"}},
  {"type": "app", "data": {"name": "Calc", "rating": 4.49, "version": "1.10.3", "extra": {"ignored": true}}},
  {"type": "app", "data": {"name": "Bare"}},
  {"type": "book", "data": {"title": "Dune"}},
  {"type": "podcast", "data": {}},
  {"type": "song", "data": {"year": 2000}},
  {"type": "movie", "data": {"original_title": "Bad date", "release_date": "2021-02-30"}},
  {"type": "app", "data": {"name": "Neg", "size_bytes": -1}},
  "just a string",
  {"type": "movie", "data": {"original_title": "Adult?", "is_adult": "yes"}}
]"#;

#[test]
fn loads_every_value_of_the_contract_fixture() {
    let db = fresh_db();
    let server = serve(store_with(
        &[("2021/06/01/part-00001.json", FIXTURE.as_bytes())],
        "2021/06/01/part-00001.json\n",
    ));
    let s = pass(&server.base_url(), &db, "sync");
    assert_eq!(
        (s.loaded, s.songs, s.movies, s.apps, s.rejected, s.skipped),
        (1, 3, 3, 3, 5, 2)
    );
    let key = "2021/06/01/part-00001.json";
    let mut c = connect(&db);

    let songs: Vec<(String, Option<String>, String, Option<i32>, Option<String>)> = c
        .query(
            "SELECT source_key, artist_name, title, year, release FROM songs ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        songs,
        vec![
            (
                key.into(),
                Some("Nirvana".into()),
                "Come as You Are".into(),
                Some(1992),
                Some("Nevermind".into())
            ),
            (
                key.into(),
                None,
                "Tab\tand\\backslash".into(),
                Some(1994),
                None
            ),
            (
                key.into(),
                None,
                "Whole float".into(),
                Some(1994),
                Some("7".into())
            ),
        ]
    );
    let fresh: bool = c
        .query_one(
            "SELECT bool_and(ingestion_time > now() - interval '1 minute') FROM songs",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(fresh, "ingestion_time is when the record was processed");

    let movies: Vec<(String, Option<String>, Option<i64>, Option<bool>, Option<NaiveDate>, String)> = c
        .query("SELECT original_title, original_language, budget, is_adult, release_date, original_title_normalized FROM movies ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        movies,
        vec![
            (
                "Star Wars: The Force Awakens".into(),
                Some("en".into()),
                Some(245_000_000),
                Some(false),
                NaiveDate::from_ymd_opt(2015, 12, 18),
                "star_wars_the_force_awakens".into()
            ),
            (
                "Amélie".into(),
                None,
                Some(10_000_000_000),
                Some(true),
                None,
                "amélie".into()
            ),
            (
                "Spider-Man:  No Way Home".into(),
                None,
                Some(200_000_000),
                None,
                None,
                "spiderman_no_way_home".into()
            ),
        ]
    );

    let apps: Vec<(
        String,
        Option<String>,
        Option<f64>,
        Option<String>,
        Option<i64>,
        bool,
    )> = c
        .query(
            "SELECT name, genre, rating, version, size_bytes, is_awesome FROM apps ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        apps,
        vec![
            (
                "Notes".into(),
                Some("Productivity".into()),
                Some(4.5),
                Some("2.10".into()),
                Some(3_000_000_000),
                true
            ),
            (
                "Calc".into(),
                None,
                Some(4.49),
                Some("1.10.3".into()),
                None,
                false
            ),
            ("Bare".into(), None, None, None, None, false),
        ]
    );

    let rejected: Vec<(String, i32, String, serde_json::Value)> = c
        .query("SELECT source_key, record_index, reason, raw FROM rejected_records ORDER BY record_index", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let indexes: Vec<i32> = rejected.iter().map(|r| r.1).collect();
    assert_eq!(indexes, [11, 12, 13, 14, 15]);
    assert!(rejected.iter().all(|r| r.0 == key && !r.2.is_empty()));
    assert!(rejected[0].2.contains("title"));
    assert!(rejected[1].2.contains("release_date"));
    assert!(rejected[2].2.contains("size_bytes"));
    assert!(rejected[4].2.contains("is_adult"));
    assert_eq!(rejected[3].3, serde_json::json!("just a string"));
    assert_eq!(
        rejected[2].3,
        serde_json::json!({"type": "app", "data": {"name": "Neg", "size_bytes": -1}})
    );

    let ledger = c
        .query_one("SELECT status, reason, songs_rows, movies_rows, apps_rows, rejected_count, skipped_count, model, etag, size_bytes FROM processed_files WHERE key = $1", &[&key])
        .unwrap();
    assert_eq!(ledger.get::<_, String>(0), "loaded");
    assert_eq!(ledger.get::<_, Option<String>>(1), None);
    assert_eq!(
        (
            ledger.get::<_, i32>(2),
            ledger.get::<_, i32>(3),
            ledger.get::<_, i32>(4)
        ),
        (3, 3, 3)
    );
    assert_eq!((ledger.get::<_, i32>(5), ledger.get::<_, i32>(6)), (5, 2));
    assert_eq!(ledger.get::<_, String>(7), "sync");
    assert!(
        ledger
            .get::<_, Option<String>>(8)
            .is_some_and(|e| e.starts_with('"')),
        "ETag from the GET"
    );
    assert_eq!(ledger.get::<_, i64>(9), FIXTURE.len() as i64);
}

fn song_file(title: &str) -> Vec<u8> {
    format!(r#"[{{"type":"song","data":{{"title":"{title}"}}}}]"#).into_bytes()
}

#[test]
fn a_second_pass_loads_only_new_files_and_vanished_files_keep_their_rows() {
    let db = fresh_db();
    let (a, b, c_) = (song_file("a"), song_file("b"), song_file("c"));
    let store = store_with(&[("a.json", &a), ("b.json", &b)], "a.json\nb.json\n");
    let server = serve(store.clone());
    let first = pass(&server.base_url(), &db, "sync");
    assert_eq!((first.loaded, first.songs), (2, 2));
    let a_version: String = connect(&db)
        .query_one(
            "SELECT xmin::text FROM processed_files WHERE key = 'a.json'",
            &[],
        )
        .unwrap()
        .get(0);

    // b vanishes, c appears.
    store.delete("b.json");
    store.put(
        "c.json",
        bucketbench::sim::Object::new(c_, "2021-06-02T00:00:00.000Z"),
    );
    store.put(
        "files_list.data",
        bucketbench::sim::Object::new(b"a.json\nc.json\n".to_vec(), "2021-06-02T00:00:00.000Z"),
    );
    let second = pass(&server.base_url(), &db, "sync");
    assert_eq!(
        (
            second.listed,
            second.already_loaded,
            second.loaded,
            second.songs
        ),
        (2, 1, 1, 1)
    );

    let mut c = connect(&db);
    let titles: Vec<String> = column(&mut c, "SELECT title FROM songs ORDER BY title");
    assert_eq!(titles, ["a", "b", "c"], "b keeps its rows");
    // Within the hour a listing rewrites no ledger row: a --watch over many
    // keys would otherwise rewrite the whole ledger every interval.
    let stamped = "SELECT key, last_seen_at > processed_at FROM processed_files ORDER BY key";
    let assert_stamped = |c: &mut postgres::Client, [a, b, c_]: [bool; 3], why: &str| {
        let expected: Vec<(String, bool)> = [("a.json", a), ("b.json", b), ("c.json", c_)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(pairs::<String, bool>(c, stamped), expected, "{why}");
    };
    assert_stamped(
        &mut c,
        [false; 3],
        "a key seen within the hour keeps its mark",
    );
    let version_of_a = "SELECT xmin::text FROM processed_files WHERE key = 'a.json'";
    assert_eq!(
        column::<String>(&mut c, version_of_a),
        [a_version],
        "the second listing of a.json did not rewrite its ledger row"
    );

    // With no resolution, each listed key is stamped; the vanished one is not.
    let third = bucketbench::pass::run_pass_with(
        &config(&server.base_url(), &db),
        bucketbench::models::Model::Sync.ingestor().as_ref(),
        &bucketbench::pass::PassOptions {
            seen_resolution: Some(std::time::Duration::ZERO),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((third.loaded, third.already_loaded), (0, 2));
    assert_stamped(
        &mut c,
        [true, false, true],
        "last_seen_at follows the listing",
    );
    assert!(third.render().contains("nothing new to load"));
}

#[test]
fn failed_files_are_recorded_with_their_reason_and_load_nothing() {
    let db = fresh_db();
    let ok = song_file("ok");
    let server = serve(store_with(
        &[
            ("ok.json", &ok),
            ("garbage.json", b"this is not json"),
            ("object.json", br#"{"type":"song","data":{"title":"x"}}"#),
            ("empty.json", b"[]"),
        ],
        "ok.json\ngarbage.json\nobject.json\nempty.json\n",
    ));
    let s = pass(&server.base_url(), &db, "sync");
    assert_eq!((s.loaded, s.failed.len(), s.songs), (2, 2, 1));
    let mut c = connect(&db);
    let rows = ledger_with_reasons(&mut c);
    assert_eq!(rows[0], ("empty.json".into(), "loaded".into(), None));
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("garbage.json", "failed")
    );
    assert!(
        rows[1].2.as_deref().unwrap().starts_with("not valid JSON"),
        "{:?}",
        rows[1].2
    );
    assert_eq!(
        (rows[2].0.as_str(), rows[2].1.as_str()),
        ("object.json", "failed")
    );
    assert!(
        rows[2]
            .2
            .as_deref()
            .unwrap()
            .contains("an object, not an array"),
        "{:?}",
        rows[2].2
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM songs WHERE source_key <> 'ok.json'"
        ),
        0
    );
    // Failed files are in the ledger, so the next pass does not refetch
    // them: it GETs the manifest and only HEADs each known key, to learn
    // whether its object changed.
    let again = pass(&server.base_url(), &db, "sync");
    assert_eq!(
        (again.already_loaded, again.failed_earlier, again.requests),
        (2, 2, 5)
    );
    let text = again.render();
    assert!(
        text.starts_with("4 files listed: 0 loaded, 2 already loaded, 2 failed earlier,"),
        "{text}"
    );
    assert_eq!(
        again.bytes,
        "ok.json\ngarbage.json\nobject.json\nempty.json\n".len() as u64
    );
}

#[test]
fn a_listed_key_that_404s_is_skipped_and_reported() {
    let db = fresh_db();
    let ok = song_file("ok");
    let server = serve(store_with(&[("ok.json", &ok)], "ok.json\ngone.json\n"));
    let s = pass(&server.base_url(), &db, "sync");
    assert_eq!(
        (s.loaded, s.missing.clone()),
        (1, vec!["gone.json".to_string()])
    );
    assert!(s.render().contains("missing (404): gone.json"));
    let mut c = connect(&db);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM processed_files WHERE key = 'gone.json'"
        ),
        0,
        "a 404 is retried next pass"
    );
}

#[test]
fn a_crlf_manifest_with_blanks_duplicates_and_spaces_loads_each_key_once() {
    let db = fresh_db();
    let (a, b) = (song_file("a"), song_file("b"));
    let server = serve(store_with(
        &[("a.json", &a), ("dir/b c.json", &b)],
        "\r\n a.json \r\n\r\ndir/b c.json\r\na.json\r\n\t\r\n",
    ));
    let s = pass(&server.base_url(), &db, "sync");
    assert_eq!((s.listed, s.loaded, s.songs), (2, 2, 2));
    let mut c = connect(&db);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM songs WHERE source_key = 'dir/b c.json'"
        ),
        1
    );
}

/// A bucket of `n` one-song files (`k000.json`, ...), each GET answered
/// after `latency_ms`.
fn song_files(n: usize, latency_ms: f64) -> bucketbench::sim::SimServer {
    let bodies: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("k{i:03}.json"), song_file(&format!("s{i}"))))
        .collect();
    let files: Vec<(&str, &[u8])> = bodies
        .iter()
        .map(|(k, b)| (k.as_str(), b.as_slice()))
        .collect();
    let manifest: String = bodies.iter().map(|(k, _)| format!("{k}\n")).collect();
    serve_with(
        store_with(&files, &manifest),
        bucketbench::sim::Conditions {
            latency_ms,
            ..Default::default()
        },
    )
}

/// `ingest`, warnings and errors only.
fn ingest() -> Command {
    let mut cmd = common::ingest();
    cmd.env("RUST_LOG", "warn");
    cmd
}

#[test]
fn two_ingest_processes_at_once_load_every_key_exactly_once() {
    let db = fresh_db();
    let server = song_files(40, 5.0);
    let children: Vec<_> = (0..2)
        .map(|_| {
            ingest()
                .args([
                    "--bucket",
                    &server.base_url(),
                    "--database-url",
                    &db,
                    "--json",
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let loaded: u64 = outputs.iter().map(|o| o["loaded"].as_u64().unwrap()).sum();
    assert_eq!(
        loaded, 40,
        "between them they loaded every file once: {outputs:?}"
    );
    let mut c = connect(&db);
    assert_eq!(count(&mut c, "SELECT count(*) FROM songs"), 40);
    assert_eq!(count(&mut c, "SELECT count(DISTINCT title) FROM songs"), 40);
    assert_eq!(count(&mut c, "SELECT count(*) FROM processed_files"), 40);
}

#[test]
fn an_unreachable_database_exits_non_zero_with_one_clear_line() {
    let server = serve(store_with(&[], ""));
    let port = free_port();
    let url = format!("postgres://u:hunter2secret@127.0.0.1:{port}/db");
    let out = ingest()
        .args(["--bucket", &server.base_url(), "--database-url", &url])
        .output()
        .unwrap();
    let err = only_the_database_said(&out);
    assert!(!err.contains("hunter2secret"), "the password leaked: {err}");
}

/// The run failed, and its stderr is one line, the database's; returned.
fn only_the_database_said(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: cannot connect to PostgreSQL"),
        "{err}"
    );
    err
}

#[test]
fn a_database_slow_to_fail_is_said_before_any_word_of_a_failing_bucket() {
    // The listing's first request goes out while the database connects:
    // here the bucket refuses it at once and the database fails only after
    // a second and a half, and still the database's line is the only one.
    let pg = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let db_port = pg.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in pg.incoming() {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            drop(conn);
        }
    });
    let out = ingest()
        .args([
            "--bucket",
            &format!("http://127.0.0.1:{}", free_port()),
            "--database-url",
            &format!("postgres://u:pw@127.0.0.1:{db_port}/db"),
            "--attempts",
            "3",
        ])
        .output()
        .unwrap();
    only_the_database_said(&out);
}

#[test]
fn an_unreachable_bucket_exits_non_zero_with_one_clear_line() {
    let db = fresh_db();
    let port = free_port();
    let out = ingest()
        .args([
            "--bucket",
            &format!("http://127.0.0.1:{port}"),
            "--database-url",
            &db,
            "--attempts",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    // Each retry is said as it happens, then the one error line.
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("attempt 1 of 2 failed, next try in"),
        "{err}"
    );
    assert!(lines[1].starts_with("error: cannot list bucket"), "{err}");
}

/// A private data directory for the embedded server as root, reachable by
/// the `postgres` user (like the default /var/lib/bucketbench/postgres).
fn root_data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("bucketbench-test-data")
        .tempdir()
        .unwrap();
    let data = dir.path().join("pg");
    (dir, data)
}

#[test]
fn an_unreachable_bucket_is_found_before_the_embedded_server_starts() {
    let (_dir, data) = root_data_dir();
    let port = free_port();
    let out = ingest()
        .env(bucketbench::db::embedded::ROOT_DATA_DIR_ENV, &data)
        .env("XDG_DATA_HOME", &data)
        .args([
            "--bucket",
            &format!("http://127.0.0.1:{port}"),
            "--attempts",
            "1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot list bucket"), "{err}");
    assert!(!data.exists(), "a server was started for nothing: {err}");
}

#[test]
fn the_default_data_dir_is_the_same_from_any_working_directory() {
    let (dir, data) = root_data_dir();
    let a = song_file("a");
    let server = serve(store_with(&[("a.json", &a)], "a.json\n"));
    let home = dir.path().join("home");
    let run = |cwd: &std::path::Path| {
        std::fs::create_dir_all(cwd).unwrap();
        let out = ingest()
            .current_dir(cwd)
            .env(bucketbench::db::embedded::ROOT_DATA_DIR_ENV, &data)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("xdg"))
            .args(["--bucket", &server.base_url(), "--json"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            err,
        )
    };
    let (first, err) = run(&dir.path().join("one"));
    assert_eq!(first["loaded"], 1);
    // Running as root (as the tests do): the root location, said on stderr.
    let expected = if unsafe { libc_geteuid() } == 0 {
        data.clone()
    } else {
        home.join("xdg/bucketbench/postgres")
    };
    assert_eq!(
        err.trim(),
        format!(
            "using the embedded PostgreSQL in {} (port {})",
            expected.display(),
            err.trim()
                .rsplit("port ")
                .next()
                .unwrap()
                .trim_end_matches(')')
        )
    );
    let (second, _) = run(&dir.path().join("two"));
    assert_eq!(
        (second["loaded"].as_u64(), second["already_loaded"].as_u64()),
        (Some(0), Some(1))
    );
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Ctrl-C (SIGINT) and SIGTERM each stop a pass with one line and the
/// status a shell gives a process the signal killed (128 + its number), so
/// a supervisor can tell a stop it asked for from a failure.
#[test]
fn ctrl_c_and_sigterm_print_one_line_and_exit_128_plus_the_signal() {
    for (signal, status) in [("-INT", 130), ("-TERM", 143)] {
        interrupted_by(signal, status);
    }
}

fn interrupted_by(signal: &str, expected: i32) {
    use std::io::BufRead as _;
    let (_dir, data) = root_data_dir();
    let server = song_files(200, 200.0);
    let mut child = ingest()
        .env(bucketbench::db::embedded::ROOT_DATA_DIR_ENV, &data)
        .env("XDG_DATA_HOME", &data)
        .args([
            "--bucket",
            &server.base_url(),
            "--model",
            "async",
            "--concurrency",
            "4",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("using the embedded PostgreSQL"),
        "{first}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(expected), "{signal}: {rest}");
    assert_eq!(rest, "interrupted\n");
}

#[test]
fn watch_says_a_pass_with_nothing_new_in_one_timestamped_line() {
    use std::io::BufRead as _;
    let db = fresh_db();
    let server = serve(store_with(&[], ""));
    let mut child = ingest()
        .args([
            "--bucket",
            &server.base_url(),
            "--database-url",
            &db,
            "-w",
            "--interval",
            "0.2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for l in &lines {
        let (date, rest) = l.split_at(19);
        assert!(
            chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{lines:?}"
        );
        assert!(
            rest.starts_with(" nothing new: 0 files listed"),
            "{lines:?}"
        );
    }
}

#[test]
fn a_database_a_newer_release_migrated_is_refused_in_one_line_and_watch_stops() {
    let db = fresh_db();
    let server = serve(store_with(&[("a.json", &song_file("a"))], "a.json\n"));
    let s = pass(&server.base_url(), &db, "sync");
    assert_eq!(s.loaded, 1);
    let mut c = connect(&db);
    c.batch_execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES (9999, 'from_a_newer_release', now()::text, '1')",
    )
    .unwrap();
    let before = count(&mut c, "SELECT count(*) FROM songs");
    for watch in [false, true] {
        let mut cmd = ingest();
        cmd.args(["--bucket", &server.base_url(), "--database-url", &db]);
        if watch {
            cmd.args(["--watch", "--interval", "0.2"]);
        }
        // Exits, even with --watch, which retries only what may pass; a
        // watch that keeps retrying is killed after 20 s and fails here.
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let what = format!("watch {watch}");
        let (status, _, stderr) = finish(child, std::time::Duration::from_secs(20), &what);
        assert_eq!(status.code(), Some(1), "watch {watch}: {stderr}");
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: the database's schema is at migration V9999 (from_a_newer_release), newer than this bucketbench's newest"),
            "watch {watch}: {stderr}"
        );
        assert!(!stderr.contains("missing from the filesystem"), "{stderr}");
        assert!(!stderr.contains("retrying next interval"), "{stderr}");
    }
    // Nothing was touched.
    assert_eq!(count(&mut c, "SELECT count(*) FROM songs"), before);
    assert_eq!(
        count(
            &mut c,
            "SELECT max(version)::bigint FROM refinery_schema_history"
        ),
        9999
    );
}

#[test]
fn the_embedded_persistent_database_keeps_the_ledger_between_runs() {
    let dir = tempfile::Builder::new()
        .prefix("bucketbench-test-data")
        .tempdir()
        .unwrap();
    let data_dir = dir.path().join("pg");
    let a = song_file("a");
    let server = serve(store_with(&[("a.json", &a)], "a.json\n"));
    let run = || {
        let out = ingest()
            .args(["--bucket", &server.base_url(), "--json", "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["loaded"], 1);
    let second = run();
    assert_eq!(
        (second["loaded"].as_u64(), second["already_loaded"].as_u64()),
        (Some(0), Some(1))
    );
    let dir_path = dir.path().to_path_buf();
    drop(dir);
    assert!(!dir_path.exists());
}

/// Runs `cmd` and returns its exit status and everything it printed,
/// having checked that `secret` is nowhere in it.
fn run_keeping(cmd: &mut Command, secret: &str) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains(secret), "the password was printed: {said}");
    (out.status.code(), said)
}

/// A URL that leaves out where and as whom to connect takes it from libpq's
/// environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`), as psql does;
/// the URL's own parts win.
#[test]
fn a_url_that_names_nothing_takes_libpqs_environment() {
    let server = song_files(2, 0.0);
    let db = url::Url::parse(&fresh_db()).unwrap();
    let port = db.port().unwrap().to_string();
    let run = |url: &str, env: &[(&str, &str)]| {
        let mut cmd = ingest();
        cmd.args(["--bucket", &server.base_url(), "--database-url", url])
            .args(["--model", "sync"]);
        for var in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "PGPASSFILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        run_keeping(&mut cmd, db.password().unwrap())
    };
    let env = [
        ("PGHOST", db.host_str().unwrap()),
        ("PGPORT", port.as_str()),
        ("PGUSER", db.username()),
        ("PGDATABASE", db.path().trim_start_matches('/')),
        ("PGPASSWORD", db.password().unwrap()),
    ];
    let (code, said) = run("postgres://", &env);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 loaded"), "{said}");
    // The URL's own parts win over the environment's.
    let wrong_database = [env[0], env[1], env[2], ("PGDATABASE", "nowhere"), env[4]];
    let url = format!("postgres:///{}", db.path().trim_start_matches('/'));
    let (code, said) = run(&url, &wrong_database);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 already loaded"), "{said}");
    // PGPORT reaches a host the URL names without a port, as in libpq
    // (tokio-postgres's parser alone gave such a host 5432).
    let url = format!(
        "postgres://{}@{}/{}",
        db.username(),
        db.host_str().unwrap(),
        db.path().trim_start_matches('/')
    );
    let (code, said) = run(&url, &[env[1], env[4]]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 already loaded"), "{said}");
    // A URL libpq and tokio-postgres's parser would send to different
    // servers (tokio-postgres read the credentials up to this `@`, and
    // connected to 127.0.0.2 with the password) is refused in one line.
    let url = format!(
        "postgres://{}/{}?application_name=a@127.0.0.2",
        db.host_str().unwrap(),
        db.path().trim_start_matches('/')
    );
    let (code, said) = run(&url, &env);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("an '@' after its first '/'"), "{said}");
    // ?host= alone is split at its commas, as in libpq: the first host
    // (nothing listens on 127.0.0.9) is tried, then the second. It was
    // looked up as one host named "127.0.0.9,127.0.0.1".
    let url = format!(
        "postgres:///{}?host=127.0.0.9,{}&port={port}",
        db.path().trim_start_matches('/'),
        db.host_str().unwrap()
    );
    let (code, said) = run(&url, &[env[2], env[4]]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 already loaded"), "{said}");
    // PGHOSTADDR is where libpq connects, whatever the host is named.
    let url = format!(
        "postgres://{}@nowhere.invalid:{port}/{}",
        db.username(),
        db.path().trim_start_matches('/')
    );
    let (code, said) = run(&url, &[("PGHOSTADDR", db.host_str().unwrap()), env[4]]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 already loaded"), "{said}");
    // PGSSLMODE=require: the tests' server offers no TLS, so no connection
    // (and no password) reaches it, as with psql.
    let (code, said) = run(
        "postgres://",
        &[
            env[0],
            env[1],
            env[2],
            env[3],
            env[4],
            ("PGSSLMODE", "require"),
        ],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("TLS") || said.contains("tls"), "{said}");
    // The service file is not read: refused in one line, not ignored.
    let (code, said) = run(
        "postgres://",
        &[env[0], env[1], ("PGSERVICE", "etl"), env[4]],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("PGSERVICE is set"), "{said}");
    // Ports that do not pair with the hosts are said before anything is
    // looked up by host.
    let (code, said) = run(
        "postgres://",
        &[("PGHOST", "127.0.0.1,127.0.0.1"), ("PGPORT", "1,2,3")],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("give 3 ports for 2 hosts"), "{said}");
    // A port that is not one is said in one line.
    let (code, said) = run("postgres://", &[("PGPORT", "54x")]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("PGPORT \"54x\" is not a port number"),
        "{said}"
    );
}

/// A URL's hosts are tried in order as libpq tries them: past a host that
/// cannot be reached, but never past a server that answered, even with a
/// refusal (psql 15 stops there too). tokio-postgres alone took a refused
/// login on the first host as a reason to send the password to the next.
/// The error names each host tried.
#[test]
fn hosts_are_tried_in_order_until_a_server_answers() {
    let server = song_files(2, 0.0);
    let db = url::Url::parse(&fresh_db()).unwrap();
    let (real, path) = (
        format!("{}:{}", db.host_str().unwrap(), db.port().unwrap()),
        db.path().to_string(),
    );
    let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refusing_at = refusing.local_addr().unwrap();
    refuse_every_login(refusing);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = |hosts: &str, query: &str| {
        let url = format!(
            "postgres://{}:{}@{hosts}{path}{query}",
            db.username(),
            db.password().unwrap()
        );
        let mut cmd = ingest();
        cmd.args(["--bucket", &server.base_url(), "--database-url", &url])
            .args(["--model", "async"]);
        run_keeping(&mut cmd, db.password().unwrap())
    };
    let (code, said) = run(&format!("{refusing_at},{real}"), "");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "({} port {}: db error: FATAL: no pg_hba.conf entry for this test)",
            refusing_at.ip(),
            refusing_at.port()
        )),
        "{said}"
    );
    assert!(said.contains("the hosts after it were not tried"), "{said}");
    // Past a host that cannot be reached, to the next: nothing was loaded
    // before, so the second host's server loads both files now.
    let (code, said) = run(&format!("{closed},{real}"), "");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 loaded"), "{said}");
    // A server that accepts and never answers (a stopped postmaster) is
    // left after the URL's connect_timeout, which bounds a host's whole
    // attempt as in libpq (tokio-postgres bounded only the TCP connect).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_at = silent.local_addr().unwrap();
    let (code, said) = run(&format!("{silent_at},{real}"), "?connect_timeout=2");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 already loaded"), "{said}");
    drop(silent);
    // Every host unreachable: each is named with what it got.
    let (code, said) = run(&format!("{closed},{closed}"), "");
    assert_eq!(code, Some(1), "{said}");
    let each = format!(
        "{} port {}: error connecting to server",
        closed.ip(),
        closed.port()
    );
    assert_eq!(said.matches(&each).count(), 2, "{said}");
}

/// A database URL that names no password takes libpq's: `PGPASSWORD`, then
/// the password file (`PGPASSFILE`, else `~/.pgpass`), which is ignored,
/// with a warning, when others can read it. With none, the error says where
/// a password can be given. The password is never printed, even at
/// `RUST_LOG=trace`.
#[test]
fn a_url_without_a_password_takes_pgpassword_or_the_password_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = song_files(3, 0.0);
    let with_password = fresh_db();
    let mut url = url::Url::parse(&with_password).unwrap();
    let password = url.password().unwrap().to_string();
    url.set_password(None).unwrap();
    let (user, db, port) = (
        url.username().to_string(),
        url.path().trim_start_matches('/').to_string(),
        url.port().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    let run = |env: &[(&str, &std::ffi::OsStr)]| {
        let mut cmd = ingest();
        cmd.args([
            "--bucket",
            &server.base_url(),
            "--database-url",
            url.as_str(),
        ])
        .args(["--model", "sync"])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env("HOME", dir.path())
        .env("RUST_LOG", "trace");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_keeping(&mut cmd, &password)
    };
    // Neither: one line saying where a password goes.
    let (code, said) = run(&[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("PGPASSWORD") && said.contains(".pgpass"),
        "{said}"
    );
    // PGPASSWORD.
    let (code, said) = run(&[("PGPASSWORD", password.as_ref())]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("3 loaded"), "{said}");
    // A password file, matched by host, port, database and user; a line
    // for another database first.
    std::fs::write(
        &passfile,
        format!(
            "# mine\n127.0.0.1:{port}:other:{user}:wrong\n127.0.0.1:{port}:{db}:{user}:{password}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, said) = run(&[("PGPASSFILE", passfile.as_os_str())]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("0 loaded, 3 already loaded") || said.contains("3 already loaded"),
        "{said}"
    );
    // ~/.pgpass when PGPASSFILE is not set, ignored when others can read it.
    let home_file = dir.path().join(".pgpass");
    std::fs::copy(&passfile, &home_file).unwrap();
    std::fs::set_permissions(&home_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, said) = run(&[]);
    assert_eq!(code, Some(0), "{said}");
    std::fs::set_permissions(&home_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, said) = run(&[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("group or world access"), "{said}");
    // Two hosts to which the file gives different passwords: each host is
    // tried with its own line's password, as libpq tries them (nothing
    // listens on 127.0.0.9, so the second host's line is the one sent).
    // Before, one password went to every host a connection tried, and
    // such a file was refused.
    std::fs::write(
        &passfile,
        format!(
            "127.0.0.9:{port}:*:*:other-servers-secret\n127.0.0.1:{port}:{db}:{user}:{password}\n"
        ),
    )
    .unwrap();
    let mut cmd = ingest();
    cmd.args(["--bucket", &server.base_url(), "--model", "async"])
        .args(["--database-url", &format!("postgres://{user}@/{db}")])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", &passfile)
        .env("PGHOST", "127.0.0.9,127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("RUST_LOG", "trace");
    let (code, said) = run_keeping(&mut cmd, &password);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("3 already loaded"), "{said}");
    assert!(!said.contains("other-servers-secret"), "{said}");
}
