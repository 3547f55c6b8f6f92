//! The transform alone (parse, coerce, normalize, plan the COPY bytes), in
//! bytes per second of input, on each profile's files; then the parsing
//! candidates side by side on the seed profile. No IO.

use bucketbench::sim::generator::{self, ProfileName, Spec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A handful of a profile's files: representative, and keeps the bench
/// short (large has 10,000 small files).
fn files(profile: ProfileName) -> Vec<(String, Vec<u8>)> {
    let spec = Spec::new(profile, 42);
    (0..spec.files.min(20))
        .map(|i| generator::file(&spec, i))
        .filter_map(|f| Some((f.key, f.body?)))
        .collect()
}

fn transform(c: &mut Criterion) {
    let mut group = c.benchmark_group("transform");
    for profile in [
        ProfileName::Small,
        ProfileName::Seed,
        ProfileName::Messy,
        ProfileName::Large,
    ] {
        let files = files(profile);
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

/// The seed files through each way of parsing them: the reference
/// `serde_json::Value` tree per record, the borrowing fast path (with and
/// without owned rows and COPY encoding), and serde_json merely validating
/// the bytes, the floor of any serde_json parse.
fn parse(c: &mut Criterion) {
    use bucketbench::contract;
    let files = files(ProfileName::Seed);
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let rows: u64 = files
        .iter()
        .map(|(_, b)| contract::parse_file(b).unwrap().rows())
        .sum();
    eprintln!("seed sample: {bytes} bytes, {rows} loaded rows");
    let mut group = c.benchmark_group("parse_seed");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("value_tree_reference", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(_, f)| contract::parse_file_slow(f).unwrap().rows())
                .sum::<u64>()
        })
    });
    group.bench_function("typed_borrowed", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(_, f)| contract::parse_file_borrowed(f).unwrap().items.len())
                .sum::<usize>()
        })
    });
    group.bench_function("typed_owned_rows", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(_, f)| contract::parse_file(f).unwrap().rows())
                .sum::<u64>()
        })
    });
    group.bench_function("typed_borrowed_copy_rows", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(k, f)| {
                    let file = contract::parse_file_borrowed(f).unwrap();
                    bucketbench::db::copy::borrowed_batches(k, &file).len()
                })
                .sum::<usize>()
        })
    });
    group.bench_function("validate_only_floor", |b| {
        b.iter(|| {
            files
                .iter()
                .filter(|(_, f)| serde_json::from_slice::<serde::de::IgnoredAny>(f).is_ok())
                .count()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = { bucketbench::harness::charts::register_fonts(); Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5)) };
    targets = transform, parse
}
criterion_main!(benches);
