//! The two ceilings `compare --ceilings` measures beside the models, so a
//! reader sees how close each model is to the limit of the network and of
//! the database:
//!
//! * `fetch-only`: download, parse and plan every file at the configured
//!   concurrency, write nothing: the network (and parsing) alone.
//! * `load-only`: fetch and parse everything first (not timed), then time
//!   only the writes on a pool of `--connections`: the database alone.

use std::time::Instant;

use futures::StreamExt as _;

use super::Model;
use super::{Ingestor, Job, Step, Todo, fetch_steps, runtime};
use crate::bucket::async_client::AsyncClient;
use crate::bucket::budget::Held;
use crate::db::async_writer;
use crate::db::ledger::WriteResult;
use crate::report::FileResult;

/// Fetches and plans every key concurrently; returns (key, step) pairs.
async fn fetch_all(
    job: &Job<'_>,
    todo: Todo,
    model: &'static str,
) -> anyhow::Result<Vec<(String, Step)>> {
    let http = AsyncClient::new(job.client_for(Model::FetchOnly), job.stats.clone())?
        .with_budget(job.knobs.budget());
    let mut out = Vec::new();
    let mut fetched = fetch_steps(job, &http, todo, model);
    while let Some(done) = fetched.next().await {
        // Every plan is kept, by design, so none may hold the budget: the
        // fetches would wait for writes that only start once all are in.
        let (key, step) = done?;
        out.push(match step {
            Step::Write(plan) => (key, Step::Write(Held::free(plan.value))),
            done => (key, done),
        });
    }
    Ok(out)
}

pub struct FetchOnlyCeiling;

impl Ingestor for FetchOnlyCeiling {
    fn model(&self) -> Model {
        Model::FetchOnly
    }

    fn load(&self, job: &Job<'_>, todo: Todo) -> anyhow::Result<()> {
        let steps = runtime()?.block_on(fetch_all(job, todo, Model::FetchOnly.name()))?;
        for (key, next) in steps {
            let result = match next {
                Step::Done(r) => r,
                // Counted as if written, so the summary shows what would load.
                Step::Write(plan) => FileResult::from_write(&plan, WriteResult::Committed),
            };
            job.tally.record(&key, result);
        }
        Ok(())
    }
}

pub struct LoadOnlyCeiling;

impl Ingestor for LoadOnlyCeiling {
    fn model(&self) -> Model {
        Model::LoadOnly
    }

    fn load(&self, job: &Job<'_>, todo: Todo) -> anyhow::Result<()> {
        let rt = runtime()?;
        let steps = rt.block_on(fetch_all(job, todo, Model::LoadOnly.name()))?;
        rt.block_on(async {
            let pool = job.pool(job.knobs.connections)?;
            drop(async_writer::first_connection(&pool).await?);
            crate::esayln!("{}", crate::report::timed_phase_line());
            let started = Instant::now();
            let (tx, rx) = tokio::sync::mpsc::channel(steps.len().max(1));
            for (key, next) in steps {
                match next {
                    Step::Done(r) => job.tally.record(&key, r),
                    Step::Write(plan) => tx
                        .try_send(plan.value.into())
                        .expect("the channel holds every step, and its receiver is alive"),
                }
            }
            drop(tx);
            // The same writers and group commit as `async`: the best the
            // database can do, which is what a ceiling must measure.
            async_writer::write_all(
                &pool,
                job.knobs.patience,
                rx,
                job.knobs.connections,
                job.knobs.files_per_transaction,
                // Every plan is queued before the writes start and holds no budget.
                &crate::bucket::budget::Budget::unlimited(),
                |plan, w| {
                    job.tally
                        .record(&plan.key, FileResult::from_write(&plan, w))
                },
            )
            .await?;
            job.tally.timed(started.elapsed().as_secs_f64());
            Ok(())
        })
    }
}
