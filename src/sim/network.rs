//! How the simulated bucket's network behaves beyond [`super::Conditions`]:
//! latency distributions, connection set-up round trips, TLS, S3's request
//! rate limit, and named presets of all of these with their sources.
//!
//! Everything here is plain data and arithmetic (no IO, time passed in), so
//! the server stays a thin shell and the numbers are unit-tested.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::{RngExt as _, SeedableRng as _};

/// How a response's first-byte latency is drawn.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum LatencyShape {
    /// `Conditions::latency_ms` plus a uniform `[0, jitter_ms)` (the
    /// original `--latency-ms`/`--jitter-ms` flags).
    Custom,
    /// Log-normal with this median and 99th percentile: measured service
    /// latencies are right-skewed with a long tail, which a uniform jitter
    /// cannot show (and the tail is what stalls a sequential client).
    LogNormal { median_ms: f64, p99_ms: f64 },
}

/// The standard normal's 99th percentile.
const Z99: f64 = 2.326_347_874_040_841;

impl LatencyShape {
    /// One first-byte delay in milliseconds; `fixed_ms`/`jitter_ms` are
    /// the custom shape's parameters.
    pub fn draw(&self, rng: &mut LatencyRng, fixed_ms: f64, jitter_ms: f64) -> f64 {
        match *self {
            LatencyShape::Custom => {
                fixed_ms
                    + if jitter_ms > 0.0 {
                        rng.unit() * jitter_ms
                    } else {
                        0.0
                    }
            }
            LatencyShape::LogNormal { median_ms, p99_ms } => {
                if median_ms <= 0.0 {
                    return 0.0;
                }
                let sigma = (p99_ms.max(median_ms) / median_ms).ln() / Z99;
                median_ms * (sigma * rng.standard_normal()).exp()
            }
        }
    }
}

/// The seeded generator behind latency draws: the same seed gives the same
/// sequence of delays, run after run.
#[derive(Debug, Clone)]
pub struct LatencyRng(rand_chacha::ChaCha8Rng);

impl LatencyRng {
    pub fn new(seed: u64) -> Self {
        Self::for_run(seed, 0)
    }

    /// The sequence of run `run` under `seed`: a stream of its own
    /// (ChaCha's), independent of every other run's; run 0's is
    /// [`LatencyRng::new`]'s, ChaCha's default stream.
    pub fn for_run(seed: u64, run: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(run);
        LatencyRng(rng)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Standard normal (Box–Muller; one of the pair is enough here).
    fn standard_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The TLS version the server speaks when HTTPS is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2: a full handshake costs 2 round trips, a resumed one 1.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3: 1 round trip, full or resumed (no 0-RTT data).
    #[value(name = "1.3")]
    Tls13,
}

impl TlsVersion {
    /// Round trips of a handshake before the client may send its request.
    pub fn handshake_rtts(self, resumed: bool) -> u32 {
        match (self, resumed) {
            (TlsVersion::Tls12, false) => 2,
            _ => 1,
        }
    }
}

/// Round trips a new connection costs before its first request can go out:
/// TCP's 1, plus the TLS handshake's.
pub fn setup_rtts(tls: Option<TlsVersion>, resumed: bool) -> u32 {
    1 + tls.map_or(0, |v| v.handshake_rtts(resumed))
}

/// The network model of a simulated bucket, beside [`super::Conditions`]
/// (kept as it was so existing callers compile): latency shape, round-trip
/// time, TLS and the request-rate limit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NetworkModel {
    pub latency: LatencyShape,
    /// Round-trip time in milliseconds: a new connection's first response
    /// waits [`setup_rtts`] of them on top of its first-byte latency.
    pub rtt_ms: f64,
    /// Serve HTTPS with this version (`None`: plain HTTP).
    pub tls: Option<TlsVersion>,
    /// GET/HEAD requests per second per prefix before `503 SlowDown`
    /// (0: no limit).
    pub get_rate_per_prefix: f64,
    /// Seed of the latency draws.
    pub seed: u64,
}

impl Default for NetworkModel {
    fn default() -> Self {
        NetworkModel {
            latency: LatencyShape::Custom,
            rtt_ms: 0.0,
            tls: None,
            get_rate_per_prefix: 0.0,
            seed: 0,
        }
    }
}

/// S3's documented GET/HEAD rate per partitioned prefix.
/// Source: Amazon S3 User Guide, "Best practices design patterns:
/// optimizing Amazon S3 performance"
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html>):
/// "at least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per
/// second per partitioned Amazon S3 prefix".
pub const S3_GET_RATE_PER_PREFIX: f64 = 5500.0;

