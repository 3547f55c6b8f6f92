//! `ingest`: load a bucket's new files into PostgreSQL, once or on a timer.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bucketbench::bucket::BucketLocation;
use bucketbench::cli::{self, ClientArgs, KnobArgs, S3Args};
use bucketbench::db::{EmbeddedPostgres, Flavor, embedded};
use bucketbench::models::Model;
use bucketbench::pass::{PassConfig, PassOptions, run_pass_with};
use bucketbench::secret;
use clap::Parser;

/// Loads the JSON files of a bucket into PostgreSQL, each key exactly once.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Bucket: a base URL (manifest mode: `<URL>/files_list.data` lists the
    /// keys) or `s3://BUCKET[/PREFIX]` (S3 API mode).
    #[arg(long, required_unless_present = "psql")]
    bucket: Option<String>,
    /// PostgreSQL URL. Without it, a private server runs from the installed
    /// binaries with its data in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Data directory of the embedded PostgreSQL (kept between runs).
    #[arg(long, default_value = ".bucketbench/postgres")]
    data_dir: PathBuf,
    /// Execution model.
    #[arg(long, value_enum, default_value_t = Model::Sync)]
    model: Model,
    /// Repeat passes until interrupted.
    #[arg(long)]
    watch: bool,
    /// Seconds between the start of one pass and the next, with --watch.
    #[arg(long, default_value_t = 60.0)]
    interval: f64,
    /// Print each pass's summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Try every key the ledger records as failed again, changed or not
    /// (a failed key whose object changed is always tried again). With
    /// --watch, on the first pass only.
    #[arg(long)]
    retry_failed: bool,
    /// Open psql on the embedded database instead of ingesting.
    #[arg(long)]
    psql: bool,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    knobs: KnobArgs,
    #[command(flatten)]
    db_tls: cli::DbTlsArgs,
}

fn main() {
    cli::init_logging();
    embedded::install_signal_handler();
    let args = Args::parse();
    if let Err(e) = run(args) {
        cli::exit_with(e);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    args.db_tls.apply();
    let model = args.model.ingestor();
    // A bad bucket URL should fail before a database is started for nothing.
    let bucket = match &args.bucket {
        Some(b) if !args.psql => Some(BucketLocation::parse_with(b, &args.s3.options())?),
        _ => None,
    };
    let mut server = None;
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            let pg = EmbeddedPostgres::start(Flavor::Persistent(args.data_dir.clone()))
                .context("starting the embedded PostgreSQL")?;
            if !args.json {
                eprintln!(
                    "using the embedded PostgreSQL in {} (port {})",
                    pg.data_dir().display(),
                    pg.port()
                );
            }
            let url = pg.default_url();
            server = Some(pg);
            url
        }
    };
    if args.psql {
        return open_psql(&database_url, server.as_ref());
    }
    let cfg = PassConfig {
        bucket: bucket.expect("--bucket is required without --psql"),
        database_url,
        client: args.client.config(),
        knobs: args.knobs.knobs(),
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    let mut opts = PassOptions {
        retry_failed: args.retry_failed,
    };
    tracing::info!(database = %secret::redact_url(&cfg.database_url), "starting");
    loop {
        let started = std::time::Instant::now();
        match run_pass_with(&cfg, model.as_ref(), &opts) {
            Ok(summary) => {
                // Reasons quote the errors of HTTP clients, which may
                // quote a URL: the one redaction, on everything printed.
                let text = if args.json {
                    serde_json::to_string(&summary)?
                } else {
                    summary.render()
                };
                println!("{}", secret::redact_text(&text));
            }
            // A daemon outlives a blip: report it and try again next time.
            Err(e) if args.watch => eprintln!(
                "error: pass failed, retrying next interval: {}",
                secret::redact_text(&bucketbench::error::chain(&*e))
            ),
            Err(e) => return Err(e),
        }
        if !args.watch {
            break;
        }
        opts.retry_failed = false;
        let wait =
            Duration::from_secs_f64(args.interval.max(0.0)).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
    }
    drop(server);
    Ok(())
}

/// Runs `psql` on the database, passing the password in the environment so
/// it never shows in the process list.
fn open_psql(url: &str, server: Option<&EmbeddedPostgres>) -> anyhow::Result<()> {
    let psql = server
        .map(|s| s.bindir().join("psql"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"));
    let parsed = url::Url::parse(url).context("parsing the database URL")?;
    let mut cmd = std::process::Command::new(psql);
    cmd.arg("-h")
        .arg(parsed.host_str().unwrap_or("127.0.0.1"))
        .arg("-p")
        .arg(parsed.port().unwrap_or(5432).to_string())
        .arg("-U")
        .arg(parsed.username())
        .arg("-d")
        .arg(parsed.path().trim_start_matches('/'));
    if let Some(pw) = parsed.password() {
        cmd.env("PGPASSWORD", pw);
    }
    let status = cmd.status().context("running psql")?;
    anyhow::ensure!(status.success(), "psql exited with {status}");
    Ok(())
}
