//! COPY text-format encoding of parsed rows: a plain function from values to
//! bytes, so every model sends exactly the same data.

use std::fmt::Write as _;

use crate::contract::{App, Movie, ParsedFile, Rejected, Song};

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
    let mut out = Vec::with_capacity(4);
    let mut push = |sql, rows: usize, encode: &dyn Fn(&mut Row)| {
        if rows > 0 {
            let mut row = Row {
                buf: String::with_capacity(rows * 96),
                first: true,
            };
            encode(&mut row);
            out.push(CopyBatch {
                sql,
                data: row.buf.into_bytes(),
            });
        }
    };
    push(SONGS, file.songs.len(), &|r| {
        file.songs.iter().for_each(|s| song(r, key, s))
    });
    push(MOVIES, file.movies.len(), &|r| {
        file.movies.iter().for_each(|m| movie(r, key, m))
    });
    push(APPS, file.apps.len(), &|r| {
        file.apps.iter().for_each(|a| app(r, key, a))
    });
    push(REJECTED, file.rejected.len(), &|r| {
        file.rejected.iter().for_each(|x| rejected(r, key, x))
    });
    out
}

struct Row {
    buf: String,
    first: bool,
}

impl Row {
    fn sep(&mut self) {
        if !self.first {
            self.buf.push('\t');
        }
        self.first = false;
    }
    fn text(&mut self, v: Option<&str>) {
        self.sep();
        match v {
            None => self.buf.push_str("\\N"),
            Some(s) => escape_into(&mut self.buf, s),
        }
    }
    fn display<T: std::fmt::Display>(&mut self, v: Option<T>) {
        self.sep();
        match v {
            None => self.buf.push_str("\\N"),
            Some(x) => {
                let _ = write!(self.buf, "{x}");
            }
        }
    }
    fn end(&mut self) {
        self.buf.push('\n');
        self.first = true;
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

fn song(r: &mut Row, key: &str, s: &Song) {
    r.text(Some(key));
    r.text(s.artist_name.as_deref());
    r.text(Some(&s.title));
    r.display(s.year);
    r.text(s.release.as_deref());
    r.end();
}

fn movie(r: &mut Row, key: &str, m: &Movie) {
    r.text(Some(key));
    r.text(Some(&m.original_title));
    r.text(m.original_language.as_deref());
    r.display(m.budget);
    r.display(m.is_adult);
    r.display(m.release_date.map(|d| d.format("%Y-%m-%d")));
    r.text(Some(&m.original_title_normalized));
    r.end();
}

fn app(r: &mut Row, key: &str, a: &App) {
    r.text(Some(key));
    r.text(Some(&a.name));
    r.text(a.genre.as_deref());
    r.display(a.rating);
    r.text(a.version.as_deref());
    r.display(a.size_bytes);
    r.display(Some(a.is_awesome));
    r.end();
}

fn rejected(r: &mut Row, key: &str, x: &Rejected) {
    r.text(Some(key));
    r.display(Some(x.index));
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
