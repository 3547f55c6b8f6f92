//! The fast path of the contract: one serde_json pass over a file into typed
//! records that borrow their text from the file's bytes.
//!
//! The reference implementation is [`super::parse::parse_file`], which
//! builds a `serde_json::Value` tree per record: exact, but most of the
//! client's CPU went into building and dropping those trees. This pass reads
//! each record's fields as borrowed raw JSON and coerces them directly. It
//! only ever *accepts* a record: anything it is not sure about (a rejection,
//! a duplicate key, a number in exponent form, an escape it cannot vouch
//! for, deep nesting) becomes [`Item::Owned`] with the reference
//! implementation's own verdict on that record's raw text, so rejection
//! reasons and stored raw records are the reference's, byte for byte. A file
//! this pass cannot read at all (not JSON, not an array) goes to the
//! reference implementation whole, for the same reason.
//!
//! Files of plain records take a narrower first pass still
//! ([`super::scan`]), which yields the same items.
//!
//! Rows keep the order of the file within each table either way, which is
//! all the tables and [`ParsedFile`] record.

use std::borrow::Cow;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::de::{DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::normalize::normalize_title;
use super::parse::{self, FileError, ParsedFile};
use super::record::{App, Movie, Record, Rejected, Song};

/// A text value borrowed from the file when it can be: the content of a
/// JSON string that had no escape, or a plain JSON number token. A string
/// with escapes is decoded into an owned one.
#[derive(Debug, Clone, PartialEq)]
pub struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn into_string(self) -> String {
        self.0.into_owned()
    }
}

/// A `songs` row, borrowing from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct SongRow<'a> {
    pub artist_name: Option<Text<'a>>,
    pub title: Text<'a>,
    pub year: Option<i32>,
    pub release: Option<Text<'a>>,
}

/// A `movies` row, borrowing from the file. The normalized title is
/// computed where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieRow<'a> {
    pub original_title: Text<'a>,
    pub original_language: Option<Text<'a>>,
    pub budget: Option<i64>,
    pub is_adult: Option<bool>,
    /// Year 0001–9999 (anything else goes to the reference path).
    pub release_date: Option<NaiveDate>,
}

/// An `apps` row, borrowing from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRow<'a> {
    pub name: Text<'a>,
    pub genre: Option<Text<'a>>,
    pub rating: Option<f64>,
    pub version: Option<Text<'a>>,
    pub size_bytes: Option<i64>,
}

impl AppRow<'_> {
    pub fn is_awesome(&self) -> bool {
        self.rating.is_some_and(|r| r >= 4.5)
    }
}

/// One element of a file's array.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    Song(SongRow<'a>),
    Movie(MovieRow<'a>),
    App(AppRow<'a>),
    /// A well-formed record of a type that is not loaded.
    Skipped,
    /// The reference implementation's verdict on this record.
    Owned(Box<Outcome>),
    /// Waiting for the reference implementation (never in a returned file).
    Pending,
}

/// What the reference implementation made of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Record(Record),
    Rejected(Rejected),
    Skipped,
}

/// A parsed file whose rows borrow from its bytes, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BorrowedFile<'a> {
    pub items: Vec<Item<'a>>,
}

/// Rows per table, rejected records and skipped records of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub songs: u64,
    pub movies: u64,
    pub apps: u64,
    pub rejected: u64,
    pub skipped: u64,
}

