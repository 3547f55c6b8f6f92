//! The comparison pipeline behind `compare`: plan the schedule (models ×
//! write strategies, warm-ups then interleaved measured runs), run it in
//! worker processes on a schema of compare's own, summarise, and export
//! (CSV, Markdown, `environment.json`, charts, then `comparison.json`,
//! `report.html` and the baseline comparison through [`super::publish`]);
//! and `--replot`, the export again from what an earlier comparison wrote.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context;

use super::bound::BucketShape;
use super::export::{self, Environment};
use super::runner::{self, Run, RunSettings, Target};
use super::scratch::Scratch;
use super::{charts, cpu, publish, summary, unique};
use crate::bucket::BucketLocation;
use crate::cli::{self, ClientArgs, KnobArgs, NetArgs, S3Args, SpecArgs};
use crate::db::{EmbeddedPostgres, Flavor, WriteStrategy};
use crate::models::{Label, Model};
use crate::sim::SimBucket;
use crate::{pass, secret};

/// What to compare, how often, on which bucket and database, and where the
/// results go: `compare`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Models to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Model::MODELS)]
    pub models: Vec<Model>,
    /// Measured runs per model.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Warm-up runs per model (not measured).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Worker processes per run, started together on the same bucket and
    /// database (scale-out; the ledger coordinates them).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Measure the ceilings beside the models (the default, except with
    /// --matrix): fetch-only (network and parsing, no database) and
    /// load-only (the writes alone, no network), and give each model's
    /// efficiency against the larger of the two.
    #[arg(long, overrides_with = "no_ceilings")]
    pub ceilings: bool,
    /// Skip the ceilings (two short extra runs per round).
    #[arg(long)]
    pub no_ceilings: bool,
    /// Run every model with every write strategy (insert, batch, copy) and
    /// draw them as grouped bars (matrix.png).
    #[arg(long)]
    pub matrix: bool,
    /// Repeat the comparison over a parameter: `latency=0,5,20,60,150`
    /// (ms to first byte), `concurrency=1,4,16,64,256` (files in flight and
    /// threads), or `files=67,670,6700`. Writes sweep_<param>.csv and .png.
    #[arg(long)]
    pub sweep: Option<String>,
    /// With --sweep, keep the values whose results are already in the
    /// output directory (continue an interrupted sweep).
    #[arg(long, requires = "sweep")]
    pub resume: bool,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub knobs: KnobArgs,
    #[command(flatten)]
    pub db_tls: cli::DbTlsArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Redraw the charts of an earlier comparison in DIR from its runs.csv
    /// and summary.csv, without running anything.
    #[arg(long, value_name = "DIR", conflicts_with = "sweep")]
    pub replot: Option<PathBuf>,
    #[command(flatten)]
    pub publish: publish::PublishArgs,
    /// Output directory (default: results/<profile>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Benchmark this bucket (a base URL or s3://BUCKET[/PREFIX]) instead of
    /// the simulated one (verification can then only check the ledger
    /// against the listing and the rows).
    #[arg(long)]
    pub bucket: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Benchmark against this database instead of a throwaway one. The runs
    /// load into a schema of compare's own (bucketbench_compare_<pid>_<id>),
    /// created at start and dropped at the end: tables that `ingest` filled
    /// in this database are never read or touched. Needs the CREATE
    /// privilege on the database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Returns whether every run was verified (and, with
