//! The simulated bucket's objects, held in memory so the server spends no
//! time on disk and little CPU per request.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use md5::Digest as _;

pub use crate::bucket::location::MANIFEST_KEY;

/// One stored object.
#[derive(Debug, Clone)]
pub struct Object {
    pub body: Bytes,
    /// Quoted hex MD5 of the body, as S3 reports it for simple uploads.
    pub etag: String,
    /// RFC 3339 time, fixed per object so listings are deterministic.
    pub last_modified: String,
}

impl Object {
    pub fn new(body: impl Into<Bytes>, last_modified: &str) -> Self {
        let body = body.into();
        let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&body)));
        Object {
            body,
            etag,
            last_modified: last_modified.to_string(),
        }
    }
}

/// A bucket: a sorted map of keys to objects. Clones share the same bucket,
/// so a server and the code that churns it see one state.
#[derive(Debug, Clone, Default)]
pub struct Store {
    inner: Arc<RwLock<BTreeMap<String, Object>>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<Object> {
        self.inner.read().unwrap().get(key).cloned()
    }

    pub fn put(&self, key: &str, object: Object) {
        self.inner.write().unwrap().insert(key.to_string(), object);
    }

    pub fn delete(&self, key: &str) -> bool {
        self.inner.write().unwrap().remove(key).is_some()
    }

    /// Applies several changes under one lock, so a reader sees all or none
    /// of them (the manifest and the objects it names change together).
    pub fn apply(&self, puts: Vec<(String, Object)>, deletes: &[String]) {
        let mut map = self.inner.write().unwrap();
        for k in deletes {
            map.remove(k);
        }
        map.extend(puts);
    }

    /// Up to `max` keys after `after` that start with `prefix`, in order,
    /// and whether more remain.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> (Vec<(String, Object)>, bool) {
        let map = self.inner.read().unwrap();
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut it = map
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()));
        let page: Vec<_> = it.by_ref().take(max).collect();
        let more = it.next().is_some();
        (page, more)
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner.read().unwrap().keys().cloned().collect()
    }
}