/// Named networks between a client and its bucket. The numbers and their
/// sources are in [`NetworkPreset::profile`] and docs/network.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum NetworkPreset {
    /// A bucket on the same host (MinIO beside the job): no added latency.
    Local,
    /// EC2 and S3 in the same AWS region.
    SameRegion,
    /// A client in another AWS region than its bucket.
    CrossRegion,
    /// A client on the public internet (a laptop, an office).
    Internet,
    /// Only what the individual flags say (`--latency-ms`, `--jitter-ms`,
    /// `--bandwidth-mbps`, `--rtt-ms`...).
    Custom,
}

/// What a preset sets.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PresetProfile {
    /// First-byte latency of a small GET: median and 99th percentile (ms).
    pub median_ms: f64,
    pub p99_ms: f64,
    /// Bandwidth per connection in megabits per second (0: unlimited).
    pub bandwidth_mbps: f64,
    /// Round-trip time (ms), paid again by each new connection's handshakes.
    pub rtt_ms: f64,
    /// The TLS version negotiated when HTTPS is on.
    pub tls: TlsVersion,
    /// GET/HEAD per second per prefix before `503 SlowDown` (0: none).
    pub get_rate_per_prefix: f64,
}

impl NetworkPreset {
    /// The numbers behind the preset (`None` for `Custom`).
    ///
    /// Sources:
    /// * First-byte latency in region: the S3 performance whitepaper's
    ///   "Timeouts and retries for latency-sensitive applications" (for
    ///   requests under 512 KB "median latencies are often in the tens of
    ///   milliseconds range", and a GET still unanswered after 2 s is worth
    ///   retrying, so the p99 sits well under 2 s).
    /// * First-byte latency across the internet: AWS publishes no figure
    ///   (its S3 performance guidelines only advise compute in the bucket's
    ///   region or Transfer Acceleration "to minimize latency caused by
    ///   distance"; an earlier comment here cited 100–200 ms to AWS, which
    ///   those pages do not say). Our estimate: the access RTT below plus a
    ///   request and the in-region service time, median 150 ms, p99 500 ms.
    /// * RTT: within a region, AWS documents single-digit-millisecond
    ///   latency between Availability Zones (about 1 ms in practice);
    ///   between regions 60–150 ms (e.g. us-east-1 to eu-west-1 about
    ///   70 ms); a home or office connection to the nearest region
    ///   30–100 ms.
    /// * TLS: S3 negotiates TLS 1.3 on all endpoints and current SDKs
    ///   default to it (S3 User Guide, "Protecting data in transit with
    ///   encryption"); use `--tls-version 1.2` for PrivateLink or older
    ///   clients.
    /// * Rate limit: [`S3_GET_RATE_PER_PREFIX`].
    /// * Bandwidth per connection: in region about 85–90 MB/s (~700 Mbit/s)
    ///   per connection, the figure often quoted from AWS's design patterns
    ///   (its guidelines, "Scale storage connections horizontally", ask for
    ///   many connections because one is limited); across
    ///   regions TCP's window over a long RTT caps one connection near
    ///   100 Mbit/s; on the internet the access link (tens of Mbit/s per
    ///   flow) is the cap.
    pub fn profile(self) -> Option<PresetProfile> {
        let p = match self {
            NetworkPreset::Local => PresetProfile {
                median_ms: 0.0,
                p99_ms: 0.0,
                bandwidth_mbps: 0.0,
                rtt_ms: 0.0,
                tls: TlsVersion::Tls13,
                get_rate_per_prefix: 0.0,
            },
            NetworkPreset::SameRegion => PresetProfile {
                median_ms: 20.0,
                p99_ms: 80.0,
                bandwidth_mbps: 700.0,
                rtt_ms: 1.0,
                tls: TlsVersion::Tls13,
                get_rate_per_prefix: S3_GET_RATE_PER_PREFIX,
            },
            NetworkPreset::CrossRegion => PresetProfile {
                median_ms: 100.0,
                p99_ms: 300.0,
                bandwidth_mbps: 100.0,
                rtt_ms: 80.0,
                tls: TlsVersion::Tls13,
                get_rate_per_prefix: S3_GET_RATE_PER_PREFIX,
            },
            NetworkPreset::Internet => PresetProfile {
                median_ms: 150.0,
                p99_ms: 500.0,
                bandwidth_mbps: 50.0,
                rtt_ms: 50.0,
                tls: TlsVersion::Tls13,
                get_rate_per_prefix: S3_GET_RATE_PER_PREFIX,
            },
            NetworkPreset::Custom => return None,
        };
        Some(p)
    }

