//! ListObjectsV2 for the simulated bucket: the subset of S3's query
//! parameters and XML that clients use.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::server::xml_escape;
use super::store::Store;

const URL_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Decoded query parameters, in order.
pub(crate) fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub fn list_objects_v2(store: &Store, bucket: &str, query: &str) -> Response {
    let q = params(query);
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if get("list-type") != Some("2") {
        return xml(StatusCode::NOT_IMPLEMENTED, "<Error><Code>NotImplemented</Code><Message>Only ListObjectsV2 (list-type=2) is implemented</Message></Error>".into());
    }
    let prefix = get("prefix").unwrap_or("");
    let max_keys = get("max-keys")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(1000);
    let url_encode = get("encoding-type") == Some("url");
    let token = get("continuation-token");
    let after = match token {
        Some(t) => match hex::decode(t).ok().and_then(|b| String::from_utf8(b).ok()) {
            Some(k) => Some(k),
            None => return xml(StatusCode::BAD_REQUEST, "<Error><Code>InvalidArgument</Code><Message>The continuation token provided is incorrect</Message></Error>".into()),
        },
        None => get("start-after").map(str::to_string),
    };
    let (page, more) = store.list(prefix, after.as_deref(), max_keys);
    let enc = |s: &str| {
        if url_encode {
            utf8_percent_encode(s, URL_KEY).to_string()
        } else {
            xml_escape(s)
        }
    };
    let mut out = String::with_capacity(256 + page.len() * 200);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    out.push_str(&format!(
        "<Name>{}</Name><Prefix>{}</Prefix>",
        xml_escape(bucket),
        enc(prefix)
    ));
    out.push_str(&format!(
        "<KeyCount>{}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{more}</IsTruncated>",
        page.len()
    ));
    if url_encode {
        out.push_str("<EncodingType>url</EncodingType>");
    }
    if let Some(t) = token {
        out.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            xml_escape(t)
        ));
    }
    if let (true, Some((last, _))) = (more, page.last()) {
        out.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            hex::encode(last)
        ));
    }
    for (key, obj) in &page {
        out.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            enc(key),
            obj.last_modified,
            xml_escape(&obj.etag),
            obj.body.len()
        ));
    }
    out.push_str("</ListBucketResult>");
    xml(StatusCode::OK, out)
}

fn xml(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(Body::from(body))
        .expect("valid response")
}

/// RFC 3339 (`2021-06-01T00:00:00.000Z`) to an HTTP date.
pub fn http_date(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_else(|_| "Tue, 01 Jun 2021 00:00:00 GMT".into())
}
