//! The `compare` harness end to end: files written, charts decodable, a
//! wrong load caught, and baselines saved, compared with and enforced.

use crate::common;

use std::path::Path;

use common::*;

fn run_compare(out: &Path, db: &str, extra: &[&str]) -> std::process::Output {
    compare()
        .env("DATABASE_URL", db)
        .args([
            "--profile",
            "tiny",
            "--latency-ms",
            "5",
            "--jitter-ms",
            "1",
            "--bandwidth-mbps",
            "0",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Runs `compare` and fails the test, with its output, unless it succeeded;
/// returns its stdout.
fn compare_ok(out: &Path, db: &str, extra: &[&str]) -> String {
    succeeded(run_compare(out, db, extra))
}

/// Fails the test, with its output, unless `run` succeeded; returns its
/// stdout.
fn succeeded(run: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    // A blank canvas would be one colour; a chart has many.
    let distinct: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
    assert!(distinct.len() > 20, "{} looks blank", path.display());
    (info.width, info.height)
}

#[test]
fn compare_on_tiny_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let stdout = compare_ok(dir.path(), &db, &["--runs", "2", "--warmup", "1"]);
    // The terminal gets aligned plain-text tables, the models and the
    // ceilings apart; summary.md keeps the Markdown.
    assert!(!stdout.contains("| model |"), "{stdout}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("model "))
        .expect(&stdout);
    assert!(
        header.contains("median") && header.contains("vs sync"),
        "{stdout}"
    );
    let ceilings = stdout
        .lines()
        .find(|l| l.starts_with("ceiling "))
        .expect(&stdout);
    assert!(ceilings.contains("what it measures"), "{stdout}");
    // The tables, notes and verdict lines (up to the files written) fit
    // 100 columns.
    assert!(
        stdout
            .lines()
            .skip_while(|l| !l.starts_with("model "))
            .take_while(|l| !l.starts_with("wrote ") && !l.starts_with("database: "))
            .all(|l| l.chars().count() <= 100),
        "{stdout}"
    );
    assert!(stdout.contains("build: "), "{stdout}");
    assert!(stdout.contains("every run verified"), "{stdout}");

    let runs = Csv::read(&dir.path().join("runs.csv"));
    assert_eq!(
        runs.headers,
        [
            "model",
            "write",
            "run",
            "wall_seconds",
            "files",
            "rows",
            "rejected",
            "requests",
            "retries",
            "bytes",
            "cpu_seconds",
            "peak_rss_mb",
            "verified",
            "problems",
            "connections",
            "tls_handshakes",
            "throttled",
            "db_cpu_seconds",
            "bucket_cpu_seconds",
            "cpu_floor_seconds",
            "arrival_floor_seconds",
            "other_cpu_seconds",
            "first_byte_count",
            "first_byte_mean_ms",
            "first_byte_p50_ms",
            "first_byte_p90_ms",
            "first_byte_p99_ms",
            "first_byte_p999_ms",
            "first_byte_max_ms",
            "setup_count",
            "setup_mean_ms",
            "setup_p50_ms",
            "setup_p90_ms",
            "setup_p99_ms",
            "setup_p999_ms",
            "setup_max_ms"
        ]
    );
    // HTTPS by default, verified against the CA compare handed its workers:
    // every run opened connections, each with a TLS handshake.
    // load-only's fetches come before its timed part: none are counted.
    for (((m, c), h), t) in runs
        .column("model")
        .iter()
        .zip(runs.column("connections"))
        .zip(runs.column("tls_handshakes"))
        .zip(runs.column("throttled"))
    {
        if *m == "load-only" {
            assert_eq!((c, h, t), ("", "", ""), "load-only");
            continue;
        }
        assert!(c.parse::<u64>().unwrap() >= 1 && h.parse::<u64>().unwrap() >= 1 && t == "0");
    }
    assert_eq!(
        runs.rows.len(),
        6 * 3,
        "4 models and the 2 ceilings (on by default) × (1 warm-up + 2 runs)"
    );
    let runs = &runs.rows;
    assert!(runs.iter().all(|r| r["verified"] == "true"));
    assert!(runs.iter().all(|r| r["write"] == "copy"));
    assert!(
        runs.iter()
            .all(|r| r["wall_seconds"].parse::<f64>().unwrap() > 0.0
                && r["cpu_seconds"].parse::<f64>().unwrap() > 0.0
                && r["peak_rss_mb"].parse::<f64>().unwrap() > 1.0)
    );
    assert_eq!(runs.iter().filter(|r| r["run"] == "warmup").count(), 6);

    let summary = Csv::read(&dir.path().join("summary.csv"));
    let headers = &summary.headers;
    for col in [
        "model",
        "runs",
        "median_s",
        "min_s",
        "max_s",
        "mean_s",
        "stddev_s",
        "rows_per_s",
        "speedup",
        "speedup_error",
        "outlier_runs",
        "bound_s",
        "x_bound",
    ] {
        assert!(
            headers.iter().any(|h| h == col),
            "summary.csv lacks {col}: {headers:?}"
        );
    }
    let models: Vec<&str> = summary.column("model");
    assert_eq!(
        models,
        [
            "sync",
            "async-fetch",
            "async",
            "threads",
            "fetch-only",
            "load-only"
        ]
    );
    let summary = &summary.rows;
    assert!(summary.iter().all(|r| r["runs"] == "2"));
    assert_eq!(summary[0]["speedup"], "1.000", "sync is the reference");
    // Every model that fetches has a network bound; the writes alone do not.
    for r in summary {
        let has_bound = r["bound_s"].parse::<f64>().is_ok_and(|b| b > 0.0);
        assert_eq!(has_bound, r["model"] != "load-only", "{r:?}");
    }

    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("| threads |"), "{md}");
    assert!(
        md.contains("network bound") && md.contains("Ceiling:"),
        "{md}"
    );
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("environment.json")).unwrap())
            .unwrap();
    for key in [
        "cores",
        "memory_gib",
        "postgres_version",
        "bucket",
        "network",
        "settings",
        "git_revision",
        "runs",
        "warmup",
        "build",
    ] {
        assert!(env.get(key).is_some(), "environment.json lacks {key}");
    }
    assert!(env["build"]["opt_level"].is_string(), "{env}");
    assert!(env["build"]["debug_assertions"].is_boolean(), "{env}");
    assert_eq!(env["bucket"]["profile"], "tiny");
    assert_eq!(env["network"]["latency_ms"], 5.0);
    // The tests' server runs relaxed (tests/common), and the results say so.
    assert_eq!(env["durability"]["fsync"], "off");
    assert!(md.contains("relaxed durability"), "{md}");
    // A latency flag alone means the custom network.
    assert_eq!(env["network"]["preset"], "custom");
    assert_eq!(env["network"]["model"]["tls"], "Tls13");
    let all_files = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>();
    assert!(
        all_files.iter().all(|f| !String::from_utf8_lossy(f)
            .contains(db.split(':').nth(2).unwrap().split('@').next().unwrap())),
        "the database password leaked into a result file"
    );

    for png in ["median_time.png", "launches.png", "throughput.png"] {
        assert_eq!(png_size(&dir.path().join(png)), (1200, 720), "{png}");
    }

    // comparison.json: the same statistics, in the documented shape.
    let c = json(&dir.path().join("comparison.json"));
    assert_eq!(c["schema_version"], 2);
    assert_eq!(c["reference"], "sync");
    assert_eq!(c["runs"].as_array().unwrap().len(), 18);
    assert_eq!(c["environment"]["bucket"]["profile"], "tiny");
    let models = c["models"].as_array().unwrap();
    assert_eq!(models.len(), 6);
    for (m, row) in models.iter().zip(summary) {
        assert_eq!(m["model"], row["model"]);
        let median: f64 = row["median_s"].parse().unwrap();
        assert!((m["median_secs"].as_f64().unwrap() - median).abs() < 1e-4);
        assert_eq!(m["is_ceiling"], row["model"].ends_with("-only"));
        if row["model"].ends_with("-only") {
            // A ceiling is a limit, not a contender: no speed ratio.
            assert!(m["speedup"].is_null(), "{m}");
            assert_eq!(row["speedup"], "", "{row:?}");
            continue;
        }
        // The headline ratio is of the medians, the tables' and bars' figure.
        let ratio = m["speedup"]["ratio_of_medians"].as_f64().unwrap();
        assert!((ratio - row["speedup"].parse::<f64>().unwrap()).abs() < 1e-3);
        // From the JSON's own medians: summary.csv rounds them to 0.1 ms,
        // a relative error of several 1e-3 on this bucket's 30 ms runs.
        let medians =
            models[0]["median_secs"].as_f64().unwrap() / m["median_secs"].as_f64().unwrap();
        assert!((ratio - medians).abs() < 1e-3 * ratio, "{ratio} {medians}");
        assert!(m["speedup"]["ratio_of_means"].as_f64().unwrap() > 0.0);
        assert!(m["speedup"]["ratio_of_medians_error"].as_f64().unwrap() >= 0.0);
    }
    assert!(c["ceiling"]["secs"].as_f64().unwrap() > 0.0);
    let verdict = c["verdict"]["text"].as_str().unwrap();
    assert!(verdict.contains(" times faster than "), "{verdict}");
    assert!(stdout.contains(verdict), "{stdout}");
    // The why travels with the verdict: in the JSON, summary.md and the
    // report, as the terminal printed it.
    let why = c["why"].as_array().unwrap();
    assert!(!why.is_empty(), "{c}");
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains(&format!("- {verdict}\n")), "{md}");
    for line in why.iter().map(|l| l.as_str().unwrap()) {
        assert!(md.contains(&format!("- {line}\n")), "{line:?} in\n{md}");
        assert!(
            stdout.replace("\n  ", " ").contains(line),
            "{line:?} in\n{stdout}"
        );
    }
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains(verdict) && html.contains("<svg"), "{html}");

    // --replot draws the same charts, JSON and report again from the CSVs
    // alone.
    for f in [
        "median_time.png",
        "launches.png",
        "throughput.png",
        "comparison.json",
        "report.html",
    ] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    // summary.md as an older release left it: its title, other tables.
    let md_path = dir.path().join("summary.md");
    let md = std::fs::read_to_string(&md_path).unwrap();
    let title = md.lines().next().unwrap().to_string();
    std::fs::write(&md_path, format!("{title}\n\nan older layout\n")).unwrap();
    // summary.csv likewise, in an older release's columns (the bounds are
    // read from it, so they stay).
    let csv_path = dir.path().join("summary.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    std::fs::write(&csv_path, csv.replace(",limit_efficiency", ",efficiency")).unwrap();
    let replot = compare().arg("--replot").arg(dir.path()).output().unwrap();
    assert!(
        replot.status.success(),
        "{}",
        String::from_utf8_lossy(&replot.stderr)
    );
    // Its tables are written again from the same runs, under the same
    // title, to the last digit: runs.csv keeps every measure as measured.
    let again_md = std::fs::read_to_string(&md_path).unwrap();
    assert_eq!(again_md, md, "summary.md after --replot");
    assert_eq!(
        std::fs::read_to_string(&csv_path).unwrap(),
        csv,
        "summary.csv after --replot"
    );
    for png in ["median_time.png", "launches.png", "throughput.png"] {
        assert_eq!(
            png_size(&dir.path().join(png)),
            (1200, 720),
            "replotted {png}"
        );
    }
    let again = json(&dir.path().join("comparison.json"));
    assert_eq!(again["verdict"], c["verdict"]);
    assert_eq!(
        again["models"], c["models"],
        "the figures --replot reads back"
    );
    assert_eq!(again["environment"], c["environment"]);
    assert!(dir.path().join("report.html").is_file());
    assert!(again["runs"][0]["connections"].as_u64().unwrap() >= 1);

    // A runs.csv written before the server's counts were recorded (its
    // first 14 columns) still replots; the counts are then unknown.
    let path = dir.path().join("runs.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let mut old = csv::Writer::from_writer(Vec::new());
    old.write_record(reader.headers().unwrap().iter().take(14))
        .unwrap();
    for rec in reader.records() {
        old.write_record(rec.unwrap().iter().take(14)).unwrap();
    }
    std::fs::write(&path, old.into_inner().unwrap()).unwrap();
    let replot = compare().arg("--replot").arg(dir.path()).output().unwrap();
    assert!(
        replot.status.success(),
        "{}",
        String::from_utf8_lossy(&replot.stderr)
    );
    let old = json(&dir.path().join("comparison.json"));
    assert!(
        old["runs"][0]["connections"].is_null(),
        "{}",
        old["runs"][0]
    );
    assert!(old["models"][0]["median_connections"].is_null());
}

/// The original task's situation, small: HTTPS verified against the CA
/// compare hands its workers, and S3's request-rate limit low enough that
/// every run is refused some requests with 503 SlowDown and retries them.
#[test]
fn compare_over_https_with_throttling_verifies_and_counts_connections_handshakes_and_503s() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let run = compare()
        .env("DATABASE_URL", &db)
        .args(["--profile", "tiny", "--files", "12", "--records", "5"])
        .args(["--runs", "1", "--warmup", "0", "--no-ceilings"])
        // 4 GET/s (a burst of 4): each run's 13 requests are throttled
        // past the fourth and loaded on the clients' retries.
        .args([
            "--network",
            "local",
            "--get-rate-limit",
            "4",
            "--attempts",
            "10",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("every run verified"), "{stdout}");
    // The startup line names the preset and its numbers.
    assert!(
        stderr.contains("serving at https://127.0.0.1:")
            && stderr.contains("network local: first byte 0 ms")
            && stderr.contains("HTTPS (TLS 1.3)")
            && stderr.contains("4 GET/s per prefix before 503 SlowDown"),
        "{stderr}"
    );
    let runs = Csv::read(&dir.path().join("runs.csv")).rows;
    let (conns, tls, throttled, requests) =
        ("connections", "tls_handshakes", "throttled", "requests");
    assert_eq!(runs.len(), 4, "one run of each model");
    for r in &runs {
        let n = |c: &str| r[c].parse::<u64>().unwrap();
        assert_eq!(&r["verified"], "true", "{r:?}");
        assert!(n(conns) >= 1, "{r:?}");
        assert!(n(tls) >= 1 && n(tls) <= n(conns), "{r:?}");
        assert!(
            n(throttled) >= 1,
            "the rate limit refused some requests: {r:?}"
        );
        assert!(
            n(requests) >= 13 + n(throttled),
            "each refusal was retried: {r:?}"
        );
    }
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("| connections | TLS handshakes | throttled |"),
        "{md}"
    );
    let headers = Csv::read(&dir.path().join("summary.csv")).headers;
    assert!(
        headers.iter().any(|h| h == "median_throttled"),
        "{headers:?}"
    );
    let c = json(&dir.path().join("comparison.json"));
    assert!(c["models"][0]["median_throttled"].as_f64().unwrap() >= 1.0);
    assert_eq!(c["environment"]["network"]["preset"], "local");
}

