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

/// The columns of the tables the loads write, as the database has them
/// now (table, column, type; a domain as its base type, as
/// `information_schema.columns.udt_name` gives it), for
/// [`altered_columns`]. Read from the catalogs, not from
/// `information_schema`, whose views took a fresh backend milliseconds to
/// plan: this check runs before every pass's listing.
pub const COLUMNS_QUERY: &str = "SELECT c.relname::text, a.attname::text, \
     coalesce(b.typname, t.typname)::text \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     LEFT JOIN pg_catalog.pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype \
     WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema()) \
     AND c.relname IN ('songs', 'movies', 'apps', 'rejected_records') \
     AND a.attnum > 0 AND NOT a.attisdropped";

/// What was altered by hand in a migrated database, in one line, when a
/// column the loads write is gone or has another type: every file would
/// otherwise be refused, one by one and for good, and the binary rows
/// blamed (`year` made `text` read as "invalid byte sequence … 0x00").
/// `found` is [`COLUMNS_QUERY`]'s rows.
pub fn altered_columns(found: &[(String, String, String)]) -> Option<String> {
    let problems: Vec<String> = crate::db::copy::written_columns()
        .into_iter()
        .filter_map(|(table, column, udt)| {
            match found.iter().find(|(t, c, _)| t == table && c == column) {
                None => Some(format!("{table}.{column} is gone")),
                Some((_, _, had)) if had != udt => {
                    Some(format!("{table}.{column} is {had}, not {udt}"))
                }
                Some(_) => None,
            }
        })
        .collect();
    (!problems.is_empty()).then(|| {
        format!(
            "the tables were altered after the migrations made them ({}): every file would be refused; restore the columns, or load into a database of its own",
            problems.join(", ")
        )
    })
}

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

/// The database was migrated by a newer bucketbench than this one: its
/// history holds a migration this build does not embed. Refinery would say
/// the migration "is missing from the filesystem", which sends a user
/// looking for a file; and nothing this build can do will change it, so
/// `ingest --watch` stops on it instead of retrying every interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaTooNew {
    /// The newest migration the database has applied (version, name).
    pub database: (i64, String),
    /// The newest this build embeds.
    pub latest: (i64, String),
}

impl std::fmt::Display for SchemaTooNew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database's schema is at migration V{} ({}), newer than this bucketbench's \
             newest, V{} ({}): a newer release migrated it; run that release or a later one \
             against this database",
            self.database.0, self.database.1, self.latest.0, self.latest.1
        )
    }
}

impl std::error::Error for SchemaTooNew {}

/// [`SchemaTooNew`] when `applied` (the rows of [`HISTORY_QUERY`]) holds a
/// version above every embedded migration.
pub fn too_new(applied: &[(i32, String, String)]) -> Option<SchemaTooNew> {
    let runner = embedded::migrations::runner();
    let latest = runner
        .get_migrations()
        .iter()
        .max_by_key(|m| m.version())
        .map(|m| (i64::from(m.version()), m.name().to_string()))?;
    let newest = applied.iter().max_by_key(|(v, _, _)| *v)?;
    let database = i64::from(newest.0);
    (database > latest.0).then(|| SchemaTooNew {
        database: (database, newest.1.clone()),
        latest,
    })
}

pub fn migrate(client: &mut postgres::Client) -> anyhow::Result<()> {
    migrate_to(client, None)
}

/// Applies the migrations up to `version` (all when `None`). Tests use a
/// version to build a database at an older schema and prove the newer
/// migrations upgrade it in place.
pub fn migrate_to(client: &mut postgres::Client, version: Option<i32>) -> anyhow::Result<()> {
    check_encoding(client)?;
    // Sessions start with a short lock timeout (see `SESSION_OPTIONS`), but
    // waiting here for another worker's migration, or a migration waiting for
    // a table lock, is expected: as long as a migration takes, and bounded
    // all the same. A client that gives up (its deadline, see
    // `Patience::startup`) must not leave its backend waiting for the lock
    // for good: the wait ends on the server after `MIGRATION_WAIT`, and a
    // backend whose client has gone notices within seconds (PostgreSQL 14+;
    // older servers ignore the setting). A worker stopped in the middle of
    // its migration is idle in its transaction, and the session's 60 s
    // idle-in-transaction timeout frees the lock it holds.
    client
        .batch_execute(&format!(
            "SET lock_timeout = '{}s'",
            MIGRATION_WAIT.as_secs()
        ))
        .context("preparing to migrate")?;
    let _ = client.batch_execute("SET client_connection_check_interval = '2s'");
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
    // The migration's own error first: a session the server ended (a
    // worker stopped past the idle timeout) fails the reset too, and that
    // line would hide why.
    result.map_err(|e| {
        if client.is_closed() {
            e.context("the session ended while migrating (a worker stopped for over a minute inside its migration is cut off by the server); run the pass again")
        } else {
            e
        }
    })?;
    // Back to the session's own settings.
    client
        .batch_execute("RESET lock_timeout")
        .context("after migrating")?;
    let _ = client.batch_execute("RESET client_connection_check_interval");
    Ok(())
}

/// The longest the server waits, in a migration, for the migration lock
/// or a table's lock: twice the default deadline a pass gives itself to
/// connect and migrate.
pub const MIGRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Refuses a database whose encoding is not UTF-8, in one line: its text
/// columns cannot hold every script a file may carry, and each file with
/// one such title would be refused whole (22P05), where the contract
/// refuses only the record a column cannot hold.
fn check_encoding(client: &mut postgres::Client) -> anyhow::Result<()> {
    let encoding: String = client
        .query_one("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()", &[])
        .context("reading the database's encoding")?
        .get(0);
    anyhow::ensure!(
        encoding == "UTF8",
        "the database's encoding is {encoding}; bucketbench loads text of any script and needs a UTF8 database (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)"
    );
    Ok(())
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

    #[test]
    fn only_a_history_past_the_newest_migration_is_too_new() {
        let all = applied();
        assert_eq!(too_new(&all), None);
        assert_eq!(too_new(&[]), None, "a fresh database");
        assert_eq!(too_new(&all[..1]), None, "an old database");
        let (v, name, _) = all.last().unwrap().clone();
        let mut newer = all;
        newer.push((v + 1, "from_a_newer_binary".into(), "1".into()));
        let e = too_new(&newer).expect("a newer binary migrated it");
        assert_eq!(e.database, (i64::from(v + 1), "from_a_newer_binary".into()));
        assert_eq!(e.latest, (i64::from(v), name));
        let line = e.to_string();
        assert!(line.contains("newer than this bucketbench"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}
