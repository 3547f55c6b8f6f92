//! The analytic lower bound: how long the simulated network alone makes a
//! pass take with a given number of requests in flight, computed from the
//! bucket's shape and the simulated network: mean first-byte latency,
//! bandwidth per connection, and the round trips each new connection pays.
//!
//! It answers "where does the time go": a model near its bound is waiting
//! on the network and only more requests in flight can help; a model far
//! above it is losing time in its own scheduling, parsing or writes. The
//! ceilings (`fetch-only`, `load-only`) are measured; this is computed, so
//! the two check each other.

use serde::Serialize;

/// What the bound counts, in one sentence, for the notes under the tables
/// (`summary.md` and the terminal).
pub const EXPLAINED: &str = "the listing plus ⌈files ÷ requests in flight⌉ GETs, each at the mean time to first byte plus the body at the per-connection bandwidth (when every key is sent at once, the slowest of them, the largest object's body included, as the model's byte ranges would fetch it), and each new connection's handshake round trips";

use crate::bucket::location::MANIFEST_KEY;
use crate::sim::network::{LatencyRng, LatencyShape, NetworkModel, TlsVersion, setup_rtts};
use crate::sim::{Conditions, SimBucket};

/// What the bound needs to know of a bucket.
#[derive(Debug, Clone, Serialize)]
pub struct BucketShape {
    /// Keys the pass requests (404s included: each costs a round trip).
    pub keys: u64,
    /// Body bytes of all those objects.
    pub object_bytes: u64,
    /// Each object's body bytes (empty: all of `object_bytes / keys`).
    #[serde(skip)]
    pub object_sizes: Vec<u64>,
    /// Listing requests (1 for a manifest, one per page for ListObjectsV2).
    pub listing_requests: u64,
    /// Body bytes of the listing.
    pub listing_bytes: u64,
}

impl BucketShape {
    /// A simulated bucket served in manifest mode, as `compare` serves it:
    /// one GET of the manifest, then one GET per listed key.
    pub fn of(bucket: &SimBucket) -> Self {
        let store = bucket.store();
        let keys = bucket.listed_keys();
        // A listed key the store lacks is a 404: a request with no body.
        let object_sizes: Vec<u64> = keys
            .iter()
            .map(|k| store.get(k).map_or(0, |o| o.body.len() as u64))
            .collect();
        BucketShape {
            keys: keys.len() as u64,
            object_bytes: object_sizes.iter().sum(),
            object_sizes,
            listing_requests: 1,
            listing_bytes: store.get(MANIFEST_KEY).map_or(0, |o| o.body.len() as u64),
        }
    }

    /// Seconds for the whole pass with `in_flight` requests at once, from
    /// `workers` processes: the listing (which must finish before its keys
    /// can be fetched; pages are sequential) on a new connection, then
    /// ⌈keys / in_flight⌉ rounds of one GET each.
    ///
    /// Connection set-up: every connection pays its handshake round trips
    /// once, on its first request. The listing's connection pays them; a
    /// worker with one request in flight reuses it for every GET; a worker
    /// with several opens a connection per request in flight, all at once
    /// after the listing, so their set-up adds one more set-up time to the
    /// pass (they are paid in parallel). Those later connections may resume
    /// the listing's TLS session, which saves a round trip with TLS 1.2.
    ///
    /// Latency enters at its mean for rounds of requests one after another
    /// (a lane's sum of draws), and as the expected slowest request when
    /// every key is requested at once: one round ends with its slowest
    /// request, first byte and body, and a bucket whose sizes have a long
    /// tail (the generator makes one file in twenty ten times the median)
    /// ends it with its largest object's body, which no concurrency
    /// shortens. So this is the expected time of a network-bound pass rather
    /// than a hard minimum: a model at exactly 1.0× wastes nothing.
    pub fn secs(&self, net: &BoundNetwork, in_flight: usize, workers: usize) -> f64 {
        let in_flight = in_flight.max(1) as u64;
        // The listing is read whole, by one request a page.
        let whole = net.with_ranged_parts(0);
        let listing = if self.listing_requests == 0 {
            0.0
        } else {
            net.setup_secs(false)
                + self.listing_requests as f64
                    * whole.request_secs(self.listing_bytes as f64 / self.listing_requests as f64)
        };
        let lanes_per_worker = in_flight / workers.max(1) as u64;
        let lanes_setup = if lanes_per_worker > 1 && self.keys > 1 {
            net.setup_secs(true)
        } else {
            0.0
        };
        let rounds = self.keys.div_ceil(in_flight);
        let mean_bytes = self.object_bytes as f64 / self.keys.max(1) as f64;
        let gets = if rounds == 0 {
            0.0
        } else if rounds == 1 {
            net.slowest_request_secs(&self.sizes())
        } else {
            // No round ends before its largest request.
            let largest = self.sizes().iter().copied().max().unwrap_or(0);
            (rounds as f64 * net.request_secs(mean_bytes)).max(net.request_secs(largest as f64))
        };
        listing + lanes_setup + gets
    }

