//! `async`: reqwest and tokio-postgres (through a deadpool-postgres pool),
//! fetches and writes both concurrent and bounded.

use futures::StreamExt as _;

use super::{Ingestor, Job, Step, Todo, refuse_key, runtime, step, todo_stream, write_error};
use crate::bucket::async_client::AsyncClient;
use crate::db::async_writer;
use crate::report::FileResult;

pub struct Async;

impl Ingestor for Async {
    fn name(&self) -> &'static str {
        "async"
    }

    fn load(&self, job: &Job<'_>, todo: Todo) -> anyhow::Result<()> {
        let rt = runtime()?;
        let http = AsyncClient::new(job.client.clone(), job.stats.clone())?;
        rt.block_on(async {
            let pool = async_writer::pool(job.database_url, job.knobs.connections)?;
            // One connection of its own for the cheap "loaded meanwhile?" checks,
            // so they never queue behind the writers for a pooled connection.
            let checks = async_writer::pool(job.database_url, 1)?;
            // Fail fast, in one line, if the database is gone.
            drop(
                pool.get()
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?,
            );
            let mut done = todo_stream(todo)
                .map(|obj| {
                    let (http, pool, checks) = (http.clone(), pool.clone(), checks.clone());
                    let url = job.bucket.object_url(&obj.key);
                    let write = job.knobs.write;
                    // Spawned, so parsing runs on every core, not on the task
                    // that polls the stream.
                    tokio::spawn(async move {
                        if async_writer::already_loaded(&checks, &obj.key).await {
                            return Ok((obj.key, FileResult::AlreadyLoaded));
                        }
                        let next = match refuse_key(&obj, "async") {
                            Some(refused) => refused,
                            None => step(&obj, "async", write, http.get(&url).await),
                        };
                        let result = match next {
                            Step::Done(r) => r,
                            Step::Write(plan) => {
                                let written = async_writer::write_with_reconnect(&pool, &plan)
                                    .await
                                    .map_err(|e| write_error(&obj.key, e))?;
                                FileResult::from_write(&plan, written)
                            }
                        };
                        Ok::<_, anyhow::Error>((obj.key, result))
                    })
                })
                .buffer_unordered(job.knobs.concurrency);
            while let Some(joined) = done.next().await {
                let (key, result) = joined??;
                job.tally.record(&key, result);
            }
            Ok(())
        })
    }
}
