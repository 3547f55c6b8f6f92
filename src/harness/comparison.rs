//! The comparison pipeline behind `compare`, in stages: [`Plan::from_args`]
//! (the schedule of models × write strategies, warm-ups then interleaved
//! measured runs, the labels, the output directory), [`Bench::start`] (the
//! bucket and compare's own schema), [`execute`] (the runs, in worker
//! processes), [`summarise`] (statistics and network bounds) and
//! [`export`] (CSV, Markdown, `environment.json`, charts, then
//! `comparison.json`, `report.html` and the baseline comparison through
//! [`super::publish`]). A sweep runs them once per value; `--replot` reuses
//! the summary and the charts on what an earlier comparison wrote.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::binary::Build;
use super::bound::{BoundNetwork, BucketShape};
use super::durability::ServerDurability;
use super::export::{self, Environment};
use super::json::BaselineFile;
use super::runner::{self, Run, RunSettings, Target};
use super::scratch::Scratch;
use super::summary::ModelSummary;
use super::{charts, cpu, outdir, publish, summary, terminal, unique};
use crate::bucket::BucketLocation;
use crate::cli::network::NetworkArgs;
use crate::cli::{self, ClientArgs, KnobArgs, NetArgs, S3Args, SpecArgs};
use crate::db::watched::Watched;
use crate::db::{Durability, EmbeddedPostgres, Flavor, WriteStrategy};
use crate::models::{Label, Model};
use crate::secret;
use crate::sim::network::NetworkPreset;
use crate::sim::{Conditions, NetworkModel, SimBucket, SimServer, Spec};

/// What to compare, how often, on which bucket and database, and where the
/// results go: `compare`'s options.
/// `--models`' default as the flag takes it (comma-separated, so that
/// `--help` shows what to type): [`Model::MODELS`].
const MODELS_DEFAULT: &str = "sync,async-fetch,async,threads";

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Models to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = MODELS_DEFAULT, help_heading = "Comparison")]
    pub models: Vec<Model>,
    /// Measured runs per model.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = cli::runs, help_heading = "Comparison")]
    pub runs: usize,
    /// Warm-up runs per model (not measured).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = cli::warmups, help_heading = "Comparison")]
    pub warmup: usize,
    /// Worker processes per run, started together on the same bucket and
    /// database (scale-out; the ledger coordinates them).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = cli::count, help_heading = "Comparison")]
    pub workers: usize,
    /// Measure the ceilings beside the models (the default, except with
    /// --matrix): fetch-only (network and parsing, no database) and
    /// load-only (the writes alone, no network), and give each model's
    /// efficiency against the larger of the two.
    #[arg(long, overrides_with = "no_ceilings", help_heading = "Comparison")]
    pub ceilings: bool,
    /// Skip the ceilings (two short extra runs per round).
    #[arg(long, help_heading = "Comparison")]
    pub no_ceilings: bool,
    /// Run every model with every write strategy (insert, batch, copy) and
    /// draw them as grouped bars (matrix.png).
    #[arg(long, help_heading = "Comparison")]
    pub matrix: bool,
    /// Repeat the comparison over a parameter, one comparison per value:
    /// `latency=0,5,20,60,150` (fixed ms to first byte, the `custom`
    /// network), `concurrency=1,4,16,64,256` (files in flight and threads),
    /// `files=67,670,6700`, `workers=1,2,4` (processes at once) or
    /// `network=local,same-region,cross-region,internet` (presets). Writes
    /// sweep_<param>.csv and .png.
    #[arg(long, value_name = "PARAM=V1,V2,...", help_heading = "Comparison")]
    pub sweep: Option<String>,
    /// With --sweep, keep the values whose results are already in the
    /// output directory (continue an interrupted sweep).
    #[arg(long, requires = "sweep", help_heading = "Comparison")]
    pub resume: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Serve the simulated bucket over plain HTTP instead of HTTPS (by
    /// default its throwaway CA is handed to the workers as --ca-file, so
    /// certificates are verified as with a real bucket).
    #[arg(
        long,
        help_heading = "Simulated network",
        conflicts_with = "tls_version"
    )]
    pub no_tls: bool,
    #[command(flatten)]
    pub knobs: KnobArgs,
    #[command(flatten)]
    pub db_tls: cli::DbTlsArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Redo the outputs of an earlier comparison in DIR from its runs.csv
    /// and summary.csv, without running anything: the charts, summary.md,
    /// comparison.json and report.html, and the report printed again.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "sweep",
        help_heading = "Results"
    )]
    pub replot: Option<PathBuf>,
    #[command(flatten)]
    pub publish: publish::PublishArgs,
    /// Output directory. Default: a new results/runs/<profile>-<UTC time>/
    /// (results/runs/latest points to the newest), so a run never
    /// overwrites another's; the committed reference results are made with
    /// --out results/seed.
    #[arg(long, help_heading = "Results")]
    pub out: Option<PathBuf>,
    /// Benchmark this bucket (a base URL or s3://BUCKET[/PREFIX]) instead of
    /// the simulated one (verification can then only check the ledger
    /// against the listing and the rows).
    #[arg(long, help_heading = "A real bucket")]
    pub bucket: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Benchmark against this database instead of a throwaway one. The runs
    /// load into a schema of compare's own (bucketbench_compare_<pid>_<id>),
    /// created at start and dropped at the end: tables that `ingest` filled
    /// in this database are never read or touched. Needs the CREATE
    /// privilege on the database. Read as `ingest --database-url` reads it,
    /// as psql would: PGPASSWORD or the password file when it names no
    /// password, libpq's PG* variables for what it leaves out.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        help_heading = "Database"
    )]
    pub database_url: Option<String>,
    /// Run compare's throwaway server (no --database-url) with fsync,
    /// synchronous_commit and full_page_writes off: faster, but not what a
    /// real server does (a commit no longer waits for the disk, so models
    /// that commit each file alone look better than they would). Default:
    /// durable, as PostgreSQL ships.
    #[arg(long, help_heading = "Database")]
    pub relaxed_durability: bool,
}

