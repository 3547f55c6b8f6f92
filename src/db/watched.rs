//! A blocking `postgres` connection whose every call has a deadline: the
//! harness's own connection (creating its schema, emptying the tables
//! between runs, checkpointing, verifying each run's rows) and a pass's
//! start (connecting and migrating).
//!
//! The `postgres` crate cannot bound a call, and these calls are many
//! statements inside one function (refinery's migrations, a verification's
//! dozen queries), so they are not rewritten onto the writers' bounded
//! client ([`super::sync_writer::Connection`]). Instead each call runs on a
//! thread of its own holding the client; past the deadline the caller stops
//! waiting, the thread is left behind blocked on the stopped server (it ends
//! when the server answers or the process exits), and the client with it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::Patience;
use crate::error::DbError;

/// Runs `f` on a thread of its own and waits at most `limit` for it; past
/// it, [`DbError::Stalled`] naming `what`, and the thread is left behind.
pub fn on_thread<T: Send + 'static>(
    limit: Duration,
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("db-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .context("starting a database call's thread")?;
    rx.recv_timeout(limit)
        .map_err(|_| DbError::stalled(what, limit).into())
}

/// A blocking connection whose calls are each bounded (see the module doc).
pub struct Watched {
    /// Holds the password: never shown but redacted.
    url: String,
    /// `None` while a call has it, and after a call stalled.
    client: Option<postgres::Client>,
    patience: Patience,
}

impl Watched {
    /// Connects within `patience.base` (at least the start-up bound's
    /// floor, as a server busy starting may take seconds to accept).
    pub fn connect(url: &str, patience: Patience) -> anyhow::Result<Self> {
        let client = Self::open(url, patience)?;
        Ok(Watched {
            url: url.to_string(),
            client: Some(client),
            patience,
        })
    }

    fn open(url: &str, patience: Patience) -> anyhow::Result<postgres::Client> {
        let owned = url.to_string();
        on_thread(patience.startup(), "the connection", move || {
            super::connect_sync(&owned)
        })?
    }

    pub fn patience(&self) -> Patience {
        self.patience
    }

    /// Runs `f` on the connection, waiting at most `limit`.
    ///
    /// A call that stalls is tried once more on a fresh connection: one
    /// stopped backend is not a stopped server, and everything the harness
    /// sends is safe to repeat (reads, `TRUNCATE`, `CHECKPOINT`). A second
    /// stall, or a reconnection that fails, is the error. A connection the
    /// server closed (a restart, a terminated backend) is reopened too.
    pub fn call<T: Send + 'static>(
        &mut self,
        what: &'static str,
        limit: Duration,
        f: impl Fn(&mut postgres::Client) -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<T> {
        let f = Arc::new(f);
        let mut retried = false;
        loop {
            let mut client = match self.client.take() {
                Some(c) if !c.is_closed() => c,
                _ => Self::open(&self.url, self.patience)?,
            };
            let g = f.clone();
            let outcome = on_thread(limit, what, move || {
                let r = g(&mut client);
                (client, r)
            });
            match outcome {
                Ok((client, r)) => {
                    self.client = Some(client);
                    return r;
                }
                Err(e) if !retried => {
                    tracing::warn!(
                        "{}; trying again on a fresh connection",
                        crate::error::chain(&*e)
                    );
                    retried = true;
                }
                Err(e) => {
                    return Err(e.context(
                        "PostgreSQL stopped answering (twice in a row, on fresh connections; raise --db-timeout if it is merely slow)",
                    ));
                }
            }
        }
    }

    /// [`Self::call`] with the deadline of one round trip.
    pub fn quick<T: Send + 'static>(
        &mut self,
        what: &'static str,
        f: impl Fn(&mut postgres::Client) -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<T> {
        let limit = self.patience.base;
        self.call(what, limit, f)
    }
}
