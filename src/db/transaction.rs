//! The one transaction every model sends: claims, COPYs (or statements),
//! commit, for one file or a group of files; and the "loaded meanwhile?"
//! check every model sends before fetching a file. The `async` writers run it on
//! pooled connections (`async_writer`), the blocking models through
//! `sync_writer::Connection`, so the models differ only in how they
//! schedule it.

use anyhow::Context;
use futures::SinkExt as _;

use super::copy;
use super::ledger::{self, WritePlan, WriteResult};

/// The context of a failed `BEGIN`: the connection was lost before the
/// transaction began (a pooled connection the server had already closed),
/// so the transaction is not to blame ([`began`]).
const BEGINNING: &str = "beginning a transaction";

/// Whether `e`, a failed [`write_group`], came after its transaction
/// began: only then may a lost connection be the transaction's doing
/// ([`super::LOSES_ITS_CONNECTION_AFTER`]).
pub fn began(e: &anyhow::Error) -> bool {
    !e.chain().any(|c| c.to_string() == BEGINNING)
}

/// Writes a group of files in one transaction: their claims (pipelined, in
/// key order), one COPY per table for the rows of every file it claimed,
/// and the commit. Returns each plan's result, in the order given.
///
/// Group commit: on a small file the per-transaction round trips and
/// PostgreSQL's per-statement work cost more than its rows, so a group of
/// 32 costs little more than one. Each file still commits whole or not at
/// all; it merely shares its commit. Claims go in key order so that two
/// workers claiming overlapping groups cannot deadlock.
///
/// Every round trip is bounded by `patience`: `base` for each statement,
/// plus [`super::Patience::PER_ROW`] for each row of a COPY or a batch.
/// The bound is per step, not per transaction, so a file of any size
/// written row by row (`--write insert`) is never cut short while the
/// server keeps answering; a step past its bound is [`super::is_stalled`],
/// and the caller must drop the connection.
pub async fn write_group(
    client: &mut deadpool_postgres::ClientWrapper,
    plans: &[&WritePlan],
    patience: super::Patience,
) -> anyhow::Result<Vec<WriteResult>> {
    use super::within;
    let step = patience.base;
    let tx = within(step, "the start of a transaction", client.transaction())
        .await
        .context(BEGINNING)?;
    let claim = within(step, "a statement", tx.prepare_cached(ledger::CLAIM))
        .await
        .context("preparing the ledger claim")?;
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by(|&a, &b| plans[a].key.cmp(&plans[b].key));
    let params: Vec<_> = order.iter().map(|&i| plans[i].claim_params()).collect();
    // Awaited together, tokio-postgres sends them in one pipeline.
    let claims = futures::future::try_join_all(params.iter().map(|p| tx.execute(&claim, &p[..])));
    let claimed = within(step, "the ledger claims", claims)
        .await
        .context("claiming the keys in the ledger")?;
    let mut results = vec![WriteResult::AlreadyLoaded; plans.len()];
    for (&i, n) in order.iter().zip(&claimed) {
        if *n == 1 {
            results[i] = WriteResult::Committed;
        }
    }
    let theirs: Vec<&str> = plans
        .iter()
        .zip(&results)
        .filter(|(_, r)| **r == WriteResult::AlreadyLoaded)
        .map(|(p, _)| p.key.as_str())
        .collect();
    if !theirs.is_empty() {
        // A new snapshot: it sees the rows the claims waited on.
        let failed = within(
            step,
            "a statement",
            tx.query(ledger::FAILED_AMONG, &[&theirs]),
        )
        .await
        .context("reading how other workers recorded the keys they claimed")?;
        for row in failed {
            let key: &str = row.get(0);
            for (p, r) in plans.iter().zip(results.iter_mut()) {
                if p.key == key {
                    *r = WriteResult::FailedEarlier;
                }
            }
        }
    }
    let mine: Vec<&WritePlan> = plans
        .iter()
        .zip(&results)
        .filter(|(_, r)| **r == WriteResult::Committed)
        .map(|(p, _)| *p)
        .collect();
    if mine.is_empty() {
        within(step, "a rollback", tx.rollback())
            .await
            .context("rolling back")?;
        return Ok(results);
    }
    let rows = patience.for_rows(mine.iter().map(|p| p.rows()).sum());
    for (sql, batches) in ledger::merged_copies(&mine) {
        let copy_in = within(step, "a statement", tx.prepare_cached(sql))
            .await
            .with_context(|| format!("preparing {sql}"))?;
        let sink = within(step, "the start of a COPY", tx.copy_in(&copy_in))
            .await
            .with_context(|| format!("starting {sql}"))
            .map_err(|e| {
                // The server's own error stays in the chain, for classify.
                if super::is_stalled(&e) {
                    e
                } else {
                    e.context(crate::error::DbError::Desynced)
                }
            })?;
        let send = async {
            futures::pin_mut!(sink);
            let data = batches.iter().flat_map(|b| sent_in_pieces(&b.data));
            let chunks = std::iter::once(bytes::Bytes::from_static(copy::HEADER))
                .chain(data)
                .chain([bytes::Bytes::from_static(copy::TRAILER)]);
            for chunk in chunks {
                sink.feed(chunk).await.context("sending COPY data")?;
            }
            sink.finish()
                .await
                .with_context(|| format!("finishing {sql}"))
        };
        within(rows, "a COPY", send).await?;
    }
    for st in mine.iter().flat_map(|p| &p.statements) {
        let prepared = within(step, "a statement", tx.prepare_cached(st.sql))
            .await
            .with_context(|| format!("preparing {}", st.sql))?;
        for row in &st.rows {
            within(
                rows,
                "a statement",
                tx.execute(&prepared, &super::statements::refs(row)),
            )
            .await
            .with_context(|| format!("executing {}", st.sql))?;
        }
    }
    within(step, "a commit", tx.commit())
        .await
        .context("committing")?;
    Ok(results)
}

