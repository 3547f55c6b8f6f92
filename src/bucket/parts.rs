//! Fetching one large object over several connections (sans-IO): when to
//! split a body that is arriving, where, and whether a part's answer is the
//! part asked for.
//!
//! A connection's throughput is limited (a TCP window over a long round
//! trip, a per-connection cap at the store), so a large body can take longer
//! on one connection than a second request takes to answer. AWS's advice for
//! S3 is byte-range GETs over concurrent connections. Transfer managers
//! split by a fixed part size (8 MiB) chosen before the first byte; this
//! client does not know an object's size until its GET answers (manifest
//! mode lists keys only), so it decides on the body as it arrives: once the
//! first bytes show this connection's rate, the rest of the object is split
//! only if it would take more than two first bytes to arrive here, and the
//! first connection keeps the share it finishes at the same time as the
//! parts. A small object, or a fast connection, is never split: the second
//! request's first byte would cost more than it saves.

use std::time::Duration;

/// The fewest bytes, and the least time, a body must have shown before its
/// rate is trusted.
const PROBE_BYTES: u64 = 32 * 1024;
const PROBE_TIME: Duration = Duration::from_millis(10);
/// The default most extra requests per object (`--ranged-parts`): the
/// gain of another part shrinks (k parts save k/(k+1) of what one would),
/// its request does not.
pub const DEFAULT_PARTS: u64 = 4;
/// No part smaller than this: below it the request is most of the cost.
const MIN_PART: u64 = 64 * 1024;
/// No object smaller than this is split, however slow its connection
/// seems: a rate read while every core is busy (parsing, writing) is the
/// CPU's, not the network's, and more requests would only add to it.
/// Transfer managers split only far larger objects (8 MiB by default).
pub const MIN_OBJECT: u64 = 1024 * 1024;
/// Nor when the split would save less than this.
const MIN_SAVING: Duration = Duration::from_millis(20);

/// How the rest of a body is shared out: the first connection keeps
/// `keep` bytes from the start, and each range (both ends inclusive) is
/// one more request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    pub keep: u64,
    pub parts: Vec<(u64, u64)>,
}

/// Whether the body of a `200` with these headers may be fetched in parts:
/// its length is declared, it is not compressed (a range would count the
/// compressed bytes), the server says it serves byte ranges, and it has a
/// strong ETag, which every part must match (`If-Match`) so that parts of
/// two versions of the object are never joined. Returns that ETag.
pub(crate) fn splittable(status: u16, headers: &ureq::http::HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let ranges = header("accept-ranges").is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
    let identity = matches!(header("content-encoding"), None | Some("" | "identity"));
    let etag = header("etag").filter(|e| e.starts_with('"') && e.len() > 2)?;
    (status == 200 && ranges && identity && super::close_delimited(headers).eq(&false))
        .then(|| etag.to_string())
}

/// The split of a body of `total` bytes of which `received` arrived in
/// `elapsed` after its memory was granted, on a connection whose first byte
/// took `first_byte`; `None` while the rate is not yet known, or when
/// splitting would not pay.
pub(crate) fn plan(
    max_parts: u64,
    total: u64,
    received: u64,
    elapsed: Duration,
    first_byte: Duration,
) -> Option<Split> {
    if max_parts == 0
        || total < MIN_OBJECT
        || received < PROBE_BYTES
        || elapsed < PROBE_TIME
        || received >= total
    {
        return None;
    }
    let rate = received as f64 / elapsed.as_secs_f64();
    let fb = first_byte.as_secs_f64().max(0.001);
    let remaining = (total - received) as f64;
    // On this connection alone the rest takes `alone`; with k more
    // requests, each waiting a first byte, everything ends at
    // (k·fb + alone)/(k+1), which gains whenever alone > fb. Asked only
    // past one and a half first bytes: the parts' slowest first byte is
    // often later than this request's (the slowest of k draws), and four
    // parts then still save 0.4 of a first byte.
    let alone = remaining / rate;
    if alone <= 1.5 * fb || alone - (fb + alone) / 2.0 < MIN_SAVING.as_secs_f64() {
        return None;
    }
    (1..=max_parts).rev().find_map(|k| {
        let kf = k as f64;
        // Bytes the first connection still delivers by the time the parts
        // end: it and the parts finish together.
        let keep_more = (rate * (kf * fb + alone) / (kf + 1.0)).ceil() as u64;
        let keep = received + keep_more.min(total - received);
        let rest = total - keep;
        if rest < k * MIN_PART {
            return None;
        }
        let size = rest.div_ceil(k);
        let parts = (0..k)
            .map(|i| (keep + i * size, (keep + (i + 1) * size).min(total) - 1))
            .filter(|(a, b)| a <= b)
            .collect();
        Some(Split { keep, parts })
    })
}

