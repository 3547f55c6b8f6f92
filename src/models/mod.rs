//! The execution models: one trait, one file per model. They share the
//! bucket client, the transform ([`crate::transform`]) and the write plan,
//! and differ only in how they schedule IO.

pub mod sync;

use std::sync::Arc;

use crate::bucket::{BucketLocation, ClientConfig, NetStats, ObjectRef};
use crate::report::Tally;

/// Concurrency knobs. Each model reads the ones that apply to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Knobs {
    /// Files in flight (async models).
    pub concurrency: usize,
    /// Database pool size (`async`).
    pub connections: usize,
    /// Worker threads (`threads`).
    pub threads: usize,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs { concurrency: 64, connections: 8, threads: 16 }
    }
}

/// Everything a model needs to process the keys a pass hands it.
pub struct Job<'a> {
    pub bucket: &'a BucketLocation,
    pub database_url: &'a str,
    pub client: &'a ClientConfig,
    pub knobs: &'a Knobs,
    pub stats: Arc<NetStats>,
    pub tally: &'a Tally,
}

/// An execution model: fetches, transforms and loads the given objects.
/// Every implementation keeps the ledger's exactly-once guarantee by
/// writing each file through [`crate::db::WritePlan`] in one transaction.
pub trait Ingestor: Send + Sync {
    /// The name used on the command line and in reports.
    fn name(&self) -> &'static str;
    /// Processes `todo`, recording each file's outcome in `job.tally`.
    /// An error means the pass cannot go on (the database is gone).
    fn load(&self, job: &Job<'_>, todo: Vec<ObjectRef>) -> anyhow::Result<()>;
}

/// Every model name, in the order reports list them.
pub const NAMES: &[&str] = &["sync"];

/// Looks a model up by name.
pub fn by_name(name: &str) -> anyhow::Result<Box<dyn Ingestor>> {
    match name {
        "sync" => Ok(Box::new(sync::Sync)),
        other => anyhow::bail!("unknown model {other:?}; choose one of: {}", NAMES.join(", ")),
    }
}
