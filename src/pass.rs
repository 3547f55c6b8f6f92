//! A pass: list the bucket, subtract what the ledger holds, hand the rest to
//! an execution model, and summarise (docs/contract.md, "A pass").
//!
//! Listing runs in its own thread, a page at a time: each page is
//! subtracted from the ledger and its new keys are streamed to the model
//! through a bounded channel, so loading starts with the first page and a
//! bucket of millions of keys is never held in memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bucket::list::{self, PAGE};
use crate::bucket::sync_client::SyncClient;
use crate::bucket::{BucketLocation, ClientConfig, NetStats, ObjectRef};
use crate::db::{self, ledger, schema, sync_writer};
use crate::models::{Ingestor, Job, Knobs};
use crate::report::{KeyReason, PassSummary, Shown, Tally};

/// What a pass runs against.
#[derive(Debug, Clone)]
pub struct PassConfig {
    pub bucket: BucketLocation,
    pub database_url: String,
    pub client: ClientConfig,
    pub knobs: Knobs,
    /// How the pass shows its progress.
    pub progress: Progress,
}

/// How a pass shows its progress as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Nothing: `--json`, `-q`, and `compare`'s workers, whose harness
    /// shows its own.
    #[default]
    Off,
    /// A bar redrawn in place, for a terminal.
    Bar,
    /// A line every ten seconds, for a log file or a pipe.
    Lines,
}

impl Progress {
    /// A bar on a terminal, lines elsewhere, nothing when `wanted` is false.
    pub fn for_stderr(wanted: bool) -> Progress {
        match (wanted, std::io::IsTerminal::is_terminal(&std::io::stderr())) {
            (false, _) => Progress::Off,
            (true, true) => Progress::Bar,
            (true, false) => Progress::Lines,
        }
    }
}

/// Connects and applies migrations: the first thing every pass does, so a
/// database that cannot be reached fails the run at once, in one line.
pub fn prepare_database(url: &str) -> anyhow::Result<postgres::Client> {
    let mut pg = db::connect_sync(url)?;
    schema::migrate(&mut pg)?;
    Ok(pg)
}

/// [`prepare_database`] within `patience.startup()`: a server that accepts the
/// TCP connection but never answers (a stopped postmaster, a frozen host)
/// would otherwise hold the pass before it starts, silently. The blocking
/// client cannot be interrupted, so it runs on a thread of its own that is
/// left behind if the deadline passes; the pass ends with one line.
fn prepare_database_within(url: &str, patience: db::Patience) -> anyhow::Result<()> {
    let owned = url.to_string();
    let limit = db::connect::startup_limit(url, patience);
    db::watched::on_thread(limit, "migrating", move || {
        prepare_database(&owned).map(drop)
    })
    .map_err(|e| {
        stalled_at_start(
            e,
            url,
            limit,
            "finish connecting and migrating",
            "a stopped server, or a long migration",
        )
    })?
}

/// A stall at a pass's start, in one line naming the server, how long it
/// was given and what to do; any other error as it is.
fn stalled_at_start(
    e: anyhow::Error,
    url: &str,
    limit: std::time::Duration,
    did_not: &str,
    why: &str,
) -> anyhow::Error {
    if !db::is_stalled(&e) {
        return e;
    }
    anyhow::anyhow!(
        "PostgreSQL at {} did not {did_not} within {} s ({why}: raise --db-timeout)",
        crate::secret::redact_url(url),
        crate::error::seconds(limit.as_secs_f64())
    )
}

/// The pass's own connection, opened within `patience.startup()`. A server
/// that accepts the TCP connection but never answers (a stopped
/// postmaster) is named in one line, with what to do about it.
fn open_pass_connection(
    url: &str,
    patience: db::Patience,
) -> anyhow::Result<sync_writer::Connection> {
    let limit = db::connect::startup_limit(url, patience);
    sync_writer::Connection::open_within(url, patience, limit).map_err(|e| {
        stalled_at_start(
            e,
            url,
            limit,
            "answer the connection",
            "a stopped server, or one too busy to accept",
        )
    })
}

