//! `compare --database-url` on a database that holds `ingest`'s real data:
//! the comparison runs in a schema of its own and leaves every table,
//! row and ledger entry of `ingest` as it found them.

use crate::common;

use common::*;

/// Every row of a table, as text, in a stable order.
fn rows(db: &mut postgres::Client, table: &str) -> Vec<String> {
    let sql = match table {
        "songs" => "SELECT songs::text FROM songs ORDER BY id",
        "movies" => "SELECT movies::text FROM movies ORDER BY id",
        "apps" => "SELECT apps::text FROM apps ORDER BY id",
        "rejected_records" => "SELECT rejected_records::text FROM rejected_records ORDER BY 1",
        "processed_files" => "SELECT processed_files::text FROM processed_files ORDER BY key",
        other => panic!("no table {other}"),
    };
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const TABLES: [&str; 5] = [
    "songs",
    "movies",
    "apps",
    "rejected_records",
    "processed_files",
];

/// Before the fix, compare truncated these tables without a question.
#[test]
fn compare_on_a_database_with_a_real_ledger_leaves_it_untouched() {
    let db = fresh_db();
    let bucket = bucketbench::sim::SimBucket::generate(bucketbench::sim::Spec::new(
        bucketbench::sim::ProfileName::Tiny,
        21,
    ));
    let server = bucket.serve(Default::default(), any_port()).unwrap();
    let ingest = ingest()
        .args(["--bucket", &server.base_url(), "--database-url", &db])
        .output()
        .unwrap();
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let mut c = connect(&db);
    let before: Vec<Vec<String>> = TABLES.iter().map(|t| rows(&mut c, t)).collect();
    assert!(before[4].len() >= 5, "ingest loaded too little: {before:?}");

    let out = tempfile::tempdir().unwrap();
    let compare = compare()
        .args([
            "--profile",
            "tiny",
            "--models",
            "sync,async",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--latency-ms",
            "1",
            "--out",
        ])
        .arg(out.path())
        .args(["--database-url", &db])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&compare.stdout);
    assert!(
        compare.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&compare.stderr)
    );
    assert!(stdout.contains("every run verified"), "{stdout}");

    let after: Vec<Vec<String>> = TABLES.iter().map(|t| rows(&mut c, t)).collect();
    for (t, (b, a)) in TABLES.iter().zip(before.iter().zip(&after)) {
        assert_eq!(b, a, "compare changed {t}");
    }
    // Its own schema is gone, and it left nothing anywhere else.
    let schemas: Vec<String> = column(
        &mut c,
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'bucketbench_compare%'",
    );
    assert!(schemas.is_empty(), "left behind: {schemas:?}");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'public')"
        ),
        0
    );
}

/// A compare that fails mid-way (its bucket unreachable after the schema
/// was made) still drops its schema.
#[test]
fn compare_drops_its_schema_when_it_fails() {
    let db = fresh_db();
    let out = tempfile::tempdir().unwrap();
    let compare = compare()
        .args(["--bucket", "http://127.0.0.1:1", "--models", "sync"])
        .args(["--runs", "1", "--warmup", "0", "--attempts", "1", "--out"])
        .arg(out.path())
        .args(["--database-url", &db])
        .output()
        .unwrap();
    assert!(!compare.status.success());
    let schemas = count(
        &mut connect(&db),
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bucketbench_compare%'",
    );
    assert_eq!(schemas, 0, "{}", String::from_utf8_lossy(&compare.stderr));
}
