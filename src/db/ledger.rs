//! The ledger (`processed_files`): the SQL that claims a key, the row that
//! records a file's outcome, and the queries a pass uses to subtract what
//! is already loaded. Sans-IO: text and parameters only.
//!
//! A file commits in one transaction: claim (insert the ledger row, which
//! waits on any other worker's uncommitted claim of the same key and then
//! finds it taken), COPY its rows and rejected records, commit. A crash at
//! any instant leaves the file fully loaded or not at all.
//!
//! The ledger's uniqueness is on `key_sha256`, the SHA-256 of the full key
//! (migration V2), so keys of any length load; `key = $1` and
//! `key = ANY($1)` are served by a hash index on `key`.

use postgres_types::ToSql;

use super::copy::{self, CopyBatch};
use super::statements::{self, Prepared};
use crate::contract::ParsedFile;

/// The ledger row that claims a key. Its insert also draws, per data
/// table, the first identity value the file's rows can have (the
/// `*_first_id` columns' defaults, migration V6): drawn on the session that
/// writes them, before any of them, and a session's values only grow, so
/// the primary key finds the file's rows from there ([`DataTable::file_rows`])
/// without an index of their own.
pub const CLAIM: &str = "INSERT INTO processed_files \
    (key, etag, size_bytes, status, reason, songs_rows, movies_rows, apps_rows, rejected_count, skipped_count, model) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (key_sha256) DO NOTHING";

/// The four tables a file's rows go to, each with the ledger columns that
/// find its rows there: the first identity value the claim drew and the
/// count the file's transaction recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataTable {
    Songs,
    Movies,
    Apps,
    Rejected,
}

impl DataTable {
    pub const ALL: [DataTable; 4] = [Self::Songs, Self::Movies, Self::Apps, Self::Rejected];

    pub fn name(self) -> &'static str {
        match self {
            Self::Songs => "songs",
            Self::Movies => "movies",
            Self::Apps => "apps",
            Self::Rejected => "rejected_records",
        }
    }

    /// The ledger column holding the first id the file's rows here can have.
    pub fn first_id_column(self) -> &'static str {
        match self {
            Self::Songs => "songs_first_id",
            Self::Movies => "movies_first_id",
            Self::Apps => "apps_first_id",
            Self::Rejected => "rejected_first_id",
        }
    }

    /// The ledger column counting the file's rows here.
    pub fn count_column(self) -> &'static str {
        match self {
            Self::Songs => "songs_rows",
            Self::Movies => "movies_rows",
            Self::Apps => "apps_rows",
            Self::Rejected => "rejected_count",
        }
    }

    /// A file's rows in this table, `$1` its key (docs/contract.md,
    /// "Finding a file's rows"): the primary key walked from the claim's
    /// first id, the rows of the file's transaction and key kept, stopping
    /// at the ledger's count.
    pub fn file_rows(self) -> String {
        let (table, first, count) = (self.name(), self.first_id_column(), self.count_column());
        format!(
            "SELECT t.* FROM processed_files p, LATERAL (\
             SELECT * FROM {table} t WHERE t.id >= p.{first} AND t.load_id = p.load_id \
             AND t.source_key = p.key ORDER BY t.id LIMIT p.{count}) t WHERE p.key = $1"
        )
    }
}