/// Whether the database already has every migration, read on the pass's
/// own connection ([`schema::is_current`]). Any failure (no history table
/// yet, a stall) answers "no": migrating decides, and says why. A check
/// the server did not answer is said at once, counts in the stall streak,
/// and the connection is reopened; an error means the streak ended the pass.
fn schema_is_current(pg: &mut sync_writer::Connection) -> anyhow::Result<bool> {
    let limit = pg.patience().base;
    // The tables' columns in the same round trip (pipelined): a column
    // altered by hand is found before any file is refused for it.
    let read = pg.run(async |c| {
        // Each answer on its own: a history that cannot be read means
        // migrating decides, but columns that cannot be read on a current
        // database mean the check cannot be made, and the pass must not
        // write unchecked (every file would be refused for good).
        let (history, columns) = db::within(limit, "the schema check", async {
            Ok::<_, std::convert::Infallible>(
                futures::future::join(
                    c.query(schema::HISTORY_QUERY, &[]),
                    c.query(schema::COLUMNS_QUERY, &[&&schema::WRITTEN_TABLES[..]]),
                )
                .await,
            )
        })
        .await?;
        let applied = triples::<i32, String, String>(&history?)?;
        let columns = columns.and_then(|rows| {
            rows.iter()
                .map(schema::FoundColumn::from_row)
                .collect::<Result<Vec<_>, _>>()
        });
        Ok::<_, anyhow::Error>((applied, columns))
    });
    match read {
        Ok((applied, columns)) => match schema::too_new(&applied) {
            Some(newer) => Err(newer.into()),
            None if schema::is_current(&applied) => {
                let columns = columns.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the tables' columns from the catalogs ({}): the pass would write without knowing whether the tables still take its rows",
                        crate::error::chain(&e)
                    )
                })?;
                match schema::altered_columns(&columns) {
                    Some(altered) => Err(anyhow::anyhow!(altered)),
                    None => Ok(true),
                }
            }
            None => Ok(false),
        },
        Err(e) => {
            if db::warn_if_stalled(&e) {
                pg.stalled(e, 0)?;
                pg.reconnect()?;
            }
            Ok(false)
        }
    }
}

