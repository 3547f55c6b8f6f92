//! Where a bucket is and how its objects are addressed: manifest mode (a
//! base URL) or the S3 API (`s3://NAME[/PREFIX]`, SigV4-signed with
//! rusty-s3 when credentials are in the environment).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rusty_s3::{Credentials, S3Action as _, UrlStyle};

/// Everything except RFC 3986 unreserved characters and `/` is escaped in a
/// key, which is also what S3 signs.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub const MANIFEST_KEY: &str = "files_list.data";

/// How long a presigned request stays valid. Requests are signed just
/// before they are sent, so this only has to cover retries.
const SIGNATURE_TTL: Duration = Duration::from_secs(3600);

/// S3 settings, from flags or the usual AWS environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Custom endpoint (MinIO, Ceph, R2, moto…); `AWS_ENDPOINT_URL` if unset.
    pub endpoint: Option<String>,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION` if unset, then `us-east-1`.
    pub region: Option<String>,
    /// Force path-style URLs (the default for custom endpoints).
    pub path_style: bool,
    /// Only keys ending with this are loaded (default `.json`).
    pub suffix: Option<String>,
    /// List keys from this manifest object instead of ListObjectsV2.
    pub manifest: Option<String>,
}

/// A bucket in S3 API mode.
#[derive(Clone)]
pub struct S3Bucket {
    pub bucket: rusty_s3::Bucket,
    /// `None`: anonymous requests (a public bucket).
    pub credentials: Option<Arc<Credentials>>,
    pub prefix: String,
    pub suffix: String,
    pub manifest: Option<String>,
    pub endpoint: String,
}

impl std::fmt::Debug for S3Bucket {
    // Never print credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket")
            .field("name", &self.bucket.name())
            .field("region", &self.bucket.region())
            .field("endpoint", &crate::secret::redact_url(&self.endpoint))
            .field("prefix", &self.prefix)
            .field("signed", &self.credentials.is_some())
            .finish()
    }
}

/// A bucket: manifest mode or S3 API mode.
#[derive(Debug, Clone)]
pub enum BucketLocation {
    /// A base URL holding `files_list.data`. A query string on it (an
    /// access token a gateway or a shared-access URL needs) is kept on
    /// every request, after the key: `BASE/KEY?QUERY`.
    Http {
        base: String,
        query: Option<String>,
    },
    S3(S3Bucket),
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl BucketLocation {
    /// Parses a bucket URL with S3 settings from the environment only.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        Self::parse_with(url, &S3Options::default())
    }

    pub fn parse_with(url: &str, s3: &S3Options) -> anyhow::Result<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Ok(BucketLocation::S3(s3_bucket(url, rest, s3)?));
        }
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => bail!(
                "bad bucket URL {:?}: {e} (expected http(s)://HOST[:PORT][/PATH] or s3://BUCKET[/PREFIX])",
                shown(url)
            ),
        };
        match parsed.scheme() {
            "http" | "https" => {}
            other => bail!(
                "bad bucket URL {:?}: scheme {other:?} is not http, https or s3",
                shown(url)
            ),
        }
        if parsed.host_str().is_none() {
            bail!("bad bucket URL {:?}: no host", shown(url));
        }
        // The base as the user wrote it (the url crate would re-encode parts
        // of it); the query as the url crate reads it, which escapes what
        // may not travel raw (a space, a quote) and keeps escapes as written.
        let base = url.split(['?', '#']).next().unwrap_or(url);
        Ok(BucketLocation::Http {
            base: base.trim_end_matches('/').to_string(),
            query: parsed.query().filter(|q| !q.is_empty()).map(String::from),
        })
    }

    /// A short name for messages: the base URL (its userinfo hidden), or
    /// `s3://NAME/PREFIX`.
    pub fn describe(&self) -> String {
        match self {
            BucketLocation::Http { base, .. } => shown(base),
            BucketLocation::S3(b) => format!("s3://{}/{}", b.bucket.name(), b.prefix)
                .trim_end_matches('/')
                .to_string(),
        }
    }

    /// The URL of a GET for `key`: the key percent-encoded segment by
    /// segment; in S3 mode presigned now when credentials are present.
    pub fn object_url(&self, key: &str) -> String {
        match self {
            BucketLocation::Http { base, query } => {
                let key = encode_key(key);
                match query {
                    Some(q) => format!("{base}/{key}?{q}"),
                    None => format!("{base}/{key}"),
                }
            }
            BucketLocation::S3(b) => b
                .bucket
                .get_object(b.credentials.as_deref(), key)
                .sign(SIGNATURE_TTL)
                .to_string(),
        }
    }

    /// The URL of a HEAD for `key` (a presigned URL names its method, so a
    /// GET's will not do).
    pub fn head_url(&self, key: &str) -> String {
        match self {
            BucketLocation::Http { .. } => self.object_url(key),
            BucketLocation::S3(b) => b
                .bucket
                .head_object(b.credentials.as_deref(), key)
                .sign(SIGNATURE_TTL)
                .to_string(),
        }
    }

    /// Whether the bucket is reached over TLS (its URL or S3 endpoint is
    /// https).
    pub fn is_https(&self) -> bool {
        match self {
            BucketLocation::Http { base, .. } => base.to_ascii_lowercase().starts_with("https://"),
            BucketLocation::S3(b) => b.endpoint.to_ascii_lowercase().starts_with("https://"),
        }
    }

    pub fn manifest_url(&self) -> String {
        match self {
            BucketLocation::S3(b) => self.object_url(b.manifest.as_deref().unwrap_or(MANIFEST_KEY)),
            BucketLocation::Http { .. } => self.object_url(MANIFEST_KEY),
        }
    }
}

