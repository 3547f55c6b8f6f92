//! Memory is bounded by bytes in flight, not by files in flight: a bucket
//! of large objects must not multiply memory by the concurrency. Runs the
//! real `ingest` binary per model and reads its peak RSS (`VmHWM`, which
//! the pass summary reports), and measures the transform's expansion factor
//! that the budget's reservations are sized by.
//!
//! The large-object tests move 585 MB per model through PostgreSQL:
//! `cargo test --release --test memory -- --ignored`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::sync::OnceLock;

use bucketbench::bucket::budget;
use bucketbench::db::WriteStrategy;
use bucketbench::report::PassSummary;
use bucketbench::sim::generator::{self, Spec};
use bucketbench::sim::{Object, ProfileName, SimServer, Store};
use bytes::Bytes;
use common::*;

/// Counts this thread's live heap bytes, so a test can measure what one
/// call allocates at its peak while other tests run on other threads.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            note(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            note(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        note(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            note(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result, the most it had allocated at once and
/// what it still holds allocated afterwards (on this thread), in bytes.
fn measured<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    let kept = LIVE.with(Cell::get) - base;
    (out, peak.max(0) as u64, kept.max(0) as u64)
}

/// Realistic records (the `seed` profile's mix) repeated to at least
/// `bytes`: a valid JSON array, and the rows it loads.
fn realistic_body(bytes: usize) -> (Vec<u8>, u64) {
    let spec = Spec::new(ProfileName::Seed, 42).with_overrides(Some(1), Some(4000));
    let file = generator::file(&spec, 0);
    let bucketbench::sim::expected::FileExpect::Loaded {
        songs,
        movies,
        apps,
        ..
    } = file.expect
    else {
        panic!("the seed profile's first file loads");
    };
    let body = file.body.expect("a body");
    let records = &body[1..body.len() - 1];
    let copies = bytes.div_ceil(records.len());
    let mut out = Vec::with_capacity(copies * (records.len() + 1) + 1);
    out.push(b'[');
    for i in 0..copies {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(records);
    }
    out.push(b']');
    (out, copies as u64 * (songs.rows + movies.rows + apps.rows))
}

#[test]
fn the_budget_reserves_at_least_what_the_transform_allocates() {
    let (body, _) = realistic_body(4 << 20);
    let len = body.len() as u64;
    for strategy in [
        WriteStrategy::Copy,
        WriteStrategy::Batch,
        WriteStrategy::Insert,
    ] {
        let (plan, peak, kept) = measured(|| {
            bucketbench::transform::plan(
                "2021/06/01/part-00000.json",
                None,
                &body,
                "sync",
                strategy,
            )
        });
        // The body is held while the plan is built: the peak is both.
        let footprint = len + peak;
        eprintln!(
            "{strategy:?}: body {len} B, peak while planning {:.2}x the body (body + {:.2}x), plan keeps {:.2}x",
            footprint as f64 / len as f64,
            peak as f64 / len as f64,
            kept as f64 / len as f64
        );
        let reserved = budget::Budget::new(0, strategy).footprint(len);
        assert!(
            reserved >= footprint,
            "{strategy:?}: a body of {len} B peaks at {footprint} B while planned, more than the {reserved} B reserved for it"
        );
        assert!(
            budget::retained(&plan) >= kept,
            "{strategy:?}: the plan holds {kept} B, more than the {} B its reservation keeps",
            budget::retained(&plan)
        );
        drop(plan);
    }
}

const OBJECTS: usize = 9;
const OBJECT_BYTES: usize = 65 << 20;
const BUDGET_MB: u64 = 256;
/// The process itself (code, runtime, connections, allocator slack).
const OVERHEAD_MB: f64 = 100.0;

/// Nine objects of about 65 MB of valid records each (one body shared by
/// every key, so the test process holds it once), and the rows each loads.
fn large_objects() -> &'static (Bytes, u64) {
    static BODY: OnceLock<(Bytes, u64)> = OnceLock::new();
    BODY.get_or_init(|| {
        let (body, rows) = realistic_body(OBJECT_BYTES);
        (Bytes::from(body), rows)
    })
}

fn serve_large_objects() -> SimServer {
    let (body, _) = large_objects();
    let store = Store::new();
    let mut manifest = String::new();
    for i in 0..OBJECTS {
        let key = format!("big/part-{i}.json");
        store.put(
            &key,
            Object {
                body: body.clone(),
                etag: format!("\"big-{i}\""),
                last_modified: "2021-06-01T00:00:00.000Z".into(),
            },
        );
        manifest.push_str(&key);
        manifest.push('\n');
    }
    store.put(
        "files_list.data",
        Object::new(manifest.into_bytes(), "2021-06-01T00:00:00.000Z"),
    );
    serve(store)
}

/// One `ingest` pass of `model` over the large objects, with the default
/// concurrency (256 files in flight, 32 threads) and a 256 MB budget.
fn ingest_large(model: &str) -> PassSummary {
    let server = serve_large_objects();
    let db = fresh_db();
    let out = ingest()
        .env("RUST_LOG", "warn")
        .args(["--bucket", &server.base_url(), "--database-url", &db])
        .args(["--model", model, "--json"])
        .args(["--max-bytes-in-flight", &format!("{BUDGET_MB}MiB")])
        .output()
        .expect("run ingest");
    assert!(
        out.status.success(),
        "{model}: ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the pass summary")
}

fn peak_stays_under_the_budget(model: &str) {
    let s = ingest_large(model);
    let (_, rows) = large_objects();
    assert_eq!(
        (s.loaded, s.rows()),
        (OBJECTS as u64, OBJECTS as u64 * rows),
        "{model}: every object loads whole"
    );
    let peak = s.peak_rss_mb.expect("the pass reports its peak RSS");
    eprintln!("{model}: peak RSS {peak:.0} MB with a {BUDGET_MB} MB budget");
    assert!(
        peak < BUDGET_MB as f64 + OVERHEAD_MB,
        "{model}: peak RSS {peak:.0} MB for {OBJECTS} objects of {} MB, over the {BUDGET_MB} MB budget plus {OVERHEAD_MB} MB",
        OBJECT_BYTES >> 20
    );
}

#[test]
#[ignore = "large: 585 MB per model through PostgreSQL; run with --release"]
fn sync_memory_is_bounded_by_bytes_in_flight() {
    peak_stays_under_the_budget("sync");
}

#[test]
#[ignore = "large: 585 MB per model through PostgreSQL; run with --release"]
fn async_fetch_memory_is_bounded_by_bytes_in_flight() {
    peak_stays_under_the_budget("async-fetch");
}

#[test]
#[ignore = "large: 585 MB per model through PostgreSQL; run with --release"]
fn async_memory_is_bounded_by_bytes_in_flight() {
    peak_stays_under_the_budget("async");
}

#[test]
#[ignore = "large: 585 MB per model through PostgreSQL; run with --release"]
fn threads_memory_is_bounded_by_bytes_in_flight() {
    peak_stays_under_the_budget("threads");
}