/// Each row's first three columns, typed: the migration history answers
/// in threes.
fn triples<A, B, C>(rows: &[tokio_postgres::Row]) -> Result<Vec<(A, B, C)>, tokio_postgres::Error>
where
    A: for<'a> tokio_postgres::types::FromSql<'a>,
    B: for<'a> tokio_postgres::types::FromSql<'a>,
    C: for<'a> tokio_postgres::types::FromSql<'a>,
{
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Runs `work` (a listing page's ledger bookkeeping) on the pass's own
/// connection, reopening it when PostgreSQL dropped it (a restart, a
/// terminated backend) with the writers' bounded backoff
/// ([`db::reconnect_delay`], about 15 s in all). The writers reconnect on
/// their own; without this, a restart ended the pass at the listing's next
/// page while they carried on. The bookkeeping is safe to repeat: it marks
/// keys seen and deletes `failed` rows to retry.
fn reconnecting<T>(
    pg: &mut sync_writer::Connection,
    mut work: impl FnMut(&mut sync_writer::Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut retries = db::Retries::default();
    loop {
        let e = match work(pg) {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        if !(pg.is_closed() || db::is_connection_lost(&e)) {
            return Err(e);
        }
        // A page the server did not answer counts in the stall streak, as a
        // writer's transaction does: two in a row end the pass.
        if db::is_stalled(&e) {
            pg.stalled(e, 0)?;
        } else {
            let db::Next::Retry(delay) = retries.next(db::WriteFault::ConnectionLost, &e) else {
                return Err(e);
            };
            std::thread::sleep(delay);
        }
        pg.reconnect()?;
    }
}

/// What a pass does beyond the defaults (`ingest`'s own flags).
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Try every key recorded `failed` again, changed or not.
    pub retry_failed: bool,
    /// Take only this share of the new keys (see [`Shard`]).
    pub shard: Option<Shard>,
    /// Say when the first object's body is in
    /// ([`crate::report::FIRST_BODY_IN`]; a `compare` worker).
    pub say_first_body: bool,
    /// How far a listed key's `last_seen_at` may lag before it is stamped
    /// again; `None` for [`crate::db::ledger::SEEN_RESOLUTION`].
    pub seen_resolution: Option<Duration>,
}

impl PassOptions {
    pub fn seen_resolution(&self) -> Duration {
        self.seen_resolution
            .unwrap_or(crate::db::ledger::SEEN_RESOLUTION)
    }
}

/// Worker `index` of `of` passes that split a bucket between them instead
/// of sharing it through the ledger: `compare --workers N` running a
/// ceiling (`fetch-only` keeps no ledger, so every worker would fetch every
/// file; `load-only` would fetch every file in every worker before its
/// timed writes). Each takes the keys whose hash falls to it: together,
/// every key once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub of: usize,
}

impl Shard {
    pub fn owns(&self, key: &str) -> bool {
        use std::hash::{Hash as _, Hasher as _};
        // SipHash with fixed keys: the same in every worker of one binary.
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        h.finish() % self.of as u64 == self.index as u64
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Shard> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
        match parsed {
            Some((index, of)) if index < of => Ok(Shard { index, of }),
            _ => anyhow::bail!("a shard is INDEX/COUNT with INDEX < COUNT, not {s:?}"),
        }
    }
}

/// Runs one pass with the given model.
pub fn run_pass(cfg: &PassConfig, model: &dyn Ingestor) -> anyhow::Result<PassSummary> {
    run_pass_with(cfg, model, &PassOptions::default())
}

/// Runs one pass with the given model and options.
pub fn run_pass_with(
    cfg: &PassConfig,
    model: &dyn Ingestor,
    opts: &PassOptions,
) -> anyhow::Result<PassSummary> {
    let started = Instant::now();
    if cfg.knobs.max_bytes_in_flight > 0 {
        crate::bucket::budget::return_freed_memory();
    }
    let patience = cfg.knobs.patience;
    // A bucket reached over TLS stays on TLS: no redirect to http.
    let client = ClientConfig {
        https_only: cfg.bucket.is_https(),
        ..cfg.client.clone()
    };
    let stats = Arc::new(NetStats::new(&client));
    stats
        .say_first_body
        .store(opts.say_first_body, std::sync::atomic::Ordering::Relaxed);
    let _ = stats.pass_started.set(started);
    let lister = SyncClient::new(client.clone(), stats.clone())?;
    // The listing's first request goes out now, beside the database's
    // connection and schema check, which take milliseconds the pass would
    // otherwise wait before asking the bucket anything. But the database is
    // said first: one that is gone is said in one line, and until it has
    // answered the listing retries nothing and says nothing.
    let held = stats.hold_retries();
    let (pages, listing) = list_ahead(&lister, &cfg.bucket)?;
    let mut pg = open_pass_connection(&cfg.database_url, patience)?;
    if !schema_is_current(&mut pg)? {
        prepare_database_within(&cfg.database_url, patience)?;
    }
    held.answered();
    let heads = HeadCheck::new(&lister);
    let summary = PassSummary {
        model: model.name().to_string(),
        ..Default::default()
    };
    let listed_all = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shown = match cfg.progress {
        Progress::Off => Shown::Nothing,
        Progress::Bar => Shown::Bar(progress_bar(model.name(), listed_all.clone())),
        Progress::Lines => Shown::lines(model.name()),
    };
    let tally = Tally::new(summary, shown, listed_all);
    let (tx, todo) = tokio::sync::mpsc::channel::<ObjectRef>(2 * PAGE);
    let job = Job {
        bucket: &cfg.bucket,
        database_url: &cfg.database_url,
        client: &client,
        knobs: &cfg.knobs,
        stats: stats.clone(),
        tally: &tally,
    };
    // The pass's connection is shared by the two threads that keep the
    // ledger's books during the listing: the one subtracting each page
    // from the ledger and the change check's, which clears the `failed`
    // rows it retries. Neither holds it while it waits on anything else.
    let pg = std::sync::Mutex::new(pg);
    // Unbounded, so that no new key ever waits for a HEAD: however slow the
    // check, the listing goes on. What it can hold is bounded all the same:
    // only a manifest's keys wait on HEADs (a listing's check needs no
    // request and keeps up), and a manifest is read whole before its first
    // page, so the queue never holds more keys than the manifest did.
    let (to_check, held_pages) = std::sync::mpsc::channel::<HeldPage>();
    let (listed, loaded) = std::thread::scope(|s| {
        let checking = {
            let (tx, pg, heads, tally) = (tx.clone(), &pg, &heads, &tally);
            s.spawn(move || {
                check_changes(
                    held_pages,
                    &tx,
                    pg,
                    &lister,
                    heads,
                    &cfg.bucket,
                    tally,
                    opts,
                )
            })
        };
        let judging = s.spawn(|| {
            // Owned by this thread, so the model's stream ends when listing
            // and the change check do.
            let (tx, pages, to_check) = (tx, pages, to_check);
            loop {
                // A model that stopped (its receiver dropped) waits for no
                // page still on its way: a hanging listing must not hold
                // the pass's error back.
                let page = match pages.recv_timeout(Duration::from_millis(50)) {
                    Ok(page) => page,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if tx.is_closed() => {
                        return Ok(());
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                tally.refused(
                    page.refused
                        .into_iter()
                        .map(|r| KeyReason {
                            key: r.shown,
                            reason: r.fault.to_string(),
                        })
                        .collect(),
                );
                let page = page.objects;
                let keys: Vec<String> = page.iter().map(|o| o.key.clone()).collect();
                let seen = reconnecting(&mut pg.lock().unwrap(), |pg| {
                    sync_writer::seen_keys(pg, &keys, opts.seen_resolution())
                        .context("subtracting the ledger from the listing")
                })?;
                let asked = Some(Instant::now());
                let (held, unseen): (Vec<ObjectRef>, Vec<ObjectRef>) =
                    page.into_iter().partition(|o| seen.contains_key(&o.key));
                let mut new = to_model(unseen, asked, opts);
                // Each worker takes a page's keys in its own random order: workers
                // started together on one bucket would otherwise fetch the same
                // key at the same moment, and all but one would find it claimed,
                // so adding workers would add no speed.
                rand::seq::SliceRandom::shuffle(new.as_mut_slice(), &mut rand::rng());
                let failed_before = seen.values().filter(|h| h.failed).count() as u64;
                tally.listed(
                    keys.len() as u64,
                    seen.len() as u64 - failed_before,
                    failed_before,
                    new.len() as u64,
                );
                for obj in new {
                    // The model stopped (it failed): its error is the one to
                    // report. The listing stops at its next page.
                    if tx.blocking_send(obj).is_err() {
                        return Ok(());
                    }
                }
                // The keys the ledger holds go to the change check, which
                // may wait on the bucket (a HEAD each, for a manifest): the
                // next page's new keys do not wait for it. A check that
                // stopped on an error has it to say, below.
                if !held.is_empty() && to_check.send(HeldPage { page: held, seen }).is_err() {
                    break;
                }
            }
            // The listing is over (or, when the check failed, told to end
            // at its next page): the count of files to do is final but
            // for the failed keys the check may still retry.
            drop(pages);
            let listed = listing.join().expect("listing thread panicked");
            if listed.is_ok() {
                tally.listing_ended();
            }
            drop(to_check);
            checking.join().expect("change check panicked")?;
            listed
        });
        // The progress lines' clock, stopped when the model ends (the
        // sender dropped).
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        if cfg.progress == Progress::Lines {
            let tally = &tally;
            s.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(crate::report::LINE_EVERY)
                {
                    tally.tick();
                }
            });
        }
        let loaded = model.load(&job, todo);
        drop(stop);
        tracing::trace!("model finished");
        (judging.join().expect("judging thread panicked"), loaded)
    });
    loaded?;
    let trip = stats.breaker.trip();
    // A listing cut short by the breaker is part of the same story.
    if trip.is_none() {
        listed?;
    }
    let mut summary = tally.finish(started.elapsed());
    summary.requests = NetStats::get(&stats.requests);
    summary.ranged = NetStats::get(&stats.ranged);
    summary.retries = NetStats::get(&stats.retries);
    summary.bytes = NetStats::get(&stats.bytes);
    summary.peak_rss_mb = crate::report::peak_rss_mb();
    match trip {
        Some(trip) => Err(Unreachable {
            trip,
            summary: Box::new(summary),
        }
        .into()),
        None => Ok(summary),
    }
}

/// Starts the listing on a thread of its own, a page ahead of the pass:
/// its first request goes out while the pass connects to the database (its
/// retries held until that answered, [`NetStats::hold_retries`]), and each
/// next page is asked for while the ledger subtracts the last. The thread
/// is not scoped: a pass whose database failed or whose model stopped
/// returns without waiting for a page still on its way, and the listing
/// ends at its next page, its request bounded by its own timeouts.
#[allow(clippy::type_complexity)]
fn list_ahead(
    lister: &SyncClient,
    bucket: &BucketLocation,
) -> anyhow::Result<(
    std::sync::mpsc::Receiver<list::Page>,
    std::thread::JoinHandle<anyhow::Result<()>>,
)> {
    let (send, pages) = std::sync::mpsc::sync_channel::<list::Page>(1);
    let (lister, bucket) = (lister.clone(), bucket.clone());
    let listing = std::thread::Builder::new()
        .name("listing".into())
        .spawn(move || {
            list::list(&lister, &bucket, &mut |page| {
                send.send(page)
                    .map_err(|_| anyhow::anyhow!("the pass ended before its listing"))
            })
        })
        .context("starting the listing's thread")?;
    Ok((pages, listing))
}

/// A pass the breaker ended (see [`crate::bucket::breaker`]): what tripped
/// it and what the pass did until then. Files not attempted are not in the
/// ledger, so the next pass takes them up.
#[derive(Debug)]
pub struct Unreachable {
    pub trip: crate::bucket::breaker::Trip,
    pub summary: Box<PassSummary>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bucket unreachable: {}; {} not attempted; rerun to continue",
            self.trip.describe(),
            crate::report::plural(self.summary.not_attempted, "file", "files")
        )
    }
}

