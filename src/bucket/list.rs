//! Listing a bucket, page by page, so a bucket of millions of keys neither
//! waits for the whole listing nor holds it twice: a manifest (manifest
//! mode, or S3 with `--manifest KEY`) or ListObjectsV2 with continuation
//! tokens. Always on the blocking client, in the pass's lister thread.

use anyhow::{Context, bail};
use rusty_s3::S3Action as _;
use rusty_s3::actions::ListObjectsV2;

use super::location::{BucketLocation, S3Bucket, shown};
use super::manifest::{Manifest, RefusedKey, key_fault, parse_manifest};
use super::sync_client::{RawResponse, Redirects, SyncClient};
use super::{FetchError, ObjectRef};

/// Keyless pages in a row after which a listing that still asks for more
/// is given up on (S3 itself may send a few, never this many).
const MAX_EMPTY_PAGES: u32 = 100;

/// Keys per page handed on: S3's own page size.
pub const PAGE: usize = 1000;

/// One page of a listing: the keys to process, and the listed keys refused
/// on their own (see [`KeyFault`]) that must never reach the ledger.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<ObjectRef>,
    pub refused: Vec<RefusedKey>,
}

/// Calls `on_page` with each page of keys, in listing order.
pub fn list(
    client: &SyncClient,
    loc: &BucketLocation,
    on_page: &mut dyn FnMut(Page) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match loc {
        BucketLocation::S3(b) if b.manifest.is_none() => list_objects_v2(client, b, on_page),
        _ => {
            let Manifest { keys, refused } = manifest_keys(client, loc)?;
            let mut refused = Some(refused);
            // Keys move into their pages, never copied: a page handed on
            // is memory the manifest no longer holds.
            let mut keys = keys.into_iter().peekable();
            loop {
                let objects: Vec<ObjectRef> = keys
                    .by_ref()
                    .take(PAGE)
                    .map(|key| ObjectRef {
                        key,
                        etag: None,
                        ledger_asked: None,
                    })
                    .collect();
                let last = keys.peek().is_none();
                // An empty manifest still hands on one page: its refused keys.
                if !objects.is_empty() || refused.is_some() {
                    on_page(Page {
                        objects,
                        refused: refused.take().unwrap_or_default(),
                    })?;
                }
                if last {
                    return Ok(());
                }
            }
        }
    }
}

/// S3 answers with its errors, redirects included; a manifest on a plain
/// web server may be behind a redirect.
fn redirects_of(loc: &BucketLocation) -> Redirects {
    match loc {
        BucketLocation::S3(_) => Redirects::Answer,
        _ => Redirects::Follow,
    }
}

/// Reads of a manifest that may have been cut short before it is given up
/// on (see [`whole_manifest`]).
const MANIFEST_READS: usize = 3;

/// The manifest's answer, read again when it may have been cut: sent with
/// no length and no chunks (the connection closed to end it), a manifest
/// cut mid-line looks whole, and its cut last line would be taken for a
/// key. Such a manifest whose last line has no newline is read again, and
/// taken once a read ends with one or matches an earlier read (a manifest
/// may end without a newline); one that differs every time fails the
/// listing. A cut made at the same byte every time (a proxy's size limit)
/// cannot be told from a manifest that ends there.
fn whole_manifest(
    client: &SyncClient,
    loc: &BucketLocation,
    url: &str,
) -> anyhow::Result<super::sync_client::RawResponse> {
    let mut earlier: Vec<Vec<u8>> = Vec::new();
    for _ in 0..MANIFEST_READS {
        let raw = client
            .get_raw(url, redirects_of(loc))
            .map_err(|e| unreachable(loc, &e))?;
        let whole = !raw.close_delimited
            || !(200..=299).contains(&raw.status)
            || raw.body.is_empty()
            || raw.body.ends_with(b"\n")
            || earlier.contains(&raw.body);
        if whole {
            return Ok(raw);
        }
        tracing::debug!(
            bytes = raw.body.len(),
            "the manifest came without a length and ends mid-line: reading it again"
        );
        earlier.push(raw.body);
    }
    bail!(
        "cannot list bucket {}: {} came without a length and ended mid-line differently on each of {MANIFEST_READS} reads: it is being cut short; rerun (nothing was loaded)",
        loc.describe(),
        shown(url)
    )
}

fn manifest_keys(client: &SyncClient, loc: &BucketLocation) -> anyhow::Result<Manifest> {
    let url = loc.manifest_url();
    let raw = whole_manifest(client, loc, &url)?;
    let (status, body) = (raw.status, &raw.body);
    match (status, loc) {
        (200..=299, _) => {
            let html = raw
                .content_type
                .as_deref()
                .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
            let parsed = if html {
                Err("it is an HTML page (Content-Type text/html), not a list of keys".to_string())
            } else {
                parse_manifest(body)
            };
            parsed.map_err(|why| {
                anyhow::anyhow!(
                    "cannot list bucket {}: {} is not a manifest: {why}; is the bucket URL right? (nothing was loaded)",
                    loc.describe(),
                    shown(&url)
                )
            })
        }
        (_, BucketLocation::S3(b)) => Err(s3_answer_error(b, &raw)),
        (404, _) => bail!(
            "cannot list bucket {}: {} answered 404 (no files_list.data there: the bucket URL is the directory that holds it, such as the one `bucket serve` prints)",
            loc.describe(),
            shown(&url)
        ),
        _ => bail!(
            "cannot list bucket {}: HTTP {status} for {}",
            loc.describe(),
            shown(&url)
        ),
    }
}

