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
    migrate_to(client, None)
}

/// Applies the migrations up to `version` (all when `None`). Tests use a
/// version to build a database at an older schema and prove the newer
/// migrations upgrade it in place.
pub fn migrate_to(client: &mut postgres::Client, version: Option<i32>) -> anyhow::Result<()> {
    // Sessions start with a short lock timeout (see `SESSION_OPTIONS`), but
    // waiting here for another worker's migration, or a migration waiting for
    // a table lock, is expected and as long as the migration takes.
    client
        .batch_execute("SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .context("preparing to migrate")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .context("taking the migration lock")?;
    // Grouped: every pending migration and its history row in ONE
    // transaction. Ungrouped, refinery commits a migration and then, in a
    // second transaction, its history row, so a process killed between the
    // two leaves V2 applied but unrecorded, and every later run fails
    // re-applying it (tests/reliability.rs kills ingest at such moments).
    let mut runner = embedded::migrations::runner().set_grouped(true);
    if let Some(v) = version {
        runner = runner.set_target(refinery::Target::Version(v));
    }
    let result = runner.run(client).context("applying migrations/");
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    // Back to the session's own settings.
    client
        .batch_execute("RESET lock_timeout; RESET idle_in_transaction_session_timeout")
        .context("after migrating")?;
    result.map(|_| ())
}
