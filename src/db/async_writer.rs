//! The `async` model's writers: [`super::transaction::write_group`] on a
//! deadpool pool, with group commit (several files a transaction, each
//! still whole or absent), retries, and every wait on the server bounded
//! by [`super::Patience`].

use anyhow::Context;

use super::ledger::{self, WritePlan, WriteResult};

/// Writes a group on a pooled connection until it succeeds or fails for a
/// reason retrying cannot fix: retries on a fresh connection with backoff
/// when the connection is lost (the pool drops closed clients), retries a
/// deadlock or serialization failure with a bounded backoff. Only a
/// database still unreachable after the reconnect attempts is an error.
async fn attempt(
    pool: &deadpool_postgres::Pool,
    patience: super::Patience,
    plans: &[&WritePlan],
) -> anyhow::Result<GroupAttempt> {
    let mut retries = super::Retries::default();
    loop {
        let result = match pool.get().await {
            Ok(mut client) => {
                match super::transaction::write_group(&mut client, plans, patience).await {
                    Err(e) if super::is_stalled(&e) => {
                        // Not back into the pool: its transaction may still be
                        // open, stopped with its backend. Dropping it aborts
                        // the connection's task and closes the socket.
                        drop(deadpool_postgres::Object::take(client));
                        return Ok(GroupAttempt::Stalled(e));
                    }
                    Err(e) => {
                        // Its protocol state is lost, or the server closed
                        // it: back in the pool, it would fail the next
                        // group's first statement (and a group handed a
                        // connection already closed is not to blame).
                        // The error may say so before the client knows
                        // (its connection task has yet to read the close).
                        if super::is_unusable(&e)
                            || client.is_closed()
                            || super::is_connection_lost(&e)
                        {
                            drop(deadpool_postgres::Object::take(client));
                        }
                        Err(e)
                    }
                    ok => ok,
                }
            }
            // A connection the server accepted but never answered (a
            // stopped postmaster) is a stall too, so it counts in the streak.
            Err(deadpool_postgres::PoolError::Timeout(_)) => {
                return Ok(GroupAttempt::Stalled(
                    crate::error::DbError::stalled("a new connection", patience.base).into(),
                ));
            }
            // The server's own words are in the error's sources: deadpool and
            // tokio-postgres print "db error" alone.
            Err(e) => Err(crate::error::DbError::PoolExhausted(crate::error::chain(&e)).into()),
        };
        let e = match result {
            Ok(r) => return Ok(GroupAttempt::Done(r)),
            Err(e) => e,
        };
        let no_connection = matches!(
            e.downcast_ref::<crate::error::DbError>(),
            Some(crate::error::DbError::PoolExhausted(_))
        );
        let fault = if no_connection {
            super::WriteFault::ConnectionLost
        } else {
            super::classify(&e)
        };
        // Lost after its transaction began: maybe the transaction's doing.
        if fault == super::WriteFault::ConnectionLost
            && !no_connection
            && super::transaction::began(&e)
            && retries.lost_in_transaction()
        {
            return Ok(GroupAttempt::LosesItsConnection(crate::error::chain(&*e)));
        }
        match retries.next(fault, &e) {
            // The pool drops closed clients: the next `get` connects afresh.
            super::Next::Retry(delay) => tokio::time::sleep(delay).await,
            super::Next::Unreachable => return Err(e),
            super::Next::Busy => return Ok(GroupAttempt::Busy),
            super::Next::Refused(reason) => return Ok(GroupAttempt::Refused(reason)),
            super::Next::Fatal(reason) => return Err(e.context(reason)),
        }
    }
}

/// How a group's transaction ended, once lost connections and contention
/// have been retried.
enum GroupAttempt {
    Done(Vec<WriteResult>),
    /// A claim timed out on a lock, or kept deadlocking.
    Busy,
    /// PostgreSQL refused the data (see [`super::WriteFault::Refused`]).
    Refused(String),
    /// The transaction lost its connection
    /// [`super::LOSES_ITS_CONNECTION_AFTER`] times while new ones opened:
    /// something in it ends its backend (why: the last loss).
    LosesItsConnection(String),
    /// PostgreSQL did not finish the transaction in time; its connection was
    /// dropped. Its claims may still be held by the stopped backend, so
    /// retrying the files now would only wait on them: they are left for a
    /// later pass.
    Stalled(anyhow::Error),
}