/// One slot of a schedule: the model, its write strategy and the run
/// number (0 for a warm-up).
pub type Slot = (Model, WriteStrategy, usize);

/// The models, write strategies and labels of a comparison, and the label
/// speed ratios are relative to: what a plan decides, and what
/// `--replot` reads back from the runs.
#[derive(Debug, Clone)]
pub struct Layout {
    pub matrix: bool,
    pub models: Vec<Model>,
    pub writes: Vec<WriteStrategy>,
    pub labels: Vec<Label>,
    pub reference: Option<Label>,
}

impl Layout {
    fn new(models: Vec<Model>, writes: Vec<WriteStrategy>, matrix: bool) -> Self {
        let labels: Vec<Label> = models
            .iter()
            .flat_map(|m| writes.iter().map(move |w| Label::new(*m, *w, matrix)))
            .collect();
        let reference = summary::reference(&labels, matrix);
        Layout {
            matrix,
            models,
            writes,
            labels,
            reference,
        }
    }

    /// The layout of runs an earlier comparison wrote.
    pub fn of_runs(runs: &[Run]) -> Self {
        let writes: Vec<WriteStrategy> = unique(runs.iter().map(|r| r.write));
        let models: Vec<Model> = unique(runs.iter().map(|r| r.model));
        let matrix = writes.len() > 1;
        let labels: Vec<Label> = unique(runs.iter().map(|r| r.label(matrix)));
        let reference = summary::reference(&labels, matrix);
        Layout {
            matrix,
            models,
            writes,
            labels,
            reference,
        }
    }
}

/// Everything a comparison will do, decided from its options before
/// anything starts: the schedule, the labels, the output directory and the
/// settings of the runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The options, with the ceilings resolved (added to the models when on).
    pub args: CompareArgs,
    pub spec: Spec,
    /// The simulated network (unused with `--bucket`): the preset, the
    /// per-request conditions and the network model (TLS, RTT, latency
    /// shape, rate limit).
    pub preset: NetworkPreset,
    pub conditions: Conditions,
    pub model: NetworkModel,
    pub out: PathBuf,
    pub layout: Layout,
    /// Warm-ups first, then the measured runs interleaved model by model,
    /// so a slow spell on a shared machine hits every model, not just one.
    pub schedule: Vec<Slot>,
    pub settings: RunSettings,
    /// The charts' and `summary.md`'s title.
    pub subtitle: String,
    /// The source revision, read before anything is written: the runs'
    /// own files in a committed results directory would otherwise make
    /// every reference run look "dirty".
    pub git_revision: String,
    /// The load average before anything of the comparison's own ran.
    pub load_at_start: Option<f64>,
    /// The cores other processes kept busy then ([`export::cores_busy`]).
    pub busy_at_start: Option<f64>,
}

