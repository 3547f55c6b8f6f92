//! `threads`: blocking ureq and `postgres` on a rayon pool of N threads,
//! one database connection per thread. The classic answer to IO-bound work
//! without async: as many files in flight as threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Model;
use super::sync::fetch_and_write;
use super::{Ingestor, Job, Todo};
use crate::bucket::sync_client::SyncClient;

pub struct ThreadsModel;

impl Ingestor for ThreadsModel {
    fn model(&self) -> Model {
        Model::Threads
    }

    fn load(&self, job: &Job<'_>, todo: Todo) -> anyhow::Result<()> {
        let threads = job.knobs.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ingest-{i}"))
            .build()?;
        // One budget for every thread.
        let http =
            SyncClient::new(job.client.clone(), job.stats.clone())?.with_budget(job.knobs.budget());
        let todo = Mutex::new(todo);
        let stop = AtomicBool::new(false);
        let first_error = Mutex::new(None);
        let fail = |e: anyhow::Error| {
            stop.store(true, Ordering::Relaxed);
            first_error.lock().unwrap().get_or_insert(e);
        };
        // Each pool thread opens its own connection and pulls keys from the
        // shared queue, so a slow file never holds up keys behind it.
        pool.broadcast(|_| {
            let mut pg = match job.connection() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            while !stop.load(Ordering::Relaxed) {
                let Some(obj) = todo.lock().unwrap().blocking_recv() else {
                    break;
                };
                match fetch_and_write(&http, &mut pg, job, &obj, Model::Threads.name()) {
                    Ok(r) => job.tally.record(&obj.key, r),
                    Err(e) => return fail(e),
                }
            }
        });
        match first_error.into_inner().unwrap() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
