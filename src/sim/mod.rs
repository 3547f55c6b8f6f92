//! The simulated bucket: a seeded generator of realistic buckets with their
//! exact expected load result, an in-memory store, and a loopback server
//! that speaks manifest mode and an S3 subset under network conditions
//! (plain HTTP or HTTPS, with named network presets).

pub mod auth;
pub mod bucket;
pub mod command;
pub mod expected;
pub mod generator;
pub mod listing;
pub mod network;
pub mod server;
pub mod store;
pub mod tls;
pub mod upload;
pub mod verify;
mod words;

pub use auth::SimAuth;
pub use bucket::SimBucket;
pub use expected::Expected;
pub use generator::{ProfileName, Spec};
pub use network::{LatencyShape, NetworkModel, NetworkPreset, TlsVersion};
pub use server::{Conditions, ServeOptions, SimServer, StatsSnapshot};
pub use store::{Object, Store};
pub use verify::verify;
