//! A pass: list the bucket, subtract what the ledger holds, hand the rest to
//! an execution model, and summarise (SPEC, "Processing semantics").
//!
//! Listing runs in its own thread, a page at a time: each page is
//! subtracted from the ledger and its new keys are streamed to the model
//! through a bounded channel, so loading starts with the first page and a
//! bucket of millions of keys is never held in memory.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::bucket::list::{self, PAGE};
use crate::bucket::sync_client::SyncClient;
use crate::bucket::{BucketLocation, ClientConfig, NetStats, ObjectRef};
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
    let summary = PassSummary {
        model: model.name().to_string(),
        ..Default::default()
    };
    let bar = cfg.progress.then(|| progress_bar(model.name()));
    let tally = Tally::new(summary, bar);
    let (tx, todo) = tokio::sync::mpsc::channel::<ObjectRef>(2 * PAGE);
    let job = Job {
        bucket: &cfg.bucket,
        database_url: &cfg.database_url,
        client: &cfg.client,
        knobs: &cfg.knobs,
        stats: stats.clone(),
        tally: &tally,
    };
    let (listed, loaded) = std::thread::scope(|s| {
        let listing = s.spawn(|| {
            // Owned by this thread, so the model's stream ends when listing does.
            let tx = tx;
            list::list(&lister, &cfg.bucket, &mut |page| {
                let keys: Vec<String> = page.iter().map(|o| o.key.clone()).collect();
                let seen = sync_writer::seen_keys(&mut pg, &keys).context("subtracting the ledger from the listing")?;
                let changed = page
                    .iter()
                    .filter(|o| matches!((seen.get(&o.key), &o.etag), (Some(Some(old)), Some(new)) if old != new))
                    .map(|o| o.key.clone())
                    .collect();
                let mut new: Vec<ObjectRef> = page.into_iter().filter(|o| !seen.contains_key(&o.key)).collect();
                // Each worker takes a page's keys in its own random order: workers
                // started together on one bucket would otherwise fetch the same
                // key at the same moment, and all but one would find it claimed,
                // so adding workers would add no speed.
                rand::seq::SliceRandom::shuffle(new.as_mut_slice(), &mut rand::rng());
                tally.listed(keys.len() as u64, seen.len() as u64, new.len() as u64, changed);
                for obj in new {
                    // The model stopped (it failed): its error is the one to report.
                    if tx.blocking_send(obj).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            })
        });
        let loaded = model.load(&job, todo);
        (listing.join().expect("lister thread panicked"), loaded)
    });
    loaded?;
    listed?;
    let mut summary = tally.finish(started.elapsed());
    summary.requests = NetStats::get(&stats.requests);
    summary.retries = NetStats::get(&stats.retries);
    summary.bytes = NetStats::get(&stats.bytes);
    summary.peak_rss_mb = crate::report::peak_rss_mb();
    Ok(summary)
}

fn progress_bar(model: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} files, {msg} ({per_sec}, {elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(model.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
