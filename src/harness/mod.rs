//! The benchmarking harness: runs the models (`runner`), computes
//! statistics (`stats`, `summary`, and the analytic `bound`), and presents
//! them (`export`, `charts`, `sweep`).
//! Statistics are kept apart from presentation, as hyperfine does.

pub mod bound;
pub mod charts;
pub mod export;
pub mod runner;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod worker;
