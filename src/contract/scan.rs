//! The first try of the fast path: one strict scan over a file made only of
//! plain records, straight into the typed fields.
//!
//! Why a scanner of our own beside serde_json: the serde_json pass
//! ([`super::fast`]) runs at about a third of serde_json's own validation
//! speed (`parse_seed/typed_borrowed` against `validate_only_floor` in
//! `cargo bench --bench transform`), the difference being its per-field
//! machinery (visitors, `RawValue`, classifying each value's text a second
//! time), and the SIMD crates measured slower than serde_json on the
//! portable x86-64 target (docs/performance.md). Records in a bucket have
//! one shape, so a scanner that knows it reads each byte once.
//!
//! It is deliberately narrow: it accepts a file only when every byte is
//! well-formed JSON of the plain shape (no escape in any string, no number
//! in exponent form, no duplicate key, no serde_json private key, modest
//! nesting) and every record is one the contract loads or skips as is.
//! Anything else, anywhere in the file, returns `None` and the file goes to
//! the serde_json pass, which in turn defers to the reference
//! implementation record by record. So the scanner only has to be right
//! about what it accepts, and on that it yields exactly what the serde_json
//! pass yields (`tests::the_scan_equals_the_serde_json_pass`).

use std::borrow::Cow;

use super::fast::{FIELD_COUNT, Fields, Item, MAX_NESTING, PRIVATE_TOKEN, Val, field_key};