/// `--fail-on-regression`, none regressed against the baseline).
pub fn run(mut args: CompareArgs) -> anyhow::Result<bool> {
    // On by default: they are what explains the models' times. A matrix
    // would run them once per write strategy, so there they are opt-in.
    args.ceilings = !args.no_ceilings && (args.ceilings || !args.matrix);
    if args.ceilings {
        args.models.extend(Model::CEILINGS);
    }
    args.db_tls.apply();
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let spec = args.spec.spec();
    let conditions = args.net.conditions(crate::cli::DEFAULT_NETWORK);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(spec.profile.as_str()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let baseline = args.publish.load_baseline(&out)?;

    let mut _server_pg = None;
    let database_url = match &args.database_url {
        Some(u) => u.clone(),
        None => {
            let pg = EmbeddedPostgres::start(Flavor::Throwaway)
                .context("starting a throwaway PostgreSQL")?;
            let url = pg.default_url();
            _server_pg = Some(pg);
            url
        }
    };
    let mut _sim_server = None;
    let (bucket_url, expected, bucket_desc, shape) = match &args.bucket {
        Some(url) => {
            let loc = BucketLocation::parse_with(url, &args.s3.options())?;
            (
                url.clone(),
                None,
                serde_json::json!({ "bucket": loc.describe() }),
                None,
            )
        }
        None => {
            let started = std::time::Instant::now();
            let bucket = SimBucket::generate(spec.clone());
            let server = bucket.serve(
                conditions.clone(),
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            )?;
            let url = server.base_url();
            let expected = bucket.expected();
            eprintln!(
                "simulated bucket: {} profile, {} files, {} rows expected, generated in {:.1} s; serving at {url} with {} ms first byte (+{} ms jitter), {} Mbit/s per connection",
                spec.profile.as_str(),
                expected.files + expected.missing_keys.len() as u64,
                expected.rows(),
                started.elapsed().as_secs_f64(),
                conditions.latency_ms,
                conditions.jitter_ms,
                conditions.bandwidth_mbps
            );
            _sim_server = Some(server);
            let shape = BucketShape::of(&bucket);
            (
                url,
                Some(expected),
                serde_json::to_value(&spec)?,
                Some(shape),
            )
        }
    };

    // Declared after the server, so dropped before it.
    let scratch = Scratch::create(&database_url)?;
    let mut db = pass::prepare_database(scratch.url())?;
    let postgres_version: String = db.query_one("SHOW server_version", &[])?.get(0);
    let cpu_meters = cpu::Meters {
        postmaster: match &_server_pg {
            Some(pg) => Some(pg.pid()),
            None => cpu::locate_postmaster(&mut db)
                .inspect_err(|why| eprintln!("database CPU: not measured ({why})"))
                .ok(),
        },
        sim_bucket: _sim_server.is_some(),
    };
    let target = Target {
        bucket_url,
        database_url: scratch.url().to_string(),
        schema: scratch.schema().to_string(),
        expected,
        cpu: cpu_meters,
    };
    let settings = RunSettings {
        knobs: args.knobs.clone(),
        client: args.client.clone(),
        s3: args.s3.clone(),
        workers: args.workers.max(1),
    };

    // Warm-ups first, then the measured runs interleaved model by model, so
    // a slow spell on a shared machine hits every model, not just one.
    let writes: Vec<WriteStrategy> = if args.matrix {
        vec![
            WriteStrategy::Insert,
            WriteStrategy::Batch,
            WriteStrategy::Copy,
        ]
    } else {
        vec![args.knobs.write]
    };
    let combos: Vec<(Model, WriteStrategy)> = args
        .models
        .iter()
        .flat_map(|m| writes.iter().map(move |w| (*m, *w)))
        .collect();
    let mut schedule: Vec<(Model, WriteStrategy, usize)> = Vec::new();
    for (m, w) in &combos {
        schedule.extend((0..args.warmup).map(|_| (*m, *w, 0)));
    }
    for r in 1..=args.runs {
        schedule.extend(combos.iter().map(|(m, w)| (*m, *w, r)));
    }
    let labels: Vec<Label> = combos
        .iter()
        .map(|(m, w)| Label::new(*m, *w, args.matrix))
        .collect();
    let reference = summary::reference(&labels, args.matrix);
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(schedule.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>22} [{bar:30}] {pos}/{len} runs  {msg}  ({elapsed})",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    });
    let mut runs: Vec<Run> = Vec::new();
    for (model, write, r) in &schedule {
        let label = Label::new(*model, *write, args.matrix);
        if let Some(b) = &bar {
            b.set_prefix(format!(
                "{label} {}",
                if *r == 0 {
                    "warm-up".to_string()
                } else {
                    format!("run {r}")
                }
            ));
        }
        let run = runner::run_once(
            &target,
            &settings,
            *model,
            *write,
            *r,
            &mut db,
            bar.as_ref(),
        )?;
        if !run.verified {
            let line = format!("FAILED VERIFICATION: {label} run {r}: {}", run.problems);
            match &bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
        runs.push(run);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }

    let mut summaries = summary::summarize(&runs, &labels, args.matrix, reference);
    if let Some(shape) = &shape {
        for s in &mut summaries {
            s.bound_secs = (s.label.model)
                .in_flight(&settings.knobs.knobs(), settings.workers)
                .map(|n| shape.secs(&conditions, n));
        }
    }
    let subtitle = match &args.bucket {
        Some(_) => "your bucket".to_string(),
        None => format!(
            "{} profile, {} files, {:.0} ms first byte",
            spec.profile.as_str(),
            spec.files,
            conditions.latency_ms
        ),
    };
    export::write_runs_csv(&out.join("runs.csv"), &runs)?;
    export::write_summary_csv(&out.join("summary.csv"), &summaries, reference)?;
    let table = export::summary_markdown(&summaries, reference);
    let table = format!("{table}\n{}", cpu::markdown(&summaries));
    let efficiency = summary::efficiency(&summaries);
    let table = if efficiency.is_empty() {
        table
    } else {
        format!("{table}\n{efficiency}")
    };
    std::fs::write(
        out.join("summary.md"),
        format!("# bucketbench compare — {subtitle}\n\n{table}"),
    )?;
    let (cores, memory_gib, cpu_model, os) = export::machine();
    let env = Environment {
        bucketbench_version: env!("CARGO_PKG_VERSION"),
        git_revision: export::git_revision(),
        date: chrono::Utc::now().to_rfc3339(),
        cores,
        memory_gib,
        cpu_model,
        os,
        postgres_version,
        bucket: bucket_desc,
        network: if args.bucket.is_some() {
            serde_json::json!("real network")
        } else {
            serde_json::to_value(&conditions)?
        },
        settings: serde_json::to_value(&settings)?,
        models: args.models.clone(),
        runs: args.runs,
        warmup: args.warmup,
    };
    export::write_json(&out.join("environment.json"), &env)?;
    let env = Some(serde_json::to_value(&env)?);
    let charts_written = charts::draw_all(
        &out,
        &runs,
        &summaries,
        &labels,
        args.matrix.then_some((&args.models[..], &writes[..])),
        &subtitle,
    );
    for (name, r) in &charts_written {
        if let Err(e) = r {
            eprintln!("warning: {name} not drawn: {e:#}");
        }
    }

    println!("{table}");
    let published = publish::publish(
        &out,
        &runs,
        &summaries,
        reference,
        &subtitle,
        env,
        &args.publish,
        baseline,
    )?;
    if args.database_url.is_some() {
        println!(
            "database: {} (runs loaded into a schema of their own, {}, dropped on exit; no other table touched)",
            secret::redact_url(&database_url),
            scratch.schema()
        );
    }
    println!(
        "wrote {}/{{runs.csv, summary.csv, summary.md, environment.json, median_time.png, launches.png, throughput.png{}}}",
        out.display(),
        if args.matrix { ", matrix.png" } else { "" }
    );
    let failed: Vec<&Run> = runs.iter().filter(|r| !r.verified).collect();
    let verified = if failed.is_empty() && args.bucket.is_some() {
        println!(
            "every run passed the consistency check (the ledger holds every fetchable listed key and agrees with the rows); with no generator behind this bucket, no more can be checked"
        );
        true
    } else if failed.is_empty() {
        println!("every run verified against the expected result");
        true
    } else {
        eprintln!(
            "error: {} runs loaded something other than the expected result; their times are excluded (see runs.csv)",
            failed.len()
        );
        false
    };
    Ok(published.passes(&args.publish) && verified)
}

/// `--replot DIR`: the charts, `comparison.json` and `report.html` again
/// from what a comparison wrote; returns whether it passes
/// `--fail-on-regression`.
pub fn replot(dir: &std::path::Path, publish_args: &publish::PublishArgs) -> anyhow::Result<bool> {
    let baseline = publish_args.load_baseline(dir)?;
    let runs = export::read_runs_csv(&dir.join("runs.csv"))?;
    anyhow::ensure!(
        !runs.is_empty(),
        "{} holds no runs",
        dir.join("runs.csv").display()
    );
    let writes: Vec<WriteStrategy> = unique(runs.iter().map(|r| r.write));
    let models: Vec<Model> = unique(runs.iter().map(|r| r.model));
    let matrix = writes.len() > 1;
    let labels: Vec<Label> = unique(runs.iter().map(|r| r.label(matrix)));
    let reference = summary::reference(&labels, matrix);
    let mut summaries = summary::summarize(&runs, &labels, matrix, reference);
    let bounds = export::read_bounds(&dir.join("summary.csv")).unwrap_or_default();
    for s in &mut summaries {
        s.bound_secs = bounds.iter().find(|(l, _)| *l == s.label).map(|b| b.1);
    }
    // The title the comparison gave its charts: summary.md's first line.
    let subtitle = std::fs::read_to_string(dir.join("summary.md"))
        .ok()
        .and_then(|md| {
            md.lines()
                .next()?
                .split_once(" — ")
                .map(|(_, t)| t.to_string())
        })
        .unwrap_or_else(|| dir.display().to_string());
    for (name, r) in charts::draw_all(
        dir,
        &runs,
        &summaries,
        &labels,
        matrix.then_some((&models[..], &writes[..])),
        &subtitle,
    ) {
        match r {
            Ok(()) => println!("drew {}", dir.join(name).display()),
            Err(e) => eprintln!("warning: {name} not drawn: {e:#}"),
        }
    }
    let env = std::fs::read(dir.join("environment.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let published = publish::publish(
        dir,
        &runs,
        &summaries,
        reference,
        &subtitle,
        env,
        publish_args,
        baseline,
    )?;
    Ok(published.passes(publish_args))
}
