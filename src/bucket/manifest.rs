//! `files_list.data`: one key per line. Sans-IO: bytes in, keys out, or
//! the reason the answer is not a manifest at all.

use std::collections::HashSet;

/// Why a listed key cannot be processed at all: the ledger's `text` key
/// cannot hold it, so it is refused on its own and reported, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFault {
    /// A NUL byte (PostgreSQL text cannot hold U+0000).
    Nul,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Longer than a request line can carry ([`MAX_KEY_BYTES`]).
    TooLong,
}

/// The longest key fetched, in bytes of UTF-8. S3 itself stores keys of
/// at most 1024 bytes, but a manifest may name objects on any HTTP
/// server, so longer keys load; well past this, the percent-encoded key (up
/// to three times as long) would exceed the 64 KiB an HTTP client sends in
/// a request line, and every attempt would fail. A 10 MB
/// manifest line was retried on every pass, each retry warning 10 MB long.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

impl std::fmt::Display for KeyFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyFault::Nul => "key holds a NUL byte, which the ledger cannot store; not fetched",
            KeyFault::InvalidUtf8 => {
                "key is not valid UTF-8, which the ledger cannot store; not fetched"
            }
            KeyFault::TooLong => {
                "key is longer than 16384 bytes, more than a request line can carry once percent-encoded; not fetched"
            }
        })
    }
}

/// A listed key refused before it reaches the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedKey {
    /// The key as printable text (invalid bytes as U+FFFD, control
    /// characters escaped), for the report only.
    pub shown: String,
    pub fault: KeyFault,
}

impl RefusedKey {
    pub fn new(raw: &[u8], fault: KeyFault) -> Self {
        RefusedKey {
            shown: String::from_utf8_lossy(raw).escape_debug().to_string(),
            fault,
        }
    }
}

/// The keys of a key listing, and the lines refused one by one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// In first-seen order, without duplicates.
    pub keys: Vec<String>,
    pub refused: Vec<RefusedKey>,
}

/// The key a text key is refused for, if any (a NUL byte).
pub fn key_fault(key: &str) -> Option<KeyFault> {
    if key.contains('\0') {
        Some(KeyFault::Nul)
    } else if key.len() > MAX_KEY_BYTES {
        Some(KeyFault::TooLong)
    } else {
        None
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Keys in first-seen order. Tolerates CRLF, blank lines, surrounding
/// whitespace, duplicate lines and a UTF-8 byte-order mark (docs/contract.md, "The
/// bucket"); refuses lines the ledger cannot hold one by one; and refuses
/// the whole answer, with why, when it is not a list of keys (an HTML sign-in
/// page, a JSON document), so a wrong URL never turns a page into keys.
pub fn parse_manifest(body: &[u8]) -> Result<Manifest, String> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    if let Some(why) = not_a_manifest(body) {
        return Err(why);
    }
    // Borrowed from the body: each key is copied once, into `keys` (a
    // manifest of 5 million keys had held every key twice).
    let mut seen: HashSet<&str> = HashSet::new();
    let mut refused_seen = HashSet::new();
    let mut out = Manifest::default();
    for line in body.split(|&b| b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(text) => {
                let key = text.trim();
                if key.is_empty() || seen.contains(key) {
                    continue;
                }
                match key_fault(key) {
                    Some(fault) => {
                        if refused_seen.insert(key.as_bytes().to_vec()) {
                            out.refused.push(RefusedKey::new(key.as_bytes(), fault));
                        }
                    }
                    None => {
                        seen.insert(key);
                        out.keys.push(key.to_string());
                    }
                }
            }
            Err(_) => {
                let key = line.trim_ascii();
                if refused_seen.insert(key.to_vec()) {
                    out.refused
                        .push(RefusedKey::new(key, KeyFault::InvalidUtf8));
                }
            }
        }
    }
    Ok(out)
}