fn list_objects_v2(
    client: &SyncClient,
    b: &S3Bucket,
    on_page: &mut dyn FnMut(Page) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let loc = BucketLocation::S3(b.clone());
    let mut token: Option<String> = None;
    // A server that hands back a token it gave before would be listed
    // again and again, forever; so would one that pages on without keys.
    let mut seen_tokens = std::collections::HashSet::new();
    let mut empty_pages = 0u32;
    // S3 lists keys in ascending order, page after page: a page that goes
    // back to a key at or before the last one is a listing starting over.
    let mut last_key: Option<String> = None;
    loop {
        let url = {
            let mut action = ListObjectsV2::new(&b.bucket, b.credentials.as_deref());
            if !b.prefix.is_empty() {
                action.with_prefix(b.prefix.as_str());
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            action.with_max_keys(PAGE);
            action
                .sign(std::time::Duration::from_secs(3600))
                .to_string()
        };
        let raw = client
            .get_raw(&url, Redirects::Answer)
            .map_err(|e| unreachable(&loc, &e))?;
        if !(200..300).contains(&raw.status) {
            return Err(s3_answer_error(b, &raw));
        }
        let body = raw.body;
        let text =
            std::str::from_utf8(&body).context("ListObjectsV2 answered with invalid UTF-8")?;
        let page = ListObjectsV2::parse_response(text).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the ListObjectsV2 answer of {}: {e}",
                loc.describe()
            )
        })?;
        let mut out = Page::default();
        let keyless = page.contents.is_empty();
        if let (Some(last), Some(first)) = (&last_key, page.contents.first()) {
            if first.key.as_str() <= last.as_str() {
                bail!(
                    "cannot list {}: a page went back to key {} after {}, but S3 lists keys in ascending order, so the listing would never end; is it a faulty S3-compatible store?",
                    loc.describe(),
                    crate::report::short_key(&first.key),
                    crate::report::short_key(last)
                );
            }
        }
        if let Some(o) = page.contents.last() {
            last_key = Some(o.key.clone());
        }
        for o in page.contents {
            if !o.key.ends_with(&b.suffix) {
                continue;
            }
            // XML cannot carry NUL, but a key must never reach the ledger
            // that cannot hold it, whatever the server sent.
            match key_fault(&o.key) {
                Some(fault) => out.refused.push(RefusedKey::new(o.key.as_bytes(), fault)),
                None => out.objects.push(ObjectRef {
                    key: o.key,
                    etag: o.etag,
                    ledger_asked: None,
                }),
            }
        }
        on_page(out)?;
        match page.next_continuation_token {
            Some(t) => {
                if !seen_tokens.insert(t.clone()) {
                    bail!(
                        "cannot list {}: the server gave the same continuation token twice, so the listing would never end; is it a faulty S3-compatible store?",
                        loc.describe()
                    );
                }
                empty_pages = if keyless { empty_pages + 1 } else { 0 };
                if empty_pages >= MAX_EMPTY_PAGES {
                    bail!(
                        "cannot list {}: {MAX_EMPTY_PAGES} pages in a row held no key and still asked for more; is it a faulty S3-compatible store?",
                        loc.describe()
                    );
                }
                token = Some(t);
            }
            None => return Ok(()),
        }
    }
}

fn unreachable(loc: &BucketLocation, e: &FetchError) -> anyhow::Error {
    // The limit is on every download: the endpoint was reached, and what
    // was too large is the listing, not an object.
    if let FetchError::TooLarge { limit } = e {
        let (what, bucket) = match loc {
            BucketLocation::S3(b) => (
                "a listing page",
                format!("{} at {}", b.bucket.name(), b.endpoint),
            ),
            BucketLocation::Http { .. } => ("its manifest", loc.describe()),
        };
        return anyhow::anyhow!(
            "cannot list bucket {bucket}: {what} is larger than the {limit}-byte limit --max-object-bytes sets on every download (raise it)"
        );
    }
    match loc {
        BucketLocation::S3(b) => anyhow::anyhow!(
            "cannot reach the S3 endpoint {} for bucket {}: {e}",
            b.endpoint,
            b.bucket.name()
        ),
        BucketLocation::Http { .. } => {
            anyhow::anyhow!("cannot list bucket {}: {e}", loc.describe())
        }
    }
}

/// The text of the first `<tag>` in an S3 XML error.
fn xml_tag<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

