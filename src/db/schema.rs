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

/// The tables a pass writes: the ledger and the four the COPYs fill
/// ([`COLUMNS_QUERY`]'s one parameter).
pub const WRITTEN_TABLES: [&str; 5] = [
    "processed_files",
    "songs",
    "movies",
    "apps",
    "rejected_records",
];

/// The columns of the tables the loads write, as the database has them
/// now, for [`altered_columns`]: one row per column, with the table's
/// kind (`pg_class.relkind`), the column's type (a domain as its base
/// type, through any number of domains; a type outside `pg_catalog`
/// named with its schema, so a `public.int4` is not taken for `int4`),
/// whether it is generated, whether an insert must give it (NOT NULL
/// with no default, identity or expression), and whether a valid unique
/// index covers it alone (the claim's `ON CONFLICT (key_sha256)`). Each table is found as the
/// loads' own statements find it, through the session's `search_path`
/// (`to_regclass`), not only in its first schema. Read from the
/// catalogs, not from `information_schema`, whose views took a fresh
/// backend milliseconds to plan: this check runs before every pass's
/// listing.
pub const COLUMNS_QUERY: &str = "WITH RECURSIVE cols AS ( \
     SELECT n.name AS tab, c.relkind::text AS kind, a.attname::text AS col, a.atttypid AS typ, \
     a.attgenerated <> '' AS generated, \
     a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' AS required, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique \
     AND i.indisvalid AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum \
     AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique_alone, \
     0 AS depth \
     FROM unnest($1::text[]) AS n(name) \
     JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(n.name) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     UNION ALL \
     SELECT tab, kind, col, t.typbasetype, generated, required, unique_alone, depth + 1 \
     FROM cols JOIN pg_catalog.pg_type t ON t.oid = cols.typ \
     WHERE t.typtype = 'd' AND depth < 32) \
     SELECT tab, kind, col, \
     CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN t.typname::text \
     ELSE t.typnamespace::regnamespace::text || '.' || t.typname::text END, \
     generated, required, unique_alone \
     FROM cols JOIN pg_catalog.pg_type t ON t.oid = cols.typ WHERE t.typtype <> 'd'";

/// One row of [`COLUMNS_QUERY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundColumn {
    pub table: String,
    /// `pg_class.relkind`: `r` a table, `p` partitioned, `v` a view...
    pub kind: String,
    pub column: String,
    pub udt: String,
    pub generated: bool,
    /// NOT NULL with no default: an insert that leaves it out is refused.
    pub required: bool,
    /// A valid unique index on this column alone, as `ON CONFLICT (col)`
    /// needs.
    pub unique_alone: bool,
}

impl FoundColumn {
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(FoundColumn {
            table: row.try_get(0)?,
            kind: row.try_get(1)?,
            column: row.try_get(2)?,
            udt: row.try_get(3)?,
            generated: row.try_get(4)?,
            required: row.try_get(5)?,
            unique_alone: row.try_get(6)?,
        })
    }
}

/// Every column the ledger's claim writes, as (table, column, type), in
/// [`super::ledger::CLAIM`]'s order (a unit test holds them to it).
fn ledger_columns() -> Vec<(&'static str, &'static str, &'static str)> {
    [
        ("key", "text"),
        ("etag", "text"),
        ("size_bytes", "int8"),
        ("status", "text"),
        ("reason", "text"),
        ("songs_rows", "int4"),
        ("movies_rows", "int4"),
        ("apps_rows", "int4"),
        ("rejected_count", "int4"),
        ("skipped_count", "int4"),
        ("model", "text"),
    ]
    .into_iter()
    .map(|(column, udt)| ("processed_files", column, udt))
    .collect()
}

/// What a relation of this `pg_class.relkind` is, when the loads cannot
/// write into it; `None` for a table (plain, partitioned or foreign).
fn unwritable_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "r" | "p" | "f" => None,
        "v" => Some("a view"),
        "m" => Some("a materialized view"),
        "S" => Some("a sequence"),
        "i" | "I" => Some("an index"),
        "c" => Some("a composite type"),
        _ => Some("not a table"),
    }
}

/// What was altered by hand in a migrated database, in one line, when a
/// table the loads write is gone or is not a table, or a column they
/// write is gone, has another type or is generated, or a column they do
/// not write must be given: every file would otherwise be refused, one by
/// one and for good, and the binary rows blamed (`year` made `text` read
/// as "invalid byte sequence … 0x00"). `found` is [`COLUMNS_QUERY`]'s rows.
pub fn altered_columns(found: &[FoundColumn]) -> Option<String> {
    let written: Vec<(&str, &str, &str)> = ledger_columns()
        .into_iter()
        .chain(crate::db::copy::written_columns())
        .collect();
    let mut problems = Vec::new();
    for table in WRITTEN_TABLES {
        let cols: Vec<&FoundColumn> = found.iter().filter(|f| f.table == table).collect();
        let Some(first) = cols.first() else {
            problems.push(format!("no table {table} on the search_path"));
            continue;
        };
        if let Some(what) = unwritable_kind(&first.kind) {
            problems.push(format!("{table} is {what}"));
            continue;
        }
        for &(_, column, udt) in written.iter().filter(|(t, _, _)| *t == table) {
            match cols.iter().find(|f| f.column == column) {
                None => problems.push(format!("{table}.{column} is gone")),
                // A `varchar` takes a text's binary COPY data as it is; a
                // length limit refuses only the files with longer values.
                Some(f) if f.udt != udt && !(udt == "text" && f.udt == "varchar") => {
                    problems.push(format!("{table}.{column} is {}, not {udt}", f.udt))
                }
                Some(f) if f.generated => {
                    problems.push(format!("{table}.{column} is a generated column"))
                }
                Some(_) => {}
            }
        }
        // The claim's `ON CONFLICT (key_sha256)`: without the unique index
        // every claim is refused, and nothing is ever recorded.
        if table == "processed_files"
            && !cols
                .iter()
                .any(|f| f.column == "key_sha256" && f.unique_alone)
        {
            problems.push(
                "processed_files.key_sha256 has no unique index, which the claim's ON CONFLICT needs"
                    .to_string(),
            );
        }
        for f in cols.iter().filter(|f| f.required) {
            if !written
                .iter()
                .any(|(t, c, _)| *t == table && *c == f.column)
            {
                problems.push(format!(
                    "{table}.{} is NOT NULL with no default, and the loads do not write it",
                    f.column
                ));
            }
        }
    }
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

    #[test]
    fn the_ledger_columns_are_the_claims() {
        let claim = crate::db::ledger::CLAIM;
        let names = claim
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(names, _)| names)
            .unwrap();
        let listed: Vec<&str> = ledger_columns().iter().map(|(_, c, _)| *c).collect();
        assert_eq!(names.split(", ").collect::<Vec<_>>(), listed);
    }

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
