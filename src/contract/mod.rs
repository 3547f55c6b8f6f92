//! The data contract: what a bucket file is, which records load into which
//! table, and how messy values are coerced (docs/contract.md).
//!
//! Everything here is sans-IO: plain functions over bytes and values, shared
//! by every execution model so that the models differ only in how they
//! schedule IO.
//!
//! [`parse_file`] runs the fast path (`fast`), which falls back per record to
//! the reference implementation (`parse`, exported as [`parse_file_slow`]).

mod coerce;
mod fast;
mod normalize;
mod parse;
mod record;
mod scan;

pub use coerce::numeric_fits;
pub use fast::{
    AppRow, BorrowedFile, Counts, Item, MovieRow, Outcome, Sink, SongRow, Text, parse_file,
    parse_file_borrowed, parse_file_into,
};
pub use normalize::{normalize_title, normalize_title_into};
pub use parse::parse_file as parse_file_slow;
pub use parse::{FileError, ParsedFile, parse_record};
pub use record::{App, Movie, Record, Rejected, Song};
