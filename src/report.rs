//! What a pass did: per-file results, the running tally behind the progress
//! bar, and the summary printed (or emitted as JSON) at the end.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::db::WritePlan;
use crate::db::ledger::WriteResult;

/// The outcome of one listed key.
#[derive(Debug, Clone, PartialEq)]
pub enum FileResult {
    /// Committed by this worker: rows (or a `failed` ledger row) written.
    Written {
        failed: Option<String>,
        songs: u64,
        movies: u64,
        apps: u64,
        rejected: u64,
        skipped: u64,
    },
    /// Another worker claimed it first.
    AlreadyLoaded,
    /// Listed, but the GET answered 404.
    Missing,
    /// The GET still failed after retries; left for the next pass.
    FetchFailed(String),
    /// Another worker held the key's claim past the lock timeout (a stalled
    /// or slow worker); left out of the ledger for a later pass.
    Busy,
    /// PostgreSQL refused the file and then refused to record it as failed
    /// too (a key text cannot hold); not in the ledger, reported.
    Refused(String),
}

impl FileResult {
    pub fn from_write(plan: &WritePlan, result: WriteResult) -> Self {
        match result {
            WriteResult::AlreadyLoaded => FileResult::AlreadyLoaded,
            WriteResult::Busy => FileResult::Busy,
            WriteResult::Unrecorded(reason) => FileResult::Refused(reason),
            WriteResult::Failed(reason) => FileResult::Written {
                failed: Some(reason),
                songs: 0,
                movies: 0,
                apps: 0,
                rejected: 0,
                skipped: 0,
            },
            WriteResult::Committed => FileResult::Written {
                failed: plan.reason.clone().filter(|_| plan.status == "failed"),
                songs: plan.songs as u64,
                movies: plan.movies as u64,
                apps: plan.apps as u64,
                rejected: plan.rejected as u64,
                skipped: plan.skipped as u64,
            },
        }
    }
}

/// A key and why it did not load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyReason {
    pub key: String,
    pub reason: String,
}

/// The end-of-pass summary (docs/contract.md, "A pass").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PassSummary {
    pub model: String,
    pub listed: u64,
    /// In the ledger before the pass, or claimed by another worker during it.
    pub already_loaded: u64,
    /// Files this pass committed with status `loaded`.
    pub loaded: u64,
    /// Files this pass committed with status `failed` (not JSON, not an array, too large).
    pub failed: Vec<KeyReason>,
    /// Listed keys that answered 404.
    pub missing: Vec<String>,
    /// Keys whose GET kept failing; not in the ledger, retried next pass.
    pub fetch_errors: Vec<KeyReason>,
    /// Keys whose ETag changed since they were loaded (reported, not reloaded).
    pub etag_changed: Vec<String>,
    /// Keys another worker held claimed past the lock timeout; left for a later pass.
    #[serde(default)]
    pub busy: Vec<String>,
    /// Keys recorded `failed` that this pass tried again: their object
    /// changed since, or `--retry-failed` asked for it.
    #[serde(default)]
    pub retried: Vec<String>,
    /// Keys that cannot be recorded: listed keys the ledger cannot hold (a
    /// NUL byte, invalid UTF-8), never fetched, and keys PostgreSQL refused
    /// even as a `failed` ledger row. Reported each pass.
    #[serde(default)]
    pub refused: Vec<KeyReason>,
    pub songs: u64,
    pub movies: u64,
    pub apps: u64,
    pub rejected: u64,
    pub skipped: u64,
    pub requests: u64,
    pub retries: u64,
    pub bytes: u64,
    pub elapsed_secs: f64,
    /// The part of the pass a ceiling measures (`load-only`: the writes),
    /// when it is not the whole pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_secs: Option<f64>,
    /// This process's peak resident memory so far (VmHWM), in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<f64>,
}

/// The process's own peak RSS (Linux `VmHWM`). `getrusage`/`wait4` cannot
/// be used for a child: Linux carries the parent's high-water mark across
/// fork and exec into the child's `ru_maxrss`, so a child of a harness
/// holding a 2 GB bucket would report 2 GB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

impl PassSummary {
    pub fn rows(&self) -> u64 {
        self.songs + self.movies + self.apps
    }

