//! The `insert` and `batch` write strategies as SQL text and bound
//! parameters (sans-IO, shared by both writers). `copy` lives in
//! [`super::copy`].
//!
//! `insert` is one prepared INSERT per row, as the original project's
//! `executemany` did; `batch` is one INSERT ... SELECT FROM UNNEST of arrays
//! per table (a few thousand rows per statement), one round trip per chunk.

use chrono::NaiveDate;
use postgres_types::ToSql;

use crate::contract::ParsedFile;

/// A boxed bound parameter.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// One statement and the parameter sets to execute it with (prepared once).
pub struct Prepared {
    pub sql: &'static str,
    pub rows: Vec<Vec<Param>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sql", &self.sql)
            .field("rows", &self.rows.len())
            .finish()
    }
}

/// Parameter references in the form the clients take.
pub fn refs(row: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    row.iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

const INSERT_SONG: &str =
    "INSERT INTO songs (source_key, artist_name, title, year, release) VALUES ($1, $2, $3, $4, $5)";
const INSERT_MOVIE: &str = "INSERT INTO movies (source_key, original_title, original_language, budget, is_adult, release_date, original_title_normalized) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_APP: &str = "INSERT INTO apps (source_key, name, genre, rating, version, size_bytes, is_awesome) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_REJECTED: &str =
    "INSERT INTO rejected_records (source_key, record_index, reason, raw) VALUES ($1, $2, $3, $4)";

const BATCH_SONGS: &str = "INSERT INTO songs (source_key, artist_name, title, year, release) \
    SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::int4[], $5::text[])";
const BATCH_MOVIES: &str = "INSERT INTO movies (source_key, original_title, original_language, budget, is_adult, release_date, original_title_normalized) \
    SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::bool[], $6::date[], $7::text[])";
const BATCH_APPS: &str = "INSERT INTO apps (source_key, name, genre, rating, version, size_bytes, is_awesome) \
    SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::float8[], $5::text[], $6::int8[], $7::bool[])";
const BATCH_REJECTED: &str = "INSERT INTO rejected_records (source_key, record_index, reason, raw) \
    SELECT $1, * FROM UNNEST($2::int4[], $3::text[], $4::jsonb[])";

/// Rows per UNNEST statement: big enough to amortise the round trip, small
/// enough to keep each message modest.
const CHUNK: usize = 5000;

fn key(k: &str) -> Param {
    Box::new(k.to_string())
}

/// One prepared INSERT per row.
pub fn inserts(k: &str, f: &ParsedFile) -> Vec<Prepared> {
    let mut out = Vec::new();
    let mut push = |sql, rows: Vec<Vec<Param>>| {
        if !rows.is_empty() {
            out.push(Prepared { sql, rows });
        }
    };
    push(
        INSERT_SONG,
        f.songs
            .iter()
            .map(|s| {
                vec![
                    key(k),
                    Box::new(s.artist_name.clone()) as Param,
                    Box::new(s.title.clone()),
                    Box::new(s.year),
                    Box::new(s.release.clone()),
                ]
            })
            .collect(),
    );
    push(
        INSERT_MOVIE,
        f.movies
            .iter()
            .map(|m| {
                vec![
                    key(k),
                    Box::new(m.original_title.clone()) as Param,
                    Box::new(m.original_language.clone()),
                    Box::new(m.budget),
                    Box::new(m.is_adult),
                    Box::new(m.release_date),
                    Box::new(m.original_title_normalized.clone()),
                ]
            })
            .collect(),
    );
    push(
        INSERT_APP,
        f.apps
            .iter()
            .map(|a| {
                vec![
                    key(k),
                    Box::new(a.name.clone()) as Param,
                    Box::new(a.genre.clone()),
                    Box::new(a.rating),
                    Box::new(a.version.clone()),
                    Box::new(a.size_bytes),
                    Box::new(a.is_awesome),
                ]
            })
            .collect(),
    );
    push(
        INSERT_REJECTED,
        f.rejected
            .iter()
            .map(|r| {
                vec![
                    key(k),
                    Box::new(r.index) as Param,
                    Box::new(r.reason.clone()),
                    Box::new(r.raw.clone()),
                ]
            })
            .collect(),
    );
    out
}

fn col<T: Clone + ToSql + Sync + Send + 'static, R>(rows: &[R], get: impl Fn(&R) -> T) -> Param {
    Box::new(rows.iter().map(get).collect::<Vec<T>>())
}

/// One UNNEST INSERT per table and chunk of rows.
pub fn batches(k: &str, f: &ParsedFile) -> Vec<Prepared> {
    let mut out = Vec::new();
    for c in f.songs.chunks(CHUNK) {
        out.push(Prepared {
            sql: BATCH_SONGS,
            rows: vec![vec![
                key(k),
                col(c, |s| s.artist_name.clone()),
                col(c, |s| s.title.clone()),
                col(c, |s| s.year),
                col(c, |s| s.release.clone()),
            ]],
        });
    }
    for c in f.movies.chunks(CHUNK) {
        out.push(Prepared {
            sql: BATCH_MOVIES,
            rows: vec![vec![
                key(k),
                col(c, |m| m.original_title.clone()),
                col(c, |m| m.original_language.clone()),
                col(c, |m| m.budget),
                col(c, |m| m.is_adult),
                col::<Option<NaiveDate>, _>(c, |m| m.release_date),
                col(c, |m| m.original_title_normalized.clone()),
            ]],
        });
    }
    for c in f.apps.chunks(CHUNK) {
        out.push(Prepared {
            sql: BATCH_APPS,
            rows: vec![vec![
                key(k),
                col(c, |a| a.name.clone()),
                col(c, |a| a.genre.clone()),
                col(c, |a| a.rating),
                col(c, |a| a.version.clone()),
                col(c, |a| a.size_bytes),
                col(c, |a| a.is_awesome),
            ]],
        });
    }
    for c in f.rejected.chunks(CHUNK) {
        out.push(Prepared {
            sql: BATCH_REJECTED,
            rows: vec![vec![
                key(k),
                col(c, |r| r.index),
                col(c, |r| r.reason.clone()),
                col(c, |r| r.raw.clone()),
            ]],
        });
    }
    out
}