    /// The preset as server settings: `base` keeps its error and stall
    /// rates; `tls` says whether HTTPS is on. `Custom` returns `base` and a
    /// model that adds nothing.
    pub fn apply(self, base: super::Conditions, tls: bool) -> (super::Conditions, NetworkModel) {
        let Some(p) = self.profile() else {
            let model = NetworkModel {
                tls: tls.then_some(TlsVersion::Tls13),
                ..NetworkModel::default()
            };
            return (base, model);
        };
        let conditions = super::Conditions {
            latency_ms: 0.0,
            jitter_ms: 0.0,
            bandwidth_mbps: p.bandwidth_mbps,
            ..base
        };
        let model = NetworkModel {
            latency: if p.median_ms > 0.0 {
                LatencyShape::LogNormal {
                    median_ms: p.median_ms,
                    p99_ms: p.p99_ms,
                }
            } else {
                LatencyShape::Custom
            },
            rtt_ms: p.rtt_ms,
            tls: tls.then_some(p.tls),
            get_rate_per_prefix: p.get_rate_per_prefix,
            seed: 0,
        };
        (conditions, model)
    }
}

/// The prefix S3 would rate-limit a key under: everything up to its last
/// `/` (the whole bucket for keys without one).
pub fn rate_prefix(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

/// A token bucket per prefix: `rate` tokens a second, holding at most one
/// second's worth (a burst up to the rate passes, a sustained excess is
/// refused).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: HashMap<String, (f64, f64)>,
}

impl RateLimiter {
    pub fn new(rate: f64) -> Self {
        RateLimiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `prefix` at `now_s` seconds; false: throttle.
    pub fn admit(&mut self, prefix: &str, now_s: f64) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let rate = self.rate;
        let (tokens, last) = match self.buckets.get_mut(prefix) {
            Some(b) => b,
            None => self
                .buckets
                .entry(prefix.to_string())
                .or_insert((rate, now_s)),
        };
        *tokens = (*tokens + (now_s - *last).max(0.0) * rate).min(rate);
        *last = now_s;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A lock-free histogram of delays with 1 % wide logarithmic buckets from
/// 0.01 ms to about 100 s, so quantiles of millions of draws cost constant
/// memory and are within 1 %.
pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    /// The exact sum of the delays recorded, in microseconds (for a mean).
    sum_us: AtomicU64,
}

const HIST_MIN_MS: f64 = 0.01;
const HIST_STEP: f64 = 1.01;
const HIST_BUCKETS: usize = 1700;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: (0..HIST_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .finish()
    }
}

impl LatencyHistogram {
    fn bucket(ms: f64) -> usize {
        if ms <= HIST_MIN_MS {
            return 0;
        }
        (((ms / HIST_MIN_MS).ln() / HIST_STEP.ln()).ceil() as usize).min(HIST_BUCKETS - 1)
    }

    pub fn record(&self, ms: f64) {
        self.counts[Self::bucket(ms)].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((ms.max(0.0) * 1000.0).round() as u64, Ordering::Relaxed);
    }

    /// A copy of the counts at one instant: two of them around a run give
    /// the delays of that run alone ([`HistogramSnapshot::since`]).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0 to 1) in milliseconds (the bucket's upper
    /// bound); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.snapshot().quantile(q)
    }
}

/// The counts of a [`LatencyHistogram`] at one instant, with the same
/// quantiles (plain data: the harness diffs two of them per run).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    counts: Vec<u64>,
    sum_us: u64,
}

impl HistogramSnapshot {
    /// What was recorded after `before` (an earlier snapshot of the same
    /// histogram).
    pub fn since(&self, before: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_us: self.sum_us.saturating_sub(before.sum_us),
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The mean delay in milliseconds; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum_us as f64 / 1000.0 / n as f64)
    }

    /// The `q` quantile (0 to 1) in milliseconds (the bucket's upper
    /// bound); `q = 1` is the largest delay; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_upper(i));
            }
        }
        None
    }
}

