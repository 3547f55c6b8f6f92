//! The write path alone: one file's transaction (ledger claim plus COPY),
//! rows per second into PostgreSQL, no network.

use std::time::{Duration, Instant};

use bucketbench::db::{Durability, EmbeddedPostgres, Flavor, WriteStrategy, sync_writer};
use bucketbench::harness::runner::empty_database;
use bucketbench::pass::prepare_database;
use bucketbench::sim::generator::{self, ProfileName, Spec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn write_path(c: &mut Criterion) {
    // Relaxed: this measures the write path's CPU, not the disk.
    let pg = EmbeddedPostgres::start(Flavor::Throwaway(Durability::Relaxed))
        .expect("PostgreSQL (apt-get install postgresql)");
    drop(prepare_database(&pg.default_url()).unwrap());
    let mut db = sync_writer::Connection::open(&pg.default_url()).unwrap();
    let spec = Spec::new(ProfileName::Seed, 42);
    let files: Vec<_> = (0..4).map(|i| generator::file(&spec, i)).collect();
    let mut group = c.benchmark_group("write");
    for strategy in [
        WriteStrategy::Insert,
        WriteStrategy::Batch,
        WriteStrategy::Copy,
    ] {
        let plans: Vec<_> = files
            .iter()
            .map(|f| {
                bucketbench::transform::plan(
                    &f.key,
                    None,
                    f.body.as_deref().unwrap(),
                    "bench",
                    strategy,
                )
            })
            .collect();
        let rows: u64 = plans.iter().map(|p| p.rows()).sum();
        group.throughput(Throughput::Elements(rows));
        group.bench_function(format!("{}_4_seed_files", strategy.as_str()), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    empty_database(db.client()).unwrap();
                    let started = Instant::now();
                    for p in &plans {
                        sync_writer::write_file(&mut db, p).unwrap();
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();

    // Per-file costs: 100 `large` files of ~140 rows, each its own
    // transaction (claim, three COPYs, commit), as the synchronous models
    // write them. On files this small what a file's statements cost (parse,
    // plan, round trips) weighs as much as its rows.
    let spec = Spec::new(ProfileName::Large, 42);
    let plans: Vec<_> = (0..100)
        .map(|i| {
            let f = generator::file(&spec, i);
            bucketbench::transform::plan(
                &f.key,
                None,
                f.body.as_deref().unwrap(),
                "bench",
                WriteStrategy::Copy,
            )
        })
        .collect();
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements(plans.iter().map(|p| p.rows()).sum()));
    group.bench_function("copy_100_large_files", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                empty_database(db.client()).unwrap();
                let started = Instant::now();
                for p in &plans {
                    sync_writer::write_file(&mut db, p).unwrap();
                }
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = { bucketbench::harness::charts::register_fonts(); Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8)) };
    targets = write_path
}
criterion_main!(benches);
