//! Sends a [`WritePlan`] over the synchronous `postgres` client, one
//! transaction per file.

use std::io::Write;

use anyhow::Context;

use super::ledger::{self, WritePlan, WriteResult};

pub fn write_file(client: &mut postgres::Client, plan: &WritePlan) -> anyhow::Result<WriteResult> {
    let mut tx = client.transaction().context("beginning a transaction")?;
    let claimed = tx
        .execute(ledger::CLAIM, &plan.claim_params())
        .context("claiming the key in the ledger")?;
    if claimed == 0 {
        tx.rollback().context("rolling back")?;
        return Ok(WriteResult::AlreadyLoaded);
    }
    for batch in &plan.copies {
        let mut w = tx
            .copy_in(batch.sql)
            .with_context(|| format!("starting {}", batch.sql))?;
        w.write_all(&batch.data).context("sending COPY data")?;
        w.finish()
            .with_context(|| format!("finishing {}", batch.sql))?;
    }
    for st in &plan.statements {
        let prepared = tx
            .prepare(st.sql)
            .with_context(|| format!("preparing {}", st.sql))?;
        for row in &st.rows {
            tx.execute(&prepared, &super::statements::refs(row))
                .with_context(|| format!("executing {}", st.sql))?;
        }
    }
    tx.commit().context("committing")?;
    Ok(WriteResult::Committed)
}

/// Writes a file, reconnecting and retrying when the connection is lost
/// (a restarted server), with backoff; other errors are returned at once.
pub fn write_with_reconnect(
    client: &mut postgres::Client,
    url: &str,
    plan: &WritePlan,
) -> anyhow::Result<WriteResult> {
    let mut attempt = 0;
    loop {
        match write_file(client, plan) {
            Ok(r) => return Ok(r),
            Err(e) if super::is_connection_lost(&e) || client.is_closed() => {
                attempt += 1;
                let Some(delay) = super::reconnect_delay(attempt) else {
                    return Err(e);
                };
                tracing::warn!(
                    "database connection lost ({}); reconnecting",
                    crate::error::chain(&*e)
                );
                std::thread::sleep(delay);
                if let Ok(c) = super::connect_sync(url) {
                    *client = c;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// See [`ledger::LOADED`]. A lost connection is not an error here: the
/// write that follows reconnects or reports it.
pub fn already_loaded(client: &mut postgres::Client, key: &str) -> bool {
    client
        .query_one(ledger::LOADED, &[&key])
        .is_ok_and(|r| r.get(0))
}

/// Subtracts what the ledger holds from a listing, noting the keys as seen.
/// Returns the keys already in the ledger with their stored ETags.
pub fn seen_keys(
    client: &mut postgres::Client,
    keys: &[String],
) -> anyhow::Result<std::collections::HashMap<String, Option<String>>> {
    let mut seen = std::collections::HashMap::new();
    for chunk in keys.chunks(ledger::SEEN_CHUNK) {
        for row in client
            .query(ledger::SEEN, &[&chunk])
            .context("reading the ledger")?
        {
            seen.insert(row.get(0), row.get(1));
        }
    }
    Ok(seen)
}
