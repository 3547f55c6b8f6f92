//! The transform alone (parse, coerce, normalize, plan the COPY bytes), in
//! bytes and records per second, on each profile's files. No IO.

use bucketbench::sim::generator::{self, ProfileName, Spec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn transform(c: &mut Criterion) {
    let mut group = c.benchmark_group("transform");
    for profile in [
        ProfileName::Small,
        ProfileName::Seed,
        ProfileName::Messy,
        ProfileName::Large,
    ] {
        // A handful of files per profile is representative and keeps the
        // bench short (large has 10,000 small files).
        let spec = Spec::new(profile, 42);
        let files: Vec<(String, Vec<u8>)> = (0..spec.files.min(20))
            .map(|i| generator::file(&spec, i))
            .filter_map(|f| Some((f.key, f.body?)))
            .collect();
        let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(profile.as_str(), |b| {
            b.iter(|| {
                let mut rows = 0;
                for (key, body) in &files {
                    rows += bucketbench::transform::plan(
                        key,
                        None,
                        body,
                        "bench",
                        bucketbench::db::WriteStrategy::Copy,
                    )
                    .rows();
                }
                rows
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = { bucketbench::harness::charts::register_fonts(); Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5)) };
    targets = transform
}
criterion_main!(benches);