/// Writes a group of files, isolating failures: a group that fails for any
/// reason but a lost connection (or that loses its connections itself,
/// [`super::LOSES_ITS_CONNECTION_AFTER`]) is retried file by file, so good files
/// commit and the failure is reported against the one file that caused it.
/// A file PostgreSQL refuses on its own is recorded in the ledger as
/// `failed` with the database's reason, in a transaction of its own; a file
/// whose claim another worker holds is reported busy. An error means the
/// database is unreachable.
pub async fn write_with_reconnect(
    pool: &deadpool_postgres::Pool,
    patience: super::Patience,
    streak: &super::StallStreak,
    plans: &[&WritePlan],
) -> anyhow::Result<Vec<WriteResult>> {
    let outcome = attempt(pool, patience, plans).await?;
    match outcome {
        GroupAttempt::Stalled(e) => {
            streak.stalled(e, plans.len())?;
            return Ok(vec![WriteResult::Busy; plans.len()]);
        }
        _ => streak.answered(),
    }
    if let GroupAttempt::Done(results) = outcome {
        return Ok(results);
    }
    if plans.len() > 1 {
        tracing::debug!(
            "a group of {} files failed; retrying file by file",
            plans.len()
        );
        let mut results = Vec::with_capacity(plans.len());
        for p in plans {
            results.extend(Box::pin(write_with_reconnect(pool, patience, streak, &[*p])).await?);
        }
        return Ok(results);
    }
    let plan = plans[0];
    let reason = match outcome {
        GroupAttempt::Refused(reason) => reason,
        GroupAttempt::LosesItsConnection(why) => {
            super::left_for_next_pass(&plan.key, &why);
            return Ok(vec![WriteResult::Busy]);
        }
        _ => return Ok(vec![WriteResult::Busy]),
    };
    tracing::warn!(
        "{}: {reason}; recording it as failed",
        crate::report::short_key(&plan.key)
    );
    let failed = plan.as_failed(&reason);
    Ok(vec![match attempt(pool, patience, &[&failed]).await? {
        GroupAttempt::Done(r) => match r.into_iter().next() {
            Some(WriteResult::Committed) => WriteResult::Failed(reason),
            Some(other) => other,
            None => WriteResult::Busy,
        },
        GroupAttempt::Busy => WriteResult::Busy,
        GroupAttempt::LosesItsConnection(why) => {
            super::left_for_next_pass(&plan.key, &why);
            WriteResult::Busy
        }
        GroupAttempt::Stalled(e) => {
            streak.stalled(e, 1)?;
            WriteResult::Busy
        }
        GroupAttempt::Refused(again) => WriteResult::Unrecorded(format!(
            "{reason}; recording it as failed was refused too: {again}"
        )),
    }])
}

/// A plan waiting for a writer, and since when.
pub struct Queued {
    pub plan: WritePlan,
    pub since: tokio::time::Instant,
}

impl From<WritePlan> for Queued {
    /// Queued now.
    fn from(plan: WritePlan) -> Self {
        Queued {
            plan,
            since: tokio::time::Instant::now(),
        }
    }
}

/// Writes every plan `plans` yields with `writers` concurrent writers,
/// each committing up to `per_tx` files (and [`ledger::GROUP_ROWS`] rows)
/// a transaction, and hands each plan and its result to `done`. A group
/// is what is waiting when a writer is free; when that is fewer than
/// [`ledger::GATHER_ROWS`] rows, the writer waits for more until
/// [`ledger::GATHER_WAIT`] after the first of them was queued, never past
/// the end of the fetching, and not while a fetched file waits for
/// `budget` (the files it would wait for hold the budget until they
/// commit, so none could come): a file waits a bounded moment for company,
/// never for a group to fill. The moment counts from its arrival: a file
/// that queued behind busy writers has had its company arrive with it.
pub async fn write_all(
    pool: &deadpool_postgres::Pool,
    patience: super::Patience,
    plans: tokio::sync::mpsc::Receiver<Queued>,
    writers: usize,
    per_tx: usize,
    budget: &crate::bucket::budget::Budget,
    done: impl Fn(WritePlan, WriteResult),
) -> anyhow::Result<()> {
    let plans = tokio::sync::Mutex::new(plans);
    let streak = super::StallStreak::default();
    let writer = || async {
        loop {
            let group = {
                let mut rx = plans.lock().await;
                let Some(first) = rx.recv().await else {
                    return Ok::<_, anyhow::Error>(());
                };
                let gather_until = first.since + ledger::GATHER_WAIT;
                let mut rows = first.plan.rows();
                let mut group = vec![first.plan];
                while group.len() < per_tx.max(1) && rows < ledger::GROUP_ROWS {
                    let next = if rows < ledger::GATHER_ROWS {
                        tokio::select! {
                            biased;
                            // Closed (`None`) or the deadline passed: write what is here.
                            next = tokio::time::timeout_at(gather_until, rx.recv()) => {
                                next.ok().flatten()
                            }
                            () = budget.until_starved() => rx.try_recv().ok(),
                        }
                    } else {
                        rx.try_recv().ok()
                    };
                    match next {
                        Some(p) => {
                            rows += p.plan.rows();
                            group.push(p.plan);
                        }
                        None => break,
                    }
                }
                group
            };
            let refs: Vec<&WritePlan> = group.iter().collect();
            tracing::trace!(
                files = refs.len(),
                rows = refs.iter().map(|p| p.rows()).sum::<u64>(),
                "writing a group"
            );
            let results = write_with_reconnect(pool, patience, &streak, &refs)
                .await
                .map_err(|e| match &refs[..] {
                    [one] => e.context(format!("writing {}", crate::report::short_key(&one.key))),
                    _ => e,
                })?;
            tracing::trace!(files = group.len(), "group written");
            for (plan, r) in group.into_iter().zip(results) {
                done(plan, r);
            }
        }
    };
    futures::future::try_join_all((0..writers.max(1)).map(|_| writer())).await?;
    Ok(())
}

