//! What a user sees of the binaries' arguments: help that matches what
//! parses, invalid values refused with status 2, `--psql` arguments.

use crate::common;

use std::process::{Command, Output};

use common::*;

const BINARIES: &[(&str, fn() -> Command)] =
    &[("ingest", ingest), ("bucket", bucket), ("compare", compare)];

fn run(mut bin: Command, args: &[&str]) -> Output {
    bin.args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The subcommands listed under `Commands:` in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Each `--flag` with the values its help lists as possible.
fn possible_values(help: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut flag = None;
    let joined = help.replace("\n          ", " ");
    for line in joined.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            flag = t
                .split([',', ' ', '='])
                .find(|w| w.starts_with("--"))
                .map(str::to_string);
        }
        // Values with descriptions are listed as `Possible values: - name: what`.
        if let (Some(f), Some(at)) = (&flag, line.find("Possible values:")) {
            let names = line[at..]
                .split(" - ")
                .skip(1)
                .filter_map(|item| item.split(':').next())
                .map(|n| n.trim().to_string())
                .collect();
            found.push((f.clone(), names));
        }
        if let (Some(f), Some(at)) = (&flag, line.find("[possible values: ")) {
            let rest = &line[at + "[possible values: ".len()..];
            let list = &rest[..rest.find(']').unwrap()];
            found.push((
                f.clone(),
                list.split(", ").map(|v| v.trim().to_string()).collect(),
            ));
        }
    }
    found
}

