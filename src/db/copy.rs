//! COPY binary-format encoding of parsed rows: a plain function from values
//! to bytes, so every model sends exactly the same data.
//!
//! Binary, not text: PostgreSQL then reads each field by its length instead
//! of scanning every byte for tabs, newlines and backslashes and parsing
//! numbers and dates from text. Loading a `seed` pass took 9 % fewer
//! instructions in the server's COPY (docs/performance.md, "Binary COPY").
//! A batch's `data` holds its rows only; a stream is [`HEADER`], the rows
//! of one or more batches, and [`TRAILER`], so rows of many files can
//! travel in one COPY.

use chrono::{Datelike, NaiveDate};

use crate::contract::{
    App, AppRow, BorrowedFile, Counts, Item, Movie, MovieRow, Outcome, ParsedFile, Record,
    Rejected, Sink, Song, SongRow, Text, normalize_title_into,
};

pub const SONGS: &str =
    "COPY songs (source_key, artist_name, title, year, release) FROM STDIN (FORMAT binary)";
pub const MOVIES: &str = "COPY movies (source_key, original_title, original_language, budget, is_adult, release_date, original_title_normalized) FROM STDIN (FORMAT binary)";
pub const APPS: &str = "COPY apps (source_key, name, genre, rating, version, size_bytes, is_awesome) FROM STDIN (FORMAT binary)";
pub const REJECTED: &str =
    "COPY rejected_records (source_key, record_index, reason, raw) FROM STDIN (FORMAT binary)";

/// Starts every binary COPY stream: the signature, no flags, no header
/// extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Ends it: a field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// A column's type as the binary format encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Text,
    Int4,
    Int8,
    Float8,
    Bool,
    Date,
    Jsonb,
}

impl Column {
    /// The type PostgreSQL names (`information_schema.columns.udt_name`)
    /// that a column sent as this must have.
    pub fn udt_name(self) -> &'static str {
        match self {
            Column::Text => "text",
            Column::Int4 => "int4",
            Column::Int8 => "int8",
            Column::Float8 => "float8",
            Column::Bool => "bool",
            Column::Date => "date",
            Column::Jsonb => "jsonb",
        }
    }
}

/// Every column the COPY statements write, as (table, column, type): what
/// a table must still have, whatever was done to it by hand, for the
/// binary rows to be taken. Read from the statements themselves, so the
/// list cannot drift from what is sent.
pub fn written_columns() -> Vec<(&'static str, &'static str, &'static str)> {
    [SONGS, MOVIES, APPS, REJECTED]
        .into_iter()
        .flat_map(|sql| {
            let rest = sql.strip_prefix("COPY ").unwrap_or(sql);
            let (table, rest) = rest.split_once(" (").unwrap_or((rest, ""));
            let names = rest.split_once(')').map_or("", |(names, _)| names);
            names
                .split(", ")
                .zip(columns(sql).unwrap_or(&[]))
                .map(move |(name, ty)| (table, name, ty.udt_name()))
        })
        .collect()
}

/// The columns of each COPY statement, in order.
pub fn columns(sql: &str) -> Option<&'static [Column]> {
    use Column::*;
    Some(match sql {
        SONGS => &[Text, Text, Text, Int4, Text],
        MOVIES => &[Text, Text, Text, Int8, Bool, Date, Text],
        APPS => &[Text, Text, Text, Float8, Text, Int8, Bool],
        REJECTED => &[Text, Int4, Text, Jsonb],
        _ => return None,
    })
}

/// PostgreSQL's dates count days from 2000-01-01, chrono's from 0001-01-01.
const PG_EPOCH_FROM_CE: i32 = 730_120;

/// One COPY statement and its data. The data is shared, not copied, when
/// a group's COPY sends the files' batches one after another and when a
/// refused group's files are retried alone.
#[derive(Debug, Clone)]
pub struct CopyBatch {
    pub sql: &'static str,
    pub data: std::sync::Arc<Vec<u8>>,
}

/// The COPY batches for a parsed file, empty tables left out: the same
/// [`Tables`] the parser fills, fed the file's owned records.
pub fn batches(key: &str, file: &ParsedFile) -> Vec<CopyBatch> {
    let mut tables = Tables::new(key, 0);
    let t = &mut tables;
    file.songs
        .iter()
        .for_each(|s| song(&mut t.songs, &t.key, s));
    file.movies
        .iter()
        .for_each(|m| movie(&mut t.movies, &t.key, m));
    file.apps.iter().for_each(|a| app(&mut t.apps, &t.key, a));
    file.rejected
        .iter()
        .for_each(|x| rejected(&mut t.rejects, &t.key, x));
    tables.finish()
}

