//! From a file's bytes to typed rows, rejected records and a skipped count.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::coerce::{self, Fields};
use super::normalize::normalize_title;
use super::record::{App, Movie, Record, Rejected, Song};

/// The outcome of a file that parsed as a JSON array.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedFile {
    pub songs: Vec<Song>,
    pub movies: Vec<Movie>,
    pub apps: Vec<App>,
    pub rejected: Vec<Rejected>,
    /// Well-formed records of a type other than song, movie or app.
    pub skipped: u64,
}

impl ParsedFile {
    pub fn rows(&self) -> u64 {
        (self.songs.len() + self.movies.len() + self.apps.len()) as u64
    }
}

/// Why a whole file loads nothing. It goes into the ledger as `failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("top level is {0}, not an array of records")]
    NotArray(&'static str),
}

/// Parses a bucket file. A file that is not JSON, or not an array, fails as
/// a whole; inside an array each record stands or falls on its own.
pub fn parse_file(bytes: &[u8]) -> Result<ParsedFile, FileError> {
    // Editors on Windows write a BOM; it carries no meaning, so accept it.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Borrowing each record as raw text validates the whole file first, so a
    // syntax error fails the file before anything is half-parsed, and a
    // record-level problem (a number beyond f64) rejects only that record.
    let items: Vec<&RawValue> = match serde_json::from_slice(bytes) {
        Ok(items) => items,
        Err(e) => return Err(top_level_error(bytes, e)),
    };
    let mut out = ParsedFile::default();
    for (index, raw) in items.iter().enumerate() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        match literal_value(raw.get()) {
            Ok(value) => {
                match parse_record(&value).map(|r| r.map(|r| as_written(r, &value, raw))) {
                    Ok(Some(Record::Song(s))) => out.songs.push(s),
                    Ok(Some(Record::Movie(m))) => out.movies.push(m),
                    Ok(Some(Record::App(a))) => out.apps.push(a),
                    Ok(None) => out.skipped += 1,
                    Err(reason) => out.rejected.push(Rejected {
                        index,
                        reason,
                        raw: jsonb_safe(value, raw.get()),
                    }),
                }
            }
            Err(e) => out.rejected.push(Rejected {
                index,
                reason: format!("record is not valid JSON: {e}"),
                raw: Value::String(raw.get().replace('\0', "\u{FFFD}")),
            }),
        }
    }
    Ok(out)
}

/// A record's JSON as a `Value`, every object read as an object.
///
/// With `arbitrary_precision` and `raw_value`, serde_json's own `Value`
/// reads an object whose first key is `$serde_json::private::Number` (or
/// `...RawValue`, escaped spellings included) as a number (or as raw JSON),
/// so such a record loaded what it does not say (an object taken for a
/// year) or was refused for the wrong reason. A record whose text could
/// spell such a key (it holds `private`, or a `\u` escape) is read again
/// here with objects as maps of raw values, whose keys are only keys;
/// any other is `Value`'s reading, nesting limit and errors included.
fn literal_value(raw: &str) -> serde_json::Result<Value> {
    let parsed = serde_json::from_str::<Value>(raw);
    if !raw.contains("private") && !raw.contains("\\u") {
        return parsed;
    }
    match parsed {
        // Too deep for `Value`: too deep here too, and the rebuild would
        // recurse as deep as the text goes.
        Err(e) if e.to_string().starts_with("recursion limit") => Err(e),
        _ => rebuild(raw, 0),
    }
}

/// [`literal_value`]'s reading, one level at a time. Duplicate keys keep
/// the last, as `Value`'s do.
fn rebuild(raw: &str, depth: usize) -> serde_json::Result<Value> {
    // `Value`'s own limit; raw values are captured without one.
    if depth > 128 {
        return Err(serde::de::Error::custom("recursion limit exceeded"));
    }
    match raw.as_bytes().first() {
        Some(b'{') => {
            let entries: BTreeMap<String, &RawValue> = serde_json::from_str(raw)?;
            entries
                .into_iter()
                .map(|(k, v)| Ok((k, rebuild(v.get(), depth + 1)?)))
                .collect::<serde_json::Result<Map<_, _>>>()
                .map(Value::Object)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(raw)?;
            items
                .into_iter()
                .map(|v| rebuild(v.get(), depth + 1))
                .collect::<serde_json::Result<Vec<_>>>()
                .map(Value::Array)
        }
        _ => serde_json::from_str(raw),
    }
}