    /// Human-readable lines for the terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let secs = self.elapsed_secs;
        s.push_str(&format!(
            "{} files listed: {} loaded, {} already loaded, {} failed, {} missing (404), {} fetch errors{}\n",
            self.listed, self.loaded, self.already_loaded, self.failed.len(), self.missing.len(), self.fetch_errors.len(),
            if self.refused.is_empty() { String::new() } else { format!(", {} refused keys", self.refused.len()) }
        ));
        s.push_str(&format!(
            "rows: {} songs, {} movies, {} apps; {} rejected records, {} skipped (other types)\n",
            self.songs, self.movies, self.apps, self.rejected, self.skipped
        ));
        s.push_str(&format!(
            "{} requests ({} retries), {:.1} MB in {:.2} s with model {}",
            self.requests,
            self.retries,
            self.bytes as f64 / 1e6,
            secs,
            self.model
        ));
        if self.loaded == 0
            && self.failed.is_empty()
            && self.fetch_errors.is_empty()
            && self.busy.is_empty()
            && self.refused.is_empty()
        {
            s.push_str("\nnothing new to load");
        }
        for f in &self.refused {
            s.push_str(&format!(
                "\nrefused key {}: {}",
                short_key(&f.key),
                f.reason
            ));
        }
        for k in &self.retried {
            s.push_str(&format!("\nfailed before, tried again: {k}"));
        }
        for f in &self.failed {
            s.push_str(&format!(
                "\nfailed file {}: {}",
                short_key(&f.key),
                f.reason
            ));
        }
        for k in &self.missing {
            s.push_str(&format!("\nmissing (404): {}", short_key(k)));
        }
        for f in &self.fetch_errors {
            s.push_str(&format!(
                "\nnot fetched, will retry next pass: {}: {}",
                short_key(&f.key),
                f.reason
            ));
        }
        for k in &self.busy {
            s.push_str(&format!(
                "\nbusy: another worker holds its claim, will retry next pass: {}",
                short_key(k)
            ));
        }
        for k in &self.etag_changed {
            s.push_str(&format!(
                "\nchanged since loaded (not reloaded): {}",
                short_key(k)
            ));
        }
        s
    }
}

/// Collects file results from any number of workers and drives the
/// progress bar.
pub struct Tally {
    summary: Mutex<PassSummary>,
    bar: Option<indicatif::ProgressBar>,
}

impl Tally {
    pub fn new(summary: PassSummary, bar: Option<indicatif::ProgressBar>) -> Self {
        Tally {
            summary: Mutex::new(summary),
            bar,
        }
    }

    /// Notes a listed page: `listed` keys, `already` of them in the ledger,
    /// `new` handed to the model, and keys whose ETag changed since loaded.
    pub fn listed(&self, listed: u64, already: u64, new: u64, etag_changed: Vec<String>) {
        let mut s = self.summary.lock().unwrap();
        s.listed += listed;
        s.already_loaded += already;
        s.etag_changed.extend(etag_changed);
        if let Some(bar) = &self.bar {
            bar.inc_length(new);
        }
    }

    /// Notes listed keys refused before the ledger (see [`PassSummary::refused`]).
    pub fn refused(&self, refused: Vec<KeyReason>) {
        if refused.is_empty() {
            return;
        }
        let mut s = self.summary.lock().unwrap();
        s.listed += refused.len() as u64;
        s.refused.extend(refused);
    }

    /// Notes `failed` keys handed to the model again.
    pub fn retried(&self, keys: Vec<String>) {
        self.summary.lock().unwrap().retried.extend(keys);
    }

    pub fn record(&self, key: &str, result: FileResult) {
        let mut s = self.summary.lock().unwrap();
        match result {
            FileResult::Written {
                failed: Some(reason),
                ..
            } => s.failed.push(KeyReason {
                key: key.into(),
                reason,
            }),
            FileResult::Written {
                failed: None,
                songs,
                movies,
                apps,
                rejected,
                skipped,
            } => {
                s.loaded += 1;
                s.songs += songs;
                s.movies += movies;
                s.apps += apps;
                s.rejected += rejected;
                s.skipped += skipped;
            }
            FileResult::AlreadyLoaded => s.already_loaded += 1,
            FileResult::Missing => s.missing.push(key.into()),
            FileResult::FetchFailed(reason) => s.fetch_errors.push(KeyReason {
                key: key.into(),
                reason,
            }),
            FileResult::Busy => s.busy.push(key.into()),
            FileResult::Refused(reason) => s.refused.push(KeyReason {
                key: key.into(),
                reason,
            }),
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{} rows", s.rows()));
        }
    }

    /// Notes the time of the measured phase (see [`PassSummary::timed_secs`]).
    pub fn timed(&self, secs: f64) {
        self.summary.lock().unwrap().timed_secs = Some(secs);
    }

    pub fn finish(self, elapsed: Duration) -> PassSummary {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let mut s = self.summary.into_inner().unwrap();
        s.elapsed_secs = elapsed.as_secs_f64();
        s
    }
}

/// Characters of a key shown in an error or log line.
const KEY_SHOWN: usize = 100;

/// A key as an error or log line shows it: whole when short, else its first
/// hundred characters and its length in bytes, so a 4 KB key cannot bury
/// the message it is part of. Control characters are escaped so that a key
/// holding a newline still yields one line.
pub fn short_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len().min(4 * KEY_SHOWN) + 24);
    for (i, c) in key.chars().enumerate() {
        if i == KEY_SHOWN {
            out.push_str(&format!("… ({} bytes)", key.len()));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` cut to `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_stay_whole_and_long_ones_are_cut_with_their_length() {
        assert_eq!(short_key("dir/a.json"), "dir/a.json");
        let long = "日".repeat(1500);
        let shown = short_key(&long);
        assert!(shown.starts_with(&"日".repeat(100)), "{shown}");
        assert!(shown.ends_with("… (4500 bytes)"), "{shown}");
        assert_eq!(
            shown.chars().count(),
            100 + "… (4500 bytes)".chars().count()
        );
        assert_eq!(short_key("a\nb"), "a\\nb");
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééééé", 2), "éé…");
    }
}
