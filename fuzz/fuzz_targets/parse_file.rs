//! Fuzzes the file parser and the COPY encoding with arbitrary bytes: no
//! input may panic, every parsed file must plan a storable transaction, and
//! the fast path (the scan, the serde_json pass) must plan exactly what the
//! reference implementation plans.
//! Built against the sans-IO core alone (`default-features = false`).
#![no_main]

use bucketbench::db::{FileOutcome, WritePlan, WriteStrategy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plan = bucketbench::transform::plan("fuzz.json", None, data, "fuzz", WriteStrategy::Copy);
    for batch in &plan.copies {
        // Well-framed binary rows, text UTF-8 without NUL (PostgreSQL refuses it).
        if let Err(e) = bucketbench::db::copy::render(batch.sql, &batch.data) {
            panic!("{}: {e}", batch.sql);
        }
    }
    let reference = match bucketbench::contract::parse_file_slow(data) {
        Ok(parsed) => FileOutcome::Parsed(parsed),
        Err(e) => FileOutcome::Failed(e.to_string()),
    };
    let reference = WritePlan::new(
        "fuzz.json",
        None,
        data.len() as u64,
        "fuzz",
        &reference,
        WriteStrategy::Copy,
    );
    assert_eq!(
        format!("{plan:?}"),
        format!("{reference:?}"),
        "the fast path and the reference implementation disagree"
    );
});
