//! Fuzzes the file parser and the COPY encoding with arbitrary bytes: no
//! input may panic, and every parsed file must plan a storable transaction.
//! Built against the sans-IO core alone (`default-features = false`).
#![no_main]

use bucketbench::db::WriteStrategy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plan = bucketbench::transform::plan("fuzz.json", None, data, "fuzz", WriteStrategy::Copy);
    for batch in &plan.copies {
        // Well-framed binary rows, text UTF-8 without NUL (PostgreSQL refuses it).
        if let Err(e) = bucketbench::db::copy::render(batch.sql, &batch.data) {
            panic!("{}: {e}", batch.sql);
        }
    }
});
