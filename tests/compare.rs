//! The `compare` harness end to end: files written, charts decodable, a
//! wrong load caught, and baselines saved, compared with and enforced.

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
        "build",
    ] {
        assert!(env.get(key).is_some(), "environment.json lacks {key}");
    }
    assert!(env["build"]["opt_level"].is_string(), "{env}");
    assert!(env["build"]["debug_assertions"].is_boolean(), "{env}");
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

    // comparison.json: the same statistics, in the documented shape.
    let c = json(&dir.path().join("comparison.json"));
    assert_eq!(c["schema_version"], 1);
    assert_eq!(c["reference"], "sync");
    assert_eq!(c["runs"].as_array().unwrap().len(), 18);
    assert_eq!(c["environment"]["bucket"]["profile"], "tiny");
    let models = c["models"].as_array().unwrap();
    assert_eq!(models.len(), 6);
    for (m, row) in models.iter().zip(&summary) {
        assert_eq!(m["model"], row[0]);
        let median: f64 = row[2].parse().unwrap();
        assert!((m["median_secs"].as_f64().unwrap() - median).abs() < 1e-4);
        let ratio = &m["speedup"]["ratio_of_means"];
        assert!((ratio.as_f64().unwrap() - row[8].parse::<f64>().unwrap()).abs() < 1e-3);
        assert!(m["speedup"]["ratio_of_medians"].as_f64().unwrap() > 0.0);
        assert_eq!(m["is_ceiling"], row[0].ends_with("-only"));
    }
    assert!(c["ceiling"]["secs"].as_f64().unwrap() > 0.0);
    let verdict = c["verdict"]["text"].as_str().unwrap();
    assert!(verdict.contains(" times faster than "), "{verdict}");
    assert!(stdout.contains(verdict), "{stdout}");
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
    let again = json(&dir.path().join("comparison.json"));
    assert_eq!(again["verdict"]["fastest"], c["verdict"]["fastest"]);
    assert_eq!(again["environment"], c["environment"]);
    assert!(dir.path().join("report.html").is_file());
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn replot(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_compare"))
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
    let run = compare(
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
    let out = compare(dir.path(), &db, &["--baseline", "missing"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("save one first with --save-baseline missing"),
        "{stderr}"
    );
    assert!(!stderr.contains("simulated bucket"), "{stderr}");
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
    let run = Command::new(env!("CARGO_BIN_EXE_compare"))
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
    assert!(
        stdout.lines().any(|l| l.starts_with("async ran ")
            && (l.ends_with(" times faster than sync") || l.ends_with(" times slower than sync"))),
        "{stdout}"
    );
}

/// Signals `compare` once its first runs are kept, and checks it says so
/// in one line and exits 130. `group`: the whole process group, as a
/// Ctrl-C at a terminal does.
fn interrupt(signal: i32, group: bool) {
    use std::os::unix::process::CommandExt as _;
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_compare"))
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
        .args(["--runs", "50", "--warmup", "0", "--no-ceilings", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let runs_csv = out.path().join("runs.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&runs_csv).map_or(0, |s| s.lines().count()) < 3 {
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
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    let kept = std::fs::read_to_string(&runs_csv).unwrap().lines().count() - 1;
    assert_eq!(
        last,
        format!(
            "interrupted: {kept} runs completed, kept in {}",
            out.path().display()
        ),
        "{stderr}"
    );
    for noise in ["error", "FATAL", "administrator", "no message"] {
        assert!(!stderr.contains(noise), "{noise:?} in {stderr}");
    }
}

#[test]
fn compare_interrupted_by_sigterm_says_what_it_kept_and_exits_130() {
    interrupt(libc::SIGTERM, false);
}

#[test]
fn compare_interrupted_by_ctrl_c_says_what_it_kept_and_exits_130() {
    interrupt(libc::SIGINT, true);
}