/// Returns the listed keys the ledger holds, with their ETags, and marks
/// them as seen now: the subtraction and the `last_seen_at` bookkeeping in
/// one round trip. `$1` is the page's keys, `$2` the seconds
/// `last_seen_at` may lag before it is stamped again
/// ([`SEEN_RESOLUTION`]).
///
/// The stamp is `relatime`'s rule for access times: a row is rewritten
/// only when its mark is older than the resolution. Stamping every listed
/// row every pass rewrote the whole ledger each `--watch` interval: on a
/// 600,000-key ledger, 60 statements of 10,000 updated rows, each
/// recomputing the row's key hash and writing about 560 bytes of WAL
/// (docs/performance.md, "The ledger's bookkeeping on a quiet pass").
///
/// The keys are joined from `unnest($1)` rather than matched with
/// `key = ANY($1)`: for a page of thousands of keys the planner costs
/// `ANY` as thousands of index probes and scans the whole ledger instead,
/// three times a statement. Both the lookup and the stale rows are found in
/// `LATERAL` subqueries the planner cannot flatten, one probe of the hash
/// index a listed key, whatever the statistics say: joined plainly, the
/// planner read "stamped over an hour ago" as matching almost no row and
/// scanned the ledger for them, and on a ledger never analysed it scanned
/// the whole ledger for every page. The update finds the rows it locked by
/// `ctid`, so it scans nothing either.
///
/// The bookkeeping cannot deadlock and never waits: it locks only the rows
/// no one else holds (`SKIP LOCKED`), so two workers marking overlapping
/// keys in different orders each take what is free instead of waiting on
/// each other, and a row held by a stalled worker is simply marked by the
/// next pass. The keys returned come from the statement's snapshot, locked
/// or not, so the subtraction is whole.
pub const SEEN: &str = "WITH marked AS (\
    UPDATE processed_files SET last_seen_at = now() WHERE ctid = ANY(ARRAY(\
    SELECT stale.ctid FROM unnest($1::text[]) AS listed(key), LATERAL (\
    SELECT p.ctid FROM processed_files p WHERE p.key = listed.key \
    AND p.last_seen_at < now() - make_interval(secs => $2) FOR UPDATE SKIP LOCKED) AS stale))) \
    SELECT held.key, held.etag, held.status FROM unnest($1::text[]) AS listed(key), LATERAL (\
    SELECT p.key, p.etag, p.status FROM processed_files p WHERE p.key = listed.key OFFSET 0) AS held";

/// How far `last_seen_at` may lag behind the latest listing that showed
/// the key before a pass stamps it again ([`SEEN`]), unless `ingest
/// --seen-resolution` says otherwise: an hour, so a `--watch` every minute
/// rewrites each ledger row once an hour instead of every pass, and a key
/// gone from the bucket still shows within the hour.
pub const SEEN_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether another worker has recorded the key since the listing was
/// subtracted, and as `failed` or not: checked before fetching, so workers
/// sharing a bucket do not download what one of them already processed.
pub const RECORDED: &str = "SELECT status = 'failed' FROM processed_files WHERE key = $1";

/// Which of the keys whose claims met another worker's row that worker
/// recorded `failed`: asked only when a claim conflicts, so that a key
/// another worker failed is counted as failed, not as loaded.
pub const FAILED_AMONG: &str =
    "SELECT key FROM processed_files WHERE key = ANY($1) AND status = 'failed'";

/// How old the listing's answer about a key may be before [`RECORDED`] asks
/// again. A pass hands most keys to its model a moment after subtracting
/// them, and asking again then only repeats the answer: one round trip per
/// file, in series, before the first wave of GETs. A key another worker
/// loads within this moment still loads once (the claim decides); this
/// worker's GET of it is wasted.
pub const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Keys per `SEEN` round trip: large enough to be few, small enough that a
/// bucket of millions of keys never builds one enormous statement.
pub const SEEN_CHUNK: usize = 10_000;

/// How a file's rows are sent to PostgreSQL, a knob orthogonal to the
/// execution model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "io", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum WriteStrategy {
    /// A prepared INSERT per row (what the original project did).
    Insert,
    /// Multi-row INSERT from UNNEST of arrays, a few thousand rows a statement.
    Batch,
    /// COPY FROM STDIN (binary format): the fastest, the default.
    #[default]
    Copy,
}

impl WriteStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteStrategy::Insert => "insert",
            WriteStrategy::Batch => "batch",
            WriteStrategy::Copy => "copy",
        }
    }
}