/// Says, at debug level, why an object's parts were given up: the first
/// connection reads on.
pub(crate) fn abandoned(url: &str, why: &str) {
    tracing::debug!(
        url = super::location::shown(url),
        "fetching in parts abandoned, reading on: {why}"
    );
}

/// A part's body once its stream ended: exactly the `first..=last` asked
/// for, or why not; said at trace level with the time it took.
pub(crate) fn received(
    url: &str,
    (first, last): (u64, u64),
    body: Vec<u8>,
    took: Duration,
) -> Result<Vec<u8>, String> {
    let want = last - first + 1;
    if body.len() as u64 != want {
        return Err(format!("{} of the {want} bytes asked for", body.len()));
    }
    tracing::trace!(
        url = super::location::shown(url),
        first,
        last,
        total_ms = took.as_millis() as u64,
        "fetched part"
    );
    Ok(body)
}

/// The object whole: the first connection's share of `body` (it may have
/// read on past it) followed by the parts in order.
pub(crate) fn assemble(body: &mut Vec<u8>, keep: u64, parts: Vec<Vec<u8>>) {
    body.truncate(keep as usize);
    for part in parts {
        body.extend_from_slice(&part);
    }
}

/// The time from an object's first byte to its last, in seconds, when its
/// body of `total` bytes arrives at `rate` bytes a second on every
/// connection: what [`plan`] makes of it, given that its GET's first byte
/// took `first_byte` and the parts' slowest takes `parts_first_byte`. The
/// network bound (`harness::bound`) counts an object so for a model that
/// splits; the first connection reads on, so it is never above the
/// single GET's.
pub fn expected_body_secs(
    max_parts: u64,
    total: u64,
    rate: f64,
    first_byte: Duration,
    parts_first_byte: Duration,
) -> f64 {
    let whole = total as f64 / rate;
    // Where the client first asks: PROBE_TIME in, or PROBE_BYTES, whichever
    // comes later.
    let probe = PROBE_TIME.as_secs_f64().max(PROBE_BYTES as f64 / rate);
    let received = ((rate * probe) as u64).min(total);
    let Some(split) = plan(
        max_parts,
        total,
        received,
        Duration::from_secs_f64(probe),
        first_byte,
    ) else {
        return whole;
    };
    let first_ends = probe + (split.keep - received) as f64 / rate;
    let largest_part = split
        .parts
        .iter()
        .map(|(a, b)| b - a + 1)
        .max()
        .unwrap_or(0);
    let parts_end = probe + parts_first_byte.as_secs_f64() + largest_part as f64 / rate;
    whole.min(first_ends.max(parts_end))
}

