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
        // Each pool thread pulls keys from the shared queue, so a slow file
        // never holds up keys behind it, and opens its own connection with
        // its first key: a pass with few new files (a cron run, `--watch`)
        // starts as many PostgreSQL backends as it has files, not one per
        // thread. Each backend costs the server ~6 ms of CPU and counts
        // against `max_connections`.
        pool.broadcast(|_| {
            let mut pg = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(obj) = todo.lock().unwrap().blocking_recv() else {
                    break;
                };
                let pg = match &mut pg {
                    Some(c) => c,
                    None => match job.connection() {
                        Ok(c) => pg.insert(c),
                        Err(e) => return fail(e),
                    },
                };
                match fetch_and_write(&http, pg, job, &obj, Model::Threads.name()) {
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
