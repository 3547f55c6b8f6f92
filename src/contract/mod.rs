//! The data contract: what a bucket file is, which records load into which
//! table, and how messy values are coerced (docs/contract.md).
//!
//! Everything here is sans-IO: plain functions over bytes and values, shared
//! by every execution model so that the models differ only in how they
//! schedule IO.

mod coerce;
mod normalize;
mod parse;
mod record;

pub use coerce::numeric_fits;
pub use normalize::normalize_title;
pub use parse::{FileError, ParsedFile, parse_file, parse_record};
pub use record::{App, Movie, Record, Rejected, Song};