impl Plan {
    /// The busy-machine warning, when the load before the comparison began
    /// calls for one: said before the runs and kept in `summary.md`.
    pub fn busy(&self) -> Option<String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.busy_at_start
            .and_then(|busy| export::busy_warning(busy, cores))
    }

    pub fn from_args(mut args: CompareArgs) -> anyhow::Result<Plan> {
        // On by default: they are what explains the models' times. A matrix
        // would run them once per write strategy, so there they are opt-in.
        args.ceilings = !args.no_ceilings && (args.ceilings || !args.matrix);
        // A model twice would be measured twice under one label, its runs
        // mixed, and the two rows compared with each other.
        for (i, m) in args.models.iter().enumerate() {
            anyhow::ensure!(
                !args.models[..i].contains(m),
                "--models lists {m} twice; give each model once"
            );
        }
        if args.ceilings {
            for c in Model::CEILINGS {
                if !args.models.contains(&c) {
                    args.models.push(c);
                }
            }
        }
        anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
        let spec = args.spec.spec()?;
        let preset = args.network.preset(&args.net);
        let (conditions, model) = args.network.settings(&args.net, !args.no_tls)?;
        // Without --out, a directory of its own: a user's run never
        // overwrites the committed reference results.
        let out = match &args.out {
            Some(dir) => dir.clone(),
            // A real bucket has no profile: its runs are named for it.
            None => outdir::fresh(
                Path::new(outdir::RUNS_DIR),
                match args.bucket {
                    Some(_) => "bucket",
                    None => spec.profile.as_str(),
                },
            )?,
        };
        args.publish.baselines_dir = Some(outdir::baselines_base(args.out.as_deref()));
        let writes: Vec<WriteStrategy> = if args.matrix {
            vec![
                WriteStrategy::Insert,
                WriteStrategy::Batch,
                WriteStrategy::Copy,
            ]
        } else {
            vec![args.knobs.write]
        };
        let layout = Layout::new(args.models.clone(), writes, args.matrix);
        let combos: Vec<(Model, WriteStrategy)> = layout
            .models
            .iter()
            .flat_map(|m| layout.writes.iter().map(move |w| (*m, *w)))
            .collect();
        let mut schedule: Vec<Slot> = Vec::new();
        for (m, w) in &combos {
            schedule.extend((0..args.warmup).map(|_| (*m, *w, 0)));
        }
        for r in 1..=args.runs {
            schedule.extend(combos.iter().map(|(m, w)| (*m, *w, r)));
        }
        let settings = RunSettings {
            knobs: args.knobs.clone(),
            client: args.client.clone(),
            s3: args.s3.clone(),
            workers: args.workers.max(1),
        };
        let subtitle = match &args.bucket {
            Some(_) => "your bucket".to_string(),
            None => format!(
                "{} profile, {}, {}",
                spec.profile.as_str(),
                crate::report::plural(spec.files as u64, "file", "files"),
                super::netstats::subtitle(preset, &conditions, &model)
            ),
        };
        Ok(Plan {
            args,
            spec,
            preset,
            conditions,
            model,
            out,
            layout,
            schedule,
            settings,
            subtitle,
            git_revision: export::git_revision(),
            load_at_start: export::load_average(),
            busy_at_start: export::cores_busy(export::BUSY_SAMPLE),
        })
    }
}

/// What the runs load from and into: the bucket (simulated, or the user's)
/// and compare's own schema in a database (throwaway, or the user's), live
/// for as long as this is.
pub struct Bench {
    // Fields drop in order: the connection and the schema before the
    // servers they live on.
    db: Watched,
    scratch: Scratch,
    pub target: Target,
    /// The plan's run settings, with the simulated bucket's CA as the
    /// workers' `--ca-file` when it serves HTTPS.
    pub settings: RunSettings,
    /// The simulated bucket's shape, for the network bounds.
    pub shape: Option<BucketShape>,
    /// What `environment.json` says of the bucket.
    pub bucket_desc: serde_json::Value,
    pub postgres_version: String,
    /// The server's durability settings, as it reports them.
    pub durability: ServerDurability,
    /// The plan's subtitle with the durability the server runs with.
    pub subtitle: String,
    /// The user's `--database-url`, or the throwaway server's: holds a
    /// password, only ever shown redacted.
    database_url: String,
    sim_server: Option<SimServer>,
    _pg: Option<EmbeddedPostgres>,
}

