//! A pass: list the bucket, subtract what the ledger holds, hand the rest to
//! an execution model, and summarise (SPEC, "Processing semantics").

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::bucket::sync_client::SyncClient;
use crate::bucket::{BucketLocation, ClientConfig, NetStats};
use crate::db::{self, schema, sync_writer};
use crate::models::{Ingestor, Job, Knobs};
use crate::report::{PassSummary, Tally};

/// What a pass runs against.
#[derive(Debug, Clone)]
pub struct PassConfig {
    pub bucket: BucketLocation,
    pub database_url: String,
    pub client: ClientConfig,
    pub knobs: Knobs,
    /// Show a progress bar (only on a terminal).
    pub progress: bool,
}

/// Connects and applies migrations: the first thing every pass does, so a
/// database that cannot be reached fails the run at once, in one line.
pub fn prepare_database(url: &str) -> anyhow::Result<postgres::Client> {
    let mut pg = db::connect_sync(url)?;
    schema::migrate(&mut pg)?;
    Ok(pg)
}

/// Runs one pass with the given model.
pub fn run_pass(cfg: &PassConfig, model: &dyn Ingestor) -> anyhow::Result<PassSummary> {
    let started = Instant::now();
    let mut pg = prepare_database(&cfg.database_url)?;
    let stats = Arc::new(NetStats::default());
    let lister = SyncClient::new(cfg.client.clone(), stats.clone())?;
    let listed = lister.list(&cfg.bucket)?;
    let keys: Vec<String> = listed.iter().map(|o| o.key.clone()).collect();
    let seen = sync_writer::seen_keys(&mut pg, &keys).context("subtracting the ledger from the listing")?;
    drop(pg);

    let mut summary = PassSummary { model: model.name().to_string(), listed: listed.len() as u64, ..Default::default() };
    summary.already_loaded = seen.len() as u64;
    summary.etag_changed = listed
        .iter()
        .filter(|o| matches!((seen.get(&o.key), &o.etag), (Some(Some(old)), Some(new)) if old != new))
        .map(|o| o.key.clone())
        .collect();
    let todo: Vec<_> = listed.into_iter().filter(|o| !seen.contains_key(&o.key)).collect();

    let bar = (cfg.progress && !todo.is_empty()).then(|| progress_bar(todo.len() as u64, model.name()));
    let tally = Tally::new(summary, bar);
    let job = Job {
        bucket: &cfg.bucket,
        database_url: &cfg.database_url,
        client: &cfg.client,
        knobs: &cfg.knobs,
        stats: stats.clone(),
        tally: &tally,
    };
    model.load(&job, todo)?;
    let mut summary = tally.finish(started.elapsed());
    summary.requests = NetStats::get(&stats.requests);
    summary.retries = NetStats::get(&stats.retries);
    summary.bytes = NetStats::get(&stats.bytes);
    Ok(summary)
}

fn progress_bar(total: u64, model: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} files, {msg} ({per_sec}, {elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(model.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