/// Why a body is not a list of keys, if it is not: a page of HTML or XML
/// (by its start, or by a line that is a markup tag) or a JSON document.
fn not_a_manifest(body: &[u8]) -> Option<String> {
    let start = body.trim_ascii_start();
    let lower: Vec<u8> = start.iter().take(16).map(u8::to_ascii_lowercase).collect();
    for (opening, what) in [
        (&b"<!doctype"[..], "an HTML page"),
        (b"<html", "an HTML page"),
        (b"<?xml", "an XML document"),
    ] {
        if lower.starts_with(opening) {
            return Some(format!("it is {what}, not a list of keys"));
        }
    }
    // Binary files: their signatures, or the runs of NUL bytes no list of
    // keys holds (a key with a NUL in it is refused on its own, below).
    for (magic, what) in [
        (&b"\x89PNG"[..], "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"%PDF-", "a PDF document"),
        (b"\x1F\x8B", "gzip data"),
        (b"PK\x03\x04", "a zip archive"),
        (b"\x7FELF", "an executable"),
    ] {
        if start.starts_with(magic) || body.starts_with(magic) {
            return Some(format!("it is {what}, not a list of keys"));
        }
    }
    if let Some(n) = body
        .split(|&b| b == b'\n')
        .position(|l| l.windows(2).any(|w| w == b"\0\0"))
    {
        return Some(format!(
            "line {} holds a run of NUL bytes: binary data, not a list of keys",
            n + 1
        ));
    }
    if matches!(start.first(), Some(b'{' | b'['))
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Some("it is a JSON document, not a list of keys".into());
    }
    body.split(|&b| b == b'\n')
        .enumerate()
        .find_map(|(n, line)| {
            let line = line.trim_ascii();
            // `<h1>…</h1>`, `</div>`, `<!-- … -->`: a tag, where a key
            // holding `<` merely somewhere does not count.
            let tag = line.len() >= 3
                && line[0] == b'<'
                && line[line.len() - 1] == b'>'
                && (line[1].is_ascii_alphabetic() || matches!(line[1], b'/' | b'!'));
            tag.then(|| {
                let shown: String = String::from_utf8_lossy(line).chars().take(60).collect();
                format!(
                    "line {} is markup ({}), not an object key",
                    n + 1,
                    shown.escape_debug()
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(body: &[u8]) -> Vec<String> {
        parse_manifest(body).unwrap().keys
    }

    #[test]
    fn binary_answers_are_not_manifests() {
        for body in [
            &b"a.json\n\x89PNG\r\n\x1a\n\x00\x00"[..],
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            b"\x1F\x8B\x08\x00\x00\x00",
            b"%PDF-1.7\n",
        ] {
            assert!(parse_manifest(body).is_err(), "{body:?}");
        }
        // One NUL inside a key is that key's fault alone.
        assert_eq!(keys(b"ok.json\nbad\0key.json\n"), ["ok.json"]);
    }

    /// A key longer than a request can carry is refused on its own, not
    /// retried on every pass (an adversary's 10 MB line was).
    #[test]
    fn a_key_longer_than_s3_allows_is_refused_alone() {
        let longest = "k".repeat(MAX_KEY_BYTES);
        let longer = "k".repeat(MAX_KEY_BYTES + 1);
        let m = parse_manifest(format!("ok.json\n{longest}\n{longer}\n").as_bytes()).unwrap();
        assert_eq!(m.keys, ["ok.json".to_string(), longest]);
        assert_eq!(m.refused.len(), 1);
        assert_eq!(m.refused[0].fault, KeyFault::TooLong);
        assert!(KeyFault::TooLong.to_string().contains("16384 bytes"));
    }

    #[test]
    fn tolerates_messy_lines() {
        let text = b"a.json\r\n\r\n  b.json  \r\na.json\n\n\tc.json\n";
        assert_eq!(keys(text), ["a.json", "b.json", "c.json"]);
        assert!(keys(b"").is_empty());
        assert!(keys(b"\r\n \n").is_empty());
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_key() {
        assert_eq!(
            keys(b"\xEF\xBB\xBFfirst.json\nsecond.json\n"),
            ["first.json", "second.json"]
        );
    }

    #[test]
    fn keys_the_ledger_cannot_hold_are_refused_one_by_one() {
        let m = parse_manifest(b"a.json\nbad\0key.json\n\xFF\xFEx.json\nb.json\nbad\0key.json\n")
            .unwrap();
        assert_eq!(m.keys, ["a.json", "b.json"]);
        assert_eq!(
            m.refused,
            [
                RefusedKey {
                    shown: "bad\\0key.json".into(),
                    fault: KeyFault::Nul
                },
                RefusedKey {
                    shown: "\u{FFFD}\u{FFFD}x.json".into(),
                    fault: KeyFault::InvalidUtf8
                },
            ]
        );
    }

    #[test]
    fn pages_and_documents_are_not_manifests() {
        for body in [
            &b"<!DOCTYPE html>\n<html><body>\n<h1>Please sign in</h1>\n"[..],
            b"\xEF\xBB\xBF  <html>\n<body>hi</body>\n",
            b"<?xml version=\"1.0\"?>\n<Error/>\n",
            b"a.json\n<h1>Please sign in</h1>\n",
            b"{\"error\": \"not found\"}\n",
            b"[\"a.json\", \"b.json\"]",
        ] {
            assert!(
                parse_manifest(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        // Keys that merely hold such characters are keys.
        assert_eq!(
            keys(b"a<b>.json\n[1].json\n{x}.json\n"),
            ["a<b>.json", "[1].json", "{x}.json"]
        );
        assert_eq!(
            parse_manifest(b"<!DOCTYPE html>\n").unwrap_err(),
            "it is an HTML page, not a list of keys"
        );
    }
}