fn s3_bucket(url: &str, rest: &str, o: &S3Options) -> anyhow::Result<S3Bucket> {
    let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if name.contains('@') {
        // `s3://user:secret@bucket`: whatever precedes the `@` may be a
        // secret, so it is neither used nor shown.
        bail!(
            "bad bucket URL {:?}: an s3:// URL carries no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead)",
            shown(url)
        );
    }
    if name.is_empty() {
        bail!(
            "bad bucket URL {:?}: no bucket name (expected s3://BUCKET[/PREFIX])",
            shown(url)
        );
    }
    // A query string is not part of a bucket name or a prefix (a presigned
    // URL pasted whole): neither used, nor shown, since it may hold a
    // signature. A prefix holding a literal `?` is not supported: listing
    // under it would silently find nothing.
    if rest.contains(['?', '#']) {
        bail!(
            "bad bucket URL {:?}: an s3:// URL takes no query string (expected s3://BUCKET[/PREFIX]; requests are signed from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            shown(url)
        );
    }
    let region = o
        .region
        .clone()
        .or_else(|| env_nonempty("AWS_REGION"))
        .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let custom = o
        .endpoint
        .clone()
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
    let (endpoint, style) = match &custom {
        // Custom endpoints rarely have per-bucket DNS: path style.
        Some(e) => (e.clone(), UrlStyle::Path),
        None => (
            format!("https://s3.{region}.amazonaws.com"),
            if o.path_style || name.contains('.') {
                UrlStyle::Path
            } else {
                UrlStyle::VirtualHost
            },
        ),
    };
    let style = if o.path_style { UrlStyle::Path } else { style };
    let endpoint_url = url::Url::parse(&endpoint).with_context(|| {
        format!(
            "bad S3 endpoint {:?} (expected http(s)://HOST[:PORT])",
            shown(&endpoint)
        )
    })?;
    let bucket = rusty_s3::Bucket::new(endpoint_url, style, name.to_string(), region)
        .map_err(|e| anyhow::anyhow!("bad S3 bucket {name:?} at {}: {e}", shown(&endpoint)))?;
    Ok(S3Bucket {
        bucket,
        credentials: Credentials::from_env().map(Arc::new),
        prefix: prefix.to_string(),
        suffix: o.suffix.clone().unwrap_or_else(|| ".json".to_string()),
        manifest: o.manifest.clone(),
        endpoint,
    })
}

/// `key` as it appears in an object's URL: percent-encoded but for RFC 3986
/// unreserved characters and `/` (also what S3 signs).
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY).to_string()
}