    /// Each key's body bytes, the mean's where they were not recorded.
    fn sizes(&self) -> std::borrow::Cow<'_, [u64]> {
        if self.object_sizes.len() as u64 == self.keys {
            std::borrow::Cow::Borrowed(&self.object_sizes)
        } else {
            let mean = self.object_bytes / self.keys.max(1);
            std::borrow::Cow::Owned(vec![mean; self.keys as usize])
        }
    }
}

/// What the bound needs to know of the network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundNetwork {
    /// The MEAN time to first byte in seconds: a model waiting on requests
    /// one after another pays the mean per request, not the median.
    pub first_byte_mean_secs: f64,
    /// Bandwidth per connection (0: unlimited).
    pub bandwidth_mbps: f64,
    pub rtt_secs: f64,
    pub tls: Option<TlsVersion>,
    /// How first-byte latency is drawn (with the fixed latency and jitter
    /// of a custom network), for the slowest of a round's requests.
    pub latency: LatencyShape,
    pub fixed_ms: f64,
    pub jitter_ms: f64,
    /// Byte-range requests the model may send beside an object's GET
    /// (`--ranged-parts`; 0 for a model with one request at a time): a
    /// large body's rest then arrives over more connections.
    pub ranged_parts: u64,
}

/// Which lower bound holds a model back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Binds {
    /// The analytic network bound: the requests in flight cannot go faster.
    Network,
    /// The CPU floor: all the CPU the pass spent, spread over every core.
    Cpu,
    /// The arrival floor: the first object's body came in, then the CPU
    /// spent after it, spread over every core (`cpu::arrival_floor`): a
    /// burst of work after a wait.
    Arrival,
}

impl Binds {
    pub fn as_str(self) -> &'static str {
        match self {
            Binds::Network => "network",
            Binds::Cpu => "CPU",
            Binds::Arrival => "arrival",
        }
    }
}

impl std::fmt::Display for Binds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The least time a model's pass can take: the larger of its network bound
/// and its CPU floor (`harness::cpu`), and which of the two it is. Both
/// hold on any machine, unlike the measured ceilings. `None` when neither
/// is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limit {
    pub secs: f64,
    pub binds: Binds,
}

impl Limit {
    /// The largest of the network bound, the CPU floor and the arrival
    /// floor, each where known.
    pub fn of(
        network: Option<f64>,
        cpu_floor: Option<f64>,
        arrival_floor: Option<f64>,
    ) -> Option<Limit> {
        // A limit of 0 s (a CPU floor nothing was charged to) limits
        // nothing, and a ratio over it would read "inf×".
        let known = |s: &f64| s.is_finite() && *s > 0.0;
        [
            (network, Binds::Network),
            (cpu_floor, Binds::Cpu),
            (arrival_floor, Binds::Arrival),
        ]
        .into_iter()
        .filter_map(|(secs, binds)| secs.filter(known).map(|secs| Limit { secs, binds }))
        // The first of equals: the network before the CPU.
        .reduce(|a, b| if b.secs > a.secs { b } else { a })
    }

