//! Keeping secrets out of output: every URL, connection string or message
//! that may be printed, logged or written to a file passes through here
//! first.
//!
//! One redaction for every form a secret arrives in, none of which relies
//! on the `url` crate accepting the string (a multi-host PostgreSQL URL or
//! an invalid port is refused by it, and must still be hidden):
//!
//! * the password of a URL's userinfo (`postgres://u:PW@h1:1,h2:5432/db`
//!   keeps the user; a bucket URL `http://user:pw@host/` loses the whole
//!   userinfo, which may be a token on its own);
//! * secret query parameters (`password`, `sslpassword`, and the
//!   credential, token and signature of a presigned S3 request);
//! * `password` in a libpq `key = value` connection string, with any
//!   spacing and libpq's quoting (`password = 'a b\'c'`).
//!
//! Redaction keeps everything else byte for byte and puts `***` where a
//! secret was.

const HIDDEN: &str = "***";

/// Query parameters whose values are secrets (compared case-insensitively
/// after percent-decoding the name).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "signature",
    // Tokens a manifest-mode base URL may carry on every request: an
    // Azure shared-access signature, a Google signed URL, a gateway's token.
    "sig",
    "x-goog-signature",
    "x-goog-credential",
    "token",
    "access_token",
    "api_key",
    "apikey",
];

/// Keys of a libpq `key=value` connection string whose values are secrets.
const SECRET_KEYS: &[&str] = &["password", "sslpassword"];

/// A database URL, a `key=value` connection string or a bucket URL, with
/// every secret in it replaced by `***`. Anything that is neither is still
/// searched: a secret is hidden even in a string no parser accepts.
pub fn redact_url(s: &str) -> String {
    match s.find("://") {
        Some(i) if is_scheme(&s[..i]) => redact_one_url(s, i),
        _ if s.contains('=') => redact_conninfo(s, true),
        // Neither a URL nor a connection string, yet shaped like userinfo
        // (`user:pw@host`, a URL with a mistyped scheme): hide from the
        // first colon to the last `@`.
        _ => match (s.find(':'), s.rfind('@')) {
            (Some(c), Some(a)) if c < a => format!("{}:{HIDDEN}{}", &s[..c], &s[a..]),
            _ => s.to_string(),
        },
    }
}