/// What happened to one fetched file, ready to be written.
#[derive(Debug)]
pub enum FileOutcome {
    Parsed(ParsedFile),
    /// The whole file loads nothing; the reason goes into the ledger.
    Failed(String),
}

/// Everything one file's transaction sends: the ledger row (bound
/// parameters) and the COPY batches.
#[derive(Debug)]
pub struct WritePlan {
    pub key: String,
    pub etag: Option<String>,
    pub size_bytes: i64,
    pub status: &'static str,
    pub reason: Option<String>,
    pub songs: i32,
    pub movies: i32,
    pub apps: i32,
    pub rejected: i32,
    pub skipped: i32,
    pub model: String,
    /// The rows as COPY data (strategy `copy`)...
    pub copies: Vec<CopyBatch>,
    /// ...or as prepared statements (`insert`, `batch`).
    pub statements: Vec<Prepared>,
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl WritePlan {
    pub fn new(
        key: &str,
        etag: Option<&str>,
        size_bytes: u64,
        model: &str,
        outcome: &FileOutcome,
        strategy: WriteStrategy,
    ) -> Self {
        let base = WritePlan {
            key: key.to_string(),
            etag: etag.map(str::to_string),
            size_bytes: i64::try_from(size_bytes).unwrap_or(i64::MAX),
            status: "loaded",
            reason: None,
            songs: 0,
            movies: 0,
            apps: 0,
            rejected: 0,
            skipped: 0,
            model: model.to_string(),
            copies: Vec::new(),
            statements: Vec::new(),
        };
        match outcome {
            FileOutcome::Parsed(p) => WritePlan {
                songs: count(p.songs.len()),
                movies: count(p.movies.len()),
                apps: count(p.apps.len()),
                rejected: count(p.rejected.len()),
                skipped: i32::try_from(p.skipped).unwrap_or(i32::MAX),
                copies: if strategy == WriteStrategy::Copy {
                    copy::batches(key, p)
                } else {
                    Vec::new()
                },
                statements: match strategy {
                    WriteStrategy::Insert => statements::inserts(key, p),
                    WriteStrategy::Batch => statements::batches(key, p),
                    WriteStrategy::Copy => Vec::new(),
                },
                ..base
            },
            FileOutcome::Failed(e) => WritePlan {
                status: "failed",
                reason: Some(e.clone()),
                ..base
            },
        }
    }

    /// The bound parameters of [`CLAIM`], in order.
    pub fn claim_params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.key,
            &self.etag,
            &self.size_bytes,
            &self.status,
            &self.reason,
            &self.songs,
            &self.movies,
            &self.apps,
            &self.rejected,
            &self.skipped,
            &self.model,
        ]
    }

    pub fn rows(&self) -> u64 {
        (self.songs + self.movies + self.apps) as u64
    }

    /// The ledger row that records this file as `failed` with `reason` and
    /// nothing else: what is written, in a transaction of its own, when
    /// PostgreSQL refuses the file's data.
    pub fn as_failed(&self, reason: &str) -> WritePlan {
        WritePlan {
            key: self.key.clone(),
            etag: self.etag.clone(),
            size_bytes: self.size_bytes,
            status: "failed",
            reason: Some(reason.to_string()),
            songs: 0,
            movies: 0,
            apps: 0,
            rejected: 0,
            skipped: 0,
            model: self.model.clone(),
            copies: Vec::new(),
            statements: Vec::new(),
        }
    }
}

/// Rows one group transaction may carry: enough to amortise the
/// per-transaction cost over many small files, small enough that a group
/// of large files does not hold one enormous transaction open.
///
/// 30,000: PostgreSQL's COPY works in batches of up to 1,000 rows and sets
/// up a slot per row of its first batch, so a COPY of a few thousand rows
/// pays that set-up on a third of them. Replaying a `seed` pass as groups
/// of 21 files (~10,000 rows a table) instead of 7 (~3,300) took a median
/// 4.5 instead of 5.4 µs of database CPU per row, 12 passes each
/// (docs/performance.md).
/// Such a group commits within a fraction of a second, far below the
/// claim's lock timeout.
pub const GROUP_ROWS: u64 = 30_000;

