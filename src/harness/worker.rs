//! The child side of a timed run: one pass, its summary as JSON on stdout.

use anyhow::Context;

use super::runner::{SETTINGS_ENV, SHARD_ENV, WorkerSettings};
use crate::bucket::BucketLocation;
use crate::pass::{PassConfig, PassOptions, run_pass_with};

/// Runs one pass with the settings the runner put in the environment.
pub fn main() -> ! {
    let result = (|| {
        let json = std::env::var(SETTINGS_ENV)
            .with_context(|| format!("a worker needs {SETTINGS_ENV} (set by compare's runner)"))?;
        let args: WorkerSettings = serde_json::from_str(&json)
            .with_context(|| format!("reading the worker settings in {SETTINGS_ENV}"))?;
        let database_url = std::env::var("DATABASE_URL").context("a worker needs DATABASE_URL")?;
        let model = args.model.ingestor();
        let cfg = PassConfig {
            bucket: BucketLocation::parse_with(&args.bucket, &args.s3.options())?,
            database_url,
            client: args.client.config(),
            knobs: args.knobs.knobs(),
            progress: Default::default(),
        };
        let opts = PassOptions {
            shard: match std::env::var(SHARD_ENV) {
                Ok(s) => Some(s.parse().with_context(|| format!("reading {SHARD_ENV}"))?),
                Err(_) => None,
            },
            say_first_body: true,
            ..Default::default()
        };
        let summary = run_pass_with(&cfg, model.as_ref(), &opts)?;
        println!("{}", serde_json::to_string(&summary)?);
        Ok::<_, anyhow::Error>(())
    })();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => crate::cli::exit_with(e),
    }
}
