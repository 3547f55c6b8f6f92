//! `sync`: ureq and the `postgres` client, one file at a time. The baseline
//! every other model is measured against.

use super::Model;
use super::{Ingestor, Job, Step, Todo, refuse_key, step, write_error};
use crate::bucket::ObjectRef;
use crate::bucket::sync_client::SyncClient;
use crate::db::sync_writer;
use crate::report::FileResult;

pub struct SyncModel;

impl Ingestor for SyncModel {
    fn model(&self) -> Model {
        Model::Sync
    }

    fn load(&self, job: &Job<'_>, mut todo: Todo) -> anyhow::Result<()> {
        let http = SyncClient::new(job.client_for(Model::Sync), job.stats.clone())?
            .with_budget(job.knobs.budget());
        let mut pg = job.connection()?;
        while let Some(obj) = todo.blocking_recv() {
            let result = fetch_and_write(&http, &mut pg, job, &obj, self.name())?;
            job.tally.record(&obj.key, result);
        }
        Ok(())
    }
}

/// Fetch, transform and write one object on blocking clients. Shared with
/// the `threads` model, which runs it on many threads at once.
pub(crate) fn fetch_and_write(
    http: &SyncClient,
    pg: &mut sync_writer::Connection,
    job: &Job<'_>,
    obj: &ObjectRef,
    model: &str,
) -> anyhow::Result<FileResult> {
    // The bucket was declared unreachable: not even the ledger is asked.
    if job.stats.breaker.is_open() {
        return Ok(FileResult::NotAttempted);
    }
    if super::worth_rechecking(obj)
        && let Some(recorded) = sync_writer::recorded(pg, &obj.key)
    {
        return Ok(FileResult::recorded_elsewhere(recorded));
    }
    let next = match refuse_key(obj, model) {
        Some(refused) => refused,
        None => step(
            obj,
            model,
            job.knobs.write,
            http.get(&job.bucket.object_url(&obj.key)),
        ),
    };
    match next {
        Step::Done(r) => Ok(r),
        Step::Write(plan) => {
            let written = sync_writer::write_with_reconnect(pg, &plan)
                .map_err(|e| write_error(&obj.key, e))?;
            Ok(FileResult::from_write(&plan, written))
        }
    }
}