/// Whether a part's answer is the bytes `first..=last` of the `total`-byte
/// version `etag` asked for: a `206` with that `Content-Range` and that
/// ETag (a server that ignores `If-Match` would otherwise hand over a
/// newer version's bytes, to be joined to the old one's). Anything else (a
/// whole `200` from a server that ignored the range, a `412` for a changed
/// object) is said in one line and the split is abandoned.
pub(crate) fn check_part(
    status: u16,
    headers: &ureq::http::HeaderMap,
    etag: &str,
    (first, last, total): (u64, u64, u64),
) -> Result<(), String> {
    if status != 206 {
        return Err(format!("the range request was answered HTTP {status}"));
    }
    // Bytes of an encoded body are not the object's: the GET's were plain.
    if let Some(enc) = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    {
        return Err(format!(
            "the part came encoded ({}), the object plain",
            crate::report::printable(enc)
        ));
    }
    let tag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if tag != Some(etag) {
        return Err(format!(
            "the part is of another version (ETag {})",
            crate::report::printable(tag.unwrap_or("missing"))
        ));
    }
    let range = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if range != format!("bytes {first}-{last}/{total}") {
        return Err(format!(
            "asked for bytes {first}-{last}/{total}, answered `{}`",
            crate::report::printable(range)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_small_or_fast_body_is_not_split() {
        // Under 1 MiB, however slow: on a busy machine the rate is the CPU's.
        assert_eq!(plan(4, 900_000, 40_000, 100 * MS, MS), None);
        // A fast connection: 1 ms first bytes, 20 ms to go; the split would
        // save under 20 ms.
        assert_eq!(plan(4, 2_000_000, 200_000, 2 * MS, MS), None);
        // 200 KB at 12.5 MB/s: 16 ms to go against a 70 ms first byte.
        assert_eq!(plan(4, 200_000, 40_000, 3 * MS + PROBE_TIME, 70 * MS), None);
        // 1.3 first bytes to go: the parts' slowest first byte would eat
        // the gain.
        assert_eq!(plan(4, 1_000_000, 125_000, PROBE_TIME, 55 * MS), None);
        // Not enough seen yet to know the rate.
        assert_eq!(plan(4, 2_000_000, 20_000, 20 * MS, 70 * MS), None);
        assert_eq!(plan(4, 2_000_000, 200_000, 5 * MS, 70 * MS), None);
    }

    #[test]
    fn a_slow_large_body_is_split_so_that_all_connections_end_together() {
        // 1.9 MB at 12.5 MB/s (100 Mbit/s), 125 KB in after 10 ms, a 70 ms
        // first byte: 142 ms to go alone.
        let s = plan(4, 1_900_000, 125_000, 10 * MS, 70 * MS).expect("split");
        assert_eq!(s.parts.len(), 4);
        assert_eq!(
            plan(0, 1_900_000, 125_000, 10 * MS, 70 * MS),
            None,
            "--ranged-parts 0"
        );
        assert_eq!(
            plan(1, 1_900_000, 125_000, 10 * MS, 70 * MS)
                .unwrap()
                .parts
                .len(),
            1
        );
        assert_eq!(s.parts.first().unwrap().0, s.keep);
        assert_eq!(s.parts.last().unwrap().1, 1_900_000 - 1);
        for w in s.parts.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "contiguous: {s:?}");
        }
        let rate = 12.5e6;
        let first_ends = (s.keep - 125_000) as f64 / rate;
        let part = (s.parts[0].1 - s.parts[0].0 + 1) as f64;
        let parts_end = 0.070 + part / rate;
        assert!(
            (first_ends - parts_end).abs() < 0.002,
            "{first_ends} vs {parts_end}"
        );
        assert!(first_ends < 0.142 * 0.75, "saves a quarter: {first_ends}");
    }

    #[test]
    fn the_expected_body_is_the_later_of_the_first_connection_and_the_parts() {
        let rate = 12.5e6;
        let fb = 70 * MS;
        // Not split: the body at the rate.
        assert!((expected_body_secs(4, 200_000, rate, fb, fb) - 0.016).abs() < 1e-9);
        assert!((expected_body_secs(0, 1_900_000, rate, fb, fb) - 0.152).abs() < 1e-9);
        // Split: all end together, well before the single GET would.
        let split = expected_body_secs(4, 1_900_000, rate, fb, fb);
        assert!(split < 0.152 * 0.75 && split > 0.070, "{split}");
        // Parts that answer late are no worse than the single GET.
        assert!((expected_body_secs(4, 1_900_000, rate, fb, 10 * fb) - 0.152).abs() < 1e-9);
    }

    #[test]
    fn parts_are_never_tiny() {
        // Nearly five first bytes to go, but four parts would be under
        // 64 KiB.
        let s = plan(4, 1_100_000, 700_000, 100 * MS, 12 * MS).expect("split");
        assert_eq!(s.parts.len(), 3, "{s:?}");
        for (a, b) in &s.parts {
            assert!(b - a + 1 >= MIN_PART, "{s:?}");
        }
    }

    #[test]
    fn only_a_whole_strong_tagged_plain_ranged_body_is_split() {
        let mut h = ureq::http::HeaderMap::new();
        h.insert("content-length", "100".parse().unwrap());
        h.insert("etag", "\"abc\"".parse().unwrap());
        assert_eq!(splittable(200, &h), None, "no Accept-Ranges");
        h.insert("accept-ranges", "bytes".parse().unwrap());
        assert_eq!(splittable(200, &h).as_deref(), Some("\"abc\""));
        assert_eq!(splittable(206, &h), None);
        h.insert("etag", "W/\"abc\"".parse().unwrap());
        assert_eq!(splittable(200, &h), None, "weak ETag");
        h.insert("etag", "\"abc\"".parse().unwrap());
        h.insert("content-encoding", "gzip".parse().unwrap());
        assert_eq!(splittable(200, &h), None, "compressed");
    }

    #[test]
    fn a_part_must_be_the_range_asked_for() {
        let mut h = ureq::http::HeaderMap::new();
        let tag = "\"v1\"";
        h.insert("content-range", "bytes 10-19/100".parse().unwrap());
        assert!(check_part(206, &h, tag, (10, 19, 100)).is_err(), "no ETag");
        h.insert("etag", "\"v2\"".parse().unwrap());
        assert!(
            check_part(206, &h, tag, (10, 19, 100)).is_err(),
            "another version"
        );
        h.insert("etag", tag.parse().unwrap());
        assert!(check_part(200, &h, tag, (10, 19, 100)).is_err());
        assert!(check_part(206, &h, tag, (10, 19, 100)).is_ok());
        assert!(
            check_part(206, &h, tag, (10, 19, 101)).is_err(),
            "another version's size"
        );
        assert!(check_part(206, &h, tag, (0, 9, 100)).is_err());
        h.insert("content-encoding", "gzip".parse().unwrap());
        assert!(check_part(206, &h, tag, (10, 19, 100)).is_err(), "encoded");
    }
}