impl Bench {
    /// Starts the throwaway PostgreSQL and the simulated bucket the plan
    /// asks for, and creates compare's schema.
    pub fn start(plan: &Plan) -> anyhow::Result<Bench> {
        let args = &plan.args;
        args.db_tls.apply();
        let mut pg = None;
        let database_url = match &args.database_url {
            Some(u) => {
                // Said first: a DATABASE_URL exported for `ingest` is
                // taken too, and a user who expected the throwaway
                // server should know before minutes of runs.
                crate::esayln!(
                    "benchmarking against {} (--database-url or DATABASE_URL), not a throwaway server",
                    secret::redact_url(u)
                );
                u.clone()
            }
            None => {
                let durability = if args.relaxed_durability {
                    Durability::Relaxed
                } else {
                    Durability::Full
                };
                let server = EmbeddedPostgres::start(Flavor::Throwaway(durability))
                    .context("starting a throwaway PostgreSQL")?;
                let url = server.default_url();
                pg = Some(server);
                url
            }
        };
        let mut sim_server = None;
        let mut settings = plan.settings.clone();
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
                let (spec, conditions) = (&plan.spec, &plan.conditions);
                let started = std::time::Instant::now();
                let bucket = SimBucket::generate(spec.clone());
                let server = bucket.serve_network(
                    conditions.clone(),
                    std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    crate::sim::ServeOptions::default(),
                    plan.model.clone(),
                )?;
                // The workers verify the server's certificate against the CA
                // made for it (a file that lives as long as the server).
                if let Some(ca) = server.ca_file() {
                    settings.client.ca_file = Some(ca.to_path_buf());
                }
                let url = server.base_url();
                let expected = bucket.expected();
                crate::esayln!(
                    "simulated bucket: {} profile, {} files, {} rows expected, generated in {:.1} s; serving at {url}; {}",
                    spec.profile.as_str(),
                    expected.files + expected.missing_keys.len() as u64,
                    expected.rows(),
                    started.elapsed().as_secs_f64(),
                    cli::network::describe(plan.preset, conditions, &plan.model),
                );
                sim_server = Some(server);
                let shape = BucketShape::of(&bucket);
                (
                    url,
                    Some(Arc::new(expected)),
                    serde_json::to_value(spec)?,
                    Some(shape),
                )
            }
        };
        let patience = crate::db::Patience::from_secs(settings.knobs.db_timeout);
        let mut scratch = Scratch::create(&database_url, patience)?;
        if pg.is_some() {
            scratch.in_throwaway_server();
        }
        let mut db = Watched::connect(scratch.url(), patience)?;
        db.call("the migrations", patience.startup(), |c| {
            crate::db::schema::migrate(c)
        })?;
        let (postgres_version, durability) = db.quick("the server's settings", |c| {
            let version: String = c.query_one("SHOW server_version", &[])?.get(0);
            Ok((version, ServerDurability::read(c)?))
        })?;
        let subtitle = format!("{}, {}", plan.subtitle, durability.describe());
        let target = Target {
            bucket_url,
            database_url: scratch.url().to_string(),
            schema: scratch.schema().to_string(),
            expected,
            checkpoint_between_runs: args.database_url.is_none(),
            cpu: cpu::Meters {
                postmaster: match &pg {
                    Some(pg) => Some(pg.pid()),
                    None => db
                        .quick("the server's process id", |c| Ok(cpu::locate_postmaster(c)))
                        .and_then(|found| found.map_err(anyhow::Error::msg))
                        .inspect_err(|why| crate::esayln!("database CPU: not measured ({why:#})"))
                        .ok(),
                },
                sim_bucket: sim_server.is_some(),
                own_server: pg.is_some(),
            },
        };
        Ok(Bench {
            db,
            scratch,
            target,
            settings,
            shape,
            bucket_desc,
            postgres_version,
            durability,
            subtitle,
            database_url,
            sim_server,
            _pg: pg,
        })
    }

    /// Each label's analytic network bound (`bound`), when the network is
    /// known (a simulated bucket).
    pub fn bounds(&self, plan: &Plan) -> Vec<(Label, f64)> {
        let Some(shape) = &self.shape else {
            return Vec::new();
        };
        let knobs = plan.settings.knobs.knobs();
        plan.layout
            .labels
            .iter()
            .filter_map(|l| {
                let n = l.model.in_flight(&knobs, plan.settings.workers)?;
                Some((
                    *l,
                    shape.secs(
                        &BoundNetwork::of(&plan.conditions, &plan.model).with_ranged_parts(
                            l.model
                                .ranged_parts(&knobs, plan.settings.client.ranged_parts),
                        ),
                        n,
                        plan.settings.workers,
                    ),
                ))
            })
            .collect()
    }
}

/// The runs completed so far (measured, warm-up) and where they are
/// kept, for the line an interruption prints ([`interrupted_line`]).
static COMPLETED: std::sync::Mutex<Option<(PathBuf, usize, usize)>> = std::sync::Mutex::new(None);

fn completed(out: &Path, runs: &[Run]) {
    let measured = runs.iter().filter(|r| r.run > 0).count();
    *COMPLETED.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((out.to_path_buf(), measured, runs.len() - measured));
}

/// What `compare` says when interrupted: how many runs completed and
/// where they are kept (`runs.csv`, written after each run). Warm-ups are
/// counted apart: they are kept but measure nothing.
pub fn interrupted_line() -> String {
    let guard = COMPLETED.lock().unwrap_or_else(|p| p.into_inner());
    let Some((dir, measured, warmups)) = &*guard else {
        return "interrupted: 0 runs completed".to_string();
    };
    let warm = match warmups {
        0 => String::new(),
        n => format!(
            " (and {})",
            crate::report::plural(*n as u64, "warm-up", "warm-ups")
        ),
    };
    match measured {
        0 => format!(
            "interrupted: 0 measured runs completed{warm}, nothing to summarise in {}",
            dir.display()
        ),
        n => format!(
            "interrupted: {} completed{warm}, kept in {} (compare --replot {} makes their tables and charts)",
            crate::report::plural(*n as u64, "measured run", "measured runs"),
            dir.display(),
            dir.display()
        ),
    }
}