/// The pool's first connection, opened to fail fast: a database that is
/// gone ends the pass here, in one line with the server's own words
/// (deadpool and tokio-postgres alone print "db error").
pub async fn first_connection(
    pool: &deadpool_postgres::Pool,
) -> anyhow::Result<deadpool_postgres::Object> {
    pool.get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {}", crate::error::chain(&e)))
}

/// Opens the pool's connections beside `first` (the one a pass opens to
/// fail fast) and prepares on each what a group's write sends, all at
/// once, while the pass waits for the listing and the first bodies. A
/// backend's start, its authentication and its first statements cost the
/// same CPU either way, but here they cost it while the cores would
/// otherwise idle, not once the bodies are in and every core is parsing
/// and writing. Not when the first key arrives either: the GETs' TLS
/// handshakes take the cores then, and backends starting beside them
/// delayed every first byte (3 % slower a pass, measured). Each
/// connection goes back to the pool as soon as it is ready, so one slow to
/// open holds back no writer (every `get` starts its own connection at
/// once, none waits for another's). Never fails: a connection that cannot
/// be opened now is left for the writer that needs it, whose retries and
/// errors decide.
pub async fn warm(
    pool: &deadpool_postgres::Pool,
    first: deadpool_postgres::Object,
    size: usize,
    write: ledger::WriteStrategy,
    patience: super::Patience,
) {
    let prepare = |c: deadpool_postgres::Object| async move {
        super::transaction::prepare_ahead(&c, write, patience.base).await;
    };
    let more = (1..size).map(|_| async {
        match pool.get().await {
            Ok(c) => prepare(c).await,
            Err(e) => tracing::debug!("opening a writer's connection ahead: {e}"),
        }
    });
    futures::future::join(prepare(first), futures::future::join_all(more)).await;
}

/// See [`super::transaction::recorded`]. A check PostgreSQL does not
/// answer within `patience.base` drops its connection and answers "not
/// recorded": the write that follows decides.
pub async fn recorded(
    pool: &deadpool_postgres::Pool,
    patience: super::Patience,
    key: &str,
) -> Option<WriteResult> {
    let c = pool.get().await.ok()?;
    match super::transaction::recorded(&c, key, patience.base).await {
        Ok(recorded) => recorded,
        Err(e) => {
            if super::warn_if_stalled(&e) {
                drop(deadpool_postgres::Object::take(c));
            }
            None
        }
    }
}

/// A pool of `size` connections (deadpool-postgres), each session
/// starting with [`super::SESSION_OPTIONS`]. Opening a connection is
/// bounded by `patience.base`: a server that accepts the TCP connection
/// but never answers the startup (a stopped postmaster) would otherwise
/// hold `get` forever.
pub fn pool(
    url: &str,
    size: usize,
    patience: super::Patience,
) -> anyhow::Result<deadpool_postgres::Pool> {
    let cfg = super::session_config(url)?;
    let create_timeout = super::connect::search_limit(&cfg, patience.base);
    let mgr = deadpool_postgres::Manager::from_connect(
        cfg,
        super::connect::PoolConnect(super::tls::connector()?),
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(mgr)
        .max_size(size)
        .create_timeout(Some(create_timeout))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the connection pool")
}