/// `--no-tls` serves plain HTTP: no handshakes.
#[test]
fn compare_no_tls_serves_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let out = run_compare(
        dir.path(),
        &db,
        &[
            "--no-tls",
            "--models",
            "sync",
            "--runs",
            "1",
            "--warmup",
            "1",
            "--no-ceilings",
        ],
    );
    // Without a terminal, no bar: a line a run says how far it has got.
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(progress.len(), 2, "{stderr}");
    assert!(progress[0].starts_with("[1/2] sync warm-up: "), "{stderr}");
    assert!(
        progress[1].starts_with("[2/2] sync run 1: ") && progress[1].ends_with(" s"),
        "{stderr}"
    );
    succeeded(out);
    let runs = Csv::read(&dir.path().join("runs.csv")).rows;
    assert_eq!(&runs[0]["verified"], "true");
    assert!(runs[0]["connections"].parse::<u64>().unwrap() >= 1);
    assert_eq!(&runs[0]["tls_handshakes"], "0", "{:?}", runs[0]);
}

/// Verification is really on in compare's workers: a bucket whose
/// certificate another CA signed is refused, and compare says why.
#[test]
fn compare_workers_refuse_a_certificate_not_signed_by_the_ca_they_are_given() {
    use bucketbench::sim::{Conditions, NetworkModel, ServeOptions, SimBucket, Spec, TlsVersion};
    let https = NetworkModel {
        tls: Some(TlsVersion::Tls13),
        ..NetworkModel::default()
    };
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let bucket = SimBucket::generate(Spec::new(bucketbench::sim::ProfileName::Tiny, 1));
    let served = bucket
        .serve_network(
            Conditions::default(),
            any,
            ServeOptions::default(),
            https.clone(),
        )
        .unwrap();
    // Another server, only for its CA.
    let other = bucket
        .serve_network(Conditions::default(), any, ServeOptions::default(), https)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let run = |ca: &Path| {
        compare()
            .env("DATABASE_URL", &db)
            .args(["--bucket", &served.base_url(), "--models", "sync"])
            .args(ONE_QUICK_RUN)
            .arg("--ca-file")
            .arg(ca)
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let refused = run(other.ca_file().unwrap());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert!(served.stats().tls_failures >= 1, "{:?}", served.stats());
    // The right CA: the same command loads the bucket.
    let ok = run(served.ca_file().unwrap());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A real bucket whose objects cannot be fetched: a run that loaded
/// nothing took no time to do the job, so it is not a measurement. Before,
/// such runs passed the consistency check (the unfetched keys are rightly
/// absent from the ledger) and their times were published.
#[test]
fn runs_that_could_not_fetch_every_file_are_not_published() {
    let failing = failing_bucket();
    let dir = tempfile::tempdir().unwrap();
    let out = compare()
        .env("DATABASE_URL", fresh_db())
        .args([
            "--bucket",
            &format!("http://127.0.0.1:{}/b", failing.port),
            "--models",
            "sync",
        ])
        .args(ONE_QUICK_RUN)
        // Each worker fails each key: still two files.
        .args(["--workers", "2", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("every run passed"), "{stdout}");
    assert!(
        stderr.contains(
            "FAILED VERIFICATION: sync run 1: 2 files not fetched (first a.json: HTTP 500"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 run loaded something other than"),
        "{stderr}"
    );
    // No chart of nothing: empty axes would only mislead.
    assert!(
        stdout.contains("no charts: no run was verified"),
        "{stdout}"
    );
    assert!(!stdout.contains("median_time.png"), "{stdout}");
    assert!(!dir.path().join("median_time.png").exists());
    // summary.md says which runs were left out, and why.
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("| sync | 1 | 2 files not fetched (first a.json: HTTP 500"),
        "{md}"
    );
}

/// One measured run, no warm-up, no ceilings, one attempt per request: a
/// comparison that only has to show what it does with a bucket.
const ONE_QUICK_RUN: &[&str] = &[
    "--runs",
    "1",
    "--warmup",
    "0",
    "--attempts",
    "1",
    "--no-ceilings",
];

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn replot(dir: &Path, extra: &[&str]) -> std::process::Output {
    compare()
        .arg("--replot")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_saved_baseline_is_compared_with_and_a_forced_regression_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let quick = [
        "--runs",
        "2",
        "--warmup",
        "0",
        "--models",
        "sync,async",
        "--no-ceilings",
    ];
    let stdout = compare_ok(
        dir.path(),
        &db,
        &[&quick[..], &["--save-baseline", "before"]].concat(),
    );
    let saved_path = dir.path().join("baselines/before.json");
    assert!(
        stdout.contains(&format!(
            "saved baseline before to {}",
            saved_path.display()
        )),
        "{stdout}"
    );
    let saved = json(&saved_path);
    assert_eq!(saved["schema_version"], 1);
    assert_eq!(saved["name"], "before");
    let models = saved["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["model"], "sync");
    assert_eq!(models[1]["wall_secs"].as_array().unwrap().len(), 2);

    // A hand-made baseline a hundred times faster than anything tiny can
    // run: every model regressed, and --fail-on-regression fails the run.
    let mut fast = saved.clone();
    fast["name"] = "fast".into();
    for m in fast["models"].as_array_mut().unwrap() {
        for t in m["wall_secs"].as_array_mut().unwrap() {
            *t = (t.as_f64().unwrap() / 100.0).into();
        }
    }
    let fast_path = dir.path().join("fast.json");
    std::fs::write(&fast_path, serde_json::to_vec(&fast).unwrap()).unwrap();
    let exported = dir.path().join("elsewhere/export.json");
    std::fs::create_dir_all(exported.parent().unwrap()).unwrap();
    let run = run_compare(
        dir.path(),
        &db,
        &[
            &quick[..],
            &[
                "--baseline",
                fast_path.to_str().unwrap(),
                "--fail-on-regression",
                "50",
                "--export-json",
                exported.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success(),
        "{stdout}
{stderr}"
    );
    assert!(stdout.contains("Against baseline fast"), "{stdout}");
    assert_eq!(stdout.matches(" regressed\n").count(), 2, "{stdout}");
    for m in ["sync", "async"] {
        assert!(
            stderr.contains(&format!(
                "error: {m} regressed by more than 50 % against baseline"
            )),
            "{stderr}"
        );
    }
    assert!(stdout.contains("every run verified"), "{stdout}");
    let c = json(&dir.path().join("comparison.json"));
    assert_eq!(c, json(&exported), "--export-json writes the same JSON");
    let b = &c["baseline"];
    assert_eq!(b["name"], "fast");
    assert_eq!(b["noise_threshold_pct"], 5.0);
    for m in b["models"].as_array().unwrap() {
        assert_eq!(m["verdict"], "regressed", "{m}");
        assert!(m["change_pct"].as_f64().unwrap() > 1000.0, "{m}");
        assert!(m["ci_low_pct"].as_f64().unwrap() > 0.0, "{m}");
    }
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("Against baseline fast") && html.contains("id=\"chart-baseline\""),
        "the report has the baseline section and chart"
    );

    // The second run against the first: real times, compared model by
    // model (whatever the machine's noise makes of them), exit 0.
    let out = replot(dir.path(), &["--baseline", "before"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Against baseline before"), "{stdout}");
    for m in ["sync", "async"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(m)
                && l.contains('%')
                && ["improved", "regressed", "no change"]
                    .iter()
                    .any(|v| l.ends_with(v))),
            "no verdict for {m}: {stdout}"
        );
    }

    // The same runs as their own baseline: no change, and nothing fails.
    assert!(
        replot(dir.path(), &["--save-baseline", "same"])
            .status
            .success()
    );
    let out = replot(
        dir.path(),
        &["--baseline", "same", "--fail-on-regression", "0"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches(" +0.0 % [").count(), 2, "{stdout}");
    assert_eq!(stdout.matches(" no change\n").count(), 2, "{stdout}");

    // A baseline that does not exist fails at once, before any run.
    let out = run_compare(dir.path(), &db, &["--baseline", "missing"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "no such baseline there; a comparison saves one with --save-baseline missing"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("simulated bucket"), "{stderr}");

    // Found by an adversary: a saved baseline or an exported JSON would
    // overwrite any file, the comparison's own runs.csv included.
    let runs_csv = dir.path().join("runs.csv");
    let before = std::fs::read(&runs_csv).unwrap();
    let comparison = dir.path().join("comparison.json");
    for (flag, path) in [
        ("--save-baseline", &runs_csv),
        ("--export-json", &runs_csv),
        // Nor a baseline over a comparison, or a comparison over a baseline.
        ("--save-baseline", &comparison),
        ("--export-json", &dir.path().join("baselines/same.json")),
    ] {
        let out = replot(dir.path(), &[flag, path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {stderr}");
        assert!(stderr.contains("it exists and is not"), "{flag}: {stderr}");
        assert_eq!(std::fs::read(&runs_csv).unwrap(), before, "{flag}");
    }
    // A baseline holding times no run takes is refused in one line, not
    // turned into "NaN %" that passes --fail-on-regression.
    let damaged = dir.path().join("damaged.json");
    let mut b = json(&dir.path().join("baselines/same.json"));
    b["models"][0]["wall_secs"] = serde_json::json!([1e308, -1.0]);
    std::fs::write(&damaged, serde_json::to_vec(&b).unwrap()).unwrap();
    let out = replot(
        dir.path(),
        &[
            "--baseline",
            damaged.to_str().unwrap(),
            "--fail-on-regression",
            "10",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("which no run takes"), "{stderr}");
    // So is a runs.csv with a time that is not one.
    let text = String::from_utf8(before.clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut cells: Vec<String> = lines[1].split(',').map(str::to_string).collect();
    cells[3] = "NaN".into();
    lines[1] = cells.join(",");
    std::fs::write(&runs_csv, lines.join("\n") + "\n").unwrap();
    let out = replot(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 2: wall_seconds \"NaN\" is not the time of a run"),
        "{stderr}"
    );
    std::fs::write(&runs_csv, &before).unwrap();
}

#[test]
fn a_model_that_drops_a_file_fails_verification_and_compare_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let out = run_compare(
        dir.path(),
        &db,
        &[
            "--runs",
            "1",
            "--warmup",
            "0",
            "--models",
            "sync,test-drop-one",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "1 run loaded something other than the expected result; its time is excluded"
        ),
        "{stderr}"
    );
    let runs = Csv::read(&dir.path().join("runs.csv")).rows;
    let broken: Vec<_> = runs
        .iter()
        .filter(|r| r["model"] == "test-drop-one")
        .collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0]["verified"], "false");
    assert!(
        broken[0]["problems"].contains("ledger rows (files): expected"),
        "{:?}",
        broken[0]["problems"]
    );
    let sync: Vec<_> = runs.iter().filter(|r| r["model"] == "sync").collect();
    assert_eq!(sync[0]["verified"], "true");
}

#[test]
fn ceilings_are_measured_beside_the_models_with_an_efficiency_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    compare_ok(
        dir.path(),
        &db,
        &[
            "--runs",
            "1",
            "--warmup",
            "0",
            "--models",
            "sync,async",
            "--ceilings",
        ],
    );
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    for row in [
        "| fetch-only |",
        "| load-only |",
        "Ceiling:",
        "| async |",
        "efficiency",
    ] {
        assert!(md.contains(row), "summary.md lacks {row}: {md}");
    }
    let runs = Csv::read(&dir.path().join("runs.csv")).rows;
    let load_only: Vec<_> = runs.iter().filter(|r| r["model"] == "load-only").collect();
    assert_eq!(
        load_only[0]["verified"], "true",
        "load-only loads everything and is verified"
    );
    // Its time is the writes alone, and so is its CPU: before, the CPU of
    // the process start, the fetches and the parsing was charged to it, and
    // its CPU floor (the least time the pass could take) exceeded its time.
    let n = |r: &std::collections::HashMap<String, String>, c: &str| -> f64 {
        r[c].parse().unwrap_or_else(|_| panic!("{c} in {r:?}"))
    };
    let wall = n(load_only[0], "wall_seconds");
    let floor = n(load_only[0], "cpu_floor_seconds");
    // /proc counts CPU in 10 ms ticks.
    assert!(
        floor <= wall + 0.02,
        "load-only's CPU floor {floor} s exceeds its time {wall} s: {:?}",
        load_only[0]
    );
}

#[test]
fn several_workers_per_run_share_the_bucket_through_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    compare_ok(
        dir.path(),
        &db,
        &[
            "--runs",
            "1",
            "--warmup",
            "0",
            "--models",
            "sync,async",
            "--workers",
            "3",
        ],
    );
    let runs = Csv::read(&dir.path().join("runs.csv")).rows;
    let models: Vec<&str> = runs.iter().map(|r| r["model"].as_str()).collect();
    assert_eq!(models, ["sync", "async", "fetch-only", "load-only"]);
    for r in &runs {
        assert_eq!(r["verified"], "true", "{r:?}");
        // The ceilings' workers split the keys instead of sharing them.
        assert_eq!(
            r["files"], "5",
            "three workers took the five tiny files once between them: {r:?}"
        );
    }
}

/// `compare`'s own throwaway server is durable as PostgreSQL ships unless
/// asked otherwise, and `environment.json` and the summary say which.
#[test]
fn the_throwaway_server_is_durable_unless_relaxed_durability_is_asked_for() {
    for (extra, setting, words) in [
        (None, "on", "durable commits"),
        (Some("--relaxed-durability"), "off", "relaxed durability"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run = compare()
            .args([
                "--profile",
                "tiny",
                "--latency-ms",
                "0",
                "--models",
                "sync",
                "--no-ceilings",
                "--runs",
                "1",
                "--warmup",
                "0",
                "--out",
            ])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let env: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("environment.json")).unwrap())
                .unwrap();
        for key in ["fsync", "synchronous_commit", "full_page_writes"] {
            assert_eq!(env["durability"][key], setting, "{extra:?} {key}: {env}");
        }
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains(words), "{extra:?}: {md}");
    }
}

#[test]
fn every_run_records_the_database_and_bucket_cpu_and_the_cpu_floor() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    // Enough rows (~13,000) that `load-only`'s timed writes, one group
    // commit, cost the server several of /proc's 10 ms clock ticks: with
    // 2,600 rows they cost about 6 ms, which a reading may round to none.
    let stdout = compare_ok(
        dir.path(),
        &db,
        &[
            "--files",
            "30",
            "--records",
            "500",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--models",
            "sync,async",
        ],
    );
    let runs = Csv::read(&dir.path().join("runs.csv"));
    runs.column("db_cpu_seconds");
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    for r in &runs.rows {
        let num = |c: &str| -> f64 {
            r[c].parse()
                .unwrap_or_else(|_| panic!("column {c} not a number: {r:?}"))
        };
        let (db_s, bucket_s) = (num("db_cpu_seconds"), num("bucket_cpu_seconds"));
        if r["model"] != "fetch-only" {
            assert!(num("rows") > 0.0, "{r:?}");
            assert!(
                db_s > 0.0,
                "a run that loads rows costs the server CPU: {r:?}"
            );
        }
        if r["model"] != "load-only" {
            assert!(
                bucket_s > 0.0,
                "a run that fetches costs the bucket CPU: {r:?}"
            );
        }
        // Rounded to 3 decimals each in the file.
        let expected = (num("cpu_seconds") + db_s + bucket_s) / cores;
        assert!(
            (num("cpu_floor_seconds") - expected).abs() < 0.003,
            "CPU floor {} is not (client + db + bucket) / {cores} = {expected}: {r:?}",
            num("cpu_floor_seconds")
        );
        // Measured on every run (what it sees is `cpu::tests`'s to show:
        // a spinner here held a core through the whole comparison).
        let other = num("other_cpu_seconds");
        assert!(other >= 0.0, "other processes' CPU {other} s: {r:?}");
        // Every model that fetches says when its first body came in; the
        // floor from there is a floor: near the run's time, not past it by
        // more than the start-up and exit CPU the pass's clock leaves out.
        if r["model"] != "load-only" {
            let arrival = num("arrival_floor_seconds");
            assert!(
                arrival > 0.0 && arrival < 2.0 * num("wall_seconds"),
                "arrival floor {arrival} against a run of {}: {r:?}",
                num("wall_seconds")
            );
        }
    }
    let summary = Csv::read(&dir.path().join("summary.csv"));
    for s in summary
        .rows
        .iter()
        .filter(|s| s["model"] == "sync" || s["model"] == "async")
    {
        assert!(
            ["network", "CPU", "arrival"].contains(&s["binds"].as_str()),
            "{s:?}"
        );
        assert!(s["db_us_per_row"].parse::<f64>().unwrap() > 0.0, "{s:?}");
    }
    for text in ["DB µs/row", "CPU floor", "arrival floor", "binds"] {
        assert!(stdout.contains(text), "the table lacks {text}: {stdout}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("comparison.json")).unwrap())
            .unwrap();
    let sync = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "sync")
        .unwrap();
    assert!(sync["median_db_cpu_secs"].as_f64().unwrap() > 0.0, "{sync}");
    assert!(sync["cpu_floor_secs"].as_f64().unwrap() > 0.0, "{sync}");
}

/// Before the fix, a run without --out wrote into results/<profile>/, the
/// committed reference results.
#[test]
fn without_out_a_run_gets_a_directory_of_its_own_and_latest_points_to_it() {
    let cwd = tempfile::tempdir().unwrap();
    // The committed reference results, as a clone has them.
    let reference = cwd.path().join("results/tiny");
    std::fs::create_dir_all(&reference).unwrap();
    std::fs::write(reference.join("summary.md"), "reference\n").unwrap();
    let db = fresh_db();
    let run = compare()
        .current_dir(cwd.path())
        .env("DATABASE_URL", &db)
        .args([
            "--profile",
            "tiny",
            "--latency-ms",
            "5",
            "--models",
            "sync,async",
        ])
        .args(["--runs", "1", "--warmup", "0", "--no-ceilings"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(reference.join("summary.md")).unwrap(),
        "reference\n"
    );
    assert_eq!(std::fs::read_dir(&reference).unwrap().count(), 1);
    let runs = cwd.path().join("results/runs");
    let dirs: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "latest")
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].starts_with("tiny-20"), "{dirs:?}");
    let latest = std::fs::read_link(runs.join("latest")).unwrap();
    assert_eq!(latest, Path::new(&dirs[0]));
    assert!(runs.join("latest/summary.csv").is_file());
    assert!(
        stdout.contains(&format!("wrote results/runs/{}/", dirs[0])),
        "says where it wrote: {stdout}"
    );
    assert!(stdout.contains("results/runs/latest"), "{stdout}");
    // One run each: no spread, so no ± anywhere in the terminal.
    assert!(!stdout.contains('±'), "{stdout}");
    // A verdict line sets the two against each other, whichever won (when
    // sync, the reference, wins, the headline says so and is not repeated
    // the other way round).
    assert!(
        stdout.lines().any(|l| (l.starts_with("async ran ")
            && (l.ends_with(" times faster than sync") || l.ends_with(" times slower than sync")))
            || (l.starts_with("sync ran ") && l.ends_with(" times faster than async"))),
        "{stdout}"
    );
}

/// A comparison that fails before its first run (here, a bucket nothing
/// answers at) leaves no empty directory behind and `latest` where it was;
/// runs on a real bucket are named for it, not for a profile.
#[test]
fn a_comparison_that_fails_at_once_leaves_no_empty_run_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let runs = cwd.path().join("results/runs");
    let earlier = runs.join("tiny-20260101T000000Z");
    std::fs::create_dir_all(&earlier).unwrap();
    std::fs::write(earlier.join("runs.csv"), "kept\n").unwrap();
    std::os::unix::fs::symlink("tiny-20260101T000000Z", runs.join("latest")).unwrap();
    let db = fresh_db();
    let out = compare()
        .current_dir(cwd.path())
        .env("DATABASE_URL", &db)
        .args([
            "--bucket",
            &format!("http://127.0.0.1:{}/nothing", free_port()),
            "--attempts",
            "1",
            "--runs",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("results go to results/runs/bucket-20"),
        "{stderr}"
    );
    let dirs: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs.len(), 2, "only the earlier run and latest: {dirs:?}");
    assert_eq!(
        std::fs::read_link(runs.join("latest")).unwrap(),
        Path::new("tiny-20260101T000000Z")
    );
}

