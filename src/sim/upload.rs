//! Uploads a generated bucket to a real S3 API (moto, MinIO, AWS) with
//! signed requests, so the same data can be benchmarked there.

use std::time::Duration;

use anyhow::{Context, bail};
use rusty_s3::S3Action as _;

use super::SimBucket;
use crate::bucket::BucketLocation;

const TTL: Duration = Duration::from_secs(3600);

/// How long a PUT may wait for its answer once its body is sent (an S3
/// store answers a small PUT in well under a second).
pub const UPLOAD_ANSWER: Duration = Duration::from_secs(15);

/// Creates the bucket if needed and puts every object, eight at a time.
/// Returns the number of objects written.
pub fn upload(bucket: &SimBucket, to: &BucketLocation) -> anyhow::Result<usize> {
    let BucketLocation::S3(b) = to else {
        bail!("upload needs an s3:// bucket")
    };
    let Some(creds) = b.credentials.as_deref() else {
        bail!("uploading needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment");
    };
    // Every wait bounded: an endpoint that accepts connections and never
    // answers must end the upload with an error, not hang it.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_send_body(Some(Duration::from_secs(60)))
        .timeout_recv_response(Some(UPLOAD_ANSWER))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let url = b.bucket.create_bucket(creds).sign(TTL);
    let mut resp = agent
        .put(url.as_str())
        .send_empty()
        .with_context(|| format!("creating bucket {} at {}", b.bucket.name(), b.endpoint))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    // Already there (and ours) is fine: uploading again refreshes the objects.
    if !(200..300).contains(&status)
        && !body.contains("BucketAlreadyOwnedByYou")
        && !body.contains("BucketAlreadyExists")
    {
        return Err(crate::bucket::list::s3_error(b, status, body.as_bytes())
            .context("creating the bucket"));
    }
    let store = bucket.store();
    let keys = store.keys();
    let prefix = if b.prefix.is_empty() || b.prefix.ends_with('/') {
        b.prefix.clone()
    } else {
        format!("{}/", b.prefix)
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(keys.len().div_ceil(8).max(1))
            .map(|chunk| {
                let (agent, store, prefix) = (&agent, &store, &prefix);
                s.spawn(move || -> anyhow::Result<()> {
                    for key in chunk {
                        let body = store.get(key).expect("listed").body;
                        let full = format!("{prefix}{key}");
                        let url = b.bucket.put_object(Some(creds), &full).sign(TTL);
                        let mut resp = agent
                            .put(url.as_str())
                            .send(&body[..])
                            .with_context(|| format!("uploading {full}"))?;
                        let status = resp.status().as_u16();
                        if !(200..300).contains(&status) {
                            let text = resp.body_mut().read_to_string().unwrap_or_default();
                            return Err(crate::bucket::list::s3_error(b, status, text.as_bytes())
                                .context(format!("uploading {full}")));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("upload thread panicked"))
    })?;
    Ok(keys.len())
}
