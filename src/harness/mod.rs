//! The benchmarking harness: runs the models (`runner`, in a schema of
//! its own: `scratch`), computes
//! statistics (`stats`, `summary`, the analytic `bound`, `cpu`: where
//! each run's CPU went and the CPU floor, and `firstbyte`: the delays the
//! simulated bucket applied), and presents
//! them (`export`, `charts`, `sweep`; `publish`: `comparison.json` from
//! `json`, `report.html` from `html`, and `baseline` comparisons).
//! Statistics are kept apart from presentation, as hyperfine does.

pub mod baseline;
pub mod binary;
pub mod bound;
pub mod charts;
pub mod comparison;
pub mod cpu;
pub mod durability;
pub mod export;
pub mod firstbyte;
pub mod html;
pub mod json;
pub mod netstats;
pub mod outdir;
pub mod publish;
pub mod runner;
pub mod scratch;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod terminal;
pub mod worker;

/// Distinct items in first-seen order (models, values, labels as runs
/// list them).
pub fn unique<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}