/// A writer that finds fewer rows than this waiting keeps its group open
/// for more, up to [`GATHER_WAIT`] after its first file, or until the
/// fetching ends. Files fetched across a real network arrive one at a
/// time, spread over the first-byte tail, so without the wait nearly every
/// file committed alone (54 groups for `seed`'s 67 files on the `internet`
/// preset) and paid a transaction, a COPY per table and that COPY's slot
/// set-up for itself.
pub const GATHER_ROWS: u64 = 10_000;

/// The longest a fetched file waits for others to share its transaction:
/// short beside a network's first byte, so a file still commits promptly
/// when no other comes.
pub const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The COPY batches of several files' plans, gathered per table in the
/// order given (COPY rows carry their `source_key`, so rows of many files
/// can travel in one COPY): one COPY per table per group instead of one per
/// file. Each file's data is sent as it is, never concatenated into a
/// copy of its own.
pub fn merged_copies<'a>(plans: &[&'a WritePlan]) -> Vec<(&'static str, Vec<&'a CopyBatch>)> {
    let mut out: Vec<(&'static str, Vec<&'a CopyBatch>)> = Vec::new();
    for batch in plans.iter().flat_map(|p| &p.copies) {
        match out.iter_mut().find(|(sql, _)| *sql == batch.sql) {
            Some((_, batches)) => batches.push(batch),
            None => out.push((batch.sql, vec![batch])),
        }
    }
    out
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    /// This worker claimed the key and committed the file.
    Committed,
    /// Another worker committed the key; nothing was written.
    AlreadyLoaded,
    /// Another worker recorded the key `failed`; nothing was written.
    FailedEarlier,
    /// Another worker held the key's claim past the lock timeout (or the
    /// claim kept deadlocking, or PostgreSQL did not answer within
    /// [`super::Patience`]); nothing was written, a later pass retries.
    Busy,
    /// PostgreSQL refused the file's data; the ledger records it as
    /// `failed` with this reason (a transaction of its own).
    Failed(String),
    /// PostgreSQL refused the file and its `failed` ledger row too (a key
    /// text cannot hold); nothing was written.
    Unrecorded(String),
}

/// Forgets a `failed` outcome so the key can be tried again through the
/// normal claim. Only `failed` rows: a failed file has no data rows, so
/// nothing else refers to it, and a key another worker has loaded since
/// stays loaded.
pub const DELETE_FAILED: &str = "DELETE FROM processed_files WHERE key = $1 AND status = 'failed'";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::plan;

    #[test]
    fn a_group_sends_one_copy_per_table_with_every_files_rows() {
        let a = plan(
            "a.json",
            None,
            br#"[{"type":"song","data":{"title":"A"}},{"type":"app","data":{"name":"X"}}]"#,
            "async",
            WriteStrategy::Copy,
        );
        let b = plan(
            "b.json",
            None,
            br#"[{"type":"song","data":{"title":"B"}}]"#,
            "async",
            WriteStrategy::Copy,
        );
        let merged = merged_copies(&[&a, &b]);
        let (sql, songs) = merged.iter().find(|(sql, _)| *sql == copy::SONGS).unwrap();
        // What the COPY receives: each file's rows, one after the other.
        let sent: Vec<u8> = songs.iter().flat_map(|b| b.data.iter().copied()).collect();
        let lines = copy::render(sql, &sent).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("a.json\t") && lines[1].starts_with("b.json\t"),
            "{lines:?}"
        );
        assert_eq!(
            merged.iter().filter(|(sql, _)| *sql == copy::SONGS).count(),
            1
        );
        assert!(merged.iter().any(|(sql, _)| *sql == copy::APPS));
        assert!(!merged.iter().any(|(sql, _)| *sql == copy::MOVIES));
    }
}
