//! Each execution model end to end on the `small` profile over the loopback
//! bucket with 20 ms first-byte latency, into a throwaway PostgreSQL. Every
//! iteration starts from an emptied database (emptying is not timed).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bucketbench::bucket::{BucketLocation, ClientConfig};
use bucketbench::db::{Durability, EmbeddedPostgres, Flavor};
use bucketbench::harness::runner::empty_database;
use bucketbench::models::{Knobs, Model};
use bucketbench::pass::{PassConfig, prepare_database, run_pass};
use bucketbench::sim::{Conditions, ProfileName, SimBucket, Spec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn models_end_to_end(c: &mut Criterion) {
    // Relaxed: this measures the models, not the disk.
    let pg = EmbeddedPostgres::start(Flavor::Throwaway(Durability::Relaxed))
        .expect("PostgreSQL (apt-get install postgresql)");
    let bucket = SimBucket::generate(Spec::new(ProfileName::Small, 42));
    let server = bucket
        .serve(
            Conditions {
                latency_ms: 20.0,
                ..Default::default()
            },
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .unwrap();
    let url = pg.default_url();
    let mut db = prepare_database(&url).unwrap();
    let cfg = PassConfig {
        bucket: BucketLocation::parse(&server.base_url()).unwrap(),
        database_url: url.clone(),
        client: ClientConfig::default(),
        knobs: Knobs::default(),
        progress: Default::default(),
    };
    let mut group = c.benchmark_group("models_small_20ms");
    group.throughput(Throughput::Elements(bucket.expected().rows()));
    for m in Model::MODELS {
        let model = m.ingestor();
        group.bench_function(m.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    empty_database(&mut db).unwrap();
                    let started = Instant::now();
                    run_pass(&cfg, model.as_ref()).unwrap();
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = { bucketbench::harness::charts::register_fonts(); Criterion::default().sample_size(10).measurement_time(Duration::from_secs(10)) };
    targets = models_end_to_end
}
criterion_main!(benches);
