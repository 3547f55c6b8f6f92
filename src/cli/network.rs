//! The simulated bucket's network on the command line, shared by `compare`
//! and `bucket serve`: a named preset (see docs/network.md), the individual
//! flags that replace or adjust it, and the one line that says what the
//! simulated bucket injects.

use super::{NetArgs, milliseconds, non_negative_f64};
use crate::sim::Conditions;
use crate::sim::network::{
    LatencyShape, NetworkModel, NetworkPreset, S3_GET_RATE_PER_PREFIX, TlsVersion, setup_rtts,
};

/// The preset used when neither `--network` nor a latency, bandwidth or
/// RTT flag is given: a public bucket read across the internet, the
/// situation the original task describes.
pub const DEFAULT_PRESET: NetworkPreset = NetworkPreset::Internet;

/// The network presets and the flags that refine them.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Simulated network")]
pub struct NetworkArgs {
    /// Network between the client and the simulated bucket (docs/network.md):
    /// first-byte latency distribution, bandwidth per connection, round-trip
    /// time, TLS version and S3's request-rate limit. Without --network, any
    /// of --latency-ms, --jitter-ms, --bandwidth-mbps, --rtt-ms or
    /// --latency-median-ms means `custom` (only what the flags say, 60 ms +
    /// 20 ms jitter and 100 Mbit/s where unsaid); with --network they replace
    /// those parts of the preset. [default: internet]
    #[arg(long, value_enum)]
    pub network: Option<NetworkPreset>,
    /// TLS version of the HTTPS server: 1.2 costs a new connection one more
    /// round trip. [default: the preset's, 1.3]
    #[arg(long, value_enum)]
    pub tls_version: Option<TlsVersion>,
    /// Round-trip time in ms: a new connection's first response waits 1 RTT
    /// (TCP) plus the TLS handshake's (1 for TLS 1.3, 2 for 1.2).
    /// [default: the preset's; 0 with custom]
    #[arg(long, allow_negative_numbers = true, value_parser = milliseconds)]
    pub rtt_ms: Option<f64>,
    /// Median first-byte latency in ms of a log-normal distribution (with
    /// --latency-p99-ms); replaces --latency-ms/--jitter-ms.
    #[arg(long, requires = "latency_p99_ms", conflicts_with_all = ["latency_ms", "jitter_ms"], allow_negative_numbers = true, value_parser = milliseconds)]
    pub latency_median_ms: Option<f64>,
    /// 99th percentile first-byte latency in ms (with --latency-median-ms).
    #[arg(long, requires = "latency_median_ms", allow_negative_numbers = true, value_parser = milliseconds)]
    pub latency_p99_ms: Option<f64>,
    /// Seed of the latency draws (same seed, same sequence of delays).
    #[arg(long, default_value_t = 0)]
    pub latency_seed: u64,
    /// GET/HEAD requests per second per prefix before `503 SlowDown`
    /// (0: no limit). [default: the preset's; 5500, S3's, with custom]
    #[arg(long, allow_negative_numbers = true, value_parser = non_negative_f64)]
    pub get_rate_limit: Option<f64>,
}

impl NetworkArgs {
    /// The preset in force: `--network`, else `custom` when a latency,
    /// bandwidth or RTT flag was given (so command lines written before the
    /// presets keep their meaning), else [`DEFAULT_PRESET`].
    pub fn preset(&self, net: &NetArgs) -> NetworkPreset {
        let loose = net.latency_ms.is_some()
            || net.jitter_ms.is_some()
            || net.bandwidth_mbps.is_some()
            || self.rtt_ms.is_some()
            || self.latency_median_ms.is_some();
        match self.network {
            Some(p) => p,
            None if loose => NetworkPreset::Custom,
            None => DEFAULT_PRESET,
        }
    }

    /// The server's conditions and network model: the preset, then the
    /// individual flags; `tls` turns HTTPS on.
    pub fn settings(&self, net: &NetArgs, tls: bool) -> anyhow::Result<(Conditions, NetworkModel)> {
        let preset = self.preset(net);
        let base = Conditions {
            error_rate: net.error_rate.clamp(0.0, 1.0),
            stall_rate: net.stall_rate.clamp(0.0, 1.0),
            // `custom` starts from the network compare used before presets.
            ..super::DEFAULT_NETWORK
        };
        let (preset_conditions, mut model) = preset.apply(base, tls);
        let conditions = net.conditions(preset_conditions);
        if net.latency_ms.is_some() || net.jitter_ms.is_some() {
            model.latency = LatencyShape::Custom;
        }
        if let (Some(median_ms), Some(p99_ms)) = (self.latency_median_ms, self.latency_p99_ms) {
            anyhow::ensure!(
                p99_ms >= median_ms,
                "--latency-p99-ms ({p99_ms}) must be at least --latency-median-ms ({median_ms})"
            );
            model.latency = LatencyShape::LogNormal { median_ms, p99_ms };
        }
        if let Some(rtt) = self.rtt_ms {
            model.rtt_ms = rtt;
        }
        if let (Some(v), true) = (self.tls_version, tls) {
            model.tls = Some(v);
        }
        model.get_rate_per_prefix = match (self.get_rate_limit, preset) {
            (Some(r), _) => r,
            (None, NetworkPreset::Custom) => S3_GET_RATE_PER_PREFIX,
            (None, _) => model.get_rate_per_prefix,
        };
        model.seed = self.latency_seed;
        Ok((conditions, model))
    }
}

