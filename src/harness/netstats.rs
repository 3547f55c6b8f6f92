//! What the simulated bucket saw of each run: connections opened, TLS
//! handshakes and requests refused with `503 SlowDown` (the delta of
//! [`SimServer::stats`](crate::sim::SimServer::stats) around the run), each
//! model's medians of those beside its requests, and how the network is
//! named in titles and `environment.json`.

use serde::Serialize;

use super::runner::Run;
use super::stats::median;
use crate::sim::network::{LatencyShape, NetworkModel, NetworkPreset};
use crate::sim::{Conditions, StatsSnapshot};

/// Sets `run`'s server-side counts from the server's counters before and
/// after it.
pub fn record(run: &mut Run, before: &StatsSnapshot, after: &StatsSnapshot) {
    run.connections = Some(after.connections.saturating_sub(before.connections));
    run.tls_handshakes = Some(after.tls_handshakes.saturating_sub(before.tls_handshakes));
    run.throttled = Some(after.throttled.saturating_sub(before.throttled));
}

/// A model's medians over its verified measured runs: requests its workers
/// sent, and what the simulated bucket counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NetMedians {
    pub requests: f64,
    pub connections: f64,
    pub tls_handshakes: f64,
    pub throttled: f64,
}

/// The medians over `runs`; `None` when none of them has server counts (a
/// real bucket, or a runs.csv written before they were recorded).
pub fn medians(runs: &[&Run]) -> Option<NetMedians> {
    let counted: Vec<&&Run> = runs.iter().filter(|r| r.connections.is_some()).collect();
    if counted.is_empty() {
        return None;
    }
    let m = |f: &dyn Fn(&Run) -> Option<u64>| {
        median(
            &counted
                .iter()
                .map(|r| f(r).unwrap_or(0) as f64)
                .collect::<Vec<_>>(),
        )
    };
    Some(NetMedians {
        requests: m(&|r| Some(r.requests)),
        connections: m(&|r| r.connections),
        tls_handshakes: m(&|r| r.tls_handshakes),
        throttled: m(&|r| r.throttled),
    })
}

/// The preset's name as typed on the command line.
pub fn preset_name(preset: NetworkPreset) -> String {
    clap::ValueEnum::to_possible_value(&preset)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The network in a chart title: the preset and its first byte.
pub fn subtitle(preset: NetworkPreset, conditions: &Conditions, model: &NetworkModel) -> String {
    let first_byte = match model.latency {
        LatencyShape::LogNormal { median_ms, .. } => format!("{median_ms:.0} ms median first byte"),
        LatencyShape::Custom if conditions.jitter_ms > 0.0 => format!(
            "{:.0} ms first byte + up to {:.0} ms jitter",
            conditions.latency_ms, conditions.jitter_ms
        ),
        LatencyShape::Custom => format!("{:.0} ms first byte", conditions.latency_ms),
    };
    let scheme = if model.tls.is_some() { "HTTPS" } else { "HTTP" };
    format!("{} network, {first_byte}, {scheme}", preset_name(preset))
}

/// `environment.json`'s `network`: the conditions as before (so readers of
/// `latency_ms` and the others still find them), plus the preset and the
/// network model (latency shape, RTT, TLS, rate limit). Under a preset's
/// log-normal latency `latency_ms` and `jitter_ms` are not used (0): the
/// first byte is `model.latency`, which `described` says in words.
pub fn environment(
    preset: NetworkPreset,
    conditions: &Conditions,
    model: &NetworkModel,
) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(conditions)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("preset".into(), preset_name(preset).into());
        o.insert(
            "described".into(),
            subtitle(preset, conditions, model).into(),
        );
        o.insert("model".into(), serde_json::to_value(model)?);
    }
    Ok(v)
}