/// A free-text message (an error chain, a log line, a JSON document) with
/// every URL in it redacted as [`redact_url`] does, and every
/// `password=...` outside URLs hidden too.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(i, |(j, _)| j);
        // A URL in prose or JSON ends at white space or a quote; brackets
        // and commas may be part of it (multi-host URLs), and keeping them
        // in only ever hides more.
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..start]);
        if start < i {
            out.push_str(&redact_one_url(&rest[start..end], i - start));
        } else {
            out.push_str(&rest[start..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    redact_conninfo(&out, false)
}

fn is_scheme(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Redacts the URL `s`, whose `://` is at `sep`.
///
/// Parsers disagree on where a URL's parts end, and a secret must be hidden
/// as every one of them reads it: tokio-postgres and libpq end the userinfo
/// at its first `@`, WHATWG parsers (the `url` crate) at the last `@` of the
/// authority, and a password with an unescaped `@` ends at the last `@` of
/// all; a query value runs to the next `&` (tokio-postgres keeps a `#` in
/// it). So the password under each reading is marked, and so is the value of
/// every secret parameter after any `?` or `&`, and the union is hidden.
/// That hides more than needed when a query holds an `@`, never less.
fn redact_one_url(s: &str, sep: usize) -> String {
    let scheme = &s[..sep];
    let start = sep + 3;
    let rest = &s[start..];
    let keep_user =
        scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql");
    let mut hidden: Vec<std::ops::Range<usize>> = Vec::new();
    for at in [rest.find('@'), rest.rfind('@')].into_iter().flatten() {
        let userinfo = &rest[..at];
        match userinfo.find(':') {
            Some(c) if keep_user => hidden.push(start + c + 1..start + at),
            None if keep_user => {}
            // A bucket URL's userinfo may be a token on its own.
            _ => hidden.push(start..start + at),
        }
    }
    for (i, b) in s.bytes().enumerate().skip(start) {
        if !matches!(b, b'?' | b'&') {
            continue;
        }
        let pair = &s[i + 1..];
        let pair = &pair[..pair.find('&').unwrap_or(pair.len())];
        if let Some((k, v)) = pair.split_once('=')
            && !k.contains('?')
            && is_secret_param(k)
        {
            let v_start = i + 1 + k.len() + 1;
            hidden.push(v_start..v_start + v.len());
        }
    }
    mask(s, hidden)
}

/// `s` with each range (merged where they overlap or touch) replaced by
/// [`HIDDEN`].
fn mask(s: &str, mut hidden: Vec<std::ops::Range<usize>>) -> String {
    hidden.retain(|r| !r.is_empty());
    hidden.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(hidden.len());
    for r in hidden {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    for r in merged {
        out.push_str(&s[pos..r.start]);
        out.push_str(HIDDEN);
        pos = r.end;
    }
    out.push_str(&s[pos..]);
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    SECRET_PARAMS
        .iter()
        .any(|p| name.trim().eq_ignore_ascii_case(p))
}

/// One `key = value` of a libpq connection string, located in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    pub key: String,
    /// The value with libpq's quoting and escapes undone.
    pub value: String,
    /// Byte range of the value as written (quotes included).
    pub value_span: std::ops::Range<usize>,
}

/// The `key = value` pairs of a libpq connection string, by libpq's rules:
/// white space around `=` is allowed; a value is single-quoted (with `\'`
/// and `\\` escapes) or runs to the next white space (backslash escapes
/// the next character). Words not followed by `=` are skipped: this never
/// fails, so it can look for secrets in strings libpq would refuse.
pub(crate) fn conninfo_pairs(s: &str) -> Vec<Pair> {
    // White space as tokio-postgres reads it (`char::is_whitespace`: the
    // vertical tab, NBSP and the other Unicode spaces too).
    pairs_ending_at(s, char::is_whitespace)
}

/// [`conninfo_pairs`] with values that end at `blank` (keys are found
/// after any white space).
fn pairs_ending_at(s: &str, blank: fn(char) -> bool) -> Vec<Pair> {
    let at = |i: usize| s[i..].chars().next();
    let skip_ws = |mut i: usize| {
        while let Some(c) = at(i).filter(|c| c.is_whitespace()) {
            i += c.len_utf8();
        }
        i
    };
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < s.len() {
        i = skip_ws(i);
        let key_start = i;
        while let Some(c) = at(i).filter(|&c| !c.is_whitespace() && c != '=') {
            i += c.len_utf8();
        }
        // The key proper: the identifier ending the word (`(password` in
        // prose is the key `password`).
        let word = &s[key_start..i];
        let key = word
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .next()
            .unwrap_or_default()
            .to_string();
        let j = skip_ws(i);
        if at(j) != Some('=') {
            if i == key_start {
                i += at(i).map_or(1, char::len_utf8);
            }
            continue;
        }
        let v = skip_ws(j + 1);
        let (value, end) = read_value(s, v, blank);
        pairs.push(Pair {
            key,
            value,
            value_span: v..end,
        });
        i = end.max(j + 1);
    }
    pairs
}

/// Reads a libpq value starting at `start`; returns it unescaped and where
/// it ends. An unterminated quote runs to the end of the string.
fn read_value(s: &str, start: usize, blank: fn(char) -> bool) -> (String, usize) {
    let mut value = String::new();
    let mut chars = s[start..]
        .char_indices()
        .map(|(k, c)| (start + k, c))
        .peekable();
    let quoted = s[start..].starts_with('\'');
    if quoted {
        chars.next();
    }
    while let Some((k, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    value.push(n);
                }
            }
            '\'' if quoted => return (value, k + 1),
            c if !quoted && blank(c) => return (value, k),
            c => value.push(c),
        }
    }
    (value, s.len())
}

/// White space as libpq's parser knows it (C's `isspace`): ASCII only. A
/// Unicode blank (NBSP) is part of a value to libpq, a separator to
/// tokio-postgres (`db::libpq_tls` rebuilds a string for it from libpq's
/// reading).
pub(crate) fn libpq_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

/// Hides the value of every secret key. `whole`: `s` is meant to be one
/// connection string, so a secret key left without `=` (`password PW`)
/// hides the word after it too.
fn redact_conninfo(s: &str, whole: bool) -> String {
    // A secret must be hidden wherever either parser would find it, and as
    // far as either reads it: tokio-postgres ends a value at any Unicode
    // blank, libpq only at an ASCII one (a NBSP is part of its value).
    let mut spans: Vec<std::ops::Range<usize>> = conninfo_pairs(s)
        .into_iter()
        .chain(pairs_ending_at(s, libpq_blank))
        .filter(|p| SECRET_KEYS.iter().any(|k| p.key.eq_ignore_ascii_case(k)))
        .map(|p| p.value_span)
        .collect();
    if whole {
        let words: Vec<(usize, &str)> = s
            .split_whitespace()
            .map(|w| (w.as_ptr() as usize - s.as_ptr() as usize, w))
            .collect();
        for pair in words.windows(2) {
            let (_, w) = pair[0];
            let (at, next) = pair[1];
            if SECRET_KEYS.iter().any(|k| w.eq_ignore_ascii_case(k)) && !next.starts_with('=') {
                spans.push(at..at + next.len());
            }
        }
        spans.sort_by_key(|r| r.start);
    }
    mask(s, spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(s: &str, secret: &str) -> String {
        let r = redact_url(s);
        assert!(!r.contains(secret), "{secret} left in {r:?} (from {s:?})");
        let t = redact_text(&format!("error: cannot connect to \"{s}\": refused"));
        assert!(!t.contains(secret), "{secret} left in {t:?} (from {s:?})");
        r
    }

    #[test]
    fn hides_url_passwords_in_every_form() {
        assert_eq!(
            hidden("postgres://u:s3cret@h:5432/db", "s3cret"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            hidden("postgres://u:PW@h1:1,h2:5432/db", "PW"),
            "postgres://u:***@h1:1,h2:5432/db"
        );
        assert_eq!(
            hidden("postgresql://u:PW@h:99999/db", "PW"),
            "postgresql://u:***@h:99999/db"
        );
        assert_eq!(
            hidden("postgres://u:p@s/s?w@h/db", "p@s/s?w"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            hidden(
                "postgres://u@h/db?sslmode=require&password=s3cret",
                "s3cret"
            ),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        hidden("postgres://u@h/db?pass%77ord=s3cret", "s3cret");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            hidden("http://user:pw-Zx@host:9/bucket", "pw-Zx"),
            "http://***@host:9/bucket"
        );
        assert_eq!(
            hidden("s3://tok-Zx@bucket/pre", "tok-Zx"),
            "s3://***@bucket/pre"
        );
        assert_eq!(redact_url("u:s3cret@h/db"), "u:***@h/db");
    }

    /// Where parsers disagree on a URL's parts (an `@` in the query or in a
    /// query's password, a `#` in a password, a `?` in the userinfo), the
    /// secret is hidden as each reads it.
    #[test]
    fn hides_secrets_wherever_a_parser_may_find_them() {
        for (url, secrets) in [
            (
                "postgres://u@127.0.0.1:55491/db?application_name=etl@box&password=Se%3Acr%40t*)x%3A",
                &["Se%3A", "cr%40", "t*)x"][..],
            ),
            (
                "postgres://u@127.0.0.1:55491/db?password=Se:cr@t*)x:",
                &["Se:", "cr@", "t*)x"],
            ),
            (
                "postgres://v@127.0.0.1:55491/db?password=ab#HASHLEAK",
                &["ab#", "HASHLEAK"],
            ),
            (
                "postgres://h/db?application_name=a@b&password=x9Z",
                &["x9Z"],
            ),
            ("postgres://u:p?x@h/db?password=y9Z", &["p?x", "y9Z"]),
            (
                "postgres://u:pw9@h/db?x=1&sslpassword=k9Z#f",
                &["pw9", "k9Z"],
            ),
        ] {
            for secret in secrets {
                hidden(url, secret);
                let logged = redact_text(&format!("INFO starting database={url}"));
                assert!(!logged.contains(secret), "{secret} left in {logged:?}");
            }
        }
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&application_name=a@b"),
            "postgres://u@h/db?sslmode=require&application_name=a@b",
            "nothing secret, nothing hidden"
        );
    }

    /// tokio-postgres takes any Unicode white space around `=` and between
    /// pairs: so must the redaction.
    #[test]
    fn hides_conninfo_passwords_around_unicode_spaces() {
        for conninfo in [
            "host=h user=u password\u{a0}=LEAK1x dbname=d",
            "host=h user=u password=\u{b}LEAK1x dbname=d",
            "host=h user=u password\u{2003}=\u{a0}LEAK1x",
            "host=h\u{a0}password=LEAK1x",
            // libpq's password runs past the NBSP.
            "host=h password=Sx1\u{a0}LEAK1x dbname=d",
        ] {
            hidden(conninfo, "LEAK1x");
            let logged = redact_text(&format!(
                "cannot connect to PostgreSQL at {conninfo}: refused"
            ));
            assert!(!logged.contains("LEAK1x"), "{logged:?}");
        }
    }

    /// A value that ends a URL runs to the next white space, so an error
    /// puts white space after the URL it names (`at URL (cause)`): the
    /// cause is then not taken for part of a password, and redacting the
    /// line again changes nothing. A password that looks redacted
    /// (`***),`) is hidden like any other.
    #[test]
    fn redacting_twice_keeps_the_prose_around_a_url() {
        let once = format!(
            "cannot connect to PostgreSQL at {} (refused)",
            redact_url("postgres://u@h/db?password=s3cret")
        );
        assert_eq!(
            once,
            "cannot connect to PostgreSQL at postgres://u@h/db?password=*** (refused)"
        );
        assert_eq!(redact_text(&once), once);
        assert_eq!(
            redact_url("postgres://u@h/db?password=***),"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(redact_url("host=h password=***),"), "host=h password=***");
    }

    #[test]
    fn hides_presigned_query_secrets() {
        let url = "http://127.0.0.1:9/sim/a.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDX%2F2021&X-Amz-Date=1&X-Amz-Expires=3600&X-Amz-Security-Token=TOKZ&X-Amz-SignedHeaders=host&X-Amz-Signature=abc123";
        let r = hidden(url, "AKIDX");
        for s in ["TOKZ", "abc123"] {
            assert!(!r.contains(s), "{r}");
        }
        assert!(r.contains("X-Amz-Date=1"), "{r}");
    }

    #[test]
    fn hides_conninfo_passwords_with_libpq_quoting() {
        assert_eq!(
            hidden("host=h password=s3cret user=u", "s3cret"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            hidden("host=h password = PW user=u", "PW"),
            "host=h password = *** user=u"
        );
        assert_eq!(
            hidden("host=h password='PW tail' user=u", "tail"),
            "host=h password=*** user=u"
        );
        let r = hidden(r"password = 'a b\'c' dbname=x", "b\\'c");
        assert_eq!(r, "password = *** dbname=x");
        hidden("PASSWORD=s3cret", "s3cret");
        hidden("sslpassword=s3cret host=h", "s3cret");
        assert_eq!(redact_url("host=h password s3cret"), "host=h password ***");
    }

    #[test]
    fn text_keeps_what_is_not_secret() {
        let msg = "password authentication failed for user \"bob\" at http://h:9/k";
        assert_eq!(redact_text(msg), msg);
        assert_eq!(
            redact_text("error sending request for url (http://a:b-Zx@h/k): refused"),
            "error sending request for url (http://***@h/k): refused"
        );
        assert_eq!(
            redact_text(r#"{"reason":"HTTP 500 for postgres://u:PW@h/db","k":1}"#),
            r#"{"reason":"HTTP 500 for postgres://u:***@h/db","k":1}"#
        );
    }

    #[test]
    fn parses_conninfo_pairs() {
        let p = conninfo_pairs(r"host = h  options='-c search_path=s' password=a\ b");
        let kv: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            [
                ("host", "h"),
                ("options", "-c search_path=s"),
                ("password", "a b")
            ]
        );
    }
}