/// The COPY batches for a file parsed by the fast path, written straight
/// from the rows borrowed from the file's bytes, empty tables left out.
/// Same bytes as [`batches`] of the same file's [`ParsedFile`].
pub fn borrowed_batches(key: &str, file: &BorrowedFile<'_>) -> Vec<CopyBatch> {
    let mut tables = Tables::new(key, 0);
    file.items.iter().for_each(|item| tables.push(item));
    tables.finish()
}

/// A file's COPY data, encoded a record at a time as the parser hands
/// them over ([`crate::contract::parse_file_into`]), with its counts.
pub struct Tables {
    key: Vec<u8>,
    songs: Table,
    movies: Table,
    apps: Table,
    rejects: Table,
    skipped: u64,
}

impl Tables {
    /// For a file of `size` bytes: each table's buffer starts at a third of
    /// it (a row's COPY bytes are fewer than its JSON's, and a file's rows
    /// rarely all go to one table), so it seldom grows while rows arrive.
    pub fn new(key: &str, size: usize) -> Self {
        Tables {
            key: key_field(key),
            songs: Table::new(SONGS, size / 3),
            movies: Table::new(MOVIES, size / 3),
            apps: Table::new(APPS, size / 3),
            rejects: Table::new(REJECTED, 0),
            skipped: 0,
        }
    }

    #[inline]
    fn push(&mut self, item: &Item<'_>) {
        let key = &self.key;
        match item {
            Item::Song(s) => song_row(&mut self.songs, key, s),
            Item::Movie(m) => movie_row(&mut self.movies, key, m),
            Item::App(a) => app_row(&mut self.apps, key, a),
            Item::Owned(o) => match &**o {
                Outcome::Record(Record::Song(s)) => song(&mut self.songs, key, s),
                Outcome::Record(Record::Movie(m)) => movie(&mut self.movies, key, m),
                Outcome::Record(Record::App(a)) => app(&mut self.apps, key, a),
                Outcome::Rejected(x) => rejected(&mut self.rejects, key, x),
                Outcome::Skipped => self.skipped += 1,
            },
            Item::Skipped => self.skipped += 1,
            Item::Pending => {}
        }
    }

    /// Rows per table, rejected and skipped records so far.
    pub fn counts(&self) -> Counts {
        let n = |t: &Table| t.rows as u64;
        Counts {
            songs: n(&self.songs),
            movies: n(&self.movies),
            apps: n(&self.apps),
            rejected: n(&self.rejects),
            skipped: self.skipped,
        }
    }

    /// The COPY batches, empty tables left out.
    pub fn finish(self) -> Vec<CopyBatch> {
        [self.songs, self.movies, self.apps, self.rejects]
            .into_iter()
            .filter_map(Table::finish)
            .collect()
    }
}

impl<'a> Sink<'a> for Tables {
    #[inline]
    fn item(&mut self, item: Item<'a>) {
        self.push(&item);
    }

    fn clear(&mut self) {
        for t in [
            &mut self.songs,
            &mut self.movies,
            &mut self.apps,
            &mut self.rejects,
        ] {
            t.buf.clear();
            t.rows = 0;
        }
        self.skipped = 0;
    }
}