impl BorrowedFile<'_> {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for item in &self.items {
            let n = match item {
                Item::Song(_) => &mut c.songs,
                Item::Movie(_) => &mut c.movies,
                Item::App(_) => &mut c.apps,
                Item::Skipped => &mut c.skipped,
                Item::Owned(o) => match **o {
                    Outcome::Record(Record::Song(_)) => &mut c.songs,
                    Outcome::Record(Record::Movie(_)) => &mut c.movies,
                    Outcome::Record(Record::App(_)) => &mut c.apps,
                    Outcome::Rejected(_) => &mut c.rejected,
                    Outcome::Skipped => &mut c.skipped,
                },
                Item::Pending => continue,
            };
            *n += 1;
        }
        c
    }

    /// The owned form every write strategy and test understands.
    pub fn into_parsed(self) -> ParsedFile {
        let mut out = ParsedFile::default();
        for item in self.items {
            match item {
                Item::Song(s) => out.songs.push(s.into_owned()),
                Item::Movie(m) => out.movies.push(m.into_owned()),
                Item::App(a) => out.apps.push(a.into_owned()),
                Item::Skipped => out.skipped += 1,
                Item::Owned(o) => match *o {
                    Outcome::Record(Record::Song(s)) => out.songs.push(s),
                    Outcome::Record(Record::Movie(m)) => out.movies.push(m),
                    Outcome::Record(Record::App(a)) => out.apps.push(a),
                    Outcome::Rejected(r) => out.rejected.push(r),
                    Outcome::Skipped => out.skipped += 1,
                },
                Item::Pending => unreachable!("pending items are resolved before returning"),
            }
        }
        out
    }

    fn from_parsed(p: ParsedFile) -> Self {
        let owned = |o| Item::Owned(Box::new(o));
        let mut items = Vec::with_capacity(p.songs.len() + p.movies.len() + p.apps.len());
        items.extend(
            p.songs
                .into_iter()
                .map(|s| owned(Outcome::Record(Record::Song(s)))),
        );
        items.extend(
            p.movies
                .into_iter()
                .map(|m| owned(Outcome::Record(Record::Movie(m)))),
        );
        items.extend(
            p.apps
                .into_iter()
                .map(|a| owned(Outcome::Record(Record::App(a)))),
        );
        items.extend(p.rejected.into_iter().map(|r| owned(Outcome::Rejected(r))));
        items.extend((0..p.skipped).map(|_| Item::Skipped));
        BorrowedFile { items }
    }
}

impl SongRow<'_> {
    fn into_owned(self) -> Song {
        Song {
            artist_name: self.artist_name.map(Text::into_string),
            title: self.title.into_string(),
            year: self.year,
            release: self.release.map(Text::into_string),
        }
    }
}

impl MovieRow<'_> {
    fn into_owned(self) -> Movie {
        let original_title = self.original_title.into_string();
        Movie {
            original_title_normalized: normalize_title(&original_title),
            original_title,
            original_language: self.original_language.map(Text::into_string),
            budget: self.budget,
            is_adult: self.is_adult,
            release_date: self.release_date,
        }
    }
}

impl AppRow<'_> {
    fn into_owned(self) -> App {
        App {
            is_awesome: self.is_awesome(),
            name: self.name.into_string(),
            genre: self.genre.map(Text::into_string),
            rating: self.rating,
            version: self.version.map(Text::into_string),
            size_bytes: self.size_bytes,
        }
    }
}

/// Where a parsed file's items go, in file order: a [`BorrowedFile`], or a
/// writer of COPY rows that encodes each as it comes.
pub trait Sink<'a> {
    fn item(&mut self, item: Item<'a>);
    /// Forgets every item so far: the scan declined the file part-way,
    /// and the items start again from the first.
    fn clear(&mut self);
}

impl<'a> Sink<'a> for BorrowedFile<'a> {
    fn item(&mut self, item: Item<'a>) {
        self.items.push(item);
    }
    fn clear(&mut self) {
        self.items.clear();
    }
}

/// Parses a bucket file (same contract and same results as
/// [`super::parse::parse_file`]) into `sink`, with rows borrowing from
/// `bytes`. A file of plain records is scanned once, each record going to
/// the sink as soon as it is read, with no list of records in between.
pub fn parse_file_into<'a>(bytes: &'a [u8], sink: &mut impl Sink<'a>) -> Result<(), FileError> {
    let unmarked = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Validating UTF-8 once up front lets serde_json borrow raw values
    // without validating each again. simdutf8 picks its SIMD at run time:
    // std's validator was a tenth of the scan's time on seed's
    // multilingual titles.
    let file = match simdutf8::basic::from_utf8(unmarked) {
        Ok(text) => {
            if super::scan::each(text, |item| sink.item(item)).is_some() {
                return Ok(());
            }
            sink.clear();
            serde_json_pass(text)
        }
        Err(_) => None,
    };
    let file = match file {
        Some(file) => file,
        // Not a well-formed JSON array: the reference says why.
        None => parse::parse_file(bytes).map(BorrowedFile::from_parsed)?,
    };
    file.items.into_iter().for_each(|item| sink.item(item));
    Ok(())
}

