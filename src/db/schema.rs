//! Applies the SQL files in `migrations/` (embedded at build time) with
//! refinery, under an advisory lock so that workers starting together do
//! not race to create the same tables.

use anyhow::Context;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary, fixed: every bucketbench process must agree on it.
const MIGRATION_LOCK: i64 = 0x6275_636b_6574; // "bucket"

/// The migration history refinery keeps, in the order [`is_current`] reads it.
pub const HISTORY_QUERY: &str =
    "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version";

/// Whether `applied` (the rows of [`HISTORY_QUERY`]: version, name,
/// checksum) is exactly the embedded migrations, each as written: then a
/// pass has nothing to migrate, and needs neither the migration lock nor
/// the blocking connection refinery runs on. A backend costs the server
/// about 6 ms of CPU to start, as much as loading some 2,500 rows, so a
/// pass that checks on its own connection instead of opening one to
/// migrate saves that every time. Anything else (an older, newer or edited history) is not current,
/// and [`migrate`] decides, with refinery's own errors.
pub fn is_current(applied: &[(i32, String, String)]) -> bool {
    let runner = embedded::migrations::runner();
    let embedded = runner.get_migrations();
    applied.len() == embedded.len()
        && applied.iter().zip(embedded).all(|((v, name, sum), m)| {
            i64::from(*v) == i64::from(m.version())
                && name == m.name()
                && *sum == m.checksum().to_string()
        })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The history refinery writes after applying every embedded migration.
    fn applied() -> Vec<(i32, String, String)> {
        embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| {
                let version = i32::try_from(i64::from(m.version())).unwrap();
                (version, m.name().to_string(), m.checksum().to_string())
            })
            .collect()
    }

    #[test]
    fn only_the_exact_history_of_every_migration_is_current() {
        let all = applied();
        assert!(all.len() >= 4, "{all:?}");
        assert!(is_current(&all));
        assert!(!is_current(&[]), "a fresh database");
        assert!(!is_current(&all[..all.len() - 1]), "one migration behind");
        let mut newer = all.clone();
        newer.push((
            all.len() as i32 + 1,
            "from_a_newer_binary".into(),
            "1".into(),
        ));
        assert!(!is_current(&newer), "a newer binary migrated it");
        let mut edited = all.clone();
        edited[1].2 = "0".into();
        assert!(!is_current(&edited), "a migration edited after it ran");
        let mut renamed = all;
        renamed[0].1 = "other".into();
        assert!(!is_current(&renamed));
    }
}
