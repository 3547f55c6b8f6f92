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
/// A thread that panicked (refinery panics on a history table whose
/// columns it cannot read) is an error saying so, not a stall.
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
    rx.recv_timeout(limit).map_err(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => DbError::stalled(what, limit).into(),
        std::sync::mpsc::RecvTimeoutError::Disconnected => {
            anyhow::anyhow!("{what} failed: the database client panicked (its message is above)")
        }
    })
}

/// How one attempt at a call ended.
enum Attempt<T> {
    /// The work's own result, the connection still usable.
    Done(anyhow::Result<T>),
    /// No answer in time, or the server closed the connection: the
    /// connection is gone, and the work may be tried again on a fresh one.
    Lost(anyhow::Error),
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
    /// Connects within `patience.startup()` (at least 10 s: a server busy
    /// starting may take seconds to accept).
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
        on_thread(
            super::connect::startup_limit(url, patience),
            "the connection",
            move || super::connect_sync(&owned),
        )?
    }

    pub fn patience(&self) -> Patience {
        self.patience
    }

    /// Runs `f` on the connection, waiting at most `limit`.
    ///
    /// A call that stalls, or whose connection the server closed under it
    /// (a restart, a terminated backend), is tried once more on a fresh
    /// connection: one stopped backend is not a stopped server, and what the
    /// harness sends this way is safe to repeat (reads, `TRUNCATE`,
    /// `CHECKPOINT`, `DROP … IF EXISTS`). A second stall, or a reconnection
    /// that fails, is the error.
    pub fn call<T: Send + 'static>(
        &mut self,
        what: &'static str,
        limit: Duration,
        f: impl Fn(&mut postgres::Client) -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<T> {
        let f = Arc::new(f);
        let g = f.clone();
        match self.attempt(what, limit, move |c| g(c)) {
            Attempt::Done(r) => r,
            Attempt::Lost(e) => {
                tracing::warn!(
                    "{}; trying again on a fresh connection",
                    crate::error::chain(&*e)
                );
                match self.attempt(what, limit, move |c| f(c)) {
                    Attempt::Done(r) => r,
                    Attempt::Lost(e) if super::is_stalled(&e) => Err(e.context(
                        "PostgreSQL stopped answering (twice in a row, on fresh connections; raise --db-timeout if it is merely slow)",
                    )),
                    Attempt::Lost(e) => Err(e),
                }
            }
        }
    }

    /// [`Self::call`] for work that is not safe to repeat (`CREATE
    /// SCHEMA`): tried once. After a stall it may still complete later,
    /// when the server answers.
    pub fn call_once<T: Send + 'static>(
        &mut self,
        what: &'static str,
        limit: Duration,
        f: impl FnOnce(&mut postgres::Client) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        match self.attempt(what, limit, f) {
            Attempt::Done(r) => r,
            Attempt::Lost(e) => Err(e),
        }
    }

    fn attempt<T: Send + 'static>(
        &mut self,
        what: &'static str,
        limit: Duration,
        f: impl FnOnce(&mut postgres::Client) -> anyhow::Result<T> + Send + 'static,
    ) -> Attempt<T> {
        let mut client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => match Self::open(&self.url, self.patience) {
                Ok(c) => c,
                // Not worth a retry: the server does not take connections.
                Err(e) => return Attempt::Done(Err(e)),
            },
        };
        let outcome = on_thread(limit, what, move || {
            let r = f(&mut client);
            (client, r)
        });
        match outcome {
            Ok((client, Err(e))) if client.is_closed() => Attempt::Lost(e),
            Ok((client, r)) => {
                self.client = Some(client);
                Attempt::Done(r)
            }
            Err(stalled) => Attempt::Lost(stalled),
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