/// Parses a bucket file (same contract and same results as
/// [`super::parse::parse_file`]) with rows borrowing from `bytes`.
pub fn parse_file_borrowed(bytes: &[u8]) -> Result<BorrowedFile<'_>, FileError> {
    // Records are a hundred bytes or more: reserve once, not per doubling.
    let mut file = BorrowedFile {
        items: Vec::with_capacity(bytes.len() / 128),
    };
    parse_file_into(bytes, &mut file)?;
    Ok(file)
}

/// Parses a bucket file into owned rows.
pub fn parse_file(bytes: &[u8]) -> Result<ParsedFile, FileError> {
    parse_file_borrowed(bytes).map(BorrowedFile::into_parsed)
}

/// The serde_json pass over a file the scan declined.
pub(super) fn serde_json_pass(text: &str) -> Option<BorrowedFile<'_>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let (mut items, pending) = de.deserialize_seq(FileVisitor { len: text.len() }).ok()?;
    de.end().ok()?;
    if pending {
        resolve_pending(text, &mut items)?;
    }
    Some(BorrowedFile { items })
}

/// Hands each pending record's raw text to the reference implementation.
/// Only files holding such a record pay for this second pass.
fn resolve_pending(text: &str, items: &mut [Item<'_>]) -> Option<()> {
    let raws: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    if raws.len() != items.len() {
        return None;
    }
    for (index, (item, raw)) in items.iter_mut().zip(raws).enumerate() {
        if !matches!(item, Item::Pending) {
            continue;
        }
        // A one-record file through the reference implementation: its
        // reasons never mention the position in the array, so only the
        // index needs restoring.
        let one = parse::parse_file(format!("[{}]", raw.get()).as_bytes()).ok()?;
        let outcome = if let Some(s) = one.songs.into_iter().next() {
            Outcome::Record(Record::Song(s))
        } else if let Some(m) = one.movies.into_iter().next() {
            Outcome::Record(Record::Movie(m))
        } else if let Some(a) = one.apps.into_iter().next() {
            Outcome::Record(Record::App(a))
        } else if let Some(mut r) = one.rejected.into_iter().next() {
            r.index = i32::try_from(index).unwrap_or(i32::MAX);
            Outcome::Rejected(r)
        } else {
            Outcome::Skipped
        };
        *item = Item::Owned(Box::new(outcome));
    }
    Some(())
}

struct FileVisitor {
    len: usize,
}

impl<'de> Visitor<'de> for FileVisitor {
    /// The items, and whether any is pending.
    type Value = (Vec<Item<'de>>, bool);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Records are a hundred bytes or more: reserve once, not per doubling.
        let mut items = Vec::with_capacity(self.len / 128);
        let mut pending = false;
        while let Some(item) = seq.next_element_seed(RecordSeed)? {
            pending |= matches!(item, Item::Pending);
            items.push(item);
        }
        Ok((items, pending))
    }
}

/// The keys serde_json's `Value` treats specially when first in an object
/// (with `arbitrary_precision` and `raw_value`): such an object is not an
/// object to it.
pub(super) const PRIVATE_TOKEN: &str = "$serde_json::private::";

#[derive(Clone, Copy, PartialEq, Eq)]
enum RecordKey {
    Type,
    Data,
    Private,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKey {
    ArtistName,
    Title,
    Year,
    Release,
    OriginalTitle,
    OriginalTitleColon,
    OriginalLanguage,
    Budget,
    IsAdult,
    ReleaseDate,
    Name,
    Genre,
    Rating,
    Version,
    SizeBytes,
    Private,
    Other,
}

pub(super) const FIELD_COUNT: usize = FieldKey::Private as usize;

fn record_key(s: &str) -> RecordKey {
    match s {
        "type" => RecordKey::Type,
        "data" => RecordKey::Data,
        _ if s.starts_with(PRIVATE_TOKEN) => RecordKey::Private,
        _ => RecordKey::Other,
    }
}

pub(super) fn field_key(s: &str) -> FieldKey {
    match s {
        "artist_name" => FieldKey::ArtistName,
        "title" => FieldKey::Title,
        "year" => FieldKey::Year,
        "release" => FieldKey::Release,
        "original_title" => FieldKey::OriginalTitle,
        "original_title:" => FieldKey::OriginalTitleColon,
        "original_language" => FieldKey::OriginalLanguage,
        "budget" => FieldKey::Budget,
        "is_adult" => FieldKey::IsAdult,
        "release_date" => FieldKey::ReleaseDate,
        "name" => FieldKey::Name,
        "genre" => FieldKey::Genre,
        "rating" => FieldKey::Rating,
        "version" => FieldKey::Version,
        "size_bytes" => FieldKey::SizeBytes,
        _ if s.starts_with(PRIVATE_TOKEN) => FieldKey::Private,
        _ => FieldKey::Other,
    }
}

/// Reads an object key (decoded, as `Value` would) and classifies it.
struct KeySeed<F>(F);

impl<'de, K, F: FnOnce(&str) -> K> DeserializeSeed<'de> for KeySeed<F> {
    type Value = K;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<K, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, K, F: FnOnce(&str) -> K> Visitor<'de> for KeySeed<F> {
    type Value = K;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, s: &str) -> Result<K, E> {
        Ok((self.0)(s))
    }
}

/// Accepts any JSON value and throws it away. serde_json hands a number to
/// `deserialize_any` as a one-entry map under its private key, hence the
/// maps here.
macro_rules! anything_else {
    ($out:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($out)
        }
    };
}