/// One line naming the preset and what it injects: first byte (median and
/// p99, or fixed + jitter), RTT and what a new connection pays, bandwidth,
/// TLS and the rate limit.
pub fn describe(preset: NetworkPreset, conditions: &Conditions, model: &NetworkModel) -> String {
    let first_byte = match model.latency {
        LatencyShape::LogNormal { median_ms, p99_ms } => {
            format!("first byte median {median_ms} ms, p99 {p99_ms} ms (log-normal)")
        }
        LatencyShape::Custom if conditions.jitter_ms > 0.0 => format!(
            "first byte {} ms + up to {} ms jitter",
            conditions.latency_ms, conditions.jitter_ms
        ),
        LatencyShape::Custom => format!("first byte {} ms", conditions.latency_ms),
    };
    let rtts = setup_rtts(model.tls, false);
    let rtt = format!(
        "RTT {} ms ({rtts} per new connection: TCP{})",
        model.rtt_ms,
        if model.tls.is_some() { " + TLS" } else { "" }
    );
    let bandwidth = if conditions.bandwidth_mbps > 0.0 {
        format!("{} Mbit/s per connection", conditions.bandwidth_mbps)
    } else {
        "unlimited bandwidth".to_string()
    };
    let tls = match model.tls {
        Some(TlsVersion::Tls12) => "HTTPS (TLS 1.2)",
        Some(TlsVersion::Tls13) => "HTTPS (TLS 1.3)",
        None => "plain HTTP",
    };
    let limit = if model.get_rate_per_prefix > 0.0 {
        format!(
            "{} GET/s per prefix before 503 SlowDown",
            model.get_rate_per_prefix
        )
    } else {
        "no rate limit".to_string()
    };
    let name = clap::ValueEnum::to_possible_value(&preset)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let mut s = format!("network {name}: {first_byte}, {rtt}, {bandwidth}, {tls}, {limit}");
    if conditions.error_rate > 0.0 || conditions.stall_rate > 0.0 {
        s.push_str(&format!(
            ", {} errors and {} stalls injected",
            conditions.error_rate, conditions.stall_rate
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        network: NetworkArgs,
    }

    fn parse(args: &[&str]) -> (Conditions, NetworkModel, NetworkPreset) {
        let cli = Cli::parse_from(std::iter::once("x").chain(args.iter().copied()));
        let (c, m) = cli.network.settings(&cli.net, true).unwrap();
        (c, m, cli.network.preset(&cli.net))
    }

    #[test]
    fn no_flags_is_the_internet_preset_over_tls() {
        let (c, m, p) = parse(&[]);
        assert_eq!(p, NetworkPreset::Internet);
        assert_eq!(c.bandwidth_mbps, 50.0);
        assert_eq!(m.rtt_ms, 50.0);
        assert_eq!(m.tls, Some(TlsVersion::Tls13));
        assert!(matches!(m.latency, LatencyShape::LogNormal { .. }));
    }

    #[test]
    fn a_loose_latency_flag_alone_means_custom_and_overrides_a_named_preset() {
        let (c, m, p) = parse(&["--latency-ms", "5"]);
        assert_eq!(p, NetworkPreset::Custom);
        assert_eq!(
            (c.latency_ms, c.jitter_ms, c.bandwidth_mbps),
            (5.0, 20.0, 100.0)
        );
        assert_eq!(m.rtt_ms, 0.0);
        assert_eq!(m.get_rate_per_prefix, S3_GET_RATE_PER_PREFIX);
        let (c, m, p) = parse(&["--network", "cross-region", "--latency-ms", "5"]);
        assert_eq!(p, NetworkPreset::CrossRegion);
        assert_eq!((c.latency_ms, c.bandwidth_mbps), (5.0, 100.0));
        assert_eq!(m.latency, LatencyShape::Custom);
        assert_eq!(m.rtt_ms, 80.0);
        // The rate limit adjusts any preset without leaving it.
        let (_, m, p) = parse(&["--get-rate-limit", "3"]);
        assert_eq!((p, m.get_rate_per_prefix), (NetworkPreset::Internet, 3.0));
    }

    #[test]
    fn the_description_names_the_preset_and_its_numbers() {
        let (c, m, p) = parse(&[]);
        let d = describe(p, &c, &m);
        for want in [
            "network internet",
            "median 150 ms",
            "p99 500 ms",
            "RTT 50 ms",
            "50 Mbit/s",
            "TLS 1.3",
            "5500 GET/s",
        ] {
            assert!(d.contains(want), "{want:?} missing from {d}");
        }
    }
}
