//! The synchronous models' connection to PostgreSQL: one transaction per
//! file, each call blocking its thread until the server answers or
//! [`super::Patience`] runs out.

use anyhow::Context;

use super::ledger::{self, WritePlan, WriteResult};

/// A synchronous connection: a tokio-postgres client (with deadpool's
/// statement cache) driven by a runtime of its own on the calling thread,
/// as the `postgres` crate drives one.
///
/// Not the `postgres` crate itself, because a blocking call there cannot
/// be bounded: a PostgreSQL backend that stops answering (SIGSTOP, a
/// frozen host) held a `sync`, `async-fetch` or `threads` pass for as long
/// as it was stopped. Here every call runs under a deadline; past it the
/// connection is dropped (its runtime with it, which closes the socket)
/// and the caller moves on.
///
/// The transaction itself is [`super::transaction::write_group`], the one
/// every model sends. Statements are prepared once per connection: the
/// claim, the check, the COPY statements and the `insert`/`batch`
/// statements, sent once per file, each cost the server a bind and an
/// execution instead of a parse, a plan and an extra round trip, so the
/// models differ in how they schedule IO, not in what each statement
/// costs. A reconnect starts a new `Connection`, so no statement outlives
/// the session that prepared it.
pub struct Connection {
    /// Before `rt`: dropped first, aborting the connection's task.
    client: Option<deadpool_postgres::ClientWrapper>,
    rt: tokio::runtime::Runtime,
    url: String,
    patience: super::Patience,
    /// Kept across reopening: stalls in a row on fresh connections end the pass.
    streak: std::sync::Arc<super::StallStreak>,
    /// Why `client` is `None`.
    gone: String,
}

/// Why a [`Connection`] has no client, for the error that says so.
const DROPPED: &str = "the last one was dropped";

/// Why the connection is closed after a refused COPY (see
/// [`crate::error::DbError::Desynced`]).
const DESYNCED: &str = "the last one was dropped after a refused COPY";

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the database client's runtime")
}

impl Connection {
    /// Connects, waiting at most `patience.base` for the server to answer.
    pub fn open(url: &str, patience: super::Patience) -> anyhow::Result<Self> {
        Self::open_within(url, patience, patience.base)
    }

    /// Connects, waiting at most `limit` for the server to answer: a pass's
    /// first connection waits [`super::Patience::startup`], since a server
    /// busy starting may take seconds to accept.
    pub fn open_within(
        url: &str,
        patience: super::Patience,
        limit: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let cfg = super::session_config(url)?;
        let limit = super::connect::search_limit(&cfg, limit);
        let tls = super::tls::connector()?;
        let rt = runtime()?;
        let (client, connection) = rt.block_on(super::within(limit, "the connection", async {
            super::connect::connect(&cfg, tls)
                .await
                .map_err(|tried| super::connect_error(url, &tried))
        }))?;
        let task = rt.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("database connection ended: {}", crate::error::chain(&e));
            }
        });
        Ok(Connection {
            client: Some(deadpool_postgres::ClientWrapper::new(client, task)),
            rt,
            url: url.to_string(),
            patience,
            streak: Default::default(),
            gone: String::new(),
        })
    }

    /// Opens a fresh connection to the same server in place of this one.
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        let streak = self.streak.clone();
        *self = Connection::open(&self.url, self.patience)?;
        self.streak = streak;
        Ok(())
    }

    /// [`Self::reopen`] after a lost or stalled connection. A reconnection
    /// that stalls too (a stopped postmaster) counts in the stall streak,
    /// and may end the pass; any other failure is kept, so that the next
    /// call says why there is no connection.
    pub fn reconnect(&mut self) -> anyhow::Result<()> {
        match self.reopen() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.gone = crate::error::chain(&*e);
                self.client = None;
                if super::is_stalled(&e) {
                    self.streak.stalled(e, 0)?;
                }
                Ok(())
            }
        }
    }

    /// Records a stall of something sent on this connection; see
    /// [`super::StallStreak::stalled`].
    pub fn stalled(&self, e: anyhow::Error, files: usize) -> anyhow::Result<()> {
        self.streak.stalled(e, files)
    }

    /// The connection is gone (closed by the server, or dropped after a stall).
    pub fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.is_closed())
    }

    pub fn patience(&self) -> super::Patience {
        self.patience
    }

    /// Runs `work` on the connection, blocking until it finishes. `work`
    /// bounds its own waits with [`super::within`]; when one stalls, the
    /// connection is dropped at once (a stopped backend may never answer)
    /// and the error is [`super::is_stalled`]; the next call fails as a
    /// lost connection until [`Self::reopen`].
    pub fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut deadpool_postgres::ClientWrapper) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let Some(client) = self.client.as_mut() else {
            let why = if self.gone.is_empty() {
                DROPPED
            } else {
                &self.gone
            };
            return Err(crate::error::DbError::NoConnection(why.to_string()).into());
        };
        let result = self.rt.block_on(work(client));
        if let Err(e) = &result
            && super::is_unusable(e)
        {
            self.client = None;
            // Stalled, or its protocol state lost (a refused COPY): either
            // way reopened before the next use, never reused.
            self.gone = if super::is_stalled(e) {
                DROPPED
            } else {
                DESYNCED
            }
            .to_string();
            // Dropping the runtime drops the connection's task and so closes
            // the socket now, not whenever this runtime next runs.
            if let Ok(fresh) = runtime() {
                self.rt = fresh;
            }
        }
        result
    }
}