impl std::error::Error for Unreachable {}

/// A listed page's keys the ledger already holds, with what it holds for
/// each (recorded version and status), on their way to the change check.
struct HeldPage {
    page: Vec<ObjectRef>,
    seen: HashMap<String, sync_writer::Held>,
}

/// The keys of `objects` this pass hands to the model: those its shard
/// owns, stamped with when the ledger was asked about them.
fn to_model(objects: Vec<ObjectRef>, asked: Option<Instant>, opts: &PassOptions) -> Vec<ObjectRef> {
    objects
        .into_iter()
        .filter(|o| opts.shard.is_none_or(|s| s.owns(&o.key)))
        .map(|o| ObjectRef {
            ledger_asked: asked,
            ..o
        })
        .collect()
}

/// The change check, on a thread of its own beside the listing: for each
/// page of keys the ledger holds, reports the loaded ones whose object
/// changed and hands the `failed` ones to retry to the model (their rows
/// deleted first). It ends when the listing has no more pages for it, or
/// when the model has stopped.
#[allow(clippy::too_many_arguments)]
fn check_changes(
    held_pages: std::sync::mpsc::Receiver<HeldPage>,
    tx: &tokio::sync::mpsc::Sender<ObjectRef>,
    pg: &std::sync::Mutex<sync_writer::Connection>,
    lister: &SyncClient,
    heads: &HeadCheck,
    bucket: &BucketLocation,
    tally: &Tally,
    opts: &PassOptions,
) -> anyhow::Result<()> {
    // Whether the check asks the bucket (a manifest's keys, by HEAD),
    // which the progress lines say until the check ends, however it ends.
    let asks = !matches!(bucket, BucketLocation::S3(b) if b.manifest.is_none());
    struct Said<'a>(&'a Tally);
    impl Drop for Said<'_> {
        fn drop(&mut self) {
            self.0.checking(false);
        }
    }
    let _said = Said(tally);
    for HeldPage { page, seen } in held_pages {
        if tx.is_closed() {
            return Ok(());
        }
        tally.checking(asks);
        // A model that stopped has no use for the rest of the answers.
        let gone = || tx.is_closed();
        let verdict = judge(lister, heads, bucket, &page, &seen, opts, &gone);
        tally.changed(verdict.changed);
        if verdict.retry.is_empty() {
            continue;
        }
        reconnecting(&mut pg.lock().unwrap(), |pg| {
            clear_failed(pg, &verdict.retry)
        })?;
        let asked = Some(Instant::now());
        let retry = page.into_iter().filter(|o| verdict.retry.contains(&o.key));
        let retry = to_model(retry.collect(), asked, opts);
        tally.retrying(verdict.retry.into_iter().collect(), retry.len() as u64);
        for obj in retry {
            if tx.blocking_send(obj).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Deletes the `failed` ledger rows of `keys`, so that the model's claim
/// takes them up again (exactly once, even if another worker retries them
/// too). Safe to repeat after a reconnection.
fn clear_failed(
    pg: &mut sync_writer::Connection,
    keys: &std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    for key in keys {
        let limit = pg.patience().base;
        pg.run(async |c| {
            let what = "clearing a failed ledger row";
            db::within(limit, what, c.execute(ledger::DELETE_FAILED, &[key])).await
        })
        .with_context(|| format!("clearing the failed ledger row of {key} to retry it"))?;
    }
    Ok(())
}

/// What a page's keys already in the ledger call for.
struct Verdict {
    /// Loaded keys whose object changed since: reported, not reloaded.
    changed: Vec<String>,
    /// `failed` keys to try again.
    retry: std::collections::BTreeSet<String>,
}

/// Sorts a page's keys the ledger holds (`seen`: key → recorded version and
/// status): a loaded key whose object changed is reported; a failed key
/// whose object changed, or any failed key with `--retry-failed`, is to be
/// tried again. `gone` says the model has stopped: no more HEADs are sent.
fn judge(
    lister: &SyncClient,
    heads: &HeadCheck,
    bucket: &BucketLocation,
    page: &[ObjectRef],
    seen: &HashMap<String, sync_writer::Held>,
    opts: &PassOptions,
    gone: &(dyn Fn() -> bool + Sync),
) -> Verdict {
    let mut verdict = Verdict {
        changed: Vec::new(),
        retry: Default::default(),
    };
    if seen.is_empty() {
        return verdict;
    }
    let failed: HashSet<&str> = seen
        .iter()
        .filter(|(_, h)| h.failed)
        .map(|(k, _)| k.as_str())
        .collect();
    // A listing that names versions (ListObjectsV2) is compared as is; a
    // manifest names none, so each held key's version comes from a HEAD.
    let listed_versions = matches!(bucket, BucketLocation::S3(b) if b.manifest.is_none());
    let current: HashMap<String, String> = if listed_versions {
        page.iter()
            .filter_map(|o| Some((o.key.clone(), o.etag.clone()?)))
            .collect()
    } else {
        let to_check: Vec<&str> = page
            .iter()
            .map(|o| o.key.as_str())
            .filter(|k| seen.get(*k).is_some_and(|h| h.etag.is_some()))
            .filter(|k| !(opts.retry_failed && failed.contains(*k)))
            .collect();
        head_versions(lister, heads, bucket, &to_check, gone)
    };
    for o in page {
        let Some(held) = seen.get(&o.key) else {
            continue;
        };
        let changed =
            matches!((&held.etag, current.get(&o.key)), (Some(old), Some(new)) if old != new);
        if held.failed {
            if changed || opts.retry_failed {
                verdict.retry.insert(o.key.clone());
            }
        } else if changed {
            verdict.changed.push(o.key.clone());
        }
    }
    verdict
}

/// HEAD requests in flight at once when checking a manifest's known keys.
/// The check asks about every loaded key every pass, so its pace is what a
/// quiet `--watch` pass costs: at 8 in flight, 10,000 keys answering in
/// 0.2 s each took 158 s, longer than the default interval between passes.
/// A HEAD has no body, and the connections are pooled.
const HEAD_CONCURRENCY: usize = 32;

/// Failed HEADs in a row after which the change check stops for the pass:
/// a server that refuses HEAD (405, 501) or ignores it would otherwise be
/// asked about every loaded key, every pass, a warning each. A 403 does
/// not count: it is that key's answer.
const HEAD_GIVE_UP: u64 = 16;

/// The change check's HEADs over a whole pass: a client with a breaker of
/// its own (a bucket that refuses HEAD still serves GET, so their failures
/// must not declare it unreachable and stop the pass's new files), and the
/// failures in a row, counted across listing pages, so that a store that
/// refuses or ignores HEAD is given up on once a pass, not once a page.
struct HeadCheck {
    client: SyncClient,
    in_a_row: std::sync::atomic::AtomicU64,
}

impl HeadCheck {
    fn new(lister: &SyncClient) -> Self {
        HeadCheck {
            client: lister.detached(crate::bucket::breaker::BreakerConfig {
                requests: HEAD_GIVE_UP,
                window: std::time::Duration::ZERO,
            }),
            in_a_row: Default::default(),
        }
    }

    /// Whether the check has given up for this pass.
    fn stopped(&self) -> bool {
        self.client.stats.breaker.is_open()
            || self.in_a_row.load(std::sync::atomic::Ordering::Relaxed) >= HEAD_GIVE_UP
    }
}

/// The current version of each key, by HEAD, a few at a time. A key whose
/// HEAD fails or names no version is left out (taken as unchanged this
/// pass): a change check never fails or holds up a pass beyond the
/// client's bounded timeouts and two attempts, and stops for the pass
/// after [`HEAD_GIVE_UP`] failures in a row or when the pass's own breaker
/// opens, or once `gone` says the model has stopped. The failures are said
/// in one line, not one per key.
fn head_versions(
    client: &SyncClient,
    check: &HeadCheck,
    bucket: &BucketLocation,
    keys: &[&str],
    gone: &(dyn Fn() -> bool + Sync),
) -> HashMap<String, String> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
    if check.stopped() {
        // Said when it stopped; the later pages' keys are taken as unchanged.
        return HashMap::new();
    }
    let counters = |s: &NetStats| [&s.requests, &s.retries, &s.bytes].map(NetStats::get);
    let before = counters(&check.client.stats);
    let next = AtomicUsize::new(0);
    let failed = AtomicU64::new(0);
    let first_failure = std::sync::Mutex::new(None::<String>);
    let found = std::sync::Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for _ in 0..HEAD_CONCURRENCY.min(keys.len()) {
            s.spawn(|| {
                // The pass's breaker too: once the bucket is declared
                // unreachable, it is not asked about thousands of keys more.
                while !check.stopped() && !client.stats.breaker.is_open() && !gone() {
                    let i = next.fetch_add(1, Relaxed);
                    let Some(key) = keys.get(i) else { break };
                    match check.client.head_version(&bucket.head_url(key)) {
                        Ok(v) => {
                            check.in_a_row.store(0, Relaxed);
                            if let Some(v) = v {
                                found.lock().unwrap().insert(key.to_string(), v);
                            }
                        }
                        Err(e) => {
                            // A 403 is this key's answer (a reader allowed
                            // to GET it but not to HEAD it, presigned
                            // GETs), not a store that refuses HEAD: it
                            // must not stop the check short of the keys
                            // after it, at the same place every pass.
                            if matches!(e, crate::bucket::FetchError::Denied(_)) {
                                check.in_a_row.store(0, Relaxed);
                            } else {
                                check.in_a_row.fetch_add(1, Relaxed);
                            }
                            failed.fetch_add(1, Relaxed);
                            first_failure.lock().unwrap().get_or_insert_with(|| {
                                format!("{}: {e}", crate::report::short_key(key))
                            });
                        }
                    }
                }
            });
        }
    });
    let after = counters(&check.client.stats);
    for (ours, (b, a)) in [
        &client.stats.requests,
        &client.stats.retries,
        &client.stats.bytes,
    ]
    .into_iter()
    .zip(before.into_iter().zip(after))
    {
        client.stats.add(ours, a - b);
    }
    let failed = failed.into_inner();
    if failed > 0 {
        let stopped = if check.stopped() {
            let unasked = keys.len().saturating_sub(next.into_inner().min(keys.len()));
            format!(
                "; the check stopped for this pass after repeated failures ({unasked} more loaded keys on this page, and those on later pages, not asked)"
            )
        } else {
            String::new()
        };
        tracing::warn!(
            "cannot tell whether {} changed (HEAD failed; first: {}){stopped}: taken as unchanged this pass",
            crate::report::plural(failed, "loaded object", "loaded objects"),
            first_failure.into_inner().unwrap().unwrap_or_default(),
        );
    }
    found.into_inner().unwrap()
}

