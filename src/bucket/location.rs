//! Where a bucket is and how its objects are addressed.

use anyhow::bail;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything except RFC 3986 unreserved characters and `/` is escaped in a
/// key, which is also what S3 signs.
const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

pub const MANIFEST_KEY: &str = "files_list.data";

/// A bucket in manifest mode: a base URL holding `files_list.data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLocation {
    base: String,
}

impl BucketLocation {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => bail!("bad bucket URL {url:?}: {e} (expected http://HOST[:PORT][/PATH])"),
        };
        match parsed.scheme() {
            "http" | "https" => {}
            "s3" => bail!("s3:// buckets are not supported yet; use the bucket's HTTP base URL"),
            other => bail!("bad bucket URL {url:?}: scheme {other:?} is not http or https"),
        }
        if parsed.host_str().is_none() {
            bail!("bad bucket URL {url:?}: no host");
        }
        Ok(BucketLocation { base: url.trim_end_matches('/').to_string() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET <base>/<key>`, the key percent-encoded segment by segment.
    pub fn object_url(&self, key: &str) -> String {
        format!("{}/{}", self.base, utf8_percent_encode(key, KEY))
    }

    pub fn manifest_url(&self) -> String {
        self.object_url(MANIFEST_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_keys() {
        let b = BucketLocation::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(b.object_url("2021/06/a b+c%#?.json"), "http://127.0.0.1:9000/2021/06/a%20b%2Bc%25%23%3F.json");
        assert_eq!(b.object_url("é.json"), "http://127.0.0.1:9000/%C3%A9.json");
        assert!(BucketLocation::parse("ftp://x").is_err());
        assert!(BucketLocation::parse("not a url").is_err());
    }
}