/// `warm-up` for run 0, else `run N`.
fn run_name(r: usize) -> String {
    if r == 0 {
        "warm-up".to_string()
    } else {
        format!("run {r}")
    }
}

/// Runs the plan's schedule on the bench, with a progress bar on a
/// terminal; a run that loads the wrong result is reported and kept (its
/// time is left out of the statistics).
pub fn execute(plan: &Plan, bench: &mut Bench) -> anyhow::Result<Vec<Run>> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(plan.schedule.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>22} [{bar:30}] {pos}/{len} runs  {msg}  ({elapsed}, {left})",
            )
            .expect("template")
            // Until a run has ended there is no pace to estimate from:
            // indicatif's estimate then reads "0s".
            .with_key(
                "left",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = if state.pos() == 0 {
                        w.write_str("estimating the time left")
                    } else {
                        write!(w, "about {:#} left", indicatif::HumanDuration(state.eta()))
                    };
                },
            )
            .progress_chars("=> "),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    });
    let mut runs: Vec<Run> = Vec::new();
    for (model, write, r) in &plan.schedule {
        let label = Label::new(*model, *write, plan.layout.matrix);
        if let Some(b) = &bar {
            b.set_prefix(format!("{label} {}", run_name(*r)));
        }
        if let Some(server) = &bench.sim_server {
            server.deal_latencies(*r as u64);
        }
        let before = bench.sim_server.as_ref().map(SimServer::stats);
        let delays_before = bench
            .sim_server
            .as_ref()
            .map(|s| super::firstbyte::Snapshot::of(&s.stats));
        let mut run = runner::run_once(
            &bench.target,
            &bench.settings,
            *model,
            *write,
            *r,
            &mut bench.db,
            bar.as_ref(),
        )?;
        // load-only fetches every file before its timed part begins: what
        // the bucket counted and delayed then is not in its time, and is
        // left out rather than shown beside it.
        let timed_network = model.in_flight(&plan.settings.knobs.knobs(), 1).is_some();
        if let (Some(server), Some(before), true) = (&bench.sim_server, before, timed_network) {
            super::netstats::record(&mut run, &before, &server.stats());
        }
        if let (Some(server), Some(before), true) =
            (&bench.sim_server, &delays_before, timed_network)
        {
            let after = super::firstbyte::Snapshot::of(&server.stats);
            super::firstbyte::record(&mut run, before, &after);
        }
        if !run.verified {
            let line = format!("FAILED VERIFICATION: {label} run {r}: {}", run.problems);
            match &bar {
                Some(b) => b.println(line),
                None => crate::esayln!("{line}"),
            }
        } else if bar.is_none() {
            // Without a terminal (CI, `| tee`) there is no bar: a line a
            // run, so minutes of runs do not pass in silence.
            crate::esayln!(
                "[{}/{}] {label} {}: {:.2} s",
                runs.len() + 1,
                plan.schedule.len(),
                run_name(*r),
                run.wall_secs
            );
        }
        runs.push(run);
        // Only once a run has completed: a comparison that cannot start or
        // whose first run fails (a typo in --bucket, a database that is
        // down) leaves the earlier results as they were.
        if runs.len() == 1 {
            for line in clear_earlier(&plan.out) {
                match &bar {
                    Some(b) => b.println(line),
                    None => crate::esayln!("{line}"),
                }
            }
        }
        // Kept as they complete, so an interrupted comparison keeps its runs.
        export::write_runs_csv(&plan.out.join("runs.csv"), &runs)?;
        completed(&plan.out, &runs);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(runs)
}

/// Each label's statistics over its verified measured runs, speed ratios
/// against the layout's reference, and network bounds where `bounds`
/// gives one.
pub fn summarise(layout: &Layout, runs: &[Run], bounds: &[(Label, f64)]) -> Vec<ModelSummary> {
    let mut summaries = summary::summarize(runs, &layout.labels, layout.matrix, layout.reference);
    for s in &mut summaries {
        // A network with no latency and no bandwidth limit (`local`) bounds
        // nothing (a few nanoseconds of body at "unlimited" bandwidth):
        // "× bound" would read `inf×`.
        s.bound_secs = bounds
            .iter()
            .find(|(l, _)| *l == s.label)
            .map(|b| b.1)
            .filter(|b| *b >= 0.001);
        s.keep_draws_if_network_bound();
    }
    summaries
}

/// The terminal report: the title, the build it was measured with (not
/// known to `--replot`), the tables and the verdict lines.
fn print_report(
    subtitle: &str,
    build: Option<&Build>,
    summaries: &[ModelSummary],
    reference: Option<Label>,
) {
    crate::say!(
        "{}",
        terminal::wrap(&format!("bucketbench compare — {subtitle}"))
    );
    if let Some(build) = build {
        crate::sayln!("build: {}", build.describe());
    }
    crate::sayln!();
    crate::say!("{}", terminal::render(summaries, reference));
    crate::say!("{}", terminal::cpu_table(summaries));
}