/// The bar drawn now, cleared on Ctrl-C so that `interrupted` is the last
/// thing on screen.
static SHOWN: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

fn clear_shown() {
    if let Ok(Some(bar)) = SHOWN.lock().map(|b| b.clone()) {
        bar.finish_and_clear();
    }
}

/// Runs `f` (a log line being written) with the bar drawn now, if any,
/// taken off the screen, so lines and the bar do not overwrite each other.
pub fn with_bar_hidden<R>(f: impl FnOnce() -> R) -> R {
    let bar = SHOWN.try_lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) if !bar.is_finished() => bar.suspend(f),
        _ => f(),
    }
}

fn show(bar: &indicatif::ProgressBar) {
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| crate::db::embedded::on_interrupt(clear_shown));
    *SHOWN.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
}

/// A spinner with `what` beside it, for waits with no count (the embedded
/// server's first start takes seconds). Finish it with `finish_and_clear`.
pub fn spinner(what: &str) -> indicatif::ProgressBar {
    let s = indicatif::ProgressBar::new_spinner();
    s.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("valid template"),
    );
    s.set_message(what.to_string());
    s.enable_steady_tick(std::time::Duration::from_millis(100));
    show(&s);
    s
}

/// Files and rows a second, with units and as many decimals as the size
/// of the rate calls for: `0.35 files/s`, `8.4 files/s`, `1234 rows/s`.
pub fn rate(n: f64, unit: &str) -> String {
    let digits = if n >= 100.0 {
        0
    } else if n >= 1.0 {
        1
    } else {
        2
    };
    format!("{n:.digits$} {unit}/s")
}

