//! Sends a [`WritePlan`] over the synchronous `postgres` client, one
//! transaction per file.

use std::io::Write;

use anyhow::Context;

use super::copy;
use super::ledger::{self, WritePlan, WriteResult};

/// A synchronous connection and the statements it has prepared.
///
/// The claim, the "loaded meanwhile?" check, the COPY statements and the
/// `insert`/`batch` statements are sent once per file. Prepared once per
/// connection, each costs the server a bind and an execution instead of a
/// parse, a plan and an extra round trip (the `async` writers get the same
/// from deadpool's statement cache), so the models differ in how they
/// schedule IO, not in what each statement costs. A reconnect starts a new
/// `Connection`, so no statement outlives the session that prepared it.
pub struct Connection {
    client: postgres::Client,
    prepared: std::collections::HashMap<&'static str, postgres::Statement>,
}

impl Connection {
    pub fn open(url: &str) -> anyhow::Result<Self> {
        Ok(Connection {
            client: super::connect_sync(url)?,
            prepared: Default::default(),
        })
    }

    /// The connection itself, for statements sent once a pass.
    pub fn client(&mut self) -> &mut postgres::Client {
        &mut self.client
    }

    fn prepared_all(
        &mut self,
        sqls: impl Iterator<Item = &'static str>,
    ) -> anyhow::Result<Vec<postgres::Statement>> {
        sqls.map(|sql| {
            self.prepared(sql)
                .with_context(|| format!("preparing {sql}"))
        })
        .collect()
    }

    fn prepared(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.prepared.insert(sql, st.clone());
        Ok(st)
    }
}

pub fn write_file(conn: &mut Connection, plan: &WritePlan) -> anyhow::Result<WriteResult> {
    let claim = conn
        .prepared(ledger::CLAIM)
        .context("preparing the ledger claim")?;
    let statements = conn.prepared_all(plan.statements.iter().map(|st| st.sql))?;
    let copies = conn.prepared_all(plan.copies.iter().map(|batch| batch.sql))?;
    let mut tx = conn
        .client
        .transaction()
        .context("beginning a transaction")?;
    let claimed = tx
        .execute(&claim, &plan.claim_params())
        .context("claiming the key in the ledger")?;
    if claimed == 0 {
        tx.rollback().context("rolling back")?;
        return Ok(WriteResult::AlreadyLoaded);
    }
    for (batch, prepared) in plan.copies.iter().zip(&copies) {
        let mut w = tx
            .copy_in(prepared)
            .with_context(|| format!("starting {}", batch.sql))?;
        w.write_all(copy::HEADER)
            .and_then(|()| w.write_all(&batch.data))
            .and_then(|()| w.write_all(copy::TRAILER))
            .context("sending COPY data")?;
        w.finish()
            .with_context(|| format!("finishing {}", batch.sql))?;
    }
    for (st, prepared) in plan.statements.iter().zip(&statements) {
        for row in &st.rows {
            tx.execute(prepared, &super::statements::refs(row))
                .with_context(|| format!("executing {}", st.sql))?;
        }
    }
    tx.commit().context("committing")?;
    Ok(WriteResult::Committed)
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
fn attempt(conn: &mut Connection, url: &str, plan: &WritePlan) -> anyhow::Result<Attempt> {
    let mut retries = super::Retries::default();
    loop {
        let e = match write_file(conn, plan) {
            Ok(r) => return Ok(Attempt::Done(r)),
            Err(e) => e,
        };
        let fault = if conn.client.is_closed() {
            super::WriteFault::ConnectionLost
        } else {
            super::classify(&e)
        };
        let lost = fault == super::WriteFault::ConnectionLost;
        match retries.next(fault, &e) {
            super::Next::Retry(delay) => {
                if !lost {
                    tracing::debug!(
                        "{}: {}; retrying",
                        crate::report::short_key(&plan.key),
                        crate::error::chain(&*e)
                    );
                }
                std::thread::sleep(delay);
                if lost && let Ok(c) = Connection::open(url) {
                    *conn = c;
                }
            }
            super::Next::Unreachable => return Err(e),
            super::Next::Busy => return Ok(Attempt::Done(WriteResult::Busy)),
            super::Next::Refused(reason) => return Ok(Attempt::Refused(reason)),
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
    url: &str,
    plan: &WritePlan,
) -> anyhow::Result<WriteResult> {
    let reason = match attempt(conn, url, plan)? {
        Attempt::Done(r) => return Ok(r),
        Attempt::Refused(reason) => reason,
    };
    tracing::warn!(
        "{}: {reason}; recording it as failed",
        crate::report::short_key(&plan.key)
    );
    Ok(match attempt(conn, url, &plan.as_failed(&reason))? {
        Attempt::Done(WriteResult::Committed) => WriteResult::Failed(reason),
        Attempt::Done(other) => other,
        Attempt::Refused(again) => WriteResult::Unrecorded(format!(
            "{reason}; recording it as failed was refused too: {again}"
        )),
    })
}

/// See [`ledger::LOADED`]. A lost connection is not an error here: the
/// write that follows reconnects or reports it.
pub fn already_loaded(conn: &mut Connection, key: &str) -> bool {
    conn.prepared(ledger::LOADED)
        .and_then(|loaded| conn.client.query_one(&loaded, &[&key]))
        .is_ok_and(|r| r.get(0))
}

/// A listed key the ledger already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The ETag (version) recorded when it was processed.
    pub etag: Option<String>,
    /// Recorded `failed` (not JSON, too large…) rather than `loaded`.
    pub failed: bool,
}

/// Subtracts what the ledger holds from a listing, noting the keys as seen.
/// Returns the keys already in the ledger with their stored ETags and
/// whether they were recorded as failed.
///
/// A key holding U+0000 cannot be in the ledger (text cannot hold it) and
/// would make PostgreSQL refuse the whole chunk, so it is left out here and
/// refused on its own when the model tries to record it. [`ledger::SEEN`]
/// cannot deadlock; a serialization failure or deadlock from elsewhere is
/// still retried with a bounded backoff.
pub fn seen_keys(
    client: &mut postgres::Client,
    keys: &[String],
) -> anyhow::Result<std::collections::HashMap<String, Held>> {
    let mut seen = std::collections::HashMap::new();
    let storable: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| !k.contains('\0'))
        .collect();
    for chunk in storable.chunks(ledger::SEEN_CHUNK) {
        let mut contended = 0;
        let rows = loop {
            match client.query(ledger::SEEN, &[&chunk]) {
                Ok(rows) => break rows,
                Err(e) => {
                    let e = anyhow::Error::new(e);
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