/// An S3 error answer in words, one line, with what to check.
/// An S3 answer other than success, in words, with what its headers add:
/// the bucket's real region (`x-amz-bucket-region`, which AWS sends with
/// its wrong-region answers), or where a redirect points (a listing is
/// never followed across one: S3's own errors come as 3xx too).
fn s3_answer_error(b: &S3Bucket, raw: &RawResponse) -> anyhow::Error {
    let said = |v: &str| crate::report::printable(&crate::report::clip(v, 100));
    let name = b.bucket.name();
    // Only what looks like a region is named, and put in the command it
    // suggests: a header is the server's to fill.
    let region_like = |r: &&str| {
        (1..=32).contains(&r.len())
            && r.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    };
    if let Some(region) = raw
        .bucket_region
        .as_deref()
        .filter(region_like)
        .filter(|r| *r != b.bucket.region())
    {
        if matches!(raw.status, 301 | 400 | 403) {
            let region = said(region);
            return anyhow::anyhow!(
                "bucket {name} is in region {region}, not {} (set --region {region} or AWS_REGION={region})",
                b.bucket.region()
            );
        }
    }
    if let (300..=399, Some(to)) = (raw.status, raw.location.as_deref()) {
        return anyhow::anyhow!(
            "the S3 endpoint {} answered HTTP {} with a redirect to {}; S3 requests are not followed across redirects: give the endpoint it names with --endpoint",
            b.endpoint,
            raw.status,
            said(&shown(to))
        );
    }
    s3_error(b, raw.status, &raw.body)
}

pub fn s3_error(b: &S3Bucket, status: u16, body: &[u8]) -> anyhow::Error {
    let body = String::from_utf8_lossy(body);
    // The server's words are shown escaped and clipped: a hostile one's
    // escape sequences or carriage return would otherwise reach the
    // terminal live, and rewrite the line that reports it.
    let said = |tag| {
        crate::report::printable(&crate::report::clip(xml_tag(&body, tag).unwrap_or(""), 300))
    };
    let (code, message) = (said("Code"), said("Message"));
    let code = code.as_str();
    let name = b.bucket.name();
    match (status, code) {
        (_, "NoSuchBucket") => anyhow::anyhow!("bucket {name} does not exist at {}", b.endpoint),
        (
            _,
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException",
        )
        | (301, _) => anyhow::anyhow!(
            "bucket {name} is not in region {} (set --region or AWS_REGION to the bucket's region){}",
            b.bucket.region(),
            if message.is_empty() {
                String::new()
            } else {
                format!(": S3 says \"{message}\"")
            }
        ),
        (401 | 403, _) | (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
            if b.credentials.is_some() {
                anyhow::anyhow!(
                    "access denied to bucket {name} (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY){}",
                    if code.is_empty() {
                        String::new()
                    } else {
                        format!(": {code}")
                    }
                )
            } else {
                anyhow::anyhow!(
                    "access denied to bucket {name}: the request was anonymous (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set) and the bucket is not public"
                )
            }
        }
        (404, _) => anyhow::anyhow!(
            "bucket {name} does not exist at {} (HTTP 404{})",
            b.endpoint,
            if code.is_empty() {
                String::new()
            } else {
                format!(" {code}")
            }
        ),
        _ => {
            let words: Vec<&str> = [code, message.as_str()]
                .into_iter()
                .filter(|w| !w.is_empty())
                .collect();
            anyhow::anyhow!(
                "listing bucket {name} failed: HTTP {status}{}",
                if words.is_empty() {
                    String::new()
                } else {
                    format!(" {}", words.join(": "))
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(creds: bool) -> S3Bucket {
        let loc = BucketLocation::parse_with(
            "s3://data",
            &super::super::location::S3Options {
                endpoint: Some("http://127.0.0.1:1".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let BucketLocation::S3(mut b) = loc else {
            panic!()
        };
        b.credentials =
            creds.then(|| std::sync::Arc::new(rusty_s3::Credentials::new("AKIDEXAMPLE", "secret")));
        b
    }

    #[test]
    fn s3_errors_are_shown_escaped() {
        let hostile = b"<Error><Code>Weird\x1b[2J</Code><Message>\x1b]0;PWNED\x07\rfake: all good</Message></Error>";
        let shown = s3_error(&bucket(true), 400, hostile).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains(r"Weird\u{1b}[2J"), "{shown}");
        assert!(shown.contains(r"\rfake: all good"), "{shown}");
    }

    #[test]
    fn s3_errors_in_words() {
        let denied = b"<Error><Code>SignatureDoesNotMatch</Code><Message>nope</Message></Error>";
        assert_eq!(
            s3_error(&bucket(true), 403, denied).to_string(),
            "access denied to bucket data (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY): SignatureDoesNotMatch"
        );
        assert!(
            s3_error(
                &bucket(false),
                403,
                b"<Error><Code>AccessDenied</Code></Error>"
            )
            .to_string()
            .contains("anonymous")
        );
        assert_eq!(
            s3_error(
                &bucket(true),
                404,
                b"<Error><Code>NoSuchBucket</Code></Error>"
            )
            .to_string(),
            "bucket data does not exist at http://127.0.0.1:1"
        );
        assert!(
            s3_error(
                &bucket(true),
                301,
                b"<Error><Code>PermanentRedirect</Code></Error>"
            )
            .to_string()
            .contains("not in region us-east-1")
        );
    }
}