/// The pass's bar; `listed_all` is set when the listing has ended, and
/// until then the bar gives no estimate of the time left: the total it
/// would be estimated on is only what has been listed so far.
fn progress_bar(
    model: &str,
    listed_all: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} files, {msg}, {files_per_sec} ({time_left}, {elapsed})",
    )
    .expect("valid template")
    .with_key(
        "files_per_sec",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate(state.per_sec(), "files"));
        },
    )
    .with_key(
        "time_left",
        move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = if listed_all.load(std::sync::atomic::Ordering::Relaxed) {
                write!(w, "ETA {:#}", indicatif::HumanDuration(state.eta()))
            } else {
                w.write_str("listing")
            };
        },
    )
    .progress_chars("=> ");
    // Built whole before its first frame: set one by one, the first frame
    // drawn read "0/0 files, , " beside an empty bar. Until the first file
    // is done, the message says what the pass is doing. No length until
    // keys are listed: indicatif draws a length of 0 as a full bar.
    let bar = indicatif::ProgressBar::no_length()
        .with_style(style)
        .with_prefix(model.to_string())
        .with_message("0 rows, listing the bucket");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    show(&bar);
    bar
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_take_every_key_once_between_them() {
        let shards: Vec<Shard> = ["0/3", "1/3", "2/3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut taken = [0usize; 3];
        for k in 0..3000 {
            let key = format!("data/file_{k}.json");
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].owns(&key)).collect();
            assert_eq!(owners.len(), 1, "{key}: {owners:?}");
            taken[owners[0]] += 1;
        }
        // Roughly even: each shard's share within 20 % of a third.
        assert!(taken.iter().all(|&n| (800..1200).contains(&n)), "{taken:?}");
        assert_eq!(shards[1].to_string(), "1/3");
        for bad in ["3/3", "1", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