/// A URL fit for messages and logs: without its query string, which holds
/// the access key ID, the signature and any session token of a presigned
/// request, and without any userinfo (see [`crate::secret::redact_url`]).
pub fn shown(url: &str) -> String {
    // An `@` after the first `?` or `#` is a password holding a `?`
    // (`u:p?w@host/k`) or a query holding an `@` (`?u=me@x&session=…`).
    // The redaction below takes all before the last `@` for userinfo, so in
    // the second case it would show the query after it: a "host" holding
    // `=` or `&` is the query's, and then all but the scheme is hidden.
    if let (Some(q), Some(at)) = (url.find(['?', '#']), url.rfind('@')) {
        let after = &url[at + 1..];
        let host = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
        if q < at && host.contains(['=', '&']) {
            let scheme = url.find("://").map_or(0, |i| i + 3);
            return format!("{}***", &url[..scheme]);
        }
    }
    // Redacted first: a password may hold an unescaped `?`.
    let mut r = crate::secret::redact_url(url);
    let host = r.rfind('@').map_or(0, |a| a + 1);
    if let Some(q) = r[host..].find(['?', '#']) {
        r.truncate(host + q);
    }
    // A line is a line: a URL of kilobytes (a long key) is cut, as keys
    // are in error lines.
    const SHOWN: usize = 300;
    if r.len() > SHOWN {
        let cut = (0..=SHOWN)
            .rev()
            .find(|&i| r.is_char_boundary(i))
            .unwrap_or(0);
        let len = r.len();
        r.truncate(cut);
        r.push_str(&format!("… ({len} bytes)"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_url_is_shown_cut_to_one_line() {
        let url = format!("http://h/{}?sig=secret", "é".repeat(5000));
        let s = shown(&url);
        assert!(s.len() < 400, "{}", s.len());
        assert!(s.starts_with("http://h/é"), "{s}");
        assert!(
            s.ends_with(&format!("… ({} bytes)", url.find('?').unwrap())),
            "{s}"
        );
        assert!(!s.contains("secret"));
        assert_eq!(shown("http://h/a.json?x=1"), "http://h/a.json");
        assert_eq!(
            shown("https://e.example/bk#access_token=SECRET"),
            "https://e.example/bk"
        );
        let at_in_query = shown("http://h:1/bk?list-type=2&u=me@x&session=SECRET");
        assert!(!at_in_query.contains("SECRET"), "{at_in_query}");
        assert_eq!(
            shown("http://user:pw@h/a.json?sig=SECRET"),
            "http://***@h/a.json"
        );
    }

    #[test]
    fn encodes_keys() {
        let b = BucketLocation::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            b.object_url("2021/06/a b+c%#?.json"),
            "http://127.0.0.1:9000/2021/06/a%20b%2Bc%25%23%3F.json"
        );
        assert_eq!(b.object_url("é.json"), "http://127.0.0.1:9000/%C3%A9.json");
        assert!(BucketLocation::parse("ftp://x").is_err());
        assert!(BucketLocation::parse("not a url").is_err());
        assert!(BucketLocation::parse("s3://").is_err());
        // A presigned URL pasted whole: refused, its signature unshown.
        for pasted in [
            "s3://sim?X-Amz-Signature=SIG4711&X-Amz-Credential=K",
            "s3://sim/2021?X-Amz-Signature=SIG4711",
        ] {
            let e = BucketLocation::parse(pasted).unwrap_err().to_string();
            assert!(
                !e.contains("SIG4711") && e.contains("takes no query string"),
                "{e}"
            );
        }
        let e = BucketLocation::parse("s3://u:PW4711@b/x").unwrap_err();
        assert!(!format!("{e:#}").contains("PW4711"), "{e:#}");
    }

    #[test]
    fn a_base_urls_query_string_follows_the_key_and_is_never_shown() {
        let b = BucketLocation::parse("https://h/c/?sv=2024&sig=SECRET%2B1#frag").unwrap();
        assert_eq!(
            b.object_url("a b.json"),
            "https://h/c/a%20b.json?sv=2024&sig=SECRET%2B1"
        );
        assert_eq!(
            b.manifest_url(),
            "https://h/c/files_list.data?sv=2024&sig=SECRET%2B1"
        );
        assert_eq!(b.describe(), "https://h/c");
        let logged = crate::secret::redact_text(&format!("GET {}", b.object_url("k.json")));
        assert!(!logged.contains("SECRET"), "{logged}");
        assert!(logged.contains("sv=2024"), "{logged}");
        // A bare `?` adds nothing; what may not travel raw is escaped.
        let b = BucketLocation::parse("http://h/c?").unwrap();
        assert_eq!(b.object_url("k"), "http://h/c/k");
        let b = BucketLocation::parse("http://h/c?t=a b\"c").unwrap();
        assert_eq!(b.object_url("k"), "http://h/c/k?t=a%20b%22c");
    }

    #[test]
    fn s3_urls_path_style_for_custom_endpoints() {
        let o = S3Options {
            endpoint: Some("http://127.0.0.1:5000".into()),
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
        let b = BucketLocation::parse_with("s3://data/2021/06", &o).unwrap();
        let BucketLocation::S3(s3) = &b else { panic!() };
        assert_eq!(
            (s3.prefix.as_str(), s3.suffix.as_str()),
            ("2021/06", ".json")
        );
        assert!(
            b.object_url("a b.json")
                .starts_with("http://127.0.0.1:5000/data/a%20b.json")
        );
        assert_eq!(b.describe(), "s3://data/2021/06");
        assert_eq!(shown("http://h/k?X-Amz-Credential=AKIA"), "http://h/k");
        assert_eq!(shown("http://u:pw@h/k"), "http://***@h/k");
        assert_eq!(shown("http://u:p?w@h/k?a=b"), "http://***@h/k");
        let b = BucketLocation::parse("http://u:pw@h:9/b/").unwrap();
        assert_eq!(b.describe(), "http://***@h:9/b");
        let e = BucketLocation::parse("http://u:pw@h:99999/b").unwrap_err();
        assert!(!format!("{e:#}").contains("pw"), "{e:#}");
    }
}
