//! Sends [`WritePlan`]s over `tokio-postgres` through a deadpool pool: the
//! async twin of [`super::sync_writer`], with group commit (several files
//! a transaction, each still whole or absent) for the `async` model.

use anyhow::Context;
use futures::SinkExt as _;

use super::ledger::{self, WritePlan, WriteResult};

/// Writes a group of files in one transaction: their claims (pipelined, in
/// key order), one COPY per table for the rows of every file it claimed,
/// and the commit. Returns each plan's result, in the order given.
///
/// Group commit: on a small file the per-transaction round trips and
/// PostgreSQL's per-statement work cost more than its rows, so a group of
/// 32 costs little more than one. Each file still commits whole or not at
/// all; it merely shares its commit. Claims go in key order so that two
/// workers claiming overlapping groups cannot deadlock.
pub async fn write_group(
    client: &mut deadpool_postgres::Client,
    plans: &[&WritePlan],
) -> anyhow::Result<Vec<WriteResult>> {
    let tx = client
        .transaction()
        .await
        .context("beginning a transaction")?;
    let claim = tx
        .prepare_cached(ledger::CLAIM)
        .await
        .context("preparing the ledger claim")?;
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by(|&a, &b| plans[a].key.cmp(&plans[b].key));
    let params: Vec<_> = order.iter().map(|&i| plans[i].claim_params()).collect();
    // Awaited together, tokio-postgres sends them in one pipeline.
    let claimed = futures::future::try_join_all(params.iter().map(|p| tx.execute(&claim, &p[..])))
        .await
        .context("claiming the keys in the ledger")?;
    let mut results = vec![WriteResult::AlreadyLoaded; plans.len()];
    for (&i, n) in order.iter().zip(&claimed) {
        if *n == 1 {
            results[i] = WriteResult::Committed;
        }
    }
    let mine: Vec<&WritePlan> = plans
        .iter()
        .zip(&results)
        .filter(|(_, r)| **r == WriteResult::Committed)
        .map(|(p, _)| *p)
        .collect();
    if mine.is_empty() {
        tx.rollback().await.context("rolling back")?;
        return Ok(results);
    }
    for batch in ledger::merged_copies(&mine) {
        let sink = tx
            .copy_in(batch.sql)
            .await
            .with_context(|| format!("starting {}", batch.sql))?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(batch.data))
            .await
            .context("sending COPY data")?;
        sink.finish()
            .await
            .with_context(|| format!("finishing {}", batch.sql))?;
    }
    for st in mine.iter().flat_map(|p| &p.statements) {
        let prepared = tx
            .prepare_cached(st.sql)
            .await
            .with_context(|| format!("preparing {}", st.sql))?;
        for row in &st.rows {
            tx.execute(&prepared, &super::statements::refs(row))
                .await
                .with_context(|| format!("executing {}", st.sql))?;
        }
    }
    tx.commit().await.context("committing")?;
    Ok(results)
}

/// Writes a group on a pooled connection, retrying on a fresh one with
/// backoff when the connection is lost (the pool drops closed clients).
/// Any other error in a group of several is retried file by file, so it is
/// reported against the one file that caused it.
pub async fn write_with_reconnect(
    pool: &deadpool_postgres::Pool,
    plans: &[&WritePlan],
) -> anyhow::Result<Vec<WriteResult>> {
    let mut attempt = 0;
    loop {
        let result = match pool.get().await {
            Ok(mut client) => write_group(&mut client, plans).await,
            Err(e) => Err(crate::error::DbError::PoolExhausted(e.to_string()).into()),
        };
        match result {
            Ok(r) => return Ok(r),
            Err(e)
                if super::is_connection_lost(&e)
                    || matches!(
                        e.downcast_ref::<crate::error::DbError>(),
                        Some(crate::error::DbError::PoolExhausted(_))
                    ) =>
            {
                attempt += 1;
                let Some(delay) = super::reconnect_delay(attempt) else {
                    return Err(e);
                };
                tracing::warn!(
                    "database connection lost ({}); reconnecting",
                    crate::error::chain(&*e)
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) if plans.len() > 1 => {
                tracing::debug!("group write failed ({e:#}); retrying file by file");
                let mut results = Vec::with_capacity(plans.len());
                for p in plans {
                    let r = Box::pin(write_with_reconnect(pool, &[*p]))
                        .await
                        .map_err(|e| e.context(format!("writing {}", p.key)))?;
                    results.extend(r);
                }
                return Ok(results);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes every plan `plans` yields with `writers` concurrent writers,
/// each committing up to `per_tx` files (and [`ledger::GROUP_ROWS`] rows)
/// a transaction, and hands each plan and its result to `done`. A group
/// is whatever is waiting when a writer is free, so files never wait for
/// a group to fill: under light load each goes alone.
pub async fn write_all(
    pool: &deadpool_postgres::Pool,
    plans: tokio::sync::mpsc::Receiver<WritePlan>,
    writers: usize,
    per_tx: usize,
    done: impl Fn(WritePlan, WriteResult),
) -> anyhow::Result<()> {
    let plans = tokio::sync::Mutex::new(plans);
    let writer = || async {
        loop {
            let group = {
                let mut rx = plans.lock().await;
                let Some(first) = rx.recv().await else {
                    return Ok::<_, anyhow::Error>(());
                };
                let mut rows = first.rows();
                let mut group = vec![first];
                while group.len() < per_tx.max(1) && rows < ledger::GROUP_ROWS {
                    match rx.try_recv() {
                        Ok(p) => {
                            rows += p.rows();
                            group.push(p);
                        }
                        Err(_) => break,
                    }
                }
                group
            };
            let refs: Vec<&WritePlan> = group.iter().collect();
            let results = write_with_reconnect(pool, &refs)
                .await
                .map_err(|e| match &refs[..] {
                    [one] => e.context(format!("writing {}", one.key)),
                    _ => e,
                })?;
            for (plan, r) in group.into_iter().zip(results) {
                done(plan, r);
            }
        }
    };
    futures::future::try_join_all((0..writers.max(1)).map(|_| writer())).await?;
    Ok(())
}

/// See [`ledger::LOADED`].
pub async fn already_loaded(pool: &deadpool_postgres::Pool, key: &str) -> bool {
    match pool.get().await {
        Ok(c) => c
            .query_one(ledger::LOADED, &[&key])
            .await
            .is_ok_and(|r| r.get(0)),
        Err(_) => false,
    }
}

/// A pool of `size` connections (deadpool-postgres).
pub fn pool(url: &str, size: usize) -> anyhow::Result<deadpool_postgres::Pool> {
    let cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("bad database URL {}: {e}", crate::secret::redact_url(url)))?;
    let mgr = deadpool_postgres::Manager::from_config(
        cfg,
        super::tls::connector()?,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(mgr)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the connection pool")
}
