//! The analytic lower bound: how long the simulated network alone makes a
//! pass take with a given number of requests in flight, computed from the
//! bucket's shape and the configured latency, jitter and bandwidth.
//!
//! It answers "where does the time go": a model near its bound is waiting
//! on the network and only more requests in flight can help; a model far
//! above it is losing time in its own scheduling, parsing or writes. The
//! ceilings (`fetch-only`, `load-only`) are measured; this is computed, so
//! the two check each other.

use serde::Serialize;

use crate::bucket::location::MANIFEST_KEY;
use crate::sim::{Conditions, SimBucket};

/// What the bound needs to know of a bucket.
#[derive(Debug, Clone, Serialize)]
pub struct BucketShape {
    /// Keys the pass requests (404s included: each costs a round trip).
    pub keys: u64,
    /// Body bytes of all those objects.
    pub object_bytes: u64,
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
        let object_bytes = keys
            .iter()
            .filter_map(|k| store.get(k))
            .map(|o| o.body.len() as u64)
            .sum();
        BucketShape {
            keys: keys.len() as u64,
            object_bytes,
            listing_requests: 1,
            listing_bytes: store.get(MANIFEST_KEY).map_or(0, |o| o.body.len() as u64),
        }
    }

    /// Seconds for the whole pass with `in_flight` requests at once: the
    /// listing (which must finish before its keys can be fetched; pages
    /// are sequential), then ⌈keys / in_flight⌉ rounds of one GET each.
    ///
    /// Jitter enters at its mean, so this is the expected time of a
    /// network-bound pass rather than a hard minimum: a model at exactly
    /// 1.0× wastes nothing.
    pub fn secs(&self, net: &Conditions, in_flight: usize) -> f64 {
        let in_flight = in_flight.max(1) as u64;
        let listing = if self.listing_requests == 0 {
            0.0
        } else {
            self.listing_requests as f64
                * request_secs(
                    net,
                    self.listing_bytes as f64 / self.listing_requests as f64,
                )
        };
        let rounds = self.keys.div_ceil(in_flight);
        let mean_bytes = self.object_bytes as f64 / self.keys.max(1) as f64;
        listing + rounds as f64 * request_secs(net, mean_bytes)
    }
}

/// Which lower bound holds a model back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Binds {
    /// The analytic network bound: the requests in flight cannot go faster.
    Network,
    /// The CPU floor: all the CPU the pass spent, spread over every core.
    Cpu,
}

impl Binds {
    pub fn as_str(self) -> &'static str {
        match self {
            Binds::Network => "network",
            Binds::Cpu => "CPU",
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
    pub fn of(network: Option<f64>, cpu_floor: Option<f64>) -> Option<Limit> {
        let network = network.filter(|s| s.is_finite()).map(|secs| Limit {
            secs,
            binds: Binds::Network,
        });
        let cpu = cpu_floor.filter(|s| s.is_finite()).map(|secs| Limit {
            secs,
            binds: Binds::Cpu,
        });
        match (network, cpu) {
            (Some(n), Some(c)) => Some(if c.secs > n.secs { c } else { n }),
            (n, c) => n.or(c),
        }
    }

    /// The limit over the model's median (0–1; 1 wastes nothing).
    pub fn efficiency(&self, median_secs: f64) -> f64 {
        self.secs / median_secs.max(1e-9)
    }
}

/// One GET: time to first byte (latency plus mean jitter), then the body at
/// the per-connection bandwidth.
pub fn request_secs(net: &Conditions, bytes: f64) -> f64 {
    let first_byte = (net.latency_ms + net.jitter_ms / 2.0) / 1000.0;
    let body = if net.bandwidth_mbps > 0.0 {
        bytes * 8.0 / (net.bandwidth_mbps * 1e6)
    } else {
        0.0
    };
    first_byte + body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Knobs, Model};

    fn net(latency_ms: f64, jitter_ms: f64, bandwidth_mbps: f64) -> Conditions {
        Conditions {
            latency_ms,
            jitter_ms,
            bandwidth_mbps,
            error_rate: 0.0,
            stall_rate: 0.0,
        }
    }

    #[test]
    fn rounds_of_requests_follow_the_files_in_flight() {
        let shape = BucketShape {
            keys: 67,
            object_bytes: 67 * 125_000,
            listing_requests: 1,
            listing_bytes: 0,
        };
        // 60 ms + 20/2 ms jitter + 125 kB at 100 Mbit/s (10 ms) = 80 ms a GET.
        let n = net(60.0, 20.0, 100.0);
        assert!((request_secs(&n, 125_000.0) - 0.080).abs() < 1e-9);
        let one_at_a_time = shape.secs(&n, 1);
        assert!((one_at_a_time - (0.070 + 67.0 * 0.080)).abs() < 1e-9);
        // 64 in flight: two rounds, not 67/64 of one.
        assert!((shape.secs(&n, 64) - (0.070 + 2.0 * 0.080)).abs() < 1e-9);
        assert!((shape.secs(&n, 1000) - (0.070 + 0.080)).abs() < 1e-9);
    }

    #[test]
    fn the_larger_of_network_bound_and_cpu_floor_binds() {
        let net = Limit::of(Some(0.4), Some(0.25)).unwrap();
        assert_eq!((net.secs, net.binds), (0.4, Binds::Network));
        let cpu = Limit::of(Some(0.1), Some(0.25)).unwrap();
        assert_eq!((cpu.secs, cpu.binds), (0.25, Binds::Cpu));
        // load-only fetches nothing: only its CPU floor bounds it.
        assert_eq!(Limit::of(None, Some(0.3)).unwrap().binds, Binds::Cpu);
        assert_eq!(Limit::of(None, None), None);
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
