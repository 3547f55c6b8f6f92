//! A generated bucket held in a [`Store`], with its expected result, churn
//! (files appear and vanish while it is served, as the original bucket's
//! did), and export to a directory.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rayon::prelude::*;

use super::expected::{Expected, FileExpect};
use super::generator::{self, GeneratedFile, Spec};
use super::server::{Conditions, ServeOptions, SimServer};
use super::store::{MANIFEST_KEY, Object, Store};

/// Fixed so that listings and exports are byte-identical run to run.
const LAST_MODIFIED: &str = "2021-06-01T00:00:00.000Z";

struct State {
    /// Listed keys in listing order (oldest first), missing ones included.
    listed: VecDeque<String>,
    /// What every key ever generated contributes.
    expects: BTreeMap<String, FileExpect>,
    next_index: usize,
}

/// A generated bucket. Clones share it.
#[derive(Clone)]
pub struct SimBucket {
    spec: Spec,
    store: Store,
    state: Arc<Mutex<State>>,
}

impl SimBucket {
    /// Generates the bucket (in parallel: files are independent).
    pub fn generate(spec: Spec) -> Self {
        let files: Vec<GeneratedFile> = (0..spec.files)
            .into_par_iter()
            .map(|i| generator::file(&spec, i))
            .collect();
        let store = Store::new();
        let mut listed = VecDeque::new();
        let mut expects = BTreeMap::new();
        let mut puts = Vec::with_capacity(files.len() + 1);
        for f in files {
            listed.push_back(f.key.clone());
            if let Some(body) = f.body {
                puts.push((f.key.clone(), Object::new(body, LAST_MODIFIED)));
            }
            expects.insert(f.key, f.expect);
        }
        for k in generator::missing_keys(&spec) {
            listed.push_back(k.clone());
            expects.insert(k, FileExpect::Missing);
        }
        let manifest = generator::manifest(&spec, listed.make_contiguous());
        puts.push((
            MANIFEST_KEY.to_string(),
            Object::new(manifest.into_bytes(), LAST_MODIFIED),
        ));
        store.apply(puts, &[]);
        let next_index = spec.files;
        SimBucket {
            spec,
            store,
            state: Arc::new(Mutex::new(State {
                listed,
                expects,
                next_index,
            })),
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The keys the manifest lists now.
    pub fn listed_keys(&self) -> Vec<String> {
        self.state.lock().unwrap().listed.iter().cloned().collect()
    }

    /// What a correct loader holds after loading the current listing into
    /// an empty database.
    pub fn expected(&self) -> Expected {
        self.expected_for(&self.listed_keys())
    }

    /// What a correct loader holds after loading exactly these keys (for
    /// churn: the union of every listing it loaded).
    pub fn expected_for(&self, keys: &[String]) -> Expected {
        let st = self.state.lock().unwrap();
        let mut uniq: Vec<&String> = keys.iter().collect();
        uniq.sort();
        uniq.dedup();
        Expected::from_files(
            uniq.into_iter()
                .filter_map(|k| st.expects.get(k).map(|e| (k.as_str(), e))),
        )
    }

    /// Adds `add` new files and deletes the `delete` oldest, updating the
    /// manifest in the same atomic step. Returns (added, deleted) keys.
    pub fn churn(&self, add: usize, delete: usize) -> (Vec<String>, Vec<String>) {
        let mut st = self.state.lock().unwrap();
        let mut puts = Vec::new();
        let mut added = Vec::new();
        for _ in 0..add {
            let f = generator::file(&self.spec, st.next_index);
            st.next_index += 1;
            if let Some(body) = f.body {
                puts.push((f.key.clone(), Object::new(body, LAST_MODIFIED)));
            }
            st.listed.push_back(f.key.clone());
            added.push(f.key.clone());
            st.expects.insert(f.key, f.expect);
        }
        let mut deleted = Vec::new();
        for _ in 0..delete.min(st.listed.len()) {
            if let Some(k) = st.listed.pop_front() {
                deleted.push(k);
            }
        }
        let manifest = generator::manifest(&self.spec, st.listed.make_contiguous());
        puts.push((
            MANIFEST_KEY.to_string(),
            Object::new(manifest.into_bytes(), LAST_MODIFIED),
        ));
        self.store.apply(puts, &deleted);
        (added, deleted)
    }

    /// Churns every `every` in a background thread until the handle drops.
    pub fn start_churn(&self, every: Duration, add: usize, delete: usize) -> ChurnHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (self.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let deadline = std::time::Instant::now() + every;
                while std::time::Instant::now() < deadline {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20).min(every));
                }
                b.churn(add, delete);
            }
        });
        ChurnHandle {
            stop,
            thread: Some(thread),
        }
    }

    /// Serves this bucket on `addr` (port 0: any free port).
    pub fn serve(
        &self,
        conditions: Conditions,
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<SimServer> {
        SimServer::start(self.store.clone(), conditions, addr)
    }

    /// Serves this bucket with a bucket name and access control.
    pub fn serve_with(
        &self,
        conditions: Conditions,
        addr: std::net::SocketAddr,
        options: ServeOptions,
    ) -> anyhow::Result<SimServer> {
        SimServer::start_with(self.store.clone(), conditions, addr, options)
    }

    /// Serves this bucket under a network model (HTTPS, latency shape,
    /// round trips, rate limit).
    pub fn serve_network(
        &self,
        conditions: Conditions,
        addr: std::net::SocketAddr,
        options: ServeOptions,
        model: super::network::NetworkModel,
    ) -> anyhow::Result<SimServer> {
        SimServer::start_network(self.store.clone(), conditions, addr, options, model)
    }

    /// Writes every object (the manifest too) under `dir`, plus
    /// `expected.json`, so a static web server, moto or a real S3 bucket
    /// can hold the same data.
    pub fn write_to_dir(&self, dir: &Path) -> anyhow::Result<()> {
        for key in self.store.keys() {
            let obj = self.store.get(&key).expect("listed key");
            let path = dir.join(&key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, &obj.body)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        self.write_expected(&dir.join("expected.json"))
    }

    pub fn write_expected(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(&self.expected())?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// Stops the churn thread when dropped.
pub struct ChurnHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ChurnHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
