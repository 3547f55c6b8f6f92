//! `ingest`: load a bucket's new files into PostgreSQL, once or on a timer.
//! The arguments and the work live in [`bucketbench::ingest`].

use bucketbench::cli;
use bucketbench::db::embedded;
use bucketbench::ingest::{self, Args};
use clap::Parser;

fn main() {
    let args = Args::parse();
    if let Some(shell) = args.completions() {
        cli::print_completions::<Args>(shell, "ingest");
        return;
    }
    args.init_logging();
    embedded::install_signal_handler();
    if let Err(e) = ingest::run(args) {
        cli::exit_with(e);
    }
}