fn top_level_error(bytes: &[u8], e: serde_json::Error) -> FileError {
    // Tell "valid JSON of the wrong shape" from "not JSON at all": the former
    // is a bucket layout problem, the latter a corrupt or foreign file.
    // serde_json reports the shape (`invalid type: map, expected a
    // sequence`) before it reads far enough to find a syntax error, so a
    // truncated object was "not valid JSON" for the wrong reason.
    let syntax = if e.is_data() {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).err()
    } else {
        None
    };
    if e.is_data() && syntax.is_none() {
        {
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
            let kind = match first {
                Some(b'{') => "an object",
                Some(b'"') => "a string",
                Some(b't' | b'f') => "a boolean",
                Some(b'n') => "null",
                _ => "a number",
            };
            return FileError::NotArray(kind);
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return FileError::NotJson("the file is empty".into());
    }
    FileError::NotJson(syntax.unwrap_or(e).to_string())
}

/// Validates one record. `Ok(None)` is a well-formed record of a type this
/// contract does not load (counted as skipped).
pub fn parse_record(value: &Value) -> Result<Option<Record>, String> {
    let Value::Object(record) = value else {
        return Err("record is not a JSON object".into());
    };
    let ty = match record.get("type") {
        None | Some(Value::Null) => return Err("record has no \"type\"".into()),
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err("\"type\" is not a string".into()),
    };
    let data = match record.get("data") {
        None | Some(Value::Null) => return Err("record has no \"data\"".into()),
        Some(Value::Object(d)) => d,
        Some(_) => return Err("\"data\" is not an object".into()),
    };
    Ok(Some(match ty {
        "song" => Record::Song(song(data)?),
        "movie" => Record::Movie(movie(data)?),
        "app" => Record::App(app(data)?),
        _ => return Ok(None),
    }))
}

fn song(d: &Fields) -> Result<Song, String> {
    Ok(Song {
        artist_name: coerce::text(d, "artist_name")?,
        title: coerce::required_text(d, "title")?,
        year: coerce::integer_i32(d, "year")?,
        release: coerce::text(d, "release")?,
    })
}

/// The key a movie's title is read from. The original task's example
/// spells it `original_title:`.
fn title_key(d: &Fields) -> &'static str {
    if d.get("original_title").is_some_and(|v| !v.is_null()) {
        "original_title"
    } else if d.contains_key("original_title:") {
        "original_title:"
    } else {
        "original_title"
    }
}

/// A text field takes a number as its JSON text exactly as written, but
/// `Value` respells a number in exponent form (`1E3` as `1e+3`): such a
/// field's text is taken from the record's own bytes instead. Records
/// without one pay a look at their text fields.
fn as_written(mut record: Record, value: &Value, raw: &RawValue) -> Record {
    let Some(Value::Object(data)) = value.get("data") else {
        return record;
    };
    let respelled =
        |f: &str| matches!(data.get(f), Some(Value::Number(n)) if n.to_string().contains('e'));
    let text_fields = [
        "artist_name",
        "title",
        "release",
        "original_title",
        "original_title:",
        "original_language",
        "name",
        "genre",
        "version",
    ];
    if !text_fields.into_iter().any(respelled) {
        return record;
    }
    // Duplicate keys keep the last here as in `Value`, so this is the
    // value the record was read from.
    let fields = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get())
        .ok()
        .and_then(|r| r.get("data").copied())
        .and_then(|d| serde_json::from_str::<BTreeMap<String, &RawValue>>(d.get()).ok());
    let Some(fields) = fields else {
        return record;
    };
    let exact = |f: &str| respelled(f).then(|| fields.get(f).map(|r| r.get().to_string()))?;
    let set = |slot: &mut Option<String>, f: &str| {
        if let Some(t) = exact(f) {
            *slot = Some(t);
        }
    };
    match &mut record {
        Record::Song(s) => {
            set(&mut s.artist_name, "artist_name");
            set(&mut s.release, "release");
            if let Some(t) = exact("title") {
                s.title = t;
            }
        }
        Record::Movie(m) => {
            set(&mut m.original_language, "original_language");
            if let Some(t) = exact(title_key(data)) {
                m.original_title_normalized = normalize_title(&t);
                m.original_title = t;
            }
        }
        Record::App(a) => {
            set(&mut a.genre, "genre");
            set(&mut a.version, "version");
            if let Some(t) = exact("name") {
                a.name = t;
            }
        }
    }
    record
}

