//! Compares a database against an [`Expected`] result and names every
//! difference.

use std::collections::BTreeSet;

use anyhow::Context;

use super::expected::{APPS_COLUMNS, Expected, MOVIES_COLUMNS, REJECTED_COLUMNS, SONGS_COLUMNS};

/// `SELECT count(*), checksum` for a table: the SQL twin of
/// [`super::expected::field`] and [`super::expected::row_hash`].
pub fn checksum_sql(table: &str) -> String {
    let cols = match table {
        "songs" => SONGS_COLUMNS,
        "movies" => MOVIES_COLUMNS,
        "apps" => APPS_COLUMNS,
        "rejected_records" => REJECTED_COLUMNS,
        other => panic!("no checksum for table {other}"),
    };
    let row = cols
        .iter()
        .map(|c| format!("coalesce(length({c}) || ':' || {c}, 'N')"))
        .collect::<Vec<_>>()
        .join(" || ',' || ");
    format!(
        "SELECT count(*), coalesce(sum(('x' || substr(md5({row}), 1, 16))::bit(64)::bigint::numeric), 0)::text FROM {table}"
    )
}

/// What the database holds, in the terms of [`Expected`].
pub fn observe(client: &mut postgres::Client) -> anyhow::Result<Expected> {
    let mut e = Expected::default();
    for table in ["songs", "movies", "apps", "rejected_records"] {
        let row = client
            .query_one(&checksum_sql(table), &[])
            .with_context(|| format!("checksumming {table}"))?;
        let (n, sum): (i64, String) = (row.get(0), row.get(1));
        match table {
            "songs" => (e.songs, e.checksums.songs) = (n as u64, sum),
            "movies" => (e.movies, e.checksums.movies) = (n as u64, sum),
            "apps" => (e.apps, e.checksums.apps) = (n as u64, sum),
            _ => (e.rejected, e.checksums.rejected_records) = (n as u64, sum),
        }
    }
    let l = client.query_one(
        "SELECT count(*), count(*) FILTER (WHERE status = 'loaded'), coalesce(sum(skipped_count), 0)::bigint FROM processed_files",
        &[],
    )?;
    e.files = l.get::<_, i64>(0) as u64;
    e.loaded_files = l.get::<_, i64>(1) as u64;
    e.skipped = l.get::<_, i64>(2) as u64;
    e.failed_files = client
        .query(
            "SELECT key FROM processed_files WHERE status = 'failed' ORDER BY key",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(e)
}

/// Every difference between the database and `expected`, in words; empty
/// when they match. Also checks the ledger agrees with the rows.
pub fn verify(client: &mut postgres::Client, expected: &Expected) -> anyhow::Result<Vec<String>> {
    let got = observe(client)?;
    let mut diffs = Vec::new();
    let mut cmp = |what: &str, want: u64, have: u64| {
        if want != have {
            diffs.push(format!("{what}: expected {want}, found {have}"));
        }
    };
    cmp("ledger rows (files)", expected.files, got.files);
    cmp("loaded files", expected.loaded_files, got.loaded_files);
    cmp("songs rows", expected.songs, got.songs);
    cmp("movies rows", expected.movies, got.movies);
    cmp("apps rows", expected.apps, got.apps);
    cmp("rejected records", expected.rejected, got.rejected);
    cmp("skipped records", expected.skipped, got.skipped);
    for (table, want, have) in [
        ("songs", &expected.checksums.songs, &got.checksums.songs),
        ("movies", &expected.checksums.movies, &got.checksums.movies),
        ("apps", &expected.checksums.apps, &got.checksums.apps),
        (
            "rejected_records",
            &expected.checksums.rejected_records,
            &got.checksums.rejected_records,
        ),
    ] {
        if want != have {
            diffs.push(format!(
                "{table} content checksum differs (expected {want}, found {have})"
            ));
        }
    }
    let want: BTreeSet<_> = expected.failed_files.iter().collect();
    let have: BTreeSet<_> = got.failed_files.iter().collect();
    for k in want.difference(&have) {
        diffs.push(format!("file {k} should be recorded as failed"));
    }
    for k in have.difference(&want) {
        diffs.push(format!("file {k} is recorded as failed but should not be"));
    }
    let missing_in_ledger: i64 = client
        .query_one(
            "SELECT count(*) FROM processed_files WHERE key = ANY($1)",
            &[&expected.missing_keys],
        )?
        .get(0);
    if missing_in_ledger > 0 {
        diffs.push(format!(
            "{missing_in_ledger} keys that answer 404 are in the ledger"
        ));
    }
    diffs.extend(ledger_disagreements(client)?);
    Ok(diffs)
}

/// For a bucket with no generator behind it: the ledger holds one row per
/// fetchable listed key (`fetchable`), and agrees with the rows. No more
/// can be checked.
pub fn consistency(client: &mut postgres::Client, fetchable: u64) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let ledger: i64 = client
        .query_one("SELECT count(*) FROM processed_files", &[])?
        .get(0);
    if ledger as u64 != fetchable {
        problems.push(format!(
            "ledger holds {ledger} files, the listing has {fetchable} fetchable keys"
        ));
    }
    problems.extend(ledger_disagreements(client)?);
    Ok(problems)
}

/// The one check that the ledger agrees with the rows: every ledger row's
/// counts match the rows loaded from its file in its transaction (same
/// `source_key` and `load_id`), and no row belongs to a file the ledger
/// does not hold. Counted table by table in one pass each: there is no
/// per-row index on `source_key` to probe file by file.
pub fn ledger_disagreements(client: &mut postgres::Client) -> anyhow::Result<Vec<String>> {
    let mut diffs = Vec::new();
    // The ledger and the rows must agree, file by file.
    let disagree: i64 = client
        .query_one(
            "SELECT count(*) FROM processed_files p \
             LEFT JOIN (SELECT source_key, load_id, count(*) AS n FROM songs GROUP BY 1, 2) s ON s.source_key = p.key AND s.load_id = p.load_id \
             LEFT JOIN (SELECT source_key, load_id, count(*) AS n FROM movies GROUP BY 1, 2) m ON m.source_key = p.key AND m.load_id = p.load_id \
             LEFT JOIN (SELECT source_key, load_id, count(*) AS n FROM apps GROUP BY 1, 2) a ON a.source_key = p.key AND a.load_id = p.load_id \
             LEFT JOIN (SELECT source_key, load_id, count(*) AS n FROM rejected_records GROUP BY 1, 2) r ON r.source_key = p.key AND r.load_id = p.load_id \
             WHERE songs_rows <> coalesce(s.n, 0) OR movies_rows <> coalesce(m.n, 0) \
             OR apps_rows <> coalesce(a.n, 0) OR rejected_count <> coalesce(r.n, 0)",
            &[],
        )?
        .get(0);
    if disagree > 0 {
        diffs.push(format!(
            "{disagree} ledger rows disagree with the rows loaded from their file"
        ));
    }
    let orphans: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM songs WHERE source_key NOT IN (SELECT key FROM processed_files)) \
             + (SELECT count(*) FROM movies WHERE source_key NOT IN (SELECT key FROM processed_files)) \
             + (SELECT count(*) FROM apps WHERE source_key NOT IN (SELECT key FROM processed_files)) \
             + (SELECT count(*) FROM rejected_records WHERE source_key NOT IN (SELECT key FROM processed_files))",
            &[],
        )?
        .get(0);
    if orphans > 0 {
        diffs.push(format!(
            "{orphans} rows or rejected records belong to no ledger row"
        ));
    }
    Ok(diffs)
}