/// Hands the file's items to `f` in order; `None` if any part of the file
/// is not plain (after some items may have gone to `f`).
pub(super) fn each<'a>(text: &'a str, mut f: impl FnMut(Item<'a>)) -> Option<()> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    s.byte(b'[')?;
    s.ws();
    if s.peek()? == b']' {
        s.i += 1;
    } else {
        loop {
            s.ws();
            f(s.record()?);
            s.ws();
            match s.next()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(())
}

/// The file's items, or `None` if any part of it is not plain.
#[cfg(test)]
pub(super) fn file(text: &str) -> Option<Vec<Item<'_>>> {
    let mut items = Vec::new();
    each(text, |item| items.push(item))?;
    Some(items)
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

/// The length of the plain run at the start of `rest`: up to the first
/// byte that ends the plain part of a string (the quote, a backslash, which
/// starts an escape, or a control character JSON forbids), or `None`.
///
/// Eight bytes at a time (SWAR, as serde_json's own string scan): strings
/// are most of a file's bytes.
#[inline(always)]
fn plain_run(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = rest.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let v = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let quote = v ^ (ONES * u64::from(b'"'));
        let slash = v ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set here if it is zero (or below 0x20 for
        // the last): exact for the lowest such byte, which is all we read.
        let stops = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (v.wrapping_sub(ONES * 0x20) & !v);
        let stops = stops & HIGH;
        if stops != 0 {
            return Some(at + (stops.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    let i = tail
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(at + i)
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn byte(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON's whitespace, as serde_json reads it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string without escapes: its content, borrowed.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let rest = self.b.get(start..)?;
        let len = plain_run(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // Both ends are ASCII quotes, so this slices on character boundaries.
        self.text.get(start..start + len)
    }

    /// An object key, then its colon. serde_json gives keys under its
    /// private prefix a meaning of their own: not plain.
    fn key(&mut self) -> Option<&'a str> {
        let k = self.string()?;
        if k.starts_with(PRIVATE_TOKEN) {
            return None;
        }
        self.ws();
        self.byte(b':')?;
        self.ws();
        Some(k)
    }

    fn literal(&mut self, word: &[u8], v: Val<'a>) -> Option<Val<'a>> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// A number as JSON spells it, without an exponent (which the
    /// reference reads through its own text rules): its text.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            return None;
        }
        self.text.get(start..self.i)
    }

    /// Any plain value; arrays and objects are checked and skipped.
    fn value(&mut self) -> Option<Val<'a>> {
        match self.peek()? {
            b'"' => self.string().map(|s| Val::Str(Cow::Borrowed(s))),
            b'n' => self.literal(b"null", Val::Null),
            b't' => self.literal(b"true", Val::Bool(true)),
            b'f' => self.literal(b"false", Val::Bool(false)),
            b'[' | b'{' => self.nested(1).map(|()| Val::Nested),
            _ => self.number().map(Val::Num),
        }
    }

    /// An array or object at nesting `depth` (1 for a field's own value).
    fn nested(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_NESTING {
            return None;
        }
        let close = match self.next()? {
            b'[' => b']',
            _ => b'}',
        };
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            if close == b'}' {
                self.key()?;
            }
            match self.peek()? {
                b'[' | b'{' => self.nested(depth + 1)?,
                _ => {
                    self.value()?;
                }
            }
            self.ws();
            match self.next()? {
                b',' => {}
                c if c == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// `{"type": "...", "data": {...}}`, the two in either order, other
    /// keys ignored.
    fn record(&mut self) -> Option<Item<'a>> {
        self.byte(b'{')?;
        let mut ty = None;
        let mut data = false;
        // Filled in place: moving this array of slots around per record
        // showed up as memmove in profiles of the serde_json pass.
        let mut fields = Fields::default();
        loop {
            self.ws();
            match self.key()? {
                "type" if ty.is_none() => ty = Some(self.string()?),
                "data" if !data => {
                    self.data(&mut fields)?;
                    data = true;
                }
                "type" | "data" => return None,
                _ => {
                    self.value()?;
                }
            }
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        if !data {
            return None;
        }
        // A record the contract would reject goes to the reference, which
        // says why in its own words.
        fields.take_item(ty?)
    }

    /// A record's `data` object into the contract's fields.
    fn data(&mut self, fields: &mut Fields<'a>) -> Option<()> {
        self.byte(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = field_key(self.key()?);
            let val = self.value()?;
            if (key as usize) < FIELD_COUNT {
                // Of duplicate keys the reference keeps the last: its
                // business, not the scan's.
                let slot = &mut fields.slots[key as usize];
                if slot.is_some() {
                    return None;
                }
                *slot = Some(val);
            }
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::fast::{BorrowedFile, serde_json_pass};

    /// Where the scan accepts a file, it yields what the serde_json pass
    /// yields; where it declines, the serde_json pass still reads it.
    fn agrees(text: &str) -> bool {
        match file(text) {
            Some(items) => {
                let serde = serde_json_pass(text).expect("the serde_json pass reads it too");
                assert_eq!(BorrowedFile { items }, serde, "{text}");
                true
            }
            None => false,
        }
    }

    /// The eight-at-a-time run against the plain definition, at every
    /// alignment of every stop byte and of bytes just either side of one.
    #[test]
    fn plain_run_stops_where_the_definition_does() {
        let slow = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let fill: Vec<u8> = (0x20..=0xff).filter(|&c| c != b'"' && c != b'\\').collect();
        for len in 0..40 {
            for stop in (0..=0x22).chain([b'\\', 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff]) {
                for at in 0..=len {
                    let mut b: Vec<u8> = (0..len)
                        .map(|i| fill[(i * 7 + stop as usize) % fill.len()])
                        .collect();
                    if at < len {
                        b[at] = stop;
                    }
                    assert_eq!(plain_run(&b), slow(&b), "{b:?}");
                }
            }
        }
    }

    #[test]
    fn plain_files_are_scanned_and_agree() {
        for text in [
            "[]",
            " [ ] ",
            "\r\n[\t]\n",
            r#"[{"data":{"artist_name":"Los Lobos","release":"XIII","tags":["imported","2021"],"title":"Señor","year":1968},"type":"song"}]"#,
            r#"[ {"type" : "movie" , "data" : {"original_title:" : "A b" , "budget" : 7.0 , "is_adult" : "True", "release_date":"2000-02-29" } } ]"#,
            r#"[{"type":"app","data":{"name":"n","rating":-0.5,"version":2.10,"size_bytes":"12","x":{"a":[1,{"b":null}],"c":true}}},
                {"type":"book","data":{"title":[[[]]],"id":0}},
                {"type":"song","data":{"title":"t","year":null},"extra":[1,2,3]}]"#,
        ] {
            assert!(agrees(text), "not scanned: {text}");
        }
    }

    #[test]
    fn anything_not_plain_is_declined() {
        for text in [
            "",
            "[",
            "[]x",
            "{}",
            "[1]",
            "[{}]",
            r#"[{"type":"song"}]"#,
            r#"[{"type":"song","data":[]}]"#,
            r#"[{"type":"song","data":{"title":"t"},}]"#,
            r#"[{"type":"song","data":{"title":"t"}},]"#,
            r#"[{"type":"song","data":{"title":"t\n"}}]"#,
            r#"[{"type":"song","data":{"title":"t","title":"u"}}]"#,
            r#"[{"type":"song","type":"song","data":{"title":"t"}}]"#,
            r#"[{"type":"song","data":{"title":"t","year":1e3}}]"#,
            r#"[{"type":"song","data":{"title":"t","year":01}}]"#,
            r#"[{"type":"song","data":{"title":"t","year":1.}}]"#,
            r#"[{"type":"song","data":{"title":"t","year":-}}]"#,
            r#"[{"type":"song","data":{"title":"t","year":+1}}]"#,
            r#"[{"type":"song","data":{"title":"t","year":nul}}]"#,
            r#"[{"type":"song","data":{"title":"t","x":[1,]}}]"#,
            r#"[{"type":"song","data":{"title":"t","x":{"a"}}}]"#,
            r#"[{"type":"song","data":{"title":"t","x":[}}]"#,
            r#"[{"type":"song","data":{"title":"t\u0041"}}]"#,
            r#"[{"type":"so\u006eg","data":{"title":"t"}}]"#,
            r#"[{"type":"song","data":{"$serde_json::private::Number":"1"}}]"#,
            r#"[{"type":"song","data":{"title":"t","x":{"$serde_json::private::RawValue":1}}}]"#,
            r#"[{"type":"song","data":{"year":1994}}]"#,
            r#"[{"type":"movie","data":{"original_title":"t","release_date":"0000-01-01"}}]"#,
            r#"[{"type":3,"data":{}}]"#,
        ] {
            assert!(!agrees(text), "scanned: {text}");
        }
        let deep = format!(
            r#"[{{"type":"book","data":{{"x":{}{}}}}}]"#,
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert!(!agrees(&deep));
        let deepest = format!(
            r#"[{{"type":"book","data":{{"x":{}{}}}}}]"#,
            "[".repeat(MAX_NESTING),
            "]".repeat(MAX_NESTING)
        );
        assert!(agrees(&deepest));
    }

    /// Every file of the generated profiles without bad records is read by
    /// the scan, so the benchmarks and the default runs measure it.
    #[cfg(feature = "io")]
    #[test]
    fn generated_plain_files_are_scanned() {
        use crate::sim::generator::{self, ProfileName, Spec};
        for profile in [ProfileName::Seed, ProfileName::Large, ProfileName::Small] {
            let spec = Spec::new(profile, 7);
            for i in 0..spec.files.min(12) {
                let body = generator::file(&spec, i).body.unwrap();
                let text = std::str::from_utf8(&body).unwrap();
                assert!(agrees(text), "{profile:?} file {i} was not scanned");
            }
        }
    }
}
