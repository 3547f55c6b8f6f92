//! The `compare` harness end to end: files written, charts decodable, and a
//! wrong load caught.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn compare(out: &Path, db: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_compare"))
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
    let run = compare(out, db, extra);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers = r.headers().unwrap().iter().map(str::to_string).collect();
    (headers, r.records().map(Result::unwrap).collect())
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
    assert!(stdout.contains("| model | runs | median"), "{stdout}");
    assert!(stdout.contains("every run verified"), "{stdout}");

    let (headers, runs) = csv_rows(&dir.path().join("runs.csv"));
    assert_eq!(
        headers,
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
            "problems"
        ]
    );
    assert_eq!(
        runs.len(),
        6 * 3,
        "4 models and the 2 ceilings (on by default) × (1 warm-up + 2 runs)"
    );
    assert!(runs.iter().all(|r| &r[12] == "true"));
    assert!(runs.iter().all(|r| &r[1] == "copy"));
    assert!(runs.iter().all(|r| r[3].parse::<f64>().unwrap() > 0.0
        && r[10].parse::<f64>().unwrap() > 0.0
        && r[11].parse::<f64>().unwrap() > 1.0));
    assert_eq!(runs.iter().filter(|r| &r[2] == "warmup").count(), 6);

    let (headers, summary) = csv_rows(&dir.path().join("summary.csv"));
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
    let models: Vec<&str> = summary.iter().map(|r| r.get(0).unwrap()).collect();
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
    assert!(summary.iter().all(|r| &r[1] == "2"));
    assert_eq!(&summary[0][8], "1.000", "sync is the reference");
    // Every model that fetches has a network bound; the writes alone do not.
    let bound = headers.iter().position(|h| h == "bound_s").unwrap();
    for r in &summary {
        let has_bound = r[bound].parse::<f64>().is_ok_and(|b| b > 0.0);
        assert_eq!(has_bound, &r[0] != "load-only", "{r:?}");
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
    ] {
        assert!(env.get(key).is_some(), "environment.json lacks {key}");
    }
    assert_eq!(env["bucket"]["profile"], "tiny");
    assert_eq!(env["network"]["latency_ms"], 5.0);
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

    // --replot draws the same charts again from the CSVs alone.
    for png in ["median_time.png", "launches.png", "throughput.png"] {
        std::fs::remove_file(dir.path().join(png)).unwrap();
    }
    let replot = Command::new(env!("CARGO_BIN_EXE_compare"))
        .arg("--replot")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        replot.status.success(),
        "{}",
        String::from_utf8_lossy(&replot.stderr)
    );
    for png in ["median_time.png", "launches.png", "throughput.png"] {
        assert_eq!(
            png_size(&dir.path().join(png)),
            (1200, 720),
            "replotted {png}"
        );
    }
}

#[test]
fn a_model_that_drops_a_file_fails_verification_and_compare_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let out = compare(
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
        stderr.contains("runs loaded something other than the expected result"),
        "{stderr}"
    );
    let (_, runs) = csv_rows(&dir.path().join("runs.csv"));
    let broken: Vec<_> = runs.iter().filter(|r| &r[0] == "test-drop-one").collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(&broken[0][12], "false");
    assert!(
        broken[0][13].contains("ledger rows (files): expected"),
        "{:?}",
        &broken[0][13]
    );
    let sync: Vec<_> = runs.iter().filter(|r| &r[0] == "sync").collect();
    assert_eq!(&sync[0][12], "true");
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
    let (_, runs) = csv_rows(&dir.path().join("runs.csv"));
    let load_only: Vec<_> = runs.iter().filter(|r| &r[0] == "load-only").collect();
    assert_eq!(
        &load_only[0][12], "true",
        "load-only loads everything and is verified"
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
            // fetch-only writes no ledger, so its workers cannot share.
            "--no-ceilings",
        ],
    );
    let (_, runs) = csv_rows(&dir.path().join("runs.csv"));
    for r in &runs {
        assert_eq!(&r[12], "true", "{r:?}");
        assert_eq!(
            &r[4], "5",
            "three workers loaded the five tiny files once between them: {r:?}"
        );
    }
}