fn movie(d: &Fields) -> Result<Movie, String> {
    let title_key = title_key(d);
    let original_title = coerce::required_text(d, title_key)
        .map_err(|e| e.replace("original_title:", "original_title"))?;
    Ok(Movie {
        original_title_normalized: normalize_title(&original_title),
        original_title,
        original_language: coerce::text(d, "original_language")?,
        budget: coerce::non_negative(d, "budget")?,
        is_adult: coerce::boolean(d, "is_adult")?,
        release_date: coerce::date(d, "release_date")?,
    })
}

fn app(d: &Fields) -> Result<App, String> {
    let rating = coerce::number(d, "rating")?;
    Ok(App {
        name: coerce::required_text(d, "name")?,
        genre: coerce::text(d, "genre")?,
        is_awesome: rating.is_some_and(|r| r >= 4.5),
        rating,
        version: coerce::text(d, "version")?,
        size_bytes: coerce::non_negative(d, "size_bytes")?,
    })
}

/// A rejected record as `jsonb` can store it. `jsonb` refuses U+0000 in
/// strings, so a rejected record holding one would abort its file's
/// transaction; U+2400 (␀) keeps it visible and storable. A number beyond
/// what `numeric` holds (`1e200000`) cannot be stored as a number at all,
/// so such a record is stored as a JSON string of its original text.
fn jsonb_safe(value: Value, original: &str) -> Value {
    fn unfit_number(v: &Value) -> bool {
        match v {
            Value::Number(n) => !coerce::numeric_fits(&n.to_string()),
            Value::Array(a) => a.iter().any(unfit_number),
            Value::Object(o) => o.values().any(unfit_number),
            _ => false,
        }
    }
    if unfit_number(&value) {
        return Value::String(original.to_string());
    }
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn fix(v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.replace('\0', "\u{2400}")),
            Value::Array(a) => Value::Array(a.into_iter().map(fix).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k.replace('\0', "\u{2400}"), fix(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    if has_nul(&value) { fix(value) } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde_json's private keys are keys like any other: an object stays
    /// an object, an extra field stays ignored, `raw` keeps the record.
    #[test]
    fn serde_json_private_keys_are_only_keys() {
        let file = br#"[
            {"type":"song","data":{"title":"t","year":{"$serde_json::private::Number":"12"}}},
            {"type":"song","data":{"title":"t","year":{"\u0024serde_json::private::Number":"12"}}},
            {"$serde_json::private::RawValue":"{\"type\":\"song\",\"data\":{\"title\":\"x\"}}"},
            {"type":"song","data":{"title":"t","x":{"$serde_json::private::Number":"x"}}},
            {"$serde_json::private::RawValue":"x","type":"song","data":{"title":"x"}},
            {"type":"zzz","data":{"$serde_json::private::Number":"5"}},
            {"type":"song","data":{"x":{"$serde_json::private::Number":"5"}}}
        ]"#;
        let p = parse_file(file).unwrap();
        let titles: Vec<&str> = p.songs.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["t", "x"]);
        assert_eq!(p.skipped, 1);
        let rejected: Vec<(i32, &str)> = p
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(rejected.len(), 4, "{rejected:?}");
        assert_eq!(rejected[0].0, 0);
        assert!(rejected[0].1.contains("year"), "{rejected:?}");
        assert_eq!(rejected[1].0, 1);
        assert!(rejected[1].1.contains("year"), "{rejected:?}");
        assert_eq!(rejected[2], (2, "record has no \"type\""));
        assert_eq!(rejected[3].0, 6);
        // Deep records that could spell such a key still stop at the
        // nesting limit, without recursing as deep as the text.
        let deep = format!(
            r#"[{{"type":"song","private":{}{}}}]"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let d = parse_file(deep.as_bytes()).unwrap();
        assert!(
            d.rejected[0].reason.contains("recursion limit"),
            "{:?}",
            d.rejected
        );
        assert_eq!(
            p.rejected[3].raw,
            serde_json::json!({"type":"song","data":{"x":{"$serde_json::private::Number":"5"}}})
        );
    }
}
