//! The transform every model shares: from a fetched object to a write plan.

use crate::contract::{ParsedFile, parse_file, parse_file_into};
use crate::db::{FileOutcome, WritePlan, WriteStrategy, copy};

/// Parses an object's bytes and plans its transaction.
///
/// With COPY (the default) each record goes from the file's bytes straight
/// into the COPY data as it is parsed, without an owned row or a list of
/// records in between.
pub fn plan(
    key: &str,
    etag: Option<&str>,
    bytes: &[u8],
    model: &str,
    strategy: WriteStrategy,
) -> WritePlan {
    let size = bytes.len() as u64;
    if strategy != WriteStrategy::Copy {
        let outcome = match parse_file(bytes) {
            Ok(p) => FileOutcome::Parsed(p),
            Err(e) => FileOutcome::Failed(e.to_string()),
        };
        return WritePlan::new(key, etag, size, model, &outcome, strategy);
    }
    let mut tables = copy::Tables::new(key, bytes.len());
    if let Err(e) = parse_file_into(bytes, &mut tables) {
        let failed = FileOutcome::Failed(e.to_string());
        return WritePlan::new(key, etag, size, model, &failed, strategy);
    }
    // The ledger row of a loaded file with no rows, then this file's counts
    // and COPY data: the plan `WritePlan::new` makes, without the owned rows.
    let empty = FileOutcome::Parsed(ParsedFile::default());
    let mut plan = WritePlan::new(key, etag, size, model, &empty, strategy);
    let counts = tables.counts();
    let count = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    plan.songs = count(counts.songs);
    plan.movies = count(counts.movies);
    plan.apps = count(counts.apps);
    plan.rejected = count(counts.rejected);
    plan.skipped = count(counts.skipped);
    plan.copies = tables.finish();
    plan
}

/// Plans the ledger row of an object refused before parsing (too large).
pub fn plan_refused(key: &str, etag: Option<&str>, reason: String, model: &str) -> WritePlan {
    WritePlan::new(
        key,
        etag,
        0,
        model,
        &FileOutcome::Failed(reason),
        WriteStrategy::Copy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain records, then one the scan declines: the rows encoded before
    /// it are encoded again, once.
    #[test]
    fn a_file_declined_part_way_plans_each_row_once() {
        let plain = r#"{"type":"song","data":{"title":"t","year":1994}}"#;
        let body =
            format!(r#"[{plain},{plain},{{"type":"song","data":{{"title":"\u0041"}}}},{plain}]"#);
        let fast = plan("k", None, body.as_bytes(), "m", WriteStrategy::Copy);
        let slow = crate::contract::parse_file_slow(body.as_bytes()).unwrap();
        assert_eq!((fast.songs, slow.songs.len()), (4, 4));
        let owned = WritePlan::new(
            "k",
            None,
            body.len() as u64,
            "m",
            &FileOutcome::Parsed(slow),
            WriteStrategy::Copy,
        );
        assert_eq!(format!("{fast:?}"), format!("{owned:?}"));
    }

    /// The COPY plan from borrowed rows is the plan from owned rows.
    #[test]
    fn borrowed_plan_equals_the_owned_plan() {
        let body = br#"[{"type":"song","data":{"title":"a\tb","year":"1994","artist_name":"x\\y"}},
            {"data":{"original_title:":"Am\u00e9lie","budget":1e3,"release_date":"2001-04-25","is_adult":"FALSE"},"type":"movie"},
            {"type":"app","data":{"name":"n","rating":4.5,"version":2.10,"size_bytes":5.0}},
            {"type":"app","data":{"name":"n","rating":1e-400}},
            {"type":"song","data":{"title":"t","title":"u"}},
            {"type":"book","data":{}}, 7, {"type":"song","data":{"title":"a\u0000"}}]"#;
        let fast = plan("k\t1", None, body, "m", WriteStrategy::Copy);
        let owned = WritePlan::new(
            "k\t1",
            None,
            body.len() as u64,
            "m",
            &FileOutcome::Parsed(crate::contract::parse_file_slow(body).unwrap()),
            WriteStrategy::Copy,
        );
        assert_eq!(format!("{fast:?}"), format!("{owned:?}"));
        assert_eq!((fast.songs, fast.movies, fast.apps), (2, 1, 2));
        assert_eq!((fast.rejected, fast.skipped), (2, 1));
    }
}
