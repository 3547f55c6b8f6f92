//! `async`: reqwest and tokio-postgres (through a deadpool-postgres pool),
//! fetches and writes both concurrent and bounded. Fetched files queue for
//! `connections` writers, each committing whatever has queued (up to
//! `files_per_transaction`, after a bounded wait for company when little
//! has) in one transaction: group commit.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt as _;

use super::Model;
use super::{Ingestor, Job, Step, Todo, refuse_key, runtime, step, todo_stream};
use crate::bucket::async_client::AsyncClient;
use crate::bucket::budget::{Held, Reservation};
use crate::db::async_writer;
use crate::report::FileResult;

pub struct AsyncModel;

impl Ingestor for AsyncModel {
    fn model(&self) -> Model {
        Model::Async
    }

    fn load(&self, job: &Job<'_>, todo: Todo) -> anyhow::Result<()> {
        let rt = runtime()?;
        let budget = job.knobs.budget();
        let http = AsyncClient::new(job.client_for(self.model()), job.stats.clone())?
            .with_budget(budget.clone());
        // The writers take bare plans: each plan's share of the budget waits
        // here, by key, until its group commits.
        let held: Mutex<HashMap<String, Reservation>> = Mutex::default();
        rt.block_on(async {
            let pool = job.pool(job.knobs.connections)?;
            // One connection of its own for the cheap "loaded meanwhile?" checks,
            // so they never queue behind the writers for a pooled connection.
            let checks = job.pool(1)?;
            // Fail fast, in one line, if the database is gone.
            let first = async_writer::first_connection(&pool).await?;
            let warm = async {
                let (size, write) = (job.knobs.connections, job.knobs.write);
                async_writer::warm(&pool, first, size, write, job.knobs.patience).await;
                Ok(())
            };
            // Bounded: fetching runs at most `concurrency` files ahead of the writers.
            let (tx, rx) = tokio::sync::mpsc::channel(job.knobs.concurrency);
            let held = &held;
            let fetch = async move {
                let mut done = todo_stream(todo)
                    .map(|obj| {
                        let (http, checks) = (http.clone(), checks.clone());
                        let url = job.bucket.object_url(&obj.key);
                        let write = job.knobs.write;
                        let patience = job.knobs.patience;
                        // Spawned, so parsing runs on every core, not on the
                        // task that polls the stream.
                        tokio::spawn(async move {
                            if super::worth_rechecking(&obj)
                                && let Some(recorded) =
                                    async_writer::recorded(&checks, patience, &obj.key).await
                            {
                                let result = FileResult::recorded_elsewhere(recorded);
                                return (obj.key, Step::Done(result));
                            }
                            let next = match refuse_key(&obj, Model::Async.name()) {
                                Some(refused) => refused,
                                None => {
                                    step(&obj, Model::Async.name(), write, http.get(&url).await)
                                }
                            };
                            (obj.key, next)
                        })
                    })
                    .buffer_unordered(job.knobs.concurrency);
                while let Some(joined) = done.next().await {
                    match joined? {
                        (key, Step::Done(result)) => job.tally.record(&key, result),
                        // A closed channel means a writer failed; its error is returned.
                        (key, Step::Write(planned)) => {
                            let Held {
                                value: plan,
                                reservation,
                            } = planned;
                            held.lock().unwrap().insert(key, reservation);
                            if tx.send(plan.into()).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>(())
            };
            let write = async_writer::write_all(
                &pool,
                job.knobs.patience,
                rx,
                job.knobs.connections,
                job.knobs.files_per_transaction,
                &budget,
                |plan, written| {
                    job.tally
                        .record(&plan.key, FileResult::from_write(&plan, written));
                    held.lock().unwrap().remove(&plan.key);
                },
            );
            // A writer's failure (the database gone) ends the fetching at
            // once: it would otherwise wait for keys a hanging listing page
            // has yet to send.
            futures::future::try_join3(warm, fetch, write)
                .await
                .map(|_| ())
        })
    }
}