/// The most COPY data sent in one message. tokio-postgres copies each
/// message into its connection's write buffer, which keeps the size of the
/// largest it has held: a group's whole table in one message made that
/// buffer megabytes of fresh memory on every connection, each page faulted
/// in once, where pieces of this size reuse the same few pages.
const COPY_PIECE: usize = 64 * 1024;

/// A file's COPY data as messages of at most [`COPY_PIECE`] bytes, shared
/// with the plan (a refused group is retried file by file), not copied.
fn sent_in_pieces(data: &std::sync::Arc<Vec<u8>>) -> impl Iterator<Item = bytes::Bytes> + '_ {
    let whole = bytes::Bytes::from_owner(Shared(std::sync::Arc::clone(data)));
    (0..data.len())
        .step_by(COPY_PIECE)
        .map(move |at| whole.slice(at..(at + COPY_PIECE).min(whole.len())))
}

/// A plan's COPY data as the owner of the [`bytes::Bytes`] that send it.
struct Shared(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Prepares on `client` the statements a group written with `write`
/// sends first (the claim, and for COPY each data table's COPY), each
/// within `limit`, so a writer opened while the pass waits on the network
/// has its statements parsed and its tables' catalog entries read before
/// the first file arrives. A failure is left for the write to meet.
pub async fn prepare_ahead(
    client: &deadpool_postgres::ClientWrapper,
    write: ledger::WriteStrategy,
    limit: std::time::Duration,
) {
    let copies: &[&str] = match write {
        ledger::WriteStrategy::Copy => &[copy::SONGS, copy::MOVIES, copy::APPS],
        _ => &[],
    };
    for sql in std::iter::once(ledger::CLAIM).chain(copies.iter().copied()) {
        if let Err(e) = super::within(limit, "a statement", client.prepare_cached(sql)).await {
            tracing::debug!("preparing ahead: {}", crate::error::chain(&*e));
            return;
        }
    }
}

/// See [`ledger::RECORDED`], within `limit`: `None` when the ledger does
/// not hold the key, else [`WriteResult::AlreadyLoaded`] or
/// [`WriteResult::FailedEarlier`]. Prepared once per connection: asked once
/// per file, an unprepared query cost a second round trip and a fresh plan
/// each time (docs/performance.md, "Costs per file").
pub async fn recorded(
    client: &deadpool_postgres::ClientWrapper,
    key: &str,
    limit: std::time::Duration,
) -> anyhow::Result<Option<WriteResult>> {
    let check = async {
        let recorded = client.prepare_cached(ledger::RECORDED).await?;
        let row = client.query_opt(&recorded, &[&key]).await?;
        Ok::<_, anyhow::Error>(row.map(|r| match r.get(0) {
            true => WriteResult::FailedEarlier,
            false => WriteResult::AlreadyLoaded,
        }))
    };
    super::within(limit, "the ledger check", check).await
}