/// Signals `compare` once its first runs are kept, and checks it says so
/// in one line and exits 128 + the signal (130 for Ctrl-C, 143 for SIGTERM). `group`: the whole process group, as a
/// Ctrl-C at a terminal does.
fn interrupt(signal: i32, group: bool) {
    use std::os::unix::process::CommandExt as _;
    let out = tempfile::tempdir().unwrap();
    let mut child = compare()
        // Its own throwaway PostgreSQL: the one stopped under the workers.
        .env_remove("DATABASE_URL")
        .args([
            "--profile",
            "tiny",
            "--latency-ms",
            "20",
            "--models",
            "sync,async",
        ])
        // A warm-up each: kept in runs.csv, but not counted as measured.
        .args(["--runs", "50", "--warmup", "1", "--no-ceilings", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let runs_csv = out.path().join("runs.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&runs_csv).map_or(0, |s| s.lines().count()) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no runs kept in 120 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "compare ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = child.id() as i32;
    // SAFETY: signalling a child (or its group) we started.
    unsafe { libc::kill(if group { -pid } else { pid }, signal) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + signal), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    // The header and the two warm-ups are not measured runs.
    let kept = std::fs::read_to_string(&runs_csv).unwrap().lines().count() - 3;
    assert_eq!(
        last,
        format!(
            "interrupted: {kept} measured runs completed (and 2 warm-ups), kept in {} (compare --replot {} makes their tables and charts)",
            out.path().display(),
            out.path().display()
        ),
        "{stderr}"
    );
    for noise in ["error", "FATAL", "administrator", "no message"] {
        assert!(!stderr.contains(noise), "{noise:?} in {stderr}");
    }
    // Written before the first run: a replot of what was kept still says
    // where it was measured.
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("environment.json")).unwrap())
            .unwrap();
    assert!(env["cores"].as_u64().is_some_and(|c| c > 0), "{env}");
    assert!(env["postgres_version"].is_string(), "{env}");
}

#[test]
fn compare_interrupted_by_sigterm_says_what_it_kept_and_exits_143() {
    interrupt(libc::SIGTERM, false);
}

#[test]
fn compare_interrupted_by_ctrl_c_says_what_it_kept_and_exits_130() {
    interrupt(libc::SIGINT, true);
}

/// Each run records the first-byte delays the simulated bucket applied:
/// with a log-normal of median 20 ms and p99 80 ms, the runs met about
/// that; the set-up round trips (TLS 1.3 over a 4 ms RTT: 8 ms) are counted
/// apart, once per new connection. They reach first_byte.csv, the end of
/// runs.csv, comparison.json, summary.md, the report and first_byte.png,
/// and `--replot` draws the chart again from runs.csv.
#[test]
fn each_run_records_the_first_byte_delays_the_bucket_applied() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let run = compare()
        .env("DATABASE_URL", &db)
        .args(["--profile", "tiny", "--files", "100", "--records", "3"])
        .args(["--models", "sync,async", "--runs", "2", "--warmup", "0"])
        .args(["--no-ceilings", "--bandwidth-mbps", "0"])
        .args(["--latency-median-ms", "20", "--latency-p99-ms", "80"])
        .args(["--rtt-ms", "4", "--tls-version", "1.3"])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let near = |v: f64, want: f64, tol: f64| (v / want - 1.0).abs() <= tol;

    let fb = Csv::read(&dir.path().join("first_byte.csv"));
    for h in [
        "model", "run", "delay", "count", "p50_ms", "p90_ms", "p99_ms", "max_ms",
    ] {
        assert!(fb.headers.iter().any(|c| c == h), "{h} in {:?}", fb.headers);
    }
    let runs = Csv::read(&dir.path().join("runs.csv"));
    assert_eq!(
        fb.rows.len(),
        2 * runs.rows.len(),
        "first byte and set-up per run"
    );
    for r in &fb.rows {
        let n = |c: &str| {
            r[c].parse::<f64>()
                .unwrap_or_else(|_| panic!("{c} in {r:?}"))
        };
        match r["delay"].as_str() {
            "first_byte" => {
                assert!(n("count") >= 101.0, "every GET and the listing: {r:?}");
                assert!(near(n("p50_ms"), 20.0, 0.3), "median near 20 ms: {r:?}");
                assert!(
                    n("p50_ms") <= n("p90_ms") && n("p90_ms") <= n("p99_ms"),
                    "{r:?}"
                );
                assert!(n("p99_ms") <= n("max_ms") && n("p99_ms") < 240.0, "{r:?}");
            }
            "setup" => {
                assert!(n("count") >= 1.0, "{r:?}");
                assert!(near(n("p50_ms"), 8.0, 0.02), "TCP + TLS 1.3: 2 RTT: {r:?}");
            }
            other => panic!("unknown delay {other:?}"),
        }
    }
    // runs.csv: the same figures, after every column it had before.
    let last_old = runs
        .headers
        .iter()
        .position(|h| h == "cpu_floor_seconds")
        .unwrap();
    let p50 = runs.headers.iter().position(|h| h == "first_byte_p50_ms");
    assert!(p50.is_some_and(|i| i > last_old), "{:?}", runs.headers);
    for r in &runs.rows {
        let setups: u64 = r["setup_count"].parse().unwrap();
        let conns: u64 = r["connections"].parse().unwrap();
        assert!(
            setups >= 1 && setups <= conns,
            "one per connection used: {r:?}"
        );
    }
    // Paired: in each run number both models met the same delays (the
    // same draws, in the order their requests arrived), and the two run
    // numbers met different ones.
    let delays = |model: &str, run: &str| -> Vec<String> {
        let r = runs
            .rows
            .iter()
            .find(|r| r["model"] == model && r["run"] == run)
            .unwrap_or_else(|| panic!("{model} run {run} in runs.csv"));
        [
            "first_byte_count",
            "first_byte_mean_ms",
            "first_byte_p50_ms",
            "first_byte_p90_ms",
            "first_byte_p99_ms",
            "first_byte_max_ms",
        ]
        .iter()
        .map(|c| r[*c].clone())
        .collect()
    };
    for run in ["1", "2"] {
        assert_eq!(delays("sync", run), delays("async", run), "run {run}");
    }
    assert_ne!(delays("sync", "1"), delays("sync", "2"));
    let c = json(&dir.path().join("comparison.json"));
    for m in c["models"].as_array().unwrap() {
        let p50 = m["median_first_byte"]["p50_ms"].as_f64().unwrap();
        assert!(near(p50, 20.0, 0.3), "{m}");
        assert!(m["median_setup"]["count"].as_u64().unwrap() >= 1, "{m}");
    }
    assert!(c["runs"][0]["first_byte"]["p99_ms"].as_f64().is_some());
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("| model | requests | mean | p50 | p90 | p99 |"),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("First-byte delays the bucket applied"));
    assert!(
        stdout.contains("first_byte.csv, first_byte.png"),
        "{stdout}"
    );
    let chart = dir.path().join("first_byte.png");
    assert_eq!(png_size(&chart), (1200, 720));

    // --replot draws it again from runs.csv alone.
    std::fs::remove_file(&chart).unwrap();
    let again = replot(dir.path(), &[]);
    assert!(again.status.success(), "{again:?}");
    png_size(&chart);
}

