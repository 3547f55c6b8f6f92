//! Every execution model loads exactly the generator's expected result.

use crate::common;

use std::sync::atomic::Ordering;

use bucketbench::models::Model;
use bucketbench::sim::{Conditions, ProfileName, SimBucket, Spec, verify};
use common::*;

fn check(model: &str, profile: ProfileName, conditions: Conditions) {
    let bucket = SimBucket::generate(Spec::new(profile, 11));
    let server = bucket.serve(conditions, any_port()).unwrap();
    let db = fresh_db();
    let s = pass(&server.base_url(), &db, model);
    assert_eq!(s.model, model);
    let want = bucket.expected();
    assert_eq!(
        s.loaded + s.failed.len() as u64,
        want.files,
        "{model} {profile:?}"
    );
    assert_eq!(s.missing.len(), want.missing_keys.len());
    let diffs = verify(&mut connect(&db), &want).unwrap();
    assert!(diffs.is_empty(), "{model} on {profile:?}: {diffs:#?}");
    let models: Vec<String> = column(
        &mut connect(&db),
        "SELECT DISTINCT model FROM processed_files",
    );
    assert_eq!(models, [model], "the ledger names the model");
    // A second pass finds nothing new.
    let again = pass(&server.base_url(), &db, model);
    assert_eq!(
        (again.loaded, again.already_loaded + again.failed_earlier),
        (0, want.files)
    );
}

macro_rules! model_tests {
    ($($name:ident: $model:expr, $profile:ident;)*) => {$(
        #[test]
        fn $name() {
            check($model, ProfileName::$profile, Conditions { latency_ms: 2.0, ..Default::default() });
        }
    )*};
}

model_tests! {
    sync_small: "sync", Small;
    sync_messy: "sync", Messy;
    async_fetch_small: "async-fetch", Small;
    async_fetch_messy: "async-fetch", Messy;
    async_small: "async", Small;
    async_messy: "async", Messy;
    threads_small: "threads", Small;
    threads_messy: "threads", Messy;
}

#[test]
fn async_models_survive_injected_errors() {
    let mut injected_in_all = 0;
    for model in ["async-fetch", "async", "threads"] {
        let bucket = SimBucket::generate(Spec::new(ProfileName::Small, 4));
        let server = bucket
            .serve(
                Conditions {
                    error_rate: 0.2,
                    ..Default::default()
                },
                any_port(),
            )
            .unwrap();
        let db = fresh_db();
        let mut cfg = config(&server.base_url(), &db);
        cfg.client.retry.max_attempts = 8;
        let s =
            bucketbench::pass::run_pass(&cfg, model.parse::<Model>().unwrap().ingestor().as_ref())
                .unwrap();
        // Random at 20 %: a pass of 21 requests may draw none, so the
        // check is that every error the server injected was retried.
        let injected = server.stats.injected_errors.load(Ordering::Relaxed);
        injected_in_all += injected;
        assert!(
            s.retries >= injected,
            "{model}: {injected} errors injected, {} retries counted",
            s.retries
        );
        let diffs = verify(&mut connect(&db), &bucket.expected()).unwrap();
        assert!(diffs.is_empty(), "{model}: {diffs:#?}");
    }
    assert!(injected_in_all > 0, "the server injected no error at all");
}

#[test]
fn an_unknown_model_is_a_clear_error() {
    let err = "turbo".parse::<Model>().unwrap_err().to_string();
    assert!(err.contains("sync, async-fetch, async, threads"), "{err}");
}

#[test]
fn every_write_strategy_loads_exactly_the_expected_result() {
    use bucketbench::db::WriteStrategy;
    let bucket = SimBucket::generate(Spec::new(ProfileName::Messy, 17));
    let server = bucket.serve(Conditions::default(), any_port()).unwrap();
    for (model, write) in [
        ("sync", WriteStrategy::Insert),
        ("async", WriteStrategy::Insert),
        ("async-fetch", WriteStrategy::Batch),
        ("threads", WriteStrategy::Batch),
    ] {
        let db = fresh_db();
        let mut cfg = config(&server.base_url(), &db);
        cfg.knobs.write = write;
        bucketbench::pass::run_pass(&cfg, model.parse::<Model>().unwrap().ingestor().as_ref())
            .unwrap();
        let diffs = verify(&mut connect(&db), &bucket.expected()).unwrap();
        assert!(diffs.is_empty(), "{model} with {write:?}: {diffs:#?}");
    }
}