/// Writes `summary.md`: the tables of `summaries` and `runs` under a title
/// naming `subtitle` (which `--replot` reads back from its first line).
fn write_summary_md(
    out: &Path,
    layout: &Layout,
    runs: &[Run],
    summaries: &[ModelSummary],
    subtitle: &str,
    busy: Option<&str>,
) -> anyhow::Result<()> {
    let reference = layout.reference;
    // The verdict first, as the terminal ends with it: who won, by how
    // much, and why; after a warning that the machine was busy, which
    // qualifies every figure.
    let verdict: String = busy
        .map(|w| format!("**{w}**\n\n"))
        .into_iter()
        .chain(
            terminal::verdict_lines(summaries, reference)
                .iter()
                .map(|l| format!("- {l}\n")),
        )
        .collect();
    let mut table = format!(
        "{}{}\n{}",
        if verdict.is_empty() {
            String::new()
        } else {
            format!("{verdict}\n")
        },
        export::summary_markdown(summaries, reference),
        cpu::markdown(summaries)
    );
    // The sections that only some comparisons have.
    for section in [
        summary::efficiency(summaries, reference),
        super::firstbyte::markdown(runs, &layout.labels, layout.matrix),
        export::failed_runs_markdown(runs, layout.matrix),
    ] {
        if !section.is_empty() {
            table = format!("{table}\n{section}");
        }
    }
    std::fs::write(
        out.join("summary.md"),
        format!("# bucketbench compare — {subtitle}\n\n{table}"),
    )
    .with_context(|| format!("writing {}", out.join("summary.md").display()))
}

/// What `environment.json` records: the machine, the build, the database
/// and the settings. All of it is known before the first run, so it is
/// written then too: a comparison interrupted midway, replotted with
/// `--replot`, still says where its runs were measured.
fn environment(plan: &Plan, bench: &Bench) -> anyhow::Result<Environment> {
    let args = &plan.args;
    let (cores, memory_gib, cpu_model, os) = export::machine();
    Ok(Environment {
        bucketbench_version: env!("CARGO_PKG_VERSION"),
        git_revision: plan.git_revision.clone(),
        date: chrono::Utc::now().to_rfc3339(),
        cores,
        memory_gib,
        cpu_model,
        os,
        postgres_version: bench.postgres_version.clone(),
        bucket: bench.bucket_desc.clone(),
        network: if args.bucket.is_some() {
            serde_json::json!("real network")
        } else {
            super::netstats::environment(plan.preset, &plan.conditions, &plan.model)?
        },
        settings: serde_json::to_value(&plan.settings)?,
        models: args.models.clone(),
        runs: args.runs,
        warmup: args.warmup,
        durability: bench.durability.clone(),
        build: Build::current(),
        load_average_at_start: plan.load_at_start,
        cores_busy_at_start: plan.busy_at_start,
    })
}

/// Writes what a comparison measured (`runs.csv`, `summary.csv`,
/// `summary.md`, `environment.json`), draws the charts and publishes
/// (`comparison.json`, `report.html`, baselines), printing the table and
/// the verdict. Returns whether every run was verified and none regressed
/// beyond `--fail-on-regression`.
pub fn export(
    plan: &Plan,
    bench: &Bench,
    runs: &[Run],
    summaries: &[ModelSummary],
    baseline: Option<(BaselineFile, PathBuf)>,
) -> anyhow::Result<bool> {
    let (args, out, layout) = (&plan.args, &plan.out, &plan.layout);
    let reference = layout.reference;
    export::write_runs_csv(&out.join("runs.csv"), runs)?;
    export::write_summary_csv(&out.join("summary.csv"), summaries, reference)?;
    let first_byte_csv =
        super::firstbyte::write_csv(&out.join("first_byte.csv"), runs, layout.matrix)?;
    write_summary_md(
        out,
        layout,
        runs,
        summaries,
        &bench.subtitle,
        plan.busy().as_deref(),
    )?;
    let env = environment(plan, bench)?;
    export::write_json(&out.join("environment.json"), &env)?;
    let env = Some(serde_json::to_value(&env)?);
    let drawn = draw(out, layout, runs, summaries, &bench.subtitle);

    let build = Build::current();
    print_report(&bench.subtitle, Some(&build), summaries, reference);
    if let Some(w) = build.warning() {
        crate::say!("{}", terminal::wrap(&w));
    }
    let published = publish::publish(
        out,
        runs,
        summaries,
        reference,
        &bench.subtitle,
        env,
        &args.publish,
        baseline,
    )?;
    if args.database_url.is_some() {
        crate::sayln!(
            "database: {} (runs loaded into a schema of their own, {}, dropped on exit; no other table touched)",
            secret::redact_url(&bench.database_url),
            bench.scratch.schema()
        );
    }
    // In the order they were always listed: the first-byte CSV beside its chart.
    let mut written = vec!["runs.csv", "summary.csv", "summary.md", "environment.json"];
    written.extend(drawn.iter().filter(|n| **n != "first_byte.png"));
    if first_byte_csv {
        written.push("first_byte.csv");
    }
    written.extend(drawn.iter().filter(|n| **n == "first_byte.png"));
    crate::say!(
        "{}",
        terminal::wrap(&format!(
            "wrote {}/{{{}}}",
            out.display(),
            written.join(", ")
        ))
    );
    if drawn.is_empty() {
        crate::sayln!("no charts: no run was verified");
    }
    if args.out.is_none() && outdir::latest_is(Path::new(outdir::RUNS_DIR), out) {
        crate::sayln!(
            "{}/{} points to these results",
            outdir::RUNS_DIR,
            outdir::LATEST
        );
    }
    let failed: Vec<&Run> = runs.iter().filter(|r| !r.verified).collect();
    let verified = if failed.is_empty() && args.bucket.is_some() {
        crate::sayln!(
            "every run passed the consistency check (the ledger holds every fetchable listed key and agrees with the rows); with no generator behind this bucket, no more can be checked"
        );
        true
    } else if failed.is_empty() {
        crate::sayln!("every run verified against the expected result");
        true
    } else {
        crate::esayln!(
            "error: {} something other than the expected result; {} excluded (see runs.csv)",
            crate::report::plural(failed.len() as u64, "run loaded", "runs loaded"),
            if failed.len() == 1 {
                "its time is"
            } else {
                "their times are"
            }
        );
        false
    };
    Ok(published.passes(&args.publish) && verified)
}