struct RecordSeed;

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = Item<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Item<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed {
    type Value = Item<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }

    anything_else!(Item::Pending);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
        let mut ty: Option<&'de RawValue> = None;
        // Filled in place: moving this array of slots around per record
        // showed up as memmove in profiles.
        let mut fields = Fields::default();
        let mut data: Option<bool> = None;
        let mut usual = true;
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed(record_key))? {
            match key {
                RecordKey::Private if first => {
                    // A number, or an object `Value` does not read as one.
                    map.next_value::<IgnoredAny>()?;
                    usual = false;
                }
                RecordKey::Type => {
                    usual &= ty.is_none();
                    ty = Some(map.next_value()?);
                }
                RecordKey::Data => {
                    usual &= data.is_none();
                    fields = Fields::default();
                    data = Some(map.next_value_seed(DataSeed(&mut fields))?);
                }
                RecordKey::Private | RecordKey::Other => {
                    usual &= Val::classify(map.next_value()?).is_some();
                }
            }
            first = false;
        }
        if !usual {
            return Ok(Item::Pending);
        }
        let (Some(ty), Some(true)) = (ty, data) else {
            return Ok(Item::Pending);
        };
        if !fields.usual {
            return Ok(Item::Pending);
        }
        let Some(Val::Str(Cow::Borrowed(ty))) = Val::classify(ty) else {
            return Ok(Item::Pending);
        };
        Ok(fields.take_item(ty).unwrap_or(Item::Pending))
    }
}

/// Reads a record's `data` into the fields; `true` if it is an object.
struct DataSeed<'f, 'de>(&'f mut Fields<'de>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, 'de> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record's data")
    }

    anything_else!(false);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let fields = self.0;
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed(field_key))? {
            if key == FieldKey::Private && first {
                map.next_value::<IgnoredAny>()?;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(false);
            }
            first = false;
            let val = Val::classify(map.next_value()?);
            let Some(val) = val else {
                fields.usual = false;
                continue;
            };
            if (key as usize) < FIELD_COUNT {
                let slot = &mut fields.slots[key as usize];
                // `Value` keeps the last of duplicate keys; simpler to let
                // the reference implementation do exactly that.
                fields.usual &= slot.is_none();
                *slot = Some(val);
            }
        }
        Ok(true)
    }
}

/// Nesting the fast path vouches for: well under serde_json's recursion
/// limit (128) for a value inside `data` inside a record.
pub(super) const MAX_NESTING: usize = 100;

