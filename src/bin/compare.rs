//! `compare`: benchmark the execution models side by side on the same
//! bucket and database, verify every run, and write CSVs, PNG charts,
//! `comparison.json` and `report.html` (and compare with a baseline).

use bucketbench::cli;
use bucketbench::db::embedded;
use bucketbench::harness::comparison::{self, CompareArgs};
use bucketbench::harness::runner::{self, WORKER};
use bucketbench::harness::scratch;
use clap::Parser;

/// Which execution model wins this IO-bound job, by how much, and why.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    internal: Option<Internal>,
    #[command(flatten)]
    compare: CompareArgs,
}

/// Subcommands compare runs itself with, never typed by a user.
#[derive(clap::Subcommand, Debug)]
enum Internal {
    /// One pass as a timed run's worker; its settings come in the
    /// environment (`runner::SETTINGS_ENV`).
    #[command(name = WORKER, hide = true)]
    Worker,
}

fn main() {
    cli::init_logging();
    let args = Args::parse();
    if let Some(Internal::Worker) = args.internal {
        bucketbench::harness::worker::main();
    }
    embedded::install_signal_handler();
    // On Ctrl-C: no worker may keep writing into compare's schema while it
    // is dropped.
    embedded::on_interrupt(|| {
        runner::kill_workers();
        scratch::drop_live_schemas();
    });
    embedded::on_interrupt_say(comparison::interrupted_line);
    let args = args.compare;
    if args.replot.is_none() {
        bucketbench::harness::binary::hand_over_to_release();
    }
    if let Some(dir) = &args.replot {
        match comparison::replot(dir, &args.publish) {
            Ok(true) => std::process::exit(0),
            Ok(false) => std::process::exit(1),
            Err(e) => cli::exit_with(e),
        }
    }
    if args.sweep.is_some() {
        match bucketbench::harness::sweep::run(&args) {
            Ok(true) => std::process::exit(0),
            Ok(false) => std::process::exit(1),
            Err(e) => cli::exit_with(e),
        }
    }
    match comparison::run(args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => cli::exit_with(e),
    }
}