/// Every file a comparison writes in its directory (`baselines/` and a
/// sweep's per-value directories are not among them).
const OUTPUTS: [&str; 12] = [
    "runs.csv",
    "summary.csv",
    "summary.md",
    "environment.json",
    "comparison.json",
    "report.html",
    "median_time.png",
    "launches.png",
    "throughput.png",
    "first_byte.csv",
    "first_byte.png",
    "matrix.png",
];

/// Removes an earlier comparison's files from `out` (`--out` given again)
/// once this one has completed its first run: a run that writes no `first_byte.png`, or fails
/// half-way, left the earlier run's charts, summary and report beside its
/// own files, describing another run. Only a directory a comparison wrote
/// (its `comparison.json`, or a `runs.csv` with compare's header) is
/// touched: a directory of the user's own keeps its files.
/// Returns the lines to show.
fn clear_earlier(out: &Path) -> Vec<String> {
    let ours = out.join("comparison.json").is_file() || export::is_runs_csv(&out.join("runs.csv"));
    if !ours {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut removed = 0;
    for name in OUTPUTS {
        match std::fs::remove_file(out.join(name)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => lines.push(format!(
                "warning: {name}, left in {} by an earlier comparison, could not be removed: {e}",
                out.display()
            )),
        }
    }
    if removed > 0 {
        lines.insert(
            0,
            format!(
                "replacing the earlier comparison in {} (its {} removed; baselines kept)",
                out.display(),
                crate::report::plural(removed, "file", "files")
            ),
        );
    }
    lines
}

/// Draws the charts into `out`, warning (not failing) for one that could
/// not be drawn; returns the names of those drawn.
fn draw(
    out: &Path,
    layout: &Layout,
    runs: &[Run],
    summaries: &[ModelSummary],
    subtitle: &str,
) -> Vec<&'static str> {
    let mut drawn = Vec::new();
    for (name, r) in charts::draw_all(
        out,
        runs,
        summaries,
        &layout.labels,
        layout
            .matrix
            .then_some((&layout.models[..], &layout.writes[..])),
        subtitle,
    ) {
        match r {
            Ok(()) => drawn.push(name),
            Err(e) => crate::esayln!("warning: {name} not drawn: {e:#}"),
        }
    }
    drawn
}

/// The whole comparison: plan, start the bench, run, summarise, export.
/// Returns whether every run was verified (and, with
/// `--fail-on-regression`, none regressed against the baseline).
pub fn run(args: CompareArgs) -> anyhow::Result<bool> {
    let own_dir = args.out.is_none();
    let plan = Plan::from_args(args)?;
    let result = run_plan(&plan);
    if result.is_err() && own_dir {
        // Failed before its first run (an unreachable bucket, a database
        // that would not start): an empty directory, and `latest` pointing
        // at it, would only hide the previous results. What it wrote
        // before the runs (`environment.json`) describes none.
        if !plan.out.join("runs.csv").exists() {
            let _ = std::fs::remove_file(plan.out.join("environment.json"));
        }
        outdir::discard_if_empty(Path::new(outdir::RUNS_DIR), &plan.out);
    }
    result
}

