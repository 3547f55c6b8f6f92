//! `threads`: blocking ureq and `postgres` on a rayon pool of N threads,
//! one database connection per thread. The classic answer to IO-bound work
//! without async: as many files in flight as threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
        let http = SyncClient::new(job.client_for(self.model()), job.stats.clone())?
            .with_budget(job.knobs.budget());
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
        //
        // A thread the server turns away (too many connections for the
        // role or the server), or whose connection is lost for good, while
        // others have theirs hands its file to them and stops: the pass
        // goes on with the connections it has. Only when no other thread
        // has one does a connection error end the pass.
        //
        // `in_hand` counts the files threads hold: a thread with a
        // connection leaves only when the queue is done and no file can
        // still come back to the spare list.
        let spare: Mutex<Vec<crate::bucket::ObjectRef>> = Mutex::new(Vec::new());
        let connected = AtomicUsize::new(0);
        let in_hand = AtomicUsize::new(0);
        let handed_over = AtomicUsize::new(0);
        let hand_over = |obj: crate::bucket::ObjectRef, e: &anyhow::Error| {
            if handed_over.fetch_add(1, Ordering::SeqCst) == 0 {
                tracing::warn!(
                    "a thread has no database connection ({}); the pass goes on with the threads that have one",
                    crate::error::chain(&**e)
                );
            }
            spare.lock().unwrap().push(obj);
            in_hand.fetch_sub(1, Ordering::SeqCst);
        };
        pool.broadcast(|_| {
            let mut pg = None;
            while !stop.load(Ordering::Relaxed) {
                // Counted before the file is taken, so no thread finishes
                // while it may still be handed back.
                in_hand.fetch_add(1, Ordering::SeqCst);
                let next = spare.lock().unwrap().pop();
                let next = match next {
                    Some(obj) => Some(obj),
                    None => next_key(&todo, &stop),
                };
                let Some(obj) = next else {
                    in_hand.fetch_sub(1, Ordering::SeqCst);
                    // The queue is done: what others hand back is still to do.
                    if pg.is_none()
                        || (in_hand.load(Ordering::SeqCst) == 0 && spare.lock().unwrap().is_empty())
                    {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                let pg = match &mut pg {
                    Some(c) => c,
                    None => match open(job, &connected) {
                        Ok(c) => pg.insert(c),
                        Err(e) if connected.load(Ordering::SeqCst) > 0 => {
                            return hand_over(obj, &e);
                        }
                        Err(e) => {
                            in_hand.fetch_sub(1, Ordering::SeqCst);
                            return fail(e);
                        }
                    },
                };
                match fetch_and_write(&http, pg, job, &obj, Model::Threads.name()) {
                    Ok(r) => {
                        job.tally.record(&obj.key, r);
                        in_hand.fetch_sub(1, Ordering::SeqCst);
                    }
                    // Its transaction rolled back with the connection: the
                    // file is as untouched as one never taken.
                    Err(e)
                        if crate::db::is_connection_lost(&e)
                            && connected.fetch_sub(1, Ordering::SeqCst) > 1 =>
                    {
                        return hand_over(obj, &e);
                    }
                    Err(e) => {
                        in_hand.fetch_sub(1, Ordering::SeqCst);
                        return fail(e);
                    }
                }
            }
        });
        match first_error.into_inner().unwrap() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// This thread's connection. Refused while no other thread has one yet
/// (they may all be starting at once), it is tried again with the
/// reconnect backoff; refused while others have theirs, the refusal is
/// the caller's to handle.
fn open(
    job: &Job<'_>,
    connected: &AtomicUsize,
) -> anyhow::Result<crate::db::sync_writer::Connection> {
    let mut attempt = 0;
    loop {
        match job.connection() {
            Ok(c) => {
                connected.fetch_add(1, Ordering::SeqCst);
                return Ok(c);
            }
            Err(e) if connected.load(Ordering::SeqCst) > 0 => return Err(e),
            Err(e) => {
                attempt += 1;
                match crate::db::reconnect_delay(attempt) {
                    Some(wait) if !crate::db::is_stalled(&e) => std::thread::sleep(wait),
                    _ => return Err(e),
                }
            }
        }
    }
}

/// The next key, `None` once the listing is done or the pass has stopped
/// (a thread failed). Not `blocking_recv`, which a hanging listing page
/// would hold past a failure that has already ended the pass: the thread
/// holding the queue looks every millisecond, the others wait for it.
fn next_key(todo: &Mutex<Todo>, stop: &AtomicBool) -> Option<crate::bucket::ObjectRef> {
    let mut rx = todo.lock().unwrap();
    loop {
        match rx.try_recv() {
            Ok(obj) => return Some(obj),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return None,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}