#[test]
fn every_possible_value_listed_in_help_parses() {
    let mut checked = 0;
    for (name, bin) in BINARIES {
        let top = run(bin(), &["--help"]);
        assert!(top.status.success(), "{name} --help");
        let top = text(&top.stdout);
        let mut commands: Vec<Vec<String>> = vec![vec![]];
        commands.extend(subcommands(&top).into_iter().map(|c| vec![c]));
        for cmd in commands {
            let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            args.push("--help");
            let out = run(bin(), &args);
            assert!(
                out.status.success(),
                "{name} {args:?}: {}",
                text(&out.stderr)
            );
            for (flag, values) in possible_values(&text(&out.stdout)) {
                for v in &values {
                    let mut a: Vec<&str> = cmd.iter().map(String::as_str).collect();
                    a.extend([flag.as_str(), v, "--help"]);
                    let out = run(bin(), &a);
                    assert!(
                        out.status.success(),
                        "{name} {a:?} is listed in help but refused: {}",
                        text(&out.stderr)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} values found in help");
    // The walk would see a refusal: a value not listed is refused.
    let out = run(ingest(), &["--model", "bogus", "--help"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn help_lists_models_defaults_and_short_flags() {
    let help = text(&run(ingest(), &["--help"]).stdout);
    for want in [
        "[possible values: sync, async-fetch, async, threads]",
        "-b, --bucket",
        "-m, --model",
        "-w, --watch",
        "-j, --json",
        "-v, --verbose",
        "-q, --quiet",
        "HTTP client:",
        "Execution model:",
        "bucketbench/postgres",
    ] {
        assert!(help.contains(want), "ingest --help lacks {want:?}:\n{help}");
    }
    // A list flag's default as it is typed: comma-separated, all four models.
    let compare_help = text(&run(compare(), &["--help"]).stdout);
    let default = bucketbench::models::Model::MODELS
        .map(|m| m.name())
        .join(",");
    assert!(
        compare_help.contains(&format!("[default: {default}]")),
        "compare --help:\n{compare_help}"
    );
    let upload = text(&run(bucket(), &["upload", "--help"]).stdout);
    assert!(
        !upload.contains("--suffix") && !upload.contains("--manifest"),
        "{upload}"
    );
    let serve = text(&run(bucket(), &["serve", "--help"]).stdout);
    // Every network default is shown: the preset and what custom falls back on.
    for want in [
        "[default: internet]",
        "60 with custom]",
        "[default: the preset's, 1.3]",
    ] {
        assert!(
            serve.contains(want),
            "bucket serve --help lacks {want:?}:\n{serve}"
        );
    }
}

#[test]
fn bucket_serve_on_a_busy_port_says_which_flag_picks_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(bucket(), &["serve", "--addr", &addr]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: cannot listen on {addr}: "))
            && last.contains("--addr 127.0.0.1:0"),
        "{err}"
    );
}

#[test]
fn zero_and_negative_values_are_refused_with_status_2() {
    for (flag, value) in [
        ("--concurrency", "0"),
        ("--threads", "0"),
        ("--connections", "-1"),
        ("--attempts", "0"),
        ("--attempts", "-3"),
        ("--interval", "-5"),
        ("--interval", "0"),
        ("--seen-resolution", "-5"),
        ("--seen-resolution", "NaN"),
        ("--download-timeout", "-1"),
        // Past what a Duration holds: refused, not a panic.
        ("--db-timeout", "1e20"),
        ("--first-byte-timeout", "1e300"),
        ("--interval", "1e20"),
        // More than any machine can start or hold: refused, not attempted.
        ("--threads", "4294967297"),
        ("--concurrency", "100000"),
    ] {
        let out = run(ingest(), &["--bucket", "http://127.0.0.1:9/", flag, value]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag}")),
            "{flag} {value}: {err}"
        );
    }
    let out = run(bucket(), &["serve", "--error-rate", "1.5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = run(bucket(), &["serve", "--latency-ms", "1e20"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Counts past what a comparison can hold: refused before anything
    // runs, not an abort on a 64 GB allocation (found by an adversary).
    for (flag, value) in [
        ("--runs", "0"),
        ("--runs", "99999999999"),
        ("--warmup", "4294967296"),
        ("--warmup", "-1"),
    ] {
        let out = run(compare(), &[flag, value]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag}")),
            "{flag} {value}: {err}"
        );
    }
    // Each of --files and --records is within its cap; together they are
    // more than a generated bucket may hold in memory.
    let generate = || {
        let mut b = bucket();
        b.args(["generate", "--out", "/nonexistent/x"]);
        b
    };
    for mut bin in [generate(), compare()] {
        let out = bin
            .args([
                "--profile",
                "tiny",
                "--files",
                "1000000",
                "--records",
                "1000000",
            ])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("is more than the 20000000 records a generated bucket may hold"),
            "{err}"
        );
    }
    // A swept value is checked as its flag would be, before anything runs.
    for sweep in [
        "latency=5,1e20",
        "latency=-1",
        "concurrency=4,0",
        "workers=0",
        "workers=1,100000",
        "workers=1,2,1",
        "latency=20,20.0",
        "network=local,LOCAL",
    ] {
        let out = run(compare(), &["--sweep", sweep]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sweep}: {err}");
        assert!(err.contains("--sweep "), "{sweep}: {err}");
    }
    // A path the results cannot go to is found before any run, not after.
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = compare()
        .args([
            "--profile",
            "tiny",
            "--export-json",
            "/proc/nope/x.json",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .starts_with("error: --export-json: creating /proc/nope"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{err}"
    );
    assert!(!dir.path().join("runs.csv").exists());
    let out = run(compare(), &["--models", "sync,async,sync"]);
    assert_eq!(
        text(&out.stderr).trim_end(),
        "error: --models lists sync twice; give each model once"
    );
    let out = run(compare(), &["--sweep", "workers=1,2,1"]);
    assert_eq!(
        text(&out.stderr).trim_end(),
        "error: --sweep workers lists the same value twice (1 and 1); give each once"
    );
}

#[test]
fn psql_passes_what_follows_it_to_psql() {
    let db = fresh_db();
    let path = path_with_psql();
    let out = ingest()
        .env("PATH", &path)
        .args([
            "--database-url",
            &db,
            "--psql",
            "-At",
            "-c",
            "select 4000 + 242",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "4242");
    // The connection reaches psql whatever form names it: a percent-encoded
    // password, `?password=`, a `key=value` string.
    let cfg: tokio_postgres::Config = db.parse().unwrap();
    let port = cfg.get_ports()[0];
    let dbname = cfg.get_dbname().unwrap().to_string();
    connect(&db)
        .batch_execute("CREATE ROLE psql_u LOGIN PASSWORD 'p@ss:w/rd'")
        .unwrap();
    for url in [
        format!("postgres://psql_u:p%40ss%3Aw%2Frd@127.0.0.1:{port}/{dbname}"),
        format!("postgres://psql_u@127.0.0.1:{port}/{dbname}?password=p%40ss%3Aw%2Frd"),
        format!("host=127.0.0.1 port={port} user=psql_u password='p@ss:w/rd' dbname={dbname}"),
    ] {
        let out = ingest()
            .env("PATH", &path)
            .env_remove("PGPASSWORD")
            .args([
                "--database-url",
                &url,
                "--psql",
                "-At",
                "-w",
                "-c",
                "select current_user",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "psql_u", "{}", text(&out.stderr));
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        for (bin, make, args) in [
            (
                "ingest",
                ingest as fn() -> Command,
                vec!["--completions", shell],
            ),
            ("bucket", bucket, vec!["completions", shell]),
        ] {
            let out = run(make(), &args);
            assert!(
                out.status.success(),
                "{bin} {args:?}: {}",
                text(&out.stderr)
            );
            let script = text(&out.stdout);
            assert!(
                script.contains("--bucket") || script.contains("serve"),
                "{bin} {shell}: {script}"
            );
        }
    }
}

/// `cargo run --bin compare` (the dev profile) hands over to the release
/// build: it runs the Cargo that started it to build the release `compare`
/// of this source tree, and says so. A stand-in for Cargo records what it
/// was asked and fails, so the test sees the request and the one-line
/// failure without spending minutes on a release build.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "a release test build has nothing to hand over"
)]
fn an_unoptimised_compare_started_by_cargo_builds_and_runs_the_release_one() {
    let dir = tempfile::tempdir().unwrap();
    let asked = dir.path().join("asked");
    let fake = dir.path().join("cargo");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" > {}\nexit 3\n", asked.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = compare()
        .env_remove("BUCKETBENCH_MEASURE_UNOPTIMISED")
        .env("CARGO", &fake)
        .args(["--profile", "tiny", "--runs", "1"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let asked = std::fs::read_to_string(&asked).expect("compare did not run Cargo");
    let manifest = format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        asked.trim(),
        format!("build --release --bin compare --manifest-path {manifest}")
    );
    assert!(stderr.contains("building the release profile"), "{stderr}");
    assert!(
        stderr.contains("building the release compare failed"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 2, "{stderr}");
}

/// Runs `bin` with its stdout, and then with both stdout and stderr, a
/// pipe whose reader is already gone, as `bin | head` and `bin 2>&1 |
/// head` are once `head` has had its lines, and fails the test unless it
/// exits 0 (a panic exits 101).
fn with_reader_gone(what: &str, bin: impl Fn() -> Command) {
    for stderr_too in [false, true] {
        let mut child = bin()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        if stderr_too {
            drop(child.stderr.take());
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && !text(&out.stderr).contains("panicked"),
            "{what} (stderr closed too: {stderr_too}): {:?}\n{}",
            out.status,
            text(&out.stderr)
        );
    }
}

/// Before the fix, `println!`, `eprintln!` and clap_complete panicked on
/// the closed pipe: `compare` exited 101 before writing comparison.json
/// and report.html, `--completions` with a backtrace.
#[test]
fn a_reader_that_goes_away_early_costs_nothing() {
    with_reader_gone("ingest", || {
        let mut cmd = ingest();
        cmd.args(["--completions", "bash"]);
        cmd
    });
    with_reader_gone("bucket", || {
        let mut cmd = bucket();
        cmd.args(["completions", "bash"]);
        cmd
    });
    let db = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    with_reader_gone("compare", || {
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        let mut cmd = compare();
        cmd.env("DATABASE_URL", &db)
            .args(["--profile", "tiny", "--models", "async", "--runs", "1"])
            .args(["--no-ceilings", "--network", "local", "--out"])
            .arg(dir.path());
        cmd
    });
    // The second run's, with stderr closed too.
    for f in ["runs.csv", "summary.md", "comparison.json", "report.html"] {
        assert!(dir.path().join(f).is_file(), "{f} not written");
    }
}

/// The heading each flag is listed under in `help`.
fn heading_of(help: &str, flag: &str) -> Option<String> {
    let mut heading = None;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = Some(line.trim_end_matches(':').to_string());
        } else if line.trim_start().starts_with(flag)
            && line[line.find(flag).unwrap() + flag.len()..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == ',')
        {
            return heading;
        }
    }
    None
}

/// Before the fix, every flag after a flattened group took that group's
/// heading: `--out` and the baselines were listed as "HTTP client" options,
/// `--database-url` as an "S3 API mode" one; and `compare` and `bucket`
/// described themselves with the crate's description.
#[test]
fn help_lists_each_flag_under_its_own_heading_and_each_binary_says_what_it_is() {
    let help = text(&run(compare(), &["--help"]).stdout);
    for (flag, want) in [
        ("--models", "Comparison"),
        ("--runs", "Comparison"),
        ("--profile", "Simulated bucket"),
        ("--out", "Results"),
        ("--replot", "Results"),
        ("--save-baseline", "Results"),
        ("--database-url", "Database"),
        ("--bucket", "A real bucket"),
        ("--endpoint", "S3 API mode"),
        ("--ca-file", "HTTP client"),
    ] {
        assert_eq!(
            heading_of(&help, flag).as_deref(),
            Some(want),
            "compare {flag}:\n{help}"
        );
    }
    for (name, bin, first) in [
        ("compare", compare(), "Which execution model wins"),
        ("bucket", bucket(), "A seeded, realistic S3-like bucket"),
        ("ingest", ingest(), "Loads the JSON files of a bucket"),
    ] {
        let help = text(&run(bin, &["-h"]).stdout);
        assert!(help.starts_with(first), "{name} -h: {help}");
    }
}

/// Ctrl-C at a terminal reaches the whole foreground group: while `--psql`
/// runs, it is psql's to take (it cancels the running query; an
/// interactive session goes on, `-c` ends with psql's own status), not a
/// signal to stop `ingest` and its database (it used to print
/// `interrupted`, stop the embedded server and exit 130). And
/// a URL without a password hands psql the one `PGPASSWORD` gave `ingest`
/// (psql sees none of the shell's PG variables).
#[test]
fn ctrl_c_in_psql_is_psqls_and_cancels_only_the_query() {
    use std::os::unix::process::CommandExt as _;
    let db = fresh_db();
    let path = path_with_psql();
    let mut url = url::Url::parse(&db).unwrap();
    let password = url.password().unwrap().to_string();
    url.set_password(None).unwrap();
    let child = ingest()
        .env("PATH", &path)
        .env("PGPASSWORD", &password)
        .args(["--database-url", url.as_str(), "--psql", "-At", "-w"])
        .args(["-c", "select pg_sleep(30)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // The query is running once the server says so.
    let mut c = connect(&db);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'select pg_sleep(30)' AND state = 'active'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "psql's query never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: signalling the process group of a child we started.
    unsafe { libc::kill(-pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains("canceling statement"), "{stderr}");
    assert!(!stderr.contains("interrupted"), "{stderr}");
    // psql's status, said by ingest once psql ended: ingest lived on.
    assert!(
        stderr.contains("psql exited with exit status: 1"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

/// SIGTERM to `ingest` alone while `--psql` runs: psql ends with it, not
/// left running behind it with its session.
#[test]
fn sigterm_to_ingest_ends_its_psql_too() {
    let db = fresh_db();
    let path = path_with_psql();
    let mut child = ingest()
        .env("PATH", &path)
        .args(["--database-url", &db, "--psql", "-At", "-w"])
        .args(["-c", "select pg_sleep(30)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let children = || -> Vec<i32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                    .flat_map(|c| {
                        c.split_whitespace()
                            .filter_map(|p| p.parse().ok())
                            .collect::<Vec<i32>>()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let psql = loop {
        if let Some(&p) = children().first() {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "psql never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signalling a child we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let gone = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // SAFETY: probing whether a process exists.
    while unsafe { libc::kill(psql, 0) } == 0 {
        let state = std::fs::read_to_string(format!("/proc/{psql}/stat")).unwrap_or_default();
        if state
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < gone,
            "psql ({psql}) still runs after ingest ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `PATH` with the PostgreSQL server binaries' directory first, where the
/// tests find `psql`.
fn path_with_psql() -> String {
    let bindir = bucketbench::db::embedded::find_bindir().unwrap();
    format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