/// The stages after the plan (what a sweep calls for each value).
pub fn run_plan(plan: &Plan) -> anyhow::Result<bool> {
    let out = &plan.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    outdir::check_writable(out, "--out")?;
    let baseline = plan.args.publish.load_baseline(out)?;
    completed(out, &[]);
    crate::esayln!("results go to {}", out.display());
    if let Some(w) = Build::current().warning() {
        crate::esay!("{}", terminal::wrap(&w));
    }
    if let Some(w) = plan.busy() {
        crate::esay!("{}", terminal::wrap(&w));
    }
    let mut bench = Bench::start(plan)?;
    export::write_json(&out.join("environment.json"), &environment(plan, &bench)?)?;
    let runs = execute(plan, &mut bench)?;
    let summaries = summarise(&plan.layout, &runs, &bench.bounds(plan));
    export(plan, &bench, &runs, &summaries, baseline)
}

/// The `environment.json` a comparison wrote, for the report; without it
/// (an older comparison, or damaged) the report leaves out the machine and
/// the database's settings, and says why in one line.
fn read_environment(dir: &Path) -> Option<serde_json::Value> {
    let path = dir.join("environment.json");
    if !path.exists() {
        return None;
    }
    match export::read_result_file(&path).and_then(|b| {
        serde_json::from_slice(&b).with_context(|| format!("{} is not JSON", path.display()))
    }) {
        Ok(env) => Some(env),
        Err(e) => {
            tracing::warn!("{e:#}: the report leaves out the machine and the database's settings");
            None
        }
    }
}

/// `--replot DIR`: the summaries, charts, `comparison.json` and
/// `report.html` again from what a comparison wrote; returns whether it passes
/// `--fail-on-regression`.
pub fn replot(dir: &Path, publish_args: &publish::PublishArgs) -> anyhow::Result<bool> {
    // A comparison's own run directory (results/runs/<run>) keeps its
    // named baselines beside the other runs, where it saved them.
    let publish_args = &publish::PublishArgs {
        baselines_dir: publish_args
            .baselines_dir
            .clone()
            .or_else(|| outdir::shared_baselines(dir)),
        ..publish_args.clone()
    };
    let baseline = publish_args.load_baseline(dir)?;
    let runs = export::read_runs_csv(&dir.join("runs.csv"))?;
    anyhow::ensure!(
        !runs.is_empty(),
        "{} holds no runs",
        dir.join("runs.csv").display()
    );
    let layout = Layout::of_runs(&runs);
    // The network bounds are computed when the comparison runs, from the
    // simulated network; summary.csv is where they are kept.
    let bounds = export::read_bounds(&dir.join("summary.csv")).unwrap_or_else(|e| {
        tracing::warn!(
            "{e:#}: the network bounds are left out (the × bound column, efficiencies and what limits each model)"
        );
        Vec::new()
    });
    let summaries = summarise(&layout, &runs, &bounds);
    anyhow::ensure!(
        !summaries.is_empty(),
        "{} holds no verified measured run (warm-ups and runs that failed verification are left out): nothing to summarise",
        dir.join("runs.csv").display()
    );
    // The title the comparison gave its charts: summary.md's first line.
    let subtitle = export::read_result_file(&dir.join("summary.md"))
        .ok()
        .and_then(|md| String::from_utf8(md).ok())
        .and_then(|md| {
            md.lines()
                .next()?
                .split_once(" — ")
                .map(|(_, t)| t.to_string())
        })
        .unwrap_or_else(|| dir.display().to_string());
    // summary.md too: its tables come from the same runs and bounds, and
    // would otherwise keep an older release's layout beside new charts.
    let env = read_environment(dir);
    // Said again, as the comparison said it: it qualifies every figure.
    let busy = env.as_ref().and_then(export::busy_warning_of);
    if let Some(w) = &busy {
        crate::esay!("{}", terminal::wrap(w));
    }
    // summary.csv likewise: a column renamed or added since the comparison
    // ran would otherwise stay in the old layout. The bounds it gave are
    // written back as read.
    export::write_summary_csv(&dir.join("summary.csv"), &summaries, layout.reference)?;
    crate::sayln!("wrote {}", dir.join("summary.csv").display());
    write_summary_md(dir, &layout, &runs, &summaries, &subtitle, busy.as_deref())?;
    crate::sayln!("wrote {}", dir.join("summary.md").display());
    for name in draw(dir, &layout, &runs, &summaries, &subtitle) {
        crate::sayln!("drew {}", dir.join(name).display());
    }
    // The report the comparison printed, from the same figures.
    print_report(&subtitle, None, &summaries, layout.reference);
    let published = publish::publish(
        dir,
        &runs,
        &summaries,
        layout.reference,
        &subtitle,
        env,
        publish_args,
        baseline,
    )?;
    Ok(published.passes(publish_args))
}