/// Writes one file in one transaction: [`super::transaction::write_group`]
/// for a group of one, each step within its deadline.
pub fn write_file(conn: &mut Connection, plan: &WritePlan) -> anyhow::Result<WriteResult> {
    let patience = conn.patience;
    let mut results =
        conn.run(async |c| super::transaction::write_group(c, &[plan], patience).await)?;
    Ok(results.pop().unwrap_or(WriteResult::AlreadyLoaded))
}

/// What one attempt at a transaction ended as, once lost connections and
/// contention have been retried.
enum Attempt {
    Done(WriteResult),
    /// PostgreSQL refused the data (see [`super::WriteFault::Refused`]).
    Refused(String),
}

/// Runs `write_file` until it succeeds or fails for a reason retrying
/// cannot fix: reconnects (with backoff) when the connection is lost,
/// retries deadlocks and serialization failures with a bounded backoff,
/// reports a claim that timed out on a lock as busy. Only a database still
/// unreachable after the reconnect attempts is an error.
fn attempt(conn: &mut Connection, plan: &WritePlan) -> anyhow::Result<Attempt> {
    let mut retries = super::Retries::default();
    loop {
        let was_open = !conn.is_closed();
        let e = match write_file(conn, plan) {
            Ok(r) => {
                conn.streak.answered();
                return Ok(Attempt::Done(r));
            }
            Err(e) => e,
        };
        if super::is_stalled(&e) {
            // Its claim may still be held by the stopped backend: retrying
            // now would only wait on it. A later pass takes the file up.
            conn.stalled(e, 1)?;
            conn.reconnect()?;
            return Ok(Attempt::Done(WriteResult::Busy));
        }
        // What the server said decides, even when the connection went with
        // it (dropped after a refused COPY); a closed connection with
        // nothing else to go by is lost.
        let fault = match super::classify(&e) {
            f @ (super::WriteFault::Busy
            | super::WriteFault::Retry
            | super::WriteFault::Fatal(_)) => f,
            _ if conn.is_closed() => super::WriteFault::ConnectionLost,
            f => f,
        };
        let lost = fault == super::WriteFault::ConnectionLost;
        if lost && was_open && super::transaction::began(&e) && retries.lost_in_transaction() {
            super::left_for_next_pass(&plan.key, &crate::error::chain(&*e));
            conn.reconnect()?;
            return Ok(Attempt::Done(WriteResult::Busy));
        }
        let next = retries.next(fault, &e);
        // Whatever comes next uses the connection: the retry, the failed
        // file's record, the next file.
        if !lost && conn.is_closed() && !matches!(next, super::Next::Fatal(_)) {
            conn.reconnect()?;
        }
        match next {
            super::Next::Retry(delay) => {
                if !lost {
                    tracing::debug!(
                        "{}: {}; retrying",
                        crate::report::short_key(&plan.key),
                        crate::error::chain(&*e)
                    );
                }
                std::thread::sleep(delay);
                if lost {
                    conn.reconnect()?;
                }
            }
            super::Next::Unreachable => return Err(e),
            super::Next::Busy => return Ok(Attempt::Done(WriteResult::Busy)),
            super::Next::Refused(reason) => return Ok(Attempt::Refused(reason)),
            super::Next::Fatal(reason) => return Err(e.context(reason)),
        }
    }
}

