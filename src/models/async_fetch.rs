//! `async-fetch`: reqwest on tokio fetches many files at once, and one
//! synchronous `postgres` connection writes them in sequence, fed through
//! a channel (the original project's "partially sync" model).

use futures::StreamExt as _;

use super::Model;
use super::{Ingestor, Job, Step, Todo, fetch_steps, runtime, write_error};
use crate::bucket::async_client::AsyncClient;
use crate::db::sync_writer;
use crate::report::FileResult;

pub struct AsyncFetchModel;

impl Ingestor for AsyncFetchModel {
    fn model(&self) -> Model {
        Model::AsyncFetch
    }

    fn load(&self, job: &Job<'_>, todo: Todo) -> anyhow::Result<()> {
        let rt = runtime()?;
        let http = AsyncClient::new(job.client_for(self.model()), job.stats.clone())?
            .with_budget(job.knobs.budget());
        let mut pg = job.connection()?;
        // Bounded: fetching runs at most `concurrency` files ahead of the writer.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Step)>(job.knobs.concurrency);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> anyhow::Result<()> {
                while let Some((key, next)) = rx.blocking_recv() {
                    let result = match next {
                        Step::Done(r) => r,
                        Step::Write(plan) => {
                            let written = sync_writer::write_with_reconnect(&mut pg, &plan)
                                .map_err(|e| write_error(&key, e))?;
                            FileResult::from_write(&plan, written)
                        }
                    };
                    job.tally.record(&key, result);
                }
                Ok(())
            });
            rt.block_on(async {
                let mut fetched = fetch_steps(job, &http, todo, Model::AsyncFetch.name());
                loop {
                    // A closed channel means the writer failed; its error is
                    // returned below. Watched while waiting too: a hanging
                    // listing page must not hold that error back.
                    let done = tokio::select! {
                        done = fetched.next() => done,
                        () = tx.closed() => break,
                    };
                    let Some(done) = done else { break };
                    if tx.send(done?).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                Ok::<_, anyhow::Error>(())
            })?;
            writer.join().expect("writer thread panicked")
        })
    }
}
