//! The execution models: one trait, one file per model. They share the
//! bucket client, the transform ([`crate::transform`]) and the write plan,
//! and differ only in how they schedule IO.

pub mod async_fetch;
pub mod ceilings;
pub mod full_async;
mod model;
pub mod sync;
pub mod threads;

pub use model::{Label, Model};

use std::sync::Arc;

use crate::bucket::budget::{self, Budget, Held};
use crate::bucket::{BucketLocation, ClientConfig, FetchError, Fetched, NetStats, ObjectRef};
use crate::db::WritePlan;
use crate::report::{FileResult, Tally};

/// The keys a model is to load, in listing order; closed when the listing ends.
pub type Todo = tokio::sync::mpsc::Receiver<ObjectRef>;

/// Concurrency knobs. Each model reads the ones that apply to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Knobs {
    /// Files in flight (async models).
    pub concurrency: usize,
    /// Database pool size (`async`).
    pub connections: usize,
    /// Worker threads (`threads`).
    pub threads: usize,
    /// How rows are written.
    pub write: crate::db::WriteStrategy,
    /// Files a transaction may carry in `async` (group commit; 1: one
    /// transaction per file).
    pub files_per_transaction: usize,
    /// Bytes of fetched files not yet written, all models (0: unlimited);
    /// see [`crate::bucket::budget`].
    pub max_bytes_in_flight: u64,
    /// How long any wait on PostgreSQL may last (`--db-timeout`).
    #[serde(rename = "db_timeout_secs")]
    pub patience: crate::db::Patience,
}

impl Knobs {
    /// A fresh budget of `max_bytes_in_flight`, shared by a pass's files.
    pub fn budget(&self) -> Budget {
        Budget::new(self.max_bytes_in_flight, self.write)
    }
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            concurrency: 256,
            connections: 4,
            threads: 32,
            write: crate::db::WriteStrategy::Copy,
            files_per_transaction: 32,
            max_bytes_in_flight: budget::DEFAULT_MAX_BYTES_IN_FLIGHT,
            patience: crate::db::Patience::default(),
        }
    }
}

/// Everything a model needs to process the keys a pass hands it.
pub struct Job<'a> {
    pub bucket: &'a BucketLocation,
    pub database_url: &'a str,
    pub client: &'a ClientConfig,
    pub knobs: &'a Knobs,
    pub stats: Arc<NetStats>,
    pub tally: &'a Tally,
}

impl Job<'_> {
    /// A synchronous connection to the pass's database, its waits bounded
    /// by `--db-timeout`.
    pub fn connection(&self) -> anyhow::Result<crate::db::sync_writer::Connection> {
        crate::db::sync_writer::Connection::open(self.database_url, self.knobs.patience)
    }

    /// The bucket client's settings as `model` uses them (its byte ranges:
    /// [`Model::ranged_parts`]).
    pub fn client_for(&self, model: Model) -> ClientConfig {
        ClientConfig {
            ranged_parts: model.ranged_parts(self.knobs, self.client.ranged_parts),
            ..self.client.clone()
        }
    }

    /// A pool of `size` connections to the pass's database.
    pub fn pool(&self, size: usize) -> anyhow::Result<deadpool_postgres::Pool> {
        crate::db::async_writer::pool(self.database_url, size, self.knobs.patience)
    }
}

/// An execution model: fetches, transforms and loads the given objects.
/// Every implementation keeps the ledger's exactly-once guarantee by
/// writing each file through [`crate::db::WritePlan`] in one transaction.
pub trait Ingestor: Send + Sync {
    /// Which model this is.
    fn model(&self) -> Model;
    /// The name used on the command line, in the ledger and in reports.
    fn name(&self) -> &'static str {
        self.model().name()
    }
    /// Processes the keys `todo` yields until it closes, recording each
    /// file's outcome in `job.tally`. An error means the pass cannot go on
    /// (the database is gone).
    fn load(&self, job: &Job<'_>, todo: Todo) -> anyhow::Result<()>;
}

/// What to do with one fetched key: write a plan, or nothing more. A plan
/// holds its file's share of the byte budget until it is dropped, after
/// its write.
pub(crate) enum Step {
    Write(Held<WritePlan>),
    Done(FileResult),
}

