//! bucketbench: an ETL job that loads JSON files from an S3 bucket into
//! PostgreSQL exactly once per key, and a harness that benchmarks that job
//! under several execution models. See `README.md`, `ARCHITECTURE.md` and `docs/contract.md`.
//!
//! The core is sans-IO: [`contract`] (parsing and coercion), [`db::copy`]
//! and [`db::ledger`] (SQL text, parameters and COPY bytes) are plain
//! functions over bytes and values. [`models`] are thin shells that move
//! bytes between the bucket, those functions and the database.

/// `print!` for a binary's report on stdout, without its panic when the
/// reader has gone (`compare | head -3`): the text is dropped and the run
/// goes on to write its files. See [`report::stdout`].
#[cfg(feature = "io")]
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {
        $crate::report::stdout(format_args!($($t)*))
    };
}

/// `println!` for a binary's report on stdout; see [`say!`].
#[cfg(feature = "io")]
#[macro_export]
macro_rules! sayln {
    () => {
        $crate::report::stdout(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::report::stdout(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `eprint!` without its panic when stderr's reader has gone
/// (`compare 2>&1 | head -1`); see [`report::stderr`].
#[cfg(feature = "io")]
#[macro_export]
macro_rules! esay {
    ($($t:tt)*) => {
        $crate::report::stderr(format_args!($($t)*))
    };
}

/// `eprintln!` without its panic; see [`esay!`].
#[cfg(feature = "io")]
#[macro_export]
macro_rules! esayln {
    () => {
        $crate::report::stderr(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::report::stderr(format_args!("{}\n", format_args!($($t)*)))
    };
}

#[cfg(feature = "io")]
pub mod bucket;
#[cfg(feature = "io")]
pub mod cli;
pub mod contract;
pub mod db;
pub mod error;
#[cfg(feature = "io")]
pub mod harness;
#[cfg(feature = "io")]
pub mod ingest;
#[cfg(feature = "io")]
pub mod models;
#[cfg(feature = "io")]
pub mod pass;
#[cfg(feature = "io")]
pub mod report;
#[cfg(feature = "io")]
pub mod secret;
#[cfg(feature = "io")]
pub mod sim;
pub mod transform;
