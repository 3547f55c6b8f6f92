//! Sends a [`WritePlan`] over `tokio-postgres`, one transaction per file:
//! the async twin of [`super::sync_writer`].

use anyhow::Context;
use futures::SinkExt as _;

use super::ledger::{self, WritePlan, WriteResult};

pub async fn write_file(
    client: &mut tokio_postgres::Client,
    plan: &WritePlan,
) -> anyhow::Result<WriteResult> {
    let tx = client
        .transaction()
        .await
        .context("beginning a transaction")?;
    let claimed = tx
        .execute(ledger::CLAIM, &plan.claim_params())
        .await
        .context("claiming the key in the ledger")?;
    if claimed == 0 {
        tx.rollback().await.context("rolling back")?;
        return Ok(WriteResult::AlreadyLoaded);
    }
    for batch in &plan.copies {
        let sink = tx
            .copy_in(batch.sql)
            .await
            .with_context(|| format!("starting {}", batch.sql))?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::copy_from_slice(&batch.data))
            .await
            .context("sending COPY data")?;
        sink.finish()
            .await
            .with_context(|| format!("finishing {}", batch.sql))?;
    }
    for st in &plan.statements {
        let prepared = tx
            .prepare(st.sql)
            .await
            .with_context(|| format!("preparing {}", st.sql))?;
        for row in &st.rows {
            tx.execute(&prepared, &super::statements::refs(row))
                .await
                .with_context(|| format!("executing {}", st.sql))?;
        }
    }
    tx.commit().await.context("committing")?;
    Ok(WriteResult::Committed)
}

/// Writes a file on a pooled connection, retrying on a fresh one with
/// backoff when the connection is lost (the pool drops closed clients).
pub async fn write_with_reconnect(
    pool: &deadpool_postgres::Pool,
    plan: &WritePlan,
) -> anyhow::Result<WriteResult> {
    let mut attempt = 0;
    loop {
        let result = match pool.get().await {
            Ok(mut client) => write_file(&mut client, plan).await,
            Err(e) => Err(anyhow::anyhow!("getting a database connection: {e}")),
        };
        match result {
            Ok(r) => return Ok(r),
            Err(e)
                if super::is_connection_lost(&e)
                    || e.to_string().starts_with("getting a database connection") =>
            {
                attempt += 1;
                let Some(delay) = super::reconnect_delay(attempt) else {
                    return Err(e);
                };
                tracing::warn!(
                    "database connection lost ({}); reconnecting",
                    crate::report::chain(&e)
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
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