/// A field's value, as far as the contract cares.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val<'a> {
    Null,
    Bool(bool),
    /// A JSON number without an exponent, whose text `Value` keeps as is.
    Num(&'a str),
    Str(Cow<'a, str>),
    /// An array or an object that `Value` reads without trouble.
    Nested,
}

impl<'a> Val<'a> {
    /// `None` for a value the fast path does not vouch for: one `Value`
    /// might refuse (lone surrogate escapes, nesting past its recursion
    /// limit, its private keys) or spell differently (exponents).
    fn classify(raw: &'a RawValue) -> Option<Val<'a>> {
        let s = raw.get();
        match s.as_bytes().first()? {
            b'n' => Some(Val::Null),
            b't' => Some(Val::Bool(true)),
            b'f' => Some(Val::Bool(false)),
            b'"' => {
                let inner = &s[1..s.len() - 1];
                if inner.as_bytes().contains(&b'\\') {
                    serde_json::from_str::<String>(s)
                        .ok()
                        .map(|d| Val::Str(Cow::Owned(d)))
                } else {
                    Some(Val::Str(Cow::Borrowed(inner)))
                }
            }
            b'[' | b'{' => nested_is_plain(s).then_some(Val::Nested),
            _ => (!s.bytes().any(|b| b == b'e' || b == b'E')).then_some(Val::Num(s)),
        }
    }
}

/// An array or object with no escapes, no private key and modest nesting.
fn nested_is_plain(s: &str) -> bool {
    if s.contains('\\') || s.contains(PRIVATE_TOKEN) {
        return false;
    }
    let (mut depth, mut max, mut in_str) = (0usize, 0usize, false);
    for b in s.bytes() {
        match b {
            b'"' => in_str = !in_str,
            b'[' | b'{' if !in_str => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' if !in_str => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max <= MAX_NESTING
}

/// The contract's fields of a `data` object (the union over the three
/// types: the type may come after the data).
pub(super) struct Fields<'a> {
    pub(super) slots: [Option<Val<'a>>; FIELD_COUNT],
    usual: bool,
}

impl Default for Fields<'_> {
    fn default() -> Self {
        Fields {
            slots: Default::default(),
            usual: true,
        }
    }
}

// Each coercion mirrors `super::coerce` on what it accepts and returns
// `None` for everything else, which the reference implementation then
// rejects (or, for an unusual spelling, accepts) in its own words.

/// `Some(None)`: missing or null.
type Coerced<T> = Option<Option<T>>;

fn text(v: Option<Val<'_>>) -> Coerced<Text<'_>> {
    match v {
        None | Some(Val::Null) => Some(None),
        // Only a decoded escape can hold NUL, which PostgreSQL text refuses.
        Some(Val::Str(Cow::Owned(s))) if s.contains('\0') => None,
        Some(Val::Str(s)) => Some(Some(Text(s))),
        Some(Val::Num(n)) => Some(Some(Text(Cow::Borrowed(n)))),
        Some(_) => None,
    }
}

fn required_text(v: Option<Val<'_>>) -> Option<Text<'_>> {
    text(v)?
}

fn integer(v: Option<Val<'_>>) -> Coerced<i64> {
    match v {
        None | Some(Val::Null) => Some(None),
        Some(Val::Num(n)) => int_from_number_text(n).map(Some),
        Some(Val::Str(s)) => s.trim().parse::<i64>().ok().map(Some),
        Some(_) => None,
    }
}

/// What `coerce::int_from_number` gives for a number whose text is `n`:
/// decided on the exact decimal text, as there (through f64,
/// `1994.0000000000000001` would pass for 1994).
fn int_from_number_text(n: &str) -> Option<i64> {
    n.parse::<i64>()
        .ok()
        .or_else(|| super::coerce::exact_integer(n))
}

fn non_negative(v: Option<Val<'_>>) -> Coerced<i64> {
    match integer(v)? {
        Some(i) if i < 0 => None,
        other => Some(other),
    }
}

fn number(v: Option<Val<'_>>) -> Coerced<f64> {
    let f = match v {
        None | Some(Val::Null) => return Some(None),
        Some(Val::Num(n)) => n.parse::<f64>().ok()?,
        Some(Val::Str(s)) => s.trim().parse::<f64>().ok()?,
        Some(_) => return None,
    };
    f.is_finite().then_some(Some(f))
}

fn boolean(v: Option<Val<'_>>) -> Coerced<bool> {
    match v {
        None | Some(Val::Null) => Some(None),
        Some(Val::Bool(b)) => Some(Some(b)),
        Some(Val::Str(s)) if s.trim().eq_ignore_ascii_case("true") => Some(Some(true)),
        Some(Val::Str(s)) if s.trim().eq_ignore_ascii_case("false") => Some(Some(false)),
        Some(_) => None,
    }
}

/// `YYYY-MM-DD`, a real calendar date, year 0001–9999.
fn date(v: Option<Val<'_>>) -> Coerced<NaiveDate> {
    let s = match v {
        None | Some(Val::Null) => return Some(None),
        Some(Val::Str(s)) => s,
        Some(_) => return None,
    };
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if y == 0 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(y as i32, m, d)?;
    debug_assert!((1..=9999).contains(&date.year()));
    Some(Some(date))
}

impl<'a> Fields<'a> {
    fn take(&mut self, key: FieldKey) -> Option<Val<'a>> {
        self.slots[key as usize].take()
    }

    #[inline]
    pub(super) fn take_item(&mut self, ty: &str) -> Option<Item<'a>> {
        use FieldKey as K;
        Some(match ty {
            "song" => Item::Song(SongRow {
                artist_name: text(self.take(K::ArtistName))?,
                title: required_text(self.take(K::Title))?,
                year: match integer(self.take(K::Year))? {
                    Some(y) => Some(i32::try_from(y).ok()?),
                    None => None,
                },
                release: text(self.take(K::Release))?,
            }),
            "movie" => {
                // As the reference: `original_title` unless missing or
                // null, then `original_title:` if present at all.
                let plain = self.take(K::OriginalTitle);
                let colon = self.take(K::OriginalTitleColon);
                let title = match (plain, colon) {
                    (Some(p), _) if p != Val::Null => Some(p),
                    (_, Some(c)) => Some(c),
                    (p, None) => p,
                };
                Item::Movie(MovieRow {
                    original_title: required_text(title)?,
                    original_language: text(self.take(K::OriginalLanguage))?,
                    budget: non_negative(self.take(K::Budget))?,
                    is_adult: boolean(self.take(K::IsAdult))?,
                    release_date: date(self.take(K::ReleaseDate))?,
                })
            }
            "app" => Item::App(AppRow {
                rating: number(self.take(K::Rating))?,
                name: required_text(self.take(K::Name))?,
                genre: text(self.take(K::Genre))?,
                version: text(self.take(K::Version))?,
                size_bytes: non_negative(self.take(K::SizeBytes))?,
            }),
            _ => Item::Skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The fast path against the reference implementation, on messy files.

    use super::*;
    use crate::db::copy;
    use proptest::prelude::*;

    /// Same `ParsedFile` (or the same file error), and same COPY bytes.
    fn assert_same(bytes: &[u8]) -> Result<(), TestCaseError> {
        let unmarked = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if let Ok(text) = std::str::from_utf8(unmarked)
            && let Some(items) = super::super::scan::file(text)
        {
            prop_assert_eq!(Some(BorrowedFile { items }), serde_json_pass(text));
        }
        let slow = parse::parse_file(bytes);
        let fast = parse_file_borrowed(bytes);
        match (&slow, &fast) {
            (Ok(s), Ok(f)) => {
                let sent = |b: Vec<copy::CopyBatch>| -> Vec<_> {
                    b.into_iter().map(|b| (b.sql, b.data)).collect()
                };
                let expected = sent(copy::batches("k\\ey", s));
                prop_assert_eq!(&sent(copy::borrowed_batches("k\\ey", f)), &expected);
                // Encoded as the records arrive, a declined scan's rows
                // forgotten.
                let mut tables = copy::Tables::new("k\\ey", bytes.len());
                parse_file_into(bytes, &mut tables).unwrap();
                let counts = tables.counts();
                prop_assert_eq!(counts, f.counts());
                prop_assert_eq!(&sent(tables.finish()), &expected);
                prop_assert_eq!(&f.clone().into_parsed(), s);
            }
            (Err(s), Err(_)) => prop_assert_eq!(&parse_file(bytes).unwrap_err(), s),
            _ => prop_assert!(false, "slow {slow:?} but fast {fast:?}"),
        }
        Ok(())
    }

    fn json_string(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|i| i.to_string()),
            (1900..2030i64).prop_map(|i| i.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:?}")),
            (0..50u8).prop_map(|r| format!("{}", f64::from(r) / 10.0)),
            prop::sample::select(vec![
                "1994.0",
                "1994.5",
                "1e3",
                "1E3",
                "2.5e-1",
                "-0",
                "-0.0",
                "0",
                "-5",
                "3000000000",
                "99999999999999999999999",
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775808",
                "9.2233720368547758e18",
                "1e400",
                "1e-400",
                "2.10",
                "4.5",
                "4.49",
                "12345678901234567890.0",
                "1994.0000000000000001",
                "-0.000",
                "100.00",
            ])
            .prop_map(str::to_string),
            "\\PC{0,10}".prop_map(|s| json_string(&s)),
            "[ -~]{0,10}".prop_map(|s| json_string(&s)),
            prop::sample::select(vec![
                r#""1994""#,
                r#"" 12 ""#,
                r#""1994.0""#,
                r#""-3""#,
                r#""TRUE""#,
                r#""false""#,
                r#"" True ""#,
                r#""yes""#,
                r#""2000-02-29""#,
                r#""0000-01-01""#,
                r#""0001-01-01""#,
                r#""9999-12-31""#,
                r#""1999-02-29""#,
                r#""2021-1-5""#,
                r#""2021-13-01""#,
                r#""+021-01-01""#,
                r#""a\tb""#,
                r#""a\\b""#,
                r#""\u0000""#,
                r#""x\u0000y""#,
                r#""\ud800""#,
                r#""\udc00x""#,
                r#""\ud83d\ude00""#,
                r#""\u00e9t\u00e9""#,
                r#""\/""#,
                r#""4.5""#,
                r#""NaN""#,
                r#""inf""#,
                r#""1e2""#,
                r#""Spider-Man:  No Way Home""#,
                r#""Ocean's Eleven""#,
                r#""Amélie""#,
                r#""İstanbul K""#,
                r#""a\r\nb""#,
                r#""""#,
                r#""\u0032\u0030\u0030\u0030-01-01""#,
                r#""$serde_json::private::Number""#,
            ])
            .prop_map(str::to_string),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => scalar(),
            1 => prop::sample::select(vec![
                "[]", "{}", "[1,2]", r#"{"a":1}"#, r#"["x",{"y":[null]}]"#,
                r#"{"$serde_json::private::Number":"1"}"#,
                r#"{"$serde_json::private::Number":"x"}"#,
                r#"{"$serde_json::private::RawValue":"1"}"#, r#"["\ud800"]"#, r#"{"k\u0041":1}"#,
            ])
            .prop_map(str::to_string),
            1 => (95..135usize).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
        ]
    }

    const KEYS: &[&str] = &[
        "artist_name",
        "title",
        "year",
        "release",
        "original_title",
        "original_title:",
        "original_language",
        "budget",
        "is_adult",
        "release_date",
        "name",
        "genre",
        "rating",
        "version",
        "size_bytes",
        "id",
        "tags",
        r#"tit\u006ce"#,
        r#"n\u0061me"#,
        "$serde_json::private::Number",
        "type",
        "data",
    ];

    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", " ", "\n  ", "\t"])
    }

    fn object(entries: Vec<(String, String, &'static str)>) -> String {
        let body: Vec<String> = entries
            .into_iter()
            .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}{w}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    fn data() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => prop::collection::vec(
                (prop::sample::select(KEYS).prop_map(|k| format!("\"{k}\"")), value(), ws()),
                0..9,
            )
            .prop_map(object),
            1 => value(),
        ]
    }

    fn record() -> impl Strategy<Value = String> {
        let ty = prop_oneof![
            4 => prop::sample::select(vec![r#""song""#, r#""movie""#, r#""app""#]).prop_map(str::to_string),
            1 => prop::sample::select(vec![
                r#""book""#, r#""Song""#, r#""so\u006eg""#, "3", "null", "[]", r#""""#,
            ])
            .prop_map(str::to_string),
        ];
        let part = prop_oneof![
            4 => ty.prop_map(|t| ("\"type\"".to_string(), t)),
            4 => data().prop_map(|d| ("\"data\"".to_string(), d)),
            1 => value().prop_map(|v| ("\"extra\"".to_string(), v)),
            1 => value().prop_map(|v| (r#""$serde_json::private::Number""#.to_string(), v)),
        ];
        prop_oneof![
            12 => prop::collection::vec((part, ws()), 0..4).prop_map(|parts| {
                object(parts.into_iter().map(|((k, v), w)| (k, v, w)).collect())
            }),
            // The usual shape, so that most records take the fast path.
            12 => (
                prop::sample::select(vec!["song", "movie", "app", "book"]),
                data(),
                any::<bool>(),
            )
                .prop_map(|(t, d, data_first)| if data_first {
                    format!(r#"{{"data":{d},"type":"{t}"}}"#)
                } else {
                    format!(r#"{{"type":"{t}","data":{d}}}"#)
                }),
            1 => value(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn fast_path_equals_the_reference(
            records in prop::collection::vec((record(), ws()), 0..8),
            bom in prop::bool::weighted(0.05),
        ) {
            let items: Vec<String> = records.into_iter().map(|(r, w)| format!("{w}{r}{w}")).collect();
            let mut text = format!("[{}]", items.join(","));
            if bom {
                text.insert(0, '\u{feff}');
            }
            assert_same(text.as_bytes())?;
        }

        #[test]
        fn fast_path_equals_the_reference_on_broken_files(
            records in prop::collection::vec(record(), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let text = format!("[{}]", records.join(","));
            assert_same(&text.as_bytes()[..cut.index(text.len() + 1)])?;
        }
    }

    /// The integer columns decide on the exact decimal text, as the
    /// reference does: through f64 these passed for whole numbers.
    #[test]
    fn a_fraction_too_small_for_f64_is_not_an_integer() {
        let text = br#"[{"type":"song","data":{"title":"t","year":1994.0000000000000001}},
            {"type":"app","data":{"name":"n","size_bytes":2.00000000000000000001}},
            {"type":"song","data":{"title":"t","year":1994.000}}]"#;
        assert_same(text).unwrap();
        let f = parse_file(text).unwrap();
        assert_eq!((f.songs.len(), f.apps.len(), f.rejected.len()), (1, 0, 2));
    }

    #[test]
    fn usual_records_take_the_fast_path() {
        let f = parse_file_borrowed(
            br#"[{"data":{"title":"t","year":1994.0,"release":2.1},"type":"song"},
                 {"type":"movie","data":{"original_title:":"A b","budget":"7","is_adult":"True","release_date":"2000-02-29"}},
                 {"type":"app","data":{"name":"n\u00e9","rating":"4.5","size_bytes":0,"tags":["x"]}},
                 {"type":"podcast","data":{"title":[1]}}]"#,
        )
        .unwrap();
        assert!(
            matches!(
                &f.items[..],
                [Item::Song(_), Item::Movie(_), Item::App(_), Item::Skipped]
            ),
            "{:?}",
            f.items
        );
    }

    #[test]
    fn unusual_records_take_the_reference_path() {
        for record in [
            r#"{"type":"song","data":{"title":"t","title":"u"}}"#,
            r#"{"type":"song","type":"song","data":{"title":"t"}}"#,
            r#"{"type":"song","data":{"title":"t","year":1e3}}"#,
            r#"{"type":"movie","data":{"original_title":"t","release_date":"0000-01-01"}}"#,
            r#"{"type":"song","data":{"title":"t\u0000"}}"#,
            r#"{"type":"song","data":{"title":"t","x":"\ud800"}}"#,
        ] {
            let text = format!("[{record}]");
            let f = parse_file_borrowed(text.as_bytes()).unwrap();
            assert!(
                matches!(&f.items[..], [Item::Owned(_)]),
                "{record}: {:?}",
                f.items
            );
        }
    }

    #[cfg(feature = "io")]
    #[test]
    fn generated_buckets_parse_the_same_both_ways() {
        use crate::sim::generator::{self, ProfileName, Spec};
        for profile in [ProfileName::Seed, ProfileName::Messy] {
            let spec = Spec::new(profile, 7);
            for i in 0..spec.files.min(12) {
                if let Some(body) = generator::file(&spec, i).body {
                    assert_same(&body).unwrap();
                }
            }
        }
    }
}
