//! COPY text-format encoding of parsed rows: a plain function from values to
//! bytes, so every model sends exactly the same data.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate};

use crate::contract::{
    App, AppRow, BorrowedFile, Item, Movie, MovieRow, Outcome, ParsedFile, Record, Rejected, Song,
    SongRow, Text, normalize_title_into,
};

pub const SONGS: &str = "COPY songs (source_key, artist_name, title, year, release) FROM STDIN";
pub const MOVIES: &str = "COPY movies (source_key, original_title, original_language, budget, is_adult, release_date, original_title_normalized) FROM STDIN";
pub const APPS: &str =
    "COPY apps (source_key, name, genre, rating, version, size_bytes, is_awesome) FROM STDIN";
pub const REJECTED: &str =
    "COPY rejected_records (source_key, record_index, reason, raw) FROM STDIN";

/// One COPY statement and its data.
#[derive(Debug, Clone)]
pub struct CopyBatch {
    pub sql: &'static str,
    pub data: Vec<u8>,
}

/// The COPY batches for a parsed file, empty tables left out.
pub fn batches(key: &str, file: &ParsedFile) -> Vec<CopyBatch> {
    let key = escaped(key);
    let mut songs = Table::new(SONGS, file.songs.len());
    file.songs.iter().for_each(|s| song(&mut songs, &key, s));
    let mut movies = Table::new(MOVIES, file.movies.len());
    file.movies.iter().for_each(|m| movie(&mut movies, &key, m));
    let mut apps = Table::new(APPS, file.apps.len());
    file.apps.iter().for_each(|a| app(&mut apps, &key, a));
    let mut rejects = Table::new(REJECTED, file.rejected.len());
    file.rejected
        .iter()
        .for_each(|x| rejected(&mut rejects, &key, x));
    [songs, movies, apps, rejects]
        .into_iter()
        .filter_map(Table::finish)
        .collect()
}

/// The COPY batches for a file parsed by the fast path, written straight
/// from the rows borrowed from the file's bytes, empty tables left out.
/// Same bytes as [`batches`] of the same file's [`ParsedFile`].
pub fn borrowed_batches(key: &str, file: &BorrowedFile<'_>) -> Vec<CopyBatch> {
    let key = escaped(key);
    // Rows per table, to size each buffer once.
    let mut n = [0usize; 4];
    for item in &file.items {
        let table = match item {
            Item::Song(_) => 0,
            Item::Movie(_) => 1,
            Item::App(_) => 2,
            Item::Owned(o) => match **o {
                Outcome::Record(Record::Song(_)) => 0,
                Outcome::Record(Record::Movie(_)) => 1,
                Outcome::Record(Record::App(_)) => 2,
                Outcome::Rejected(_) => 3,
                Outcome::Skipped => continue,
            },
            Item::Skipped | Item::Pending => continue,
        };
        n[table] += 1;
    }
    let mut songs = Table::new(SONGS, n[0]);
    let mut movies = Table::new(MOVIES, n[1]);
    let mut apps = Table::new(APPS, n[2]);
    let mut rejects = Table::new(REJECTED, n[3]);
    for item in &file.items {
        match item {
            Item::Song(s) => song_row(&mut songs, &key, s),
            Item::Movie(m) => movie_row(&mut movies, &key, m),
            Item::App(a) => app_row(&mut apps, &key, a),
            Item::Owned(o) => match &**o {
                Outcome::Record(Record::Song(s)) => song(&mut songs, &key, s),
                Outcome::Record(Record::Movie(m)) => movie(&mut movies, &key, m),
                Outcome::Record(Record::App(a)) => app(&mut apps, &key, a),
                Outcome::Rejected(x) => rejected(&mut rejects, &key, x),
                Outcome::Skipped => {}
            },
            Item::Skipped | Item::Pending => {}
        }
    }
    [songs, movies, apps, rejects]
        .into_iter()
        .filter_map(Table::finish)
        .collect()
}

/// The source key, escaped once per file rather than once per row.
fn escaped(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    escape_into(&mut out, key);
    out
}

/// One table's COPY data, a row at a time.
struct Table {
    sql: &'static str,
    buf: String,
    rows: usize,
}

impl Table {
    fn new(sql: &'static str, rows: usize) -> Self {
        Table {
            sql,
            buf: String::with_capacity(rows * 96),
            rows: 0,
        }
    }

    /// Starts a row with its (already escaped) source key.
    fn key(&mut self, key: &str) {
        self.buf.push_str(key);
        self.rows += 1;
    }

    fn null(&mut self) {
        self.buf.push_str("\t\\N");
    }

    fn text(&mut self, v: Option<&str>) {
        match v {
            None => self.null(),
            Some(s) => {
                self.buf.push('\t');
                escape_into(&mut self.buf, s);
            }
        }
    }

    fn borrowed(&mut self, v: Option<&Text<'_>>) {
        match v {
            None => self.null(),
            Some(t) if t.needs_escaping() => self.text(Some(t.as_str())),
            Some(t) => {
                self.buf.push('\t');
                self.buf.push_str(t.as_str());
            }
        }
    }