    /// The limit over the model's median (0–1; 1 wastes nothing).
    pub fn efficiency(&self, median_secs: f64) -> f64 {
        self.secs / median_secs.max(1e-9)
    }
}

impl BoundNetwork {
    /// The network the simulated bucket serves under.
    pub fn of(conditions: &Conditions, model: &NetworkModel) -> Self {
        BoundNetwork {
            first_byte_mean_secs: mean_first_byte_ms(conditions, model) / 1000.0,
            bandwidth_mbps: conditions.bandwidth_mbps,
            rtt_secs: model.rtt_ms / 1000.0,
            tls: model.tls,
            latency: model.latency,
            fixed_ms: conditions.latency_ms,
            jitter_ms: conditions.jitter_ms,
            ranged_parts: 0,
        }
    }

    /// The same network, for a model that fetches a large body's rest in
    /// up to `parts` byte ranges beside its GET.
    pub fn with_ranged_parts(self, parts: u64) -> Self {
        BoundNetwork {
            ranged_parts: parts,
            ..self
        }
    }

    /// The seconds from a GET's first byte (after `first_byte_ms`) to its
    /// body's last: at the per-connection bandwidth, or as the client's
    /// own split plan fetches it in parts whose slowest first byte is
    /// `parts_first_byte_ms`.
    fn body_secs(&self, bytes: f64, first_byte_ms: f64, parts_first_byte_ms: f64) -> f64 {
        if self.bandwidth_mbps <= 0.0 {
            return 0.0;
        }
        if self.ranged_parts == 0 {
            return bytes * 8.0 / (self.bandwidth_mbps * 1e6);
        }
        let ms = |v: f64| std::time::Duration::from_secs_f64(v.max(0.0) / 1000.0);
        crate::bucket::parts::expected_body_secs(
            self.ranged_parts,
            bytes as u64,
            self.bandwidth_mbps * 1e6 / 8.0,
            ms(first_byte_ms),
            ms(parts_first_byte_ms),
        )
    }

    /// The expected first byte of the slowest of `k` requests sent at
    /// once, in seconds: a round of concurrent requests ends with its
    /// slowest, which a long tail puts well above the mean (for the
    /// internet preset, the slowest of 67 is about three times the median).
    /// Estimated from the simulator's own seeded draws, so it is the same
    /// on every run and matches what the simulated bucket serves.
    pub fn slowest_first_byte_secs(&self, k: u64) -> f64 {
        self.with_ranged_parts(0)
            .slowest_request_secs(&vec![0; k as usize])
    }

    /// The expected end of a round of requests sent at once, one per body
    /// size in `sizes`: the slowest of their first bytes plus bodies, from
    /// the same seeded draws as [`Self::slowest_first_byte_secs`].
    ///
    /// For a model that fetches in ranges, an object the client would
    /// split is counted as its split ends, with its parts' first bytes
    /// drawn too (the slowest of them counts).
    pub fn slowest_request_secs(&self, sizes: &[u64]) -> f64 {
        const ROUNDS: u32 = 2_000;
        if let [one] = sizes {
            return self.request_secs(*one as f64);
        }
        // The parts' draws come from a stream of their own, so that every
        // model's GETs meet the same first bytes.
        let (mut rng, mut parts_rng) = (LatencyRng::new(0), LatencyRng::new(1));
        let total: f64 = (0..ROUNDS)
            .map(|_| {
                sizes
                    .iter()
                    .map(|&b| {
                        let first = self.latency.draw(&mut rng, self.fixed_ms, self.jitter_ms);
                        let parts = (0..self.ranged_parts)
                            .map(|_| {
                                self.latency
                                    .draw(&mut parts_rng, self.fixed_ms, self.jitter_ms)
                            })
                            .fold(0.0, f64::max);
                        first + self.body_secs(b as f64, first, parts) * 1000.0
                    })
                    .fold(0.0, f64::max)
            })
            .sum();
        total / f64::from(ROUNDS) / 1000.0
    }

