//! The transform every model shares: from a fetched object to a write plan.

use crate::contract::parse_file;
use crate::db::{FileOutcome, WritePlan, WriteStrategy};

/// Parses an object's bytes and plans its transaction.
pub fn plan(
    key: &str,
    etag: Option<&str>,
    bytes: &[u8],
    model: &str,
    strategy: WriteStrategy,
) -> WritePlan {
    let outcome = match parse_file(bytes) {
        Ok(p) => FileOutcome::Parsed(p),
        Err(e) => FileOutcome::Failed(e.to_string()),
    };
    WritePlan::new(key, etag, bytes.len() as u64, model, &outcome, strategy)
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
