//! Applies the SQL files in `migrations/` (embedded at build time) with
//! refinery, under an advisory lock so that workers starting together do
//! not race to create the same tables.

use anyhow::Context;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary, fixed: every bucketbench process must agree on it.
const MIGRATION_LOCK: i64 = 0x6275_636b_6574; // "bucket"

pub fn migrate(client: &mut postgres::Client) -> anyhow::Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .context("taking the migration lock")?;
    let result = embedded::migrations::runner()
        .run(client)
        .context("applying migrations/");
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result.map(|_| ())
}