/// `--out` given twice: the second run, on a network with no first-byte
/// delay, draws no `first_byte.png`; before the fix the first run's chart
/// stayed beside results it did not describe.
#[test]
fn a_second_run_into_the_same_out_leaves_nothing_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let args = [
        "--models",
        "async",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--no-ceilings",
    ];
    compare_ok(dir.path(), &db, &args);
    assert!(dir.path().join("first_byte.png").is_file());
    let second = compare()
        .env("DATABASE_URL", &db)
        .args(["--profile", "tiny", "--network", "local", "--out"])
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
    succeeded(second);
    assert!(
        !dir.path().join("first_byte.png").exists(),
        "a stale first_byte.png: {stderr}"
    );
    assert!(
        stderr.contains("replacing the earlier comparison in"),
        "{stderr}"
    );

    assert!(dir.path().join("median_time.png").is_file());
    let runs = Csv::read(&dir.path().join("runs.csv"));
    assert_eq!(runs.rows.len(), 1, "only the second run's rows");

    // A comparison that cannot start leaves the earlier one as it was.
    let failed = compare()
        .env("DATABASE_URL", &db)
        .args(["--bucket", "http://127.0.0.1:1", "--attempts", "1", "--out"])
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(dir.path().join("comparison.json").is_file());
    assert!(dir.path().join("median_time.png").is_file());

    // A directory no comparison wrote keeps its files, whatever their names.
    let own = tempfile::tempdir().unwrap();
    std::fs::write(own.path().join("first_byte.png"), "mine").unwrap();
    succeeded(
        compare()
            .env("DATABASE_URL", &db)
            .args(["--profile", "tiny", "--network", "local", "--out"])
            .arg(own.path())
            .args(args)
            .output()
            .unwrap(),
    );
    assert_eq!(
        std::fs::read_to_string(own.path().join("first_byte.png")).unwrap(),
        "mine"
    );
}

