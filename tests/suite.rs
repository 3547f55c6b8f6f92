//! The integration tests, built as one binary. Each file beside this one is
//! a module of it (`tests/ingest.rs` is `ingest::`), so that
//! `cargo test` links one test binary instead of twenty, starts one test
//! PostgreSQL, and keeps libtest's threads busy across files: a file's
//! slowest test no longer leaves a core idle while it finishes alone.
//! `tests/memory.rs` stays a binary of its own, as it counts allocations
//! with a global allocator.
//!
//! One file's tests: `cargo test --test suite ingest::`.

mod common;

mod cli;
mod compare;
mod compare_isolation;
mod contract;
mod embedded;
mod fetch;
mod fidelity;
mod fuzz;
mod hostile;
mod ingest;
mod isolation;
mod models;
mod peers;
mod reliability;
mod report;
mod s3;
mod security;
mod sim;
mod stall;