/// Writes a file in one transaction. A file whose data PostgreSQL refuses
/// (a value, a constraint, a size limit: anything but a lost connection)
/// is recorded in the ledger as `failed` with the database's reason, in a
/// transaction of its own, so it never stops the pass; see [`attempt`] for
/// the rest. An error means the database is unreachable.
pub fn write_with_reconnect(
    conn: &mut Connection,
    plan: &WritePlan,
) -> anyhow::Result<WriteResult> {
    let reason = match attempt(conn, plan)? {
        Attempt::Done(r) => return Ok(r),
        Attempt::Refused(reason) => reason,
    };
    tracing::warn!(
        "{}: {reason}; recording it as failed",
        crate::report::short_key(&plan.key)
    );
    Ok(match attempt(conn, &plan.as_failed(&reason))? {
        Attempt::Done(WriteResult::Committed) => WriteResult::Failed(reason),
        Attempt::Done(other) => other,
        Attempt::Refused(again) => WriteResult::Unrecorded(format!(
            "{reason}; recording it as failed was refused too: {again}"
        )),
    })
}

/// See [`super::transaction::recorded`]. A lost connection, or a check
/// not answered in time, is not an error here: the write that follows
/// reconnects or reports it.
pub fn recorded(conn: &mut Connection, key: &str) -> Option<WriteResult> {
    let limit = conn.patience.base;
    conn.run(async |c| super::transaction::recorded(c, key, limit).await)
        .unwrap_or_else(|e| {
            // Reconnected now, so the write that follows does not first fail
            // on the dropped connection and wait out a reconnect delay.
            // (A reconnection that stalls too still counts in the streak; the
            // write's own error ends the pass if it must.)
            if super::warn_if_stalled(&e) {
                let _ = conn.reconnect();
            }
            None
        })
}

/// A listed key the ledger already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The ETag (version) recorded when it was processed.
    pub etag: Option<String>,
    /// Recorded `failed` (not JSON, too large…) rather than `loaded`.
    pub failed: bool,
}

/// Subtracts what the ledger holds from a listing, noting the keys as seen
/// where their `last_seen_at` lags by more than `resolution`. Returns the
/// keys already in the ledger with their stored ETags and whether they
/// were recorded as failed.
///
/// A key holding U+0000 cannot be in the ledger (text cannot hold it) and
/// would make PostgreSQL refuse the whole chunk, so it is left out here and
/// refused on its own when the model tries to record it. [`ledger::SEEN`]
/// cannot deadlock; a serialization failure or deadlock from elsewhere is
/// still retried with a bounded backoff.
pub fn seen_keys(
    conn: &mut Connection,
    keys: &[String],
    resolution: std::time::Duration,
) -> anyhow::Result<std::collections::HashMap<String, Held>> {
    let resolution = resolution.as_secs_f64();
    let mut seen = std::collections::HashMap::new();
    let storable: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| !k.contains('\0'))
        .collect();
    for chunk in storable.chunks(ledger::SEEN_CHUNK) {
        let mut contended = 0;
        let limit = conn.patience.base;
        let rows = loop {
            match conn.run(async |c| {
                super::within(
                    limit,
                    "a page of the ledger",
                    c.query(ledger::SEEN, &[&chunk, &resolution]),
                )
                .await
            }) {
                Ok(rows) => break rows,
                Err(e) => {
                    if super::classify(&e) == super::WriteFault::Retry {
                        contended += 1;
                        if let Some(delay) = super::contention_delay(contended, rand::random()) {
                            std::thread::sleep(delay);
                            continue;
                        }
                    }
                    return Err(e.context("reading the ledger"));
                }
            }
        };
        for row in rows {
            let status: &str = row.get(2);
            seen.insert(
                row.get(0),
                Held {
                    etag: row.get(1),
                    failed: status == "failed",
                },
            );
        }
    }
    Ok(seen)
}