    fn int(&mut self, v: Option<impl itoa::Integer>) {
        match v {
            None => self.null(),
            Some(i) => {
                self.buf.push('\t');
                self.buf.push_str(itoa::Buffer::new().format(i));
            }
        }
    }

    fn bool(&mut self, v: Option<bool>) {
        match v {
            None => self.null(),
            Some(true) => self.buf.push_str("\ttrue"),
            Some(false) => self.buf.push_str("\tfalse"),
        }
    }

    /// `Display` of an f64 is its shortest round-trip form, which
    /// PostgreSQL's float8 input reads back exactly.
    fn float(&mut self, v: Option<f64>) {
        match v {
            None => self.null(),
            Some(f) => {
                let _ = write!(self.buf, "\t{f}");
            }
        }
    }

    /// `YYYY-MM-DD`, as chrono's `%Y-%m-%d` writes years 0–9999, without
    /// its formatting machinery per row.
    fn date(&mut self, v: Option<NaiveDate>) {
        let Some(d) = v else {
            return self.null();
        };
        let (y, m, day) = (d.year(), d.month(), d.day());
        if !(0..=9999).contains(&y) {
            let _ = write!(self.buf, "\t{}", d.format("%Y-%m-%d"));
            return;
        }
        let y = y as u32;
        let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
        for c in [
            '\t',
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            '-',
            digit(m / 10),
            digit(m),
            '-',
            digit(day / 10),
            digit(day),
        ] {
            self.buf.push(c);
        }
    }

    fn end(&mut self) {
        self.buf.push('\n');
    }

    fn finish(self) -> Option<CopyBatch> {
        (self.rows > 0).then(|| CopyBatch {
            sql: self.sql,
            data: self.buf.into_bytes(),
        })
    }
}

/// COPY text format: backslash, newline, carriage return and tab are the
/// only bytes that need escaping. Copies the runs between them whole (these
/// are ASCII, so never inside a multi-byte character): most values have
/// none, and a push per character was the top symbol of the transform.
fn escape_into(buf: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => continue,
        };
        buf.push_str(&s[start..i]);
        buf.push_str(escaped);
        start = i + 1;
    }
    buf.push_str(&s[start..]);
}

fn song(r: &mut Table, key: &str, s: &Song) {
    r.key(key);
    r.text(s.artist_name.as_deref());
    r.text(Some(&s.title));
    r.int(s.year);
    r.text(s.release.as_deref());
    r.end();
}

fn song_row(r: &mut Table, key: &str, s: &SongRow<'_>) {
    r.key(key);
    r.borrowed(s.artist_name.as_ref());
    r.borrowed(Some(&s.title));
    r.int(s.year);
    r.borrowed(s.release.as_ref());
    r.end();
}

fn movie(r: &mut Table, key: &str, m: &Movie) {
    r.key(key);
    r.text(Some(&m.original_title));
    r.text(m.original_language.as_deref());
    r.int(m.budget);
    r.bool(m.is_adult);
    r.date(m.release_date);
    r.text(Some(&m.original_title_normalized));
    r.end();
}

fn movie_row(r: &mut Table, key: &str, m: &MovieRow<'_>) {
    r.key(key);
    r.borrowed(Some(&m.original_title));
    r.borrowed(m.original_language.as_ref());
    r.int(m.budget);
    r.bool(m.is_adult);
    r.date(m.release_date);
    r.buf.push('\t');
    normalize_title_into(m.original_title.as_str(), &mut r.buf);
    r.end();
}

fn app(r: &mut Table, key: &str, a: &App) {
    r.key(key);
    r.text(Some(&a.name));
    r.text(a.genre.as_deref());
    r.float(a.rating);
    r.text(a.version.as_deref());
    r.int(a.size_bytes);
    r.bool(Some(a.is_awesome));
    r.end();
}

fn app_row(r: &mut Table, key: &str, a: &AppRow<'_>) {
    r.key(key);
    r.borrowed(Some(&a.name));
    r.borrowed(a.genre.as_ref());
    r.float(a.rating);
    r.borrowed(a.version.as_ref());
    r.int(a.size_bytes);
    r.bool(Some(a.is_awesome()));
    r.end();
}

fn rejected(r: &mut Table, key: &str, x: &Rejected) {
    r.key(key);
    r.int(Some(x.index));
    r.text(Some(&x.reason));
    r.text(Some(&x.raw.to_string()));
    r.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_multibyte_text_whole() {
        let mut buf = String::new();
        escape_into(&mut buf, "é\tü\\日本\n\r end");
        assert_eq!(buf, "é\\tü\\\\日本\\n\\r end");
        let mut plain = String::new();
        escape_into(&mut plain, "Amélie");
        assert_eq!(plain, "Amélie");
    }

    #[test]
    fn escapes_and_nulls() {
        let file = ParsedFile {
            songs: vec![Song {
                artist_name: None,
                title: "a\tb\\c\nd".into(),
                year: Some(1994),
                release: Some("r".into()),
            }],
            ..Default::default()
        };
        let b = batches("k", &file);
        assert_eq!(b.len(), 1);
        assert_eq!(
            String::from_utf8(b[0].data.clone()).unwrap(),
            "k\t\\N\ta\\tb\\\\c\\nd\t1994\tr\n"
        );
    }
}
