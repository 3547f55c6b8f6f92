//! Fuzzes the file parser and the COPY encoding with arbitrary bytes: no
//! input may panic, and every parsed file must plan a writable transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = bucketbench::contract::parse_file(data) {
        let plan = bucketbench::db::WritePlan::new(
            "fuzz.json",
            None,
            data.len() as u64,
            "fuzz",
            &bucketbench::db::FileOutcome::Parsed(parsed),
            bucketbench::db::WriteStrategy::Copy,
        );
        for batch in &plan.copies {
            // COPY text rows: one line per row, no raw NUL (PostgreSQL refuses it).
            assert!(!batch.data.contains(&0), "NUL byte in COPY data");
            assert!(batch.data.ends_with(b"\n"));
        }
    }
});