/// The shared, sans-IO part of every model: from a GET's outcome to the
/// next step. Both HTTP clients feed it.
pub(crate) fn step(
    obj: &ObjectRef,
    model: &str,
    write: crate::db::WriteStrategy,
    fetched: Result<Fetched, FetchError>,
) -> Step {
    match fetched {
        Ok(Fetched::Object {
            bytes,
            etag,
            mut held,
        }) => {
            let plan = crate::transform::plan(
                &obj.key,
                etag.as_deref().or(obj.etag.as_deref()),
                &bytes,
                model,
                write,
            );
            // The body and the parsed records are gone: keep only what the
            // plan holds until it is written, so other files can start.
            drop(bytes);
            held.shrink_to(budget::retained(&plan));
            Step::Write(Held::new(plan, held))
        }
        Ok(Fetched::Missing) => Step::Done(FileResult::Missing),
        // Too large: a property of the object, recorded so it is not refetched every pass.
        Err(e) if e.is_object_fault() => Step::Write(Held::free(crate::transform::plan_refused(
            &obj.key,
            obj.etag.as_deref(),
            e.to_string(),
            model,
        ))),
        Err(FetchError::NotAttempted) => Step::Done(FileResult::NotAttempted),
        Err(e) => Step::Done(FileResult::FetchFailed(e.to_string())),
    }
}

/// Whether to ask the ledger, just before fetching `obj`, if another
/// worker loaded it meanwhile: only when the listing's answer is older
/// than [`crate::db::ledger::RECHECK_AFTER`] (or was never asked).
pub(crate) fn worth_rechecking(obj: &ObjectRef) -> bool {
    obj.ledger_asked
        .is_none_or(|asked| asked.elapsed() >= crate::db::ledger::RECHECK_AFTER)
}

/// Keys that HTTP cannot address faithfully: clients normalize `.` and `..`
/// path segments away, so `a/../b.json` would fetch `b.json` and load it
/// under the wrong key. Such keys are never fetched; the ledger records
/// them as failed with the reason.
pub(crate) fn refuse_key(obj: &ObjectRef, model: &str) -> Option<Step> {
    obj.key.split('/').any(|seg| seg == "." || seg == "..").then(|| {
        let reason = "key has a \".\" or \"..\" path segment, which HTTP clients normalize away; not fetched, so no other object is loaded in its place";
        Step::Write(Held::free(crate::transform::plan_refused(&obj.key, obj.etag.as_deref(), reason.to_string(), model)))
    })
}

/// A tokio runtime with one worker per core: the async models' scheduler.
pub(crate) fn runtime() -> anyhow::Result<Runtime> {
    Ok(Runtime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    )))
}

/// A tokio runtime that, dropped, shuts down in the background: its
/// workers drop what is left (a pass's idle HTTP and database connections,
/// their buffers) on their own threads while the pass goes on. Waiting for
/// them, as a plain runtime's drop does, charged the end of every `async`
/// pass 3–5 ms of closing sockets and freeing memory after its last commit.
pub(crate) struct Runtime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Runtime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("a runtime is taken only when dropped")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Names the file a fatal database error happened on (the writers handle
/// every other write error per file: only a database still unreachable
/// after the reconnect attempts gets here), its key cut short.
pub(crate) fn write_error(key: &str, e: anyhow::Error) -> anyhow::Error {
    // Context, not a new error: what the error is (a lost connection, a
    // stall) must stay readable to the model that decides what comes next.
    e.context(format!("writing {}", crate::report::short_key(key)))
}

/// Test-only (the `test-models` feature): `sync` that silently skips the
/// first key, so tests can prove the harness catches a load that is not exact.
#[cfg(feature = "test-models")]
pub struct DropOneModel;

#[cfg(feature = "test-models")]
impl Ingestor for DropOneModel {
    fn model(&self) -> Model {
        Model::TestDropOne
    }

    fn load(&self, job: &Job<'_>, mut todo: Todo) -> anyhow::Result<()> {
        let _dropped = todo.blocking_recv();
        sync::SyncModel.load(job, todo)
    }
}

/// The keys of `todo` as a stream, for the async models.
pub(crate) fn todo_stream(todo: Todo) -> impl futures::Stream<Item = ObjectRef> + Unpin {
    Box::pin(futures::stream::unfold(todo, |mut rx| async move {
        rx.recv().await.map(|obj| (obj, rx))
    }))
}

/// Fetches and plans the keys of `todo`, `concurrency` at a time, each on a
/// spawned task (so parsing runs on every core); yields `(key, step)` as
/// fetches finish. Shared by `async-fetch` and the ceilings.
pub(crate) fn fetch_steps<'a>(
    job: &'a Job<'_>,
    http: &'a crate::bucket::async_client::AsyncClient,
    todo: Todo,
    model: &'static str,
) -> impl futures::Stream<Item = Result<(String, Step), tokio::task::JoinError>> + Unpin + 'a {
    use futures::StreamExt as _;
    todo_stream(todo)
        .map(move |obj| {
            let http = http.clone();
            let url = job.bucket.object_url(&obj.key);
            let write = job.knobs.write;
            tokio::spawn(async move {
                let next = match refuse_key(&obj, model) {
                    Some(refused) => refused,
                    None => step(&obj, model, write, http.get(&url).await),
                };
                (obj.key, next)
            })
        })
        .buffer_unordered(job.knobs.concurrency)
}
