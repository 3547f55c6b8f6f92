//! The write path alone: one file's transaction (ledger claim plus COPY),
//! rows per second into PostgreSQL, no network.

use std::time::{Duration, Instant};

use bucketbench::db::ledger::WritePlan;
use bucketbench::db::{Durability, EmbeddedPostgres, Flavor, WriteStrategy, sync_writer};
use bucketbench::harness::runner::empty_database;
use bucketbench::pass::prepare_database;
use bucketbench::sim::generator::{self, ProfileName, Spec};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

/// The plans of `files` generated files of `profile`, written with `strategy`.
fn plans(profile: ProfileName, files: usize, strategy: WriteStrategy) -> Vec<WritePlan> {
    let spec = Spec::new(profile, 42);
    (0..files)
        .map(|i| {
            let f = generator::file(&spec, i);
            bucketbench::transform::plan(
                &f.key,
                None,
                f.body.as_deref().unwrap(),
                "bench",
                strategy,
            )
        })
        .collect()
}

/// Times writing every plan, each file its own transaction, into an emptied
/// database, as the synchronous models write.
fn bench_files(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    db: &mut sync_writer::Connection,
    admin: &mut postgres::Client,
    plans: &[WritePlan],
) {
    group.throughput(Throughput::Elements(plans.iter().map(|p| p.rows()).sum()));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                empty_database(admin).unwrap();
                let started = Instant::now();
                for p in plans {
                    sync_writer::write_file(db, p).unwrap();
                }
                total += started.elapsed();
            }
            total
        })
    });
}

fn write_path(c: &mut Criterion) {
    // Relaxed: this measures the write path's CPU, not the disk.
    let pg = EmbeddedPostgres::start(Flavor::Throwaway(Durability::Relaxed))
        .expect("PostgreSQL (apt-get install postgresql)");
    drop(prepare_database(&pg.default_url()).unwrap());
    let mut db =
        sync_writer::Connection::open(&pg.default_url(), bucketbench::db::Patience::default())
            .unwrap();
    let mut admin = bucketbench::db::connect_sync(&pg.default_url()).unwrap();
    let mut group = c.benchmark_group("write");
    for strategy in [
        WriteStrategy::Insert,
        WriteStrategy::Batch,
        WriteStrategy::Copy,
    ] {
        let name = format!("{}_4_seed_files", strategy.as_str());
        bench_files(
            &mut group,
            &name,
            &mut db,
            &mut admin,
            &plans(ProfileName::Seed, 4, strategy),
        );
    }
    // Per-file costs: 100 `large` files of ~140 rows. On files this small
    // what a file's statements cost (parse, plan, round trips) weighs as
    // much as its rows.
    let large = plans(ProfileName::Large, 100, WriteStrategy::Copy);
    bench_files(
        &mut group,
        "copy_100_large_files",
        &mut db,
        &mut admin,
        &large,
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = { bucketbench::harness::charts::register_fonts(); Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8)) };
    targets = write_path
}
criterion_main!(benches);