/// The source key as a binary field (length and bytes), made once per file
/// rather than once per row.
fn key_field(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 4);
    out.extend_from_slice(&len(key.len()).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

/// A field's length as the format's 32-bit count. A field over 2 GiB cannot
/// come from a file the pipeline accepts; if one did, the count would be
/// wrong and PostgreSQL would refuse the file's COPY.
fn len(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// One table's COPY data, a row at a time.
struct Table {
    sql: &'static str,
    buf: Vec<u8>,
    rows: usize,
    /// The field count every row of this table starts with.
    fields: [u8; 2],
    /// Reused for the normalized title, which is written as text first.
    scratch: String,
}

impl Table {
    fn new(sql: &'static str, bytes: usize) -> Self {
        let fields = columns(sql).map_or(0, |c| c.len() as i16);
        Table {
            sql,
            buf: Vec::with_capacity(bytes),
            rows: 0,
            fields: fields.to_be_bytes(),
            scratch: String::new(),
        }
    }

    /// Starts a row with its field count and (already encoded) source key.
    fn key(&mut self, key: &[u8]) {
        self.buf.extend_from_slice(&self.fields);
        self.buf.extend_from_slice(key);
        self.rows += 1;
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(&len(bytes.len()).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn text(&mut self, v: Option<&str>) {
        match v {
            None => self.null(),
            Some(s) => self.field(s.as_bytes()),
        }
    }

    fn borrowed(&mut self, v: Option<&Text<'_>>) {
        self.text(v.map(Text::as_str));
    }

    fn int4(&mut self, v: Option<i32>) {
        match v {
            None => self.null(),
            Some(i) => self.field(&i.to_be_bytes()),
        }
    }

    fn int8(&mut self, v: Option<i64>) {
        match v {
            None => self.null(),
            Some(i) => self.field(&i.to_be_bytes()),
        }
    }

    fn bool(&mut self, v: Option<bool>) {
        match v {
            None => self.null(),
            Some(b) => self.field(&[u8::from(b)]),
        }
    }

    /// IEEE 754 bits, the value exactly.
    fn float(&mut self, v: Option<f64>) {
        match v {
            None => self.null(),
            Some(f) => self.field(&f.to_bits().to_be_bytes()),
        }
    }

    fn date(&mut self, v: Option<NaiveDate>) {
        match v {
            None => self.null(),
            Some(d) => self.field(&(d.num_days_from_ce() - PG_EPOCH_FROM_CE).to_be_bytes()),
        }
    }

    /// jsonb's binary form: a version byte (1), then the JSON text.
    fn jsonb(&mut self, json: &str) {
        self.buf
            .extend_from_slice(&len(json.len() + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
    }

    fn normalized_title(&mut self, title: &str) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        normalize_title_into(title, &mut scratch);
        self.field(scratch.as_bytes());
        self.scratch = scratch;
    }

    fn finish(self) -> Option<CopyBatch> {
        (self.rows > 0).then_some(CopyBatch {
            sql: self.sql,
            data: std::sync::Arc::new(self.buf),
        })
    }
}

fn song(r: &mut Table, key: &[u8], s: &Song) {
    r.key(key);
    r.text(s.artist_name.as_deref());
    r.text(Some(&s.title));
    r.int4(s.year);
    r.text(s.release.as_deref());
}

fn song_row(r: &mut Table, key: &[u8], s: &SongRow<'_>) {
    r.key(key);
    r.borrowed(s.artist_name.as_ref());
    r.borrowed(Some(&s.title));
    r.int4(s.year);
    r.borrowed(s.release.as_ref());
}

fn movie(r: &mut Table, key: &[u8], m: &Movie) {
    r.key(key);
    r.text(Some(&m.original_title));
    r.text(m.original_language.as_deref());
    r.int8(m.budget);
    r.bool(m.is_adult);
    r.date(m.release_date);
    r.text(Some(&m.original_title_normalized));
}

fn movie_row(r: &mut Table, key: &[u8], m: &MovieRow<'_>) {
    r.key(key);
    r.borrowed(Some(&m.original_title));
    r.borrowed(m.original_language.as_ref());
    r.int8(m.budget);
    r.bool(m.is_adult);
    r.date(m.release_date);
    r.normalized_title(m.original_title.as_str());
}

fn app(r: &mut Table, key: &[u8], a: &App) {
    r.key(key);
    r.text(Some(&a.name));
    r.text(a.genre.as_deref());
    r.float(a.rating);
    r.text(a.version.as_deref());
    r.int8(a.size_bytes);
    r.bool(Some(a.is_awesome));
}

fn app_row(r: &mut Table, key: &[u8], a: &AppRow<'_>) {
    r.key(key);
    r.borrowed(Some(&a.name));
    r.borrowed(a.genre.as_ref());
    r.float(a.rating);
    r.borrowed(a.version.as_ref());
    r.int8(a.size_bytes);
    r.bool(Some(a.is_awesome()));
}

fn rejected(r: &mut Table, key: &[u8], x: &Rejected) {
    r.key(key);
    r.int4(Some(x.index));
    r.text(Some(&x.reason));
    r.jsonb(&x.raw.to_string());
}

/// Reads a batch's rows back as COPY text lines (tab-separated fields,
/// `\\N` for NULL, text escaped as the text format does), checking the
/// framing on the way: for tests and the fuzz target, which assert what
/// was encoded without a server. An error says where the bytes stop
/// making sense.
pub fn render(sql: &str, data: &[u8]) -> Result<Vec<String>, String> {
    let cols = columns(sql).ok_or_else(|| format!("{sql}: not a statement copy::columns knows"))?;
    let mut rest = data;
    let take = |n: usize, rest: &mut &[u8]| -> Result<Vec<u8>, String> {
        if rest.len() < n {
            return Err(format!("truncated at byte {}", data.len() - rest.len()));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    let mut lines = Vec::new();
    while !rest.is_empty() {
        let n = i16::from_be_bytes(take(2, &mut rest)?.try_into().unwrap_or_default());
        if usize::try_from(n).ok() != Some(cols.len()) {
            return Err(format!(
                "row {} has {n} fields, not {}",
                lines.len(),
                cols.len()
            ));
        }
        let mut fields = Vec::with_capacity(cols.len());
        for col in cols {
            let n = i32::from_be_bytes(take(4, &mut rest)?.try_into().unwrap_or_default());
            let Ok(n) = usize::try_from(n) else {
                fields.push("\\N".to_string());
                continue;
            };
            let v = take(n, &mut rest)?;
            fields.push(render_field(*col, &v)?);
        }
        lines.push(fields.join("\t"));
    }
    Ok(lines)
}

fn render_field(col: Column, v: &[u8]) -> Result<String, String> {
    let fixed = |n: usize| -> Result<&[u8], String> {
        (v.len() == n)
            .then_some(v)
            .ok_or_else(|| format!("{col:?} field of {} bytes", v.len()))
    };
    Ok(match col {
        Column::Text => escaped_text(v)?,
        Column::Jsonb => match v.split_first() {
            Some((1, json)) => escaped_text(json)?,
            _ => return Err("jsonb field without version 1".into()),
        },
        Column::Int4 => i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default()).to_string(),
        Column::Int8 => i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default()).to_string(),
        Column::Float8 => {
            f64::from_bits(u64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default())).to_string()
        }
        Column::Bool => match fixed(1)? {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => return Err("bool field not 0 or 1".into()),
        },
        Column::Date => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default());
            NaiveDate::from_num_days_from_ce_opt(days.saturating_add(PG_EPOCH_FROM_CE))
                .ok_or("date out of range")?
                .format("%Y-%m-%d")
                .to_string()
        }
    })
}

/// A text field as the text format writes it; NUL and invalid UTF-8 are
/// errors, as PostgreSQL refuses both.
fn escaped_text(v: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(v).map_err(|e| format!("text field not UTF-8: {e}"))?;
    if s.contains('\0') {
        return Err("NUL byte in a text field".into());
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_column_has_its_type() {
        let cols = written_columns();
        assert_eq!(cols.len(), 5 + 7 + 7 + 4);
        assert!(cols.contains(&("songs", "year", "int4")));
        assert!(cols.contains(&("movies", "release_date", "date")));
        assert!(cols.contains(&("rejected_records", "raw", "jsonb")));
    }

    #[test]
    fn header_is_the_binary_signature() {
        assert_eq!(HEADER.len(), 19);
        assert!(HEADER.starts_with(b"PGCOPY\n\xff\r\n\0"));
    }

    #[test]
    fn text_travels_unescaped_and_nulls_as_minus_one() {
        let file = ParsedFile {
            songs: vec![Song {
                artist_name: None,
                title: "a\tb\\c\nd é".into(),
                year: Some(1994),
                release: Some("r".into()),
            }],
            ..Default::default()
        };
        let b = batches("k", &file);
        assert_eq!(b.len(), 1);
        let title = "a\tb\\c\nd é";
        let mut want = vec![0, 5, 0, 0, 0, 1, b'k', 0xff, 0xff, 0xff, 0xff, 0, 0, 0];
        want.push(title.len() as u8);
        want.extend_from_slice(title.as_bytes());
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0x07, 0xca, 0, 0, 0, 1, b'r']);
        assert_eq!(*b[0].data, want);
        assert_eq!(
            render(b[0].sql, &b[0].data).unwrap(),
            ["k\t\\N\ta\\tb\\\\c\\nd é\t1994\tr"]
        );
    }

    #[test]
    fn every_type_reads_back() {
        let file = ParsedFile {
            movies: vec![Movie {
                original_title: "Amélie".into(),
                original_language: None,
                budget: Some(-3),
                is_adult: Some(false),
                release_date: NaiveDate::from_ymd_opt(1999, 12, 31),
                original_title_normalized: "amelie".into(),
            }],
            apps: vec![App {
                name: "X".into(),
                genre: None,
                rating: Some(4.7),
                version: Some("1.0".into()),
                size_bytes: Some(1 << 40),
                is_awesome: true,
            }],
            rejected: vec![Rejected {
                index: 2,
                reason: "no title".into(),
                raw: serde_json::json!({"a": 1}),
            }],
            ..Default::default()
        };
        let lines: Vec<String> = batches("k", &file)
            .iter()
            .flat_map(|b| render(b.sql, &b.data).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "k\tAmélie\t\\N\t-3\tfalse\t1999-12-31\tamelie",
                "k\tX\t\\N\t4.7\t1.0\t1099511627776\ttrue",
                "k\t2\tno title\t{\"a\":1}",
            ]
        );
        // 2000-01-01 is day 0 of PostgreSQL's dates.
        let mut t = Table::new(MOVIES, 1);
        t.date(NaiveDate::from_ymd_opt(2000, 1, 1));
        assert_eq!(t.buf, [0, 0, 0, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn render_refuses_broken_framing() {
        assert!(render(SONGS, &[0, 5, 0, 0]).is_err());
        assert!(render(SONGS, &[0, 4]).is_err());
        assert!(render("COPY x FROM STDIN", &[]).is_err());
    }
}
