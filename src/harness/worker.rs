//! The child side of a timed run: one pass, its summary as JSON on stdout.

use clap::Parser;

use crate::bucket::BucketLocation;
use crate::cli::{ClientArgs, KnobArgs, S3Args};
use crate::pass::{PassConfig, run_pass};

#[derive(Parser, Debug)]
struct WorkerArgs {
    #[arg(long, value_enum)]
    model: crate::models::Model,
    #[arg(long)]
    bucket: String,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    knobs: KnobArgs,
}

/// Runs the worker with `args` (the arguments after `__worker`).
pub fn main(args: impl Iterator<Item = String>) -> ! {
    let args = WorkerArgs::parse_from(std::iter::once("compare-worker".to_string()).chain(args));
    let result = (|| {
        let model = args.model.ingestor();
        let cfg = PassConfig {
            bucket: BucketLocation::parse_with(&args.bucket, &args.s3.options())?,
            database_url: args.database_url.clone(),
            client: args.client.config(),
            knobs: args.knobs.knobs(),
            progress: false,
        };
        let summary = run_pass(&cfg, model.as_ref())?;
        println!("{}", serde_json::to_string(&summary)?);
        Ok::<_, anyhow::Error>(())
    })();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => crate::cli::exit_with(e),
    }
}