    /// One GET on an open connection: the mean time to first byte, then the
    /// body at the per-connection bandwidth (or in parts, every first byte
    /// at the mean).
    pub fn request_secs(&self, bytes: f64) -> f64 {
        let mean_ms = self.first_byte_mean_secs * 1000.0;
        self.first_byte_mean_secs + self.body_secs(bytes, mean_ms, mean_ms)
    }

    /// A new connection's handshakes: TCP, plus TLS (`resumed`: from an
    /// earlier session's ticket).
    pub fn setup_secs(&self, resumed: bool) -> f64 {
        f64::from(setup_rtts(self.tls, resumed)) * self.rtt_secs
    }
}

/// The mean first-byte latency in milliseconds. A log-normal is given by
/// its median m and 99th percentile p: σ = ln(p / m) / z₀.₉₉ (z₀.₉₉ ≈
/// 2.326), and its mean is m·e^(σ²/2), above the median because of the
/// long tail (for the internet preset, 150 ms median and 500 ms p99: σ ≈
/// 0.518, mean ≈ 171 ms). The fixed shape's mean is the latency plus half
/// the uniform jitter.
pub fn mean_first_byte_ms(conditions: &Conditions, model: &NetworkModel) -> f64 {
    match model.latency {
        LatencyShape::LogNormal { median_ms, p99_ms } if median_ms > 0.0 => {
            let sigma = (p99_ms.max(median_ms) / median_ms).ln() / Z99;
            median_ms * (sigma * sigma / 2.0).exp()
        }
        LatencyShape::LogNormal { .. } => 0.0,
        LatencyShape::Custom => conditions.latency_ms + conditions.jitter_ms / 2.0,
    }
}

