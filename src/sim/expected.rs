//! The exact outcome of a correct load, derived from what the generator put
//! in (never by running the loader), and the per-table content checksum
//! that [`super::verify`] recomputes from the database with one query each.
//!
//! Checksum: every row's loaded columns (all but `id` and `ingestion_time`)
//! are written as `N` for NULL or `<length in characters>:<text>`, joined
//! by `,`; the first 64 bits of that text's MD5, read as a signed integer,
//! are summed over the table. A sum does not depend on row order, and a
//! duplicated or missing row changes it.

use md5::Digest as _;
use serde::{Deserialize, Serialize};

/// A column value in the checksum's canonical form.
pub fn field(v: Option<&str>) -> String {
    match v {
        None => "N".into(),
        Some(s) => format!("{}:{}", s.chars().count(), s),
    }
}

/// The signed 64-bit value a row contributes to its table's checksum.
pub fn row_hash(fields: &[String]) -> i64 {
    let digest = md5::Md5::digest(fields.join(",").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The column expressions whose canonical text makes a row, per table, in
/// the order the generator writes them.
pub const SONGS_COLUMNS: &[&str] = &[
    "source_key",
    "artist_name",
    "title",
    "year::text",
    "release",
];
pub const MOVIES_COLUMNS: &[&str] = &[
    "source_key",
    "original_title",
    "original_language",
    "budget::text",
    "is_adult::text",
    "release_date::text",
    "original_title_normalized",
];
pub const APPS_COLUMNS: &[&str] = &[
    "source_key",
    "name",
    "genre",
    "round(rating::numeric, 6)::text",
    "version",
    "size_bytes::text",
    "is_awesome::text",
];
/// Rejected records are checked by where they came from; the reason's
/// wording is the loader's, not the generator's.
pub const REJECTED_COLUMNS: &[&str] = &["source_key", "record_index::text"];

pub fn rating_text(r: f64) -> String {
    format!("{r:.6}")
}

/// Counts and checksum sums for one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSum {
    pub rows: u64,
    pub sum: i128,
}

impl TableSum {
    pub fn add(&mut self, fields: &[String]) {
        self.rows += 1;
        self.sum += i128::from(row_hash(fields));
    }
    fn merge(&mut self, o: &TableSum) {
        self.rows += o.rows;
        self.sum += o.sum;
    }
}

/// What one generated key contributes to the expected result.
#[derive(Debug, Clone, PartialEq)]
pub enum FileExpect {
    Loaded {
        songs: TableSum,
        movies: TableSum,
        apps: TableSum,
        rejected: TableSum,
        skipped: u64,
    },
    /// Not JSON or not an array: a `failed` ledger row, no rows.
    Failed,
    /// Listed in the manifest, but no object: a 404.
    Missing,
}

/// The exact expected result of loading a set of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// Ledger rows: loaded plus failed files.
    pub files: u64,
    pub loaded_files: u64,
    pub songs: u64,
    pub movies: u64,
    pub apps: u64,
    pub rejected: u64,
    pub skipped: u64,
    pub failed_files: Vec<String>,
    pub missing_keys: Vec<String>,
    pub checksums: Checksums,
}

/// Per-table checksums, as decimal strings (they do not fit in JSON numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    pub songs: String,
    pub movies: String,
    pub apps: String,
    pub rejected_records: String,
}

impl Expected {
    /// Aggregates per-key contributions.
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a FileExpect)>) -> Self {
        let (mut songs, mut movies, mut apps, mut rejected) = (
            TableSum::default(),
            TableSum::default(),
            TableSum::default(),
            TableSum::default(),
        );
        let mut e = Expected::default();
        for (key, f) in files {
            match f {
                FileExpect::Loaded {
                    songs: s,
                    movies: m,
                    apps: a,
                    rejected: r,
                    skipped,
                } => {
                    e.files += 1;
                    e.loaded_files += 1;
                    songs.merge(s);
                    movies.merge(m);
                    apps.merge(a);
                    rejected.merge(r);
                    e.skipped += skipped;
                }
                FileExpect::Failed => {
                    e.files += 1;
                    e.failed_files.push(key.to_string());
                }
                FileExpect::Missing => e.missing_keys.push(key.to_string()),
            }
        }
        e.failed_files.sort();
        e.missing_keys.sort();
        (e.songs, e.movies, e.apps, e.rejected) =
            (songs.rows, movies.rows, apps.rows, rejected.rows);
        e.checksums = Checksums {
            songs: songs.sum.to_string(),
            movies: movies.sum.to_string(),
            apps: apps.sum.to_string(),
            rejected_records: rejected.sum.to_string(),
        };
        e
    }

    pub fn rows(&self) -> u64 {
        self.songs + self.movies + self.apps
    }
}
