//! The simulated bucket: a seeded generator of realistic buckets with their
//! exact expected load result, an in-memory store, and a loopback server
//! that speaks manifest mode and an S3 subset under network conditions.

pub mod listing;
pub mod server;
pub mod store;

pub use server::{Conditions, SimServer};
pub use store::{Object, Store};