/// A histogram bucket's upper bound in milliseconds.
fn bucket_upper(i: usize) -> f64 {
    if i == 0 {
        0.0
    } else {
        HIST_MIN_MS * HIST_STEP.powi(i as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[((q * sorted.len() as f64).ceil() as usize).max(1) - 1]
    }

    #[test]
    fn lognormal_draws_have_the_configured_median_and_p99() {
        let shape = LatencyShape::LogNormal {
            median_ms: 150.0,
            p99_ms: 500.0,
        };
        let mut rng = LatencyRng::new(7);
        let mut v: Vec<f64> = (0..200_000)
            .map(|_| shape.draw(&mut rng, 0.0, 0.0))
            .collect();
        v.sort_by(f64::total_cmp);
        let (p50, p99) = (quantile(&v, 0.5), quantile(&v, 0.99));
        assert!((p50 / 150.0 - 1.0).abs() < 0.02, "median {p50}");
        assert!((p99 / 500.0 - 1.0).abs() < 0.03, "p99 {p99}");
    }

    #[test]
    fn same_seed_same_draws() {
        let shape = LatencyShape::LogNormal {
            median_ms: 20.0,
            p99_ms: 80.0,
        };
        let (mut a, mut b) = (LatencyRng::new(3), LatencyRng::new(3));
        for _ in 0..100 {
            assert_eq!(shape.draw(&mut a, 0.0, 0.0), shape.draw(&mut b, 0.0, 0.0));
        }
    }

    #[test]
    fn custom_shape_is_fixed_plus_uniform_jitter() {
        let mut rng = LatencyRng::new(1);
        for _ in 0..1000 {
            let d = LatencyShape::Custom.draw(&mut rng, 10.0, 5.0);
            assert!((10.0..15.0).contains(&d), "{d}");
        }
        assert_eq!(LatencyShape::Custom.draw(&mut rng, 3.0, 0.0), 3.0);
    }

    #[test]
    fn setup_costs_tcp_plus_tls_round_trips() {
        assert_eq!(setup_rtts(None, false), 1);
        assert_eq!(setup_rtts(Some(TlsVersion::Tls13), false), 2);
        assert_eq!(setup_rtts(Some(TlsVersion::Tls12), false), 3);
        assert_eq!(setup_rtts(Some(TlsVersion::Tls12), true), 2);
    }

    #[test]
    fn token_bucket_passes_a_burst_up_to_the_rate_then_refills() {
        let mut rl = RateLimiter::new(100.0);
        let admitted = (0..150).filter(|_| rl.admit("a/", 0.0)).count();
        assert_eq!(admitted, 100);
        // Another prefix has its own budget.
        assert!(rl.admit("b/", 0.0));
        // 0.5 s later: 50 more.
        let admitted = (0..100).filter(|_| rl.admit("a/", 0.5)).count();
        assert_eq!(admitted, 50);
        assert!(RateLimiter::new(0.0).admit("x", 0.0));
    }

    #[test]
    fn prefixes_are_up_to_the_last_slash() {
        assert_eq!(rate_prefix("data/2021/a.json"), "data/2021/");
        assert_eq!(rate_prefix("a.json"), "");
    }

    #[test]
    fn histogram_quantiles_are_within_one_percent() {
        let h = LatencyHistogram::default();
        for i in 1..=1000 {
            h.record(i as f64);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 / 500.0 - 1.0).abs() < 0.011, "{p50}");
        assert!((p99 / 990.0 - 1.0).abs() < 0.011, "{p99}");
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn a_snapshot_since_another_holds_only_what_came_between() {
        let h = LatencyHistogram::default();
        for _ in 0..100 {
            h.record(1000.0);
        }
        let before = h.snapshot();
        for i in 1..=100 {
            h.record(i as f64);
        }
        let run = h.snapshot().since(&before);
        assert_eq!(run.count(), 100);
        let p50 = run.quantile(0.5).unwrap();
        assert!((p50 / 50.0 - 1.0).abs() < 0.011, "{p50}");
        let max = run.quantile(1.0).unwrap();
        assert!((max / 100.0 - 1.0).abs() < 0.011, "{max}");
        assert!((run.mean().unwrap() - 50.5).abs() < 1e-9);
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn presets_are_ordered_by_distance() {
        let m = |p: NetworkPreset| p.profile().unwrap().median_ms;
        assert!(m(NetworkPreset::Local) < m(NetworkPreset::SameRegion));
        assert!(m(NetworkPreset::SameRegion) < m(NetworkPreset::CrossRegion));
        assert!(m(NetworkPreset::CrossRegion) < m(NetworkPreset::Internet));
        assert!(NetworkPreset::Custom.profile().is_none());
    }
}
