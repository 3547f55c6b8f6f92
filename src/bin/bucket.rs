//! `bucket`: the simulated bucket as a server process or as files on disk.
//! The subcommands and their work live in [`bucketbench::sim::command`].

use bucketbench::cli;
use bucketbench::sim::command::{self, Args};
use clap::Parser;

fn main() {
    let args = Args::parse();
    args.init_logging();
    if let Err(e) = command::run(args) {
        cli::exit_with(e);
    }
}
