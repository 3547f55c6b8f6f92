//! Request authentication for the simulated bucket's S3 subset: checks a
//! presigned (query-string) SigV4 request the way S3 does, by signing the
//! same request again with the known secret (rusty-s3) and comparing.
//! Lets the tests prove "wrong secret: access denied" and "private bucket,
//! anonymous: access denied" against a server that really checks.

use std::time::Duration;

use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Credentials, S3Action as _, UrlStyle};

/// Who may read the bucket.
#[derive(Clone)]
pub struct SimAuth {
    pub access_key: String,
    pub secret_key: String,
    /// Anonymous GET, HEAD and listing allowed (a public-read bucket).
    pub public_read: bool,
}

impl std::fmt::Debug for SimAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAuth")
            .field("access_key", &self.access_key)
            .field("public_read", &self.public_read)
            .finish()
    }
}

/// An S3 error code and message.
pub type Denied = (&'static str, String);

/// The request to check: everything the signature covers.
pub struct Request<'a> {
    pub host: &'a str,
    pub bucket: &'a str,
    pub head: bool,
    /// Decoded key; empty for a bucket-level request (listing).
    pub key: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub fn check(auth: &SimAuth, req: &Request<'_>) -> Result<(), Denied> {
    let Some(signature) = param(req.query, "X-Amz-Signature") else {
        return if auth.public_read {
            Ok(())
        } else {
            Err(("AccessDenied", "Access Denied".into()))
        };
    };
    let credential = param(req.query, "X-Amz-Credential").unwrap_or("");
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0] != auth.access_key {
        return Err((
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.".into(),
        ));
    }
    let region = scope[2];
    let expires = param(req.query, "X-Amz-Expires")
        .and_then(|e| e.parse::<u64>().ok())
        .unwrap_or(0);
    let time = param(req.query, "X-Amz-Date")
        .and_then(|d| jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", d).ok())
        .and_then(|t| t.to_datetime().ok())
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp());
    let Some(time) = time else {
        return Err((
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format".into(),
        ));
    };
    if jiff::Timestamp::now() > time + jiff::SignedDuration::from_secs(expires as i64) {
        return Err(("AccessDenied", "Request has expired".into()));
    }
    let creds = match param(req.query, "X-Amz-Security-Token") {
        Some(t) => Credentials::new_with_token(auth.access_key.clone(), auth.secret_key.clone(), t),
        None => Credentials::new(auth.access_key.clone(), auth.secret_key.clone()),
    };
    let endpoint = url::Url::parse(&format!("http://{}", req.host))
        .map_err(|_| ("InvalidRequest", "bad Host header".to_string()))?;
    let bucket = rusty_s3::Bucket::new(
        endpoint,
        UrlStyle::Path,
        req.bucket.to_string(),
        region.to_string(),
    )
    .map_err(|_| ("InvalidRequest", "bad bucket".to_string()))?;
    let ttl = Duration::from_secs(expires);
    let resigned = if req.key.is_empty() {
        let mut action = ListObjectsV2::new(&bucket, Some(&creds));
        for (k, v) in req.query {
            if !k.starts_with("X-Amz-") && k != "list-type" && k != "encoding-type" {
                action.query_mut().insert(k.clone(), v.clone());
            }
        }
        action.sign_with_time(ttl, &time)
    } else if req.head {
        bucket
            .head_object(Some(&creds), req.key)
            .sign_with_time(ttl, &time)
    } else {
        bucket
            .get_object(Some(&creds), req.key)
            .sign_with_time(ttl, &time)
    };
    let expected = resigned
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if expected == signature {
        Ok(())
    } else {
        Err(("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.".into()))
    }
}