/// A sweep runs a comparison per value and charts them together. Found by
/// an adversary: `--resume` kept values measured with other settings (a
/// tiny bucket charted under a seed sweep), and `--no-ceilings` was
/// ignored under `--sweep`.
#[test]
fn a_sweep_honours_no_ceilings_and_resumes_only_its_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let sweep = |extra: &[&str]| {
        run_compare(
            dir.path(),
            &db,
            &[
                &["--models", "sync,async", "--runs", "1", "--warmup", "0"][..],
                &["--no-ceilings", "--sweep", "concurrency=1,2"][..],
                extra,
            ]
            .concat(),
        )
    };
    succeeded(sweep(&[]));
    let csv = std::fs::read_to_string(dir.path().join("sweep_concurrency.csv")).unwrap();
    assert!(csv.contains("async"), "{csv}");
    assert!(!csv.contains("fetch-only"), "--no-ceilings: {csv}");
    png_size(&dir.path().join("sweep_concurrency.png"));
    // The same settings: both values kept, nothing run again.
    let again = sweep(&["--resume"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("kept the results already in").count(),
        2,
        "{stderr}"
    );
    // A value that records no settings (an older release's): refused too.
    let settings = dir.path().join("concurrency-2/sweep_settings.txt");
    let kept = std::fs::read(&settings).unwrap();
    std::fs::remove_file(&settings).unwrap();
    let unknown = sweep(&["--resume"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not record the settings"), "{stderr}");
    std::fs::write(&settings, kept).unwrap();
    // Other settings: refused, and the kept results are left as they were.
    let other = sweep(&["--resume", "--files-per-transaction", "8"]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was measured with other settings than this sweep's"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sweep_concurrency.csv")).unwrap(),
        csv
    );
}