/// The standard normal's 99th percentile.
const Z99: f64 = 2.326_347_874_040_841;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Knobs, Model};
    use crate::sim::network::{LatencyRng, NetworkPreset};

    fn net(latency_ms: f64, jitter_ms: f64, bandwidth_mbps: f64) -> BoundNetwork {
        let conditions = Conditions {
            latency_ms,
            jitter_ms,
            bandwidth_mbps,
            error_rate: 0.0,
            stall_rate: 0.0,
        };
        BoundNetwork::of(&conditions, &NetworkModel::default())
    }

    #[test]
    fn a_model_that_fetches_in_ranges_is_bounded_by_its_largest_object_split() {
        let n = net(60.0, 20.0, 100.0);
        let with = |sizes: Vec<u64>| BucketShape {
            keys: sizes.len() as u64,
            object_bytes: sizes.iter().sum(),
            object_sizes: sizes,
            listing_requests: 1,
            listing_bytes: 2_000,
        };
        let mut sizes = vec![150_000; 66];
        sizes.push(1_900_000);
        let long_tail = with(sizes);
        let whole = long_tail.secs(&n, 67, 1);
        let split = long_tail.secs(&n.with_ranged_parts(4), 67, 1);
        // The 1.9 MB body is 152 ms at 100 Mbit/s; split, the pass ends
        // with the small files' slowest or the parts.
        assert!(split < whole - 0.04, "{split} vs {whole}");
        assert!(
            split > 0.080 + 0.012,
            "a first byte and a body at least: {split}"
        );
        // Small objects are never split: the same bound either way.
        let even = with(vec![150_000; 67]);
        assert_eq!(
            even.secs(&n, 67, 1),
            even.secs(&n.with_ranged_parts(4), 67, 1)
        );
    }

    fn shape() -> BucketShape {
        BucketShape {
            keys: 67,
            object_bytes: 67 * 125_000,
            object_sizes: Vec::new(),
            listing_requests: 1,
            listing_bytes: 0,
        }
    }

    #[test]
    fn rounds_of_requests_follow_the_files_in_flight() {
        let shape = shape();
        // 60 ms + 20/2 ms jitter + 125 kB at 100 Mbit/s (10 ms) = 80 ms a GET.
        let n = net(60.0, 20.0, 100.0);
        assert!((n.request_secs(125_000.0) - 0.080).abs() < 1e-9);
        let one_at_a_time = shape.secs(&n, 1, 1);
        assert!((one_at_a_time - (0.070 + 67.0 * 0.080)).abs() < 1e-9);
        // 64 in flight: two rounds, not 67/64 of one.
        assert!((shape.secs(&n, 64, 1) - (0.070 + 2.0 * 0.080)).abs() < 1e-9);
        // All 67 at once: one round, which ends with its slowest request
        // (60 ms + nearly all of the 20 ms jitter).
        let all = shape.secs(&n, 1000, 1) - 0.070 - 0.010;
        assert!((0.079..0.080).contains(&all), "{all}");
    }

    #[test]
    fn a_round_sent_at_once_ends_with_its_largest_body() {
        // The seed profile's shape: most files near the median, one ten
        // times larger. 60 ms to first byte, no jitter, 100 Mbit/s.
        let mut sizes = vec![200_000; 66];
        sizes.push(1_900_000);
        let shape = BucketShape {
            keys: 67,
            object_bytes: sizes.iter().sum(),
            object_sizes: sizes,
            listing_requests: 1,
            listing_bytes: 0,
        };
        let n = net(60.0, 0.0, 100.0);
        // The listing (60 ms), then the large object: 60 ms + 152 ms of
        // body, not the mean body (about 44 ms).
        let all = shape.secs(&n, 1000, 1);
        assert!((all - (0.060 + 0.060 + 0.152)).abs() < 1e-9, "{all}");
        // Sequential GETs pay every body once, whatever their sizes.
        let one = shape.secs(&n, 1, 1);
        let bodies = shape.object_bytes as f64 * 8.0 / 1e8;
        assert!(
            (one - (0.060 + 67.0 * 0.060 + bodies)).abs() < 1e-9,
            "{one}"
        );
        // Two rounds of 40 in flight: the mean lanes (2 × 80 ms) are
        // shorter than the large object's one request, which binds.
        let two = shape.secs(&n, 40, 1);
        assert!((two - (0.060 + 0.060 + 0.152)).abs() < 1e-9, "{two}");
        // Without the sizes, the mean object stands for each.
        let unknown = BucketShape {
            object_sizes: Vec::new(),
            ..shape.clone()
        };
        assert!(unknown.secs(&n, 1000, 1) < all - 0.1);
    }

    #[test]
    fn lognormal_latency_enters_at_its_mean_not_its_median() {
        let (conditions, model) = NetworkPreset::Internet.apply(Conditions::default(), true);
        let mean = mean_first_byte_ms(&conditions, &model);
        // σ = ln(500/150)/2.326 = 0.5176; mean = 150·e^(σ²/2) = 171.5 ms.
        assert!((mean - 171.5).abs() < 0.2, "{mean}");
        // The simulator's own draws agree within 1 %.
        let mut rng = LatencyRng::new(11);
        let n = 200_000;
        let drawn: f64 = (0..n)
            .map(|_| model.latency.draw(&mut rng, 0.0, 0.0))
            .sum::<f64>()
            / f64::from(n);
        assert!(
            (drawn / mean - 1.0).abs() < 0.01,
            "drawn {drawn}, formula {mean}"
        );
        // A sequential pass of 67 GETs pays 67 means: 1.4 s more than 67
        // medians would say.
        let b = BoundNetwork::of(&conditions, &model);
        assert!(shape().secs(&b, 1, 1) > 67.0 * 0.1715);
    }

    #[test]
    fn one_round_of_requests_waits_for_its_slowest() {
        let (conditions, model) = NetworkPreset::Internet.apply(Conditions::default(), true);
        let b = BoundNetwork::of(&conditions, &model);
        assert!((b.slowest_first_byte_secs(1) - b.first_byte_mean_secs).abs() < 1e-12);
        let slowest = b.slowest_first_byte_secs(67);
        // The expected maximum of 67 standard normals is about 2.4: 150 ms
        // · e^(0.518 · 2.4) ≈ 520 ms.
        assert!((0.45..0.60).contains(&slowest), "{slowest}");
        assert!(b.slowest_first_byte_secs(256) > slowest);
        // A fixed latency with no jitter has no tail.
        let fixed = net(60.0, 0.0, 0.0);
        assert!((fixed.slowest_first_byte_secs(67) - 0.060).abs() < 1e-12);
    }

    #[test]
    fn each_new_connection_pays_its_handshakes_once() {
        let model = |tls| NetworkModel {
            rtt_ms: 50.0,
            tls,
            ..NetworkModel::default()
        };
        let c = Conditions::default();
        let plain = BoundNetwork::of(&c, &model(None));
        let tls13 = BoundNetwork::of(&c, &model(Some(TlsVersion::Tls13)));
        let tls12 = BoundNetwork::of(&c, &model(Some(TlsVersion::Tls12)));
        let s = shape();
        // Sequential: only the listing's connection, reused for every GET.
        assert!((s.secs(&plain, 1, 1) - 0.050).abs() < 1e-9);
        assert!((s.secs(&tls13, 1, 1) - 0.100).abs() < 1e-9);
        assert!((s.secs(&tls12, 1, 1) - 0.150).abs() < 1e-9);
        // Concurrent: the listing's set-up, then the new connections' (in
        // parallel, so once more; TLS 1.2 resumes in one round trip).
        assert!((s.secs(&tls13, 64, 1) - 0.200).abs() < 1e-9);
        assert!((s.secs(&tls12, 64, 1) - 0.250).abs() < 1e-9);
        // Four sync workers: each reuses its own listing's connection.
        assert!((s.secs(&tls13, 4, 4) - 0.100).abs() < 1e-9);
    }

    #[test]
    fn the_largest_of_network_bound_cpu_floor_and_arrival_floor_binds() {
        let net = Limit::of(Some(0.4), Some(0.25), None).unwrap();
        assert_eq!((net.secs, net.binds), (0.4, Binds::Network));
        let cpu = Limit::of(Some(0.1), Some(0.25), None).unwrap();
        assert_eq!((cpu.secs, cpu.binds), (0.25, Binds::Cpu));
        // A burst of CPU after the first bodies: the arrival floor binds.
        let burst = Limit::of(Some(0.24), Some(0.16), Some(0.30)).unwrap();
        assert_eq!((burst.secs, burst.binds), (0.30, Binds::Arrival));
        assert_eq!(
            Limit::of(Some(0.9), Some(0.16), Some(0.30)).unwrap().binds,
            Binds::Network
        );
        // load-only fetches nothing: only its CPU floor bounds it.
        assert_eq!(Limit::of(None, Some(0.3), None).unwrap().binds, Binds::Cpu);
        assert_eq!(Limit::of(None, None, None), None);
        // A floor of 0 s is no limit (no "inf×" over it).
        assert_eq!(Limit::of(None, Some(0.0), None), None);
        assert_eq!(
            Limit::of(Some(0.2), Some(0.0), None).unwrap().binds,
            Binds::Network
        );
        // A median of 0.5 s against a 0.25 s CPU floor: 50 % efficient.
        assert!((cpu.efficiency(0.5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn only_models_that_fetch_have_a_bound() {
        let k = Knobs::default();
        assert_eq!(Model::Sync.in_flight(&k, 1), Some(1));
        assert_eq!(Model::Sync.in_flight(&k, 4), Some(4));
        assert_eq!(Model::Async.in_flight(&k, 1), Some(k.concurrency));
        assert_eq!(Model::Threads.in_flight(&k, 2), Some(2 * k.threads));
        assert_eq!(Model::LoadOnly.in_flight(&k, 1), None);
    }
}
