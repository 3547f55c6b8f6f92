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
    /// Another worker recorded it `failed` first.
    FailedEarlier,
    /// Listed, but the GET answered 404.
    Missing,
    /// The GET still failed after retries; left for the next pass.
    FetchFailed(String),
    /// Another worker held the key's claim past the lock timeout (a stalled
    /// or slow worker), or PostgreSQL did not answer its transaction within
    /// `--db-timeout`; left out of the ledger for a later pass.
    Busy,
    /// PostgreSQL refused the file and then refused to record it as failed
    /// too (a key text cannot hold); not in the ledger, reported.
    Refused(String),
    /// Never fetched: the bucket had been declared unreachable. Not in the
    /// ledger, so the next pass tries it.
    NotAttempted,
}

impl FileResult {
    /// What the ledger said of a key another worker recorded before this
    /// one fetched or claimed it.
    pub fn recorded_elsewhere(result: WriteResult) -> Self {
        match result {
            WriteResult::FailedEarlier => FileResult::FailedEarlier,
            _ => FileResult::AlreadyLoaded,
        }
    }

    pub fn from_write(plan: &WritePlan, result: WriteResult) -> Self {
        match result {
            WriteResult::AlreadyLoaded => FileResult::AlreadyLoaded,
            WriteResult::FailedEarlier => FileResult::FailedEarlier,
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

/// The line a ceiling's worker writes on stderr when the part of its pass it
/// times begins (`load-only`: after every fetch, before the first write).
/// `compare` reads its CPU meters then, so that the run's CPU, like its
/// time, is the timed part's.
pub const TIMED_PHASE_STARTS: &str = "bucketbench worker: timed phase starts";

/// The line a `compare` worker writes on stderr when the first object's
/// body is in: nothing can be parsed or written before it, so the pass
/// cannot end before that moment plus the CPU spent after it over the
/// cores (`compare`'s arrival floor; it reads its CPU meters then).
pub const FIRST_BODY_IN: &str = "bucketbench worker: first body in";

/// The [`TIMED_PHASE_STARTS`] line, with this process's CPU seconds so far
/// (`getrusage`, in microseconds: `/proc` counts in 10 ms ticks, too coarse
/// for writes that take 10 ms).
pub fn timed_phase_line() -> String {
    worker_line(TIMED_PHASE_STARTS)
}

/// The [`FIRST_BODY_IN`] line: how far into the pass (`secs`, on the
/// pass's own clock, as its time is measured), with this process's CPU
/// seconds so far.
pub fn first_body_line(secs: f64) -> String {
    worker_line(&format!("{FIRST_BODY_IN} at {secs:.6} s into the pass"))
}

fn worker_line(what: &str) -> String {
    format!("{what} after {:.6} s of CPU", own_cpu_seconds())
}

/// This process's CPU seconds so far, user and system, every thread.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    cpu_secs(&u)
}

/// User plus system CPU seconds of a `getrusage` or `wait4` reading.
pub fn cpu_secs(u: &libc::rusage) -> f64 {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Reads a [`timed_phase_line`]: the CPU seconds it gives, `None` for any
/// other line.
pub fn read_timed_phase_line(line: &str) -> Option<f64> {
    read_worker_line(TIMED_PHASE_STARTS, line)
}

/// Reads a [`first_body_line`]: the seconds into the pass and the CPU
/// seconds it gives, `None` for any other line.
pub fn read_first_body_line(line: &str) -> Option<(f64, f64)> {
    let rest = line.strip_prefix(FIRST_BODY_IN)?.strip_prefix(" at ")?;
    let (secs, rest) = rest.split_once(" s into the pass")?;
    let cpu = read_worker_line("", rest)?;
    Some((secs.parse().ok()?, cpu))
}

fn read_worker_line(what: &str, line: &str) -> Option<f64> {
    line.strip_prefix(what)?
        .strip_prefix(" after ")?
        .strip_suffix(" s of CPU")?
        .parse()
        .ok()
}

/// The end-of-pass summary (docs/contract.md, "A pass").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PassSummary {
    pub model: String,
    pub listed: u64,
    /// In the ledger as `loaded` before the pass, or claimed by another
    /// worker during it.
    pub already_loaded: u64,
    /// In the ledger as `failed` before the pass and not tried again (see
    /// `retried` for those that were), or recorded `failed` by another
    /// worker during it.
    #[serde(default)]
    pub failed_earlier: u64,
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
    /// Of `requests`, the byte ranges asked for beside an object's GET
    /// (`--ranged-parts`).
    #[serde(default)]
    pub ranged: u64,
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
    /// Keys handed to the model but never fetched because the bucket was
    /// declared unreachable; not in the ledger, tried next pass.
    #[serde(default)]
    pub not_attempted: u64,
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

    /// Whether the pass found nothing to do and nothing to report.
    pub fn nothing_new(&self) -> bool {
        self.loaded == 0
            && self.failed.is_empty()
            && self.fetch_errors.is_empty()
            && self.busy.is_empty()
            && self.refused.is_empty()
            && self.missing.is_empty()
            && self.retried.is_empty()
            && self.etag_changed.is_empty()
            && self.not_attempted == 0
    }

    /// For `--watch`: one line with the time for a pass with nothing new
    /// (a daemon's quiet hours stay readable), else the time and the full
    /// summary.
    pub fn render_timestamped<Tz: chrono::TimeZone>(&self, at: chrono::DateTime<Tz>) -> String
    where
        Tz::Offset: std::fmt::Display,
    {
        let ts = at.format("%Y-%m-%d %H:%M:%S");
        if self.nothing_new() {
            let mut held = vec![format!("{} already loaded", self.already_loaded)];
            if self.failed_earlier > 0 {
                held.push(format!("{} failed earlier", self.failed_earlier));
            }
            format!(
                "{ts} nothing new: {} ({}) in {:.2} s",
                plural(self.listed, "file listed", "files listed"),
                held.join(", "),
                self.elapsed_secs
            )
        } else {
            format!("{ts}\n{}", self.render())
        }
    }

    /// Human-readable lines for the terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let secs = self.elapsed_secs;
        let mut counts = vec![
            format!("{} loaded", self.loaded),
            format!("{} already loaded", self.already_loaded),
        ];
        if self.failed_earlier > 0 {
            counts.push(format!("{} failed earlier", self.failed_earlier));
        }
        counts.extend([
            format!("{} failed", self.failed.len()),
            format!("{} missing (404)", self.missing.len()),
            plural(
                self.fetch_errors.len() as u64,
                "fetch error",
                "fetch errors",
            ),
        ]);
        if !self.refused.is_empty() {
            counts.push(plural(
                self.refused.len() as u64,
                "refused key",
                "refused keys",
            ));
        }
        if self.not_attempted > 0 {
            counts.push(format!("{} not attempted", self.not_attempted));
        }
        s.push_str(&format!(
            "{}: {}\n",
            plural(self.listed, "file listed", "files listed"),
            counts.join(", ")
        ));
        s.push_str(&format!(
            "rows: {} songs, {} movies, {} apps; {}, {} skipped (other types)\n",
            self.songs,
            self.movies,
            self.apps,
            plural(self.rejected, "rejected record", "rejected records"),
            self.skipped
        ));
        let ranged = match self.ranged {
            0 => String::new(),
            n => format!("{} beside GETs, ", plural(n, "byte range", "byte ranges")),
        };
        s.push_str(&format!(
            "{} ({ranged}{}), {:.1} MB in {:.2} s with model {}",
            plural(self.requests, "request", "requests"),
            plural(self.retries, "retry", "retries"),
            self.bytes as f64 / 1e6,
            secs,
            self.model
        ));
        if self.nothing_new() {
            s.push_str("\nnothing new to load");
        }
        list_reasons(
            &mut s,
            ("refused key", "refused keys", "refused keys"),
            &self.refused,
        );
        list_keys(
            &mut s,
            "failed before, tried again:",
            "retried keys",
            &self.retried,
        );
        list_reasons(
            &mut s,
            ("failed file", "failed files", "failed files"),
            &self.failed,
        );
        list_keys(&mut s, "missing (404):", "missing keys", &self.missing);
        list_reasons(
            &mut s,
            (
                "not fetched, will retry next pass:",
                "not fetched, will retry next pass:",
                "keys not fetched",
            ),
            &self.fetch_errors,
        );
        list_keys(
            &mut s,
            "busy: claimed by another session, not answered in time or ending its own connection, will retry next pass:",
            "busy keys",
            &self.busy,
        );
        list_keys(
            &mut s,
            "changed since loaded (not reloaded):",
            "changed keys",
            &self.etag_changed,
        );
        s
    }
}

/// Lines given to each kind of key in the terminal summary. A pass over a
/// bucket that went away can leave every key unfetched; the summary must
/// still fit a screen. `--json` lists every key.
const LINES_PER_KIND: usize = 10;
/// Keys named on a line that stands for several with the same reason.
const KEYS_PER_LINE: usize = 3;

/// One line per key, `label key`, in key order, at most [`LINES_PER_KIND`]
/// of them.
fn list_keys(s: &mut String, label: &str, noun: &str, keys: &[String]) {
    let mut keys: Vec<&String> = keys.iter().collect();
    keys.sort_unstable();
    let shown = lines_shown(keys.len());
    for k in &keys[..shown] {
        s.push_str(&format!("\n{label} {}", short_key(k)));
    }
    more(s, keys.len() - shown, noun, "");
}

/// How many of `n` lines to show: all when one more would only be replaced
/// by a line saying it is hidden.
fn lines_shown(n: usize) -> usize {
    if n <= LINES_PER_KIND + 1 {
        n
    } else {
        LINES_PER_KIND
    }
}

/// One line per reason, naming its keys (`failed file a.json: why`, or
/// `failed files a.json, b.json, c.json and 9 more: why` when several keys
/// failed alike), the commonest reasons first, at most [`LINES_PER_KIND`]
/// lines. A reason that names its own key's URL (`HTTP 500 for
/// http://h/b/a.json`) is said with `<key>` in its place, so that keys that
/// failed alike share a line and a long key is not printed twice.
fn list_reasons(s: &mut String, (one, many, noun): (&str, &str, &str), items: &[KeyReason]) {
    let mut by_reason: std::collections::HashMap<String, Vec<&str>> = Default::default();
    for f in items {
        by_reason
            // A server's words (a trigger's exception) may hold an escape
            // sequence or a carriage return: shown escaped, like a key.
            .entry(printable(&without_own_url(&f.reason, &f.key)))
            .or_default()
            .push(&f.key);
    }
    let mut groups: Vec<(String, Vec<&str>)> = by_reason.into_iter().collect();
    for (_, keys) in &mut groups {
        keys.sort_unstable();
    }
    // Commonest first; as common as each other, by their first key, so that
    // the same failures always read the same.
    groups.sort_by(|(ra, a), (rb, b)| {
        b.len()
            .cmp(&a.len())
            .then_with(|| a[0].cmp(b[0]))
            .then_with(|| ra.cmp(rb))
    });
    let shown = lines_shown(groups.len());
    for (reason, keys) in &groups[..shown] {
        if let [key] = keys[..] {
            s.push_str(&format!("\n{one} {}: {reason}", short_key(key)));
            continue;
        }
        let named: Vec<String> = keys
            .iter()
            .take(KEYS_PER_LINE)
            .map(|k| short_key(k))
            .collect();
        let rest = keys.len().saturating_sub(KEYS_PER_LINE);
        let rest = if rest > 0 {
            format!(" and {rest} more")
        } else {
            String::new()
        };
        s.push_str(&format!("\n{many} {}{rest}: {reason}", named.join(", ")));
    }
    let hidden = &groups[shown..];
    let keys: usize = hidden.iter().map(|(_, k)| k.len()).sum();
    // More than one reason whenever any is hidden (see `lines_shown`).
    more(
        s,
        keys,
        noun,
        &format!(", for {} other reasons", hidden.len()),
    );
}

/// `reason` with its key's place in a URL (`/<encoded key>` followed by the
/// URL's end) said as `/<key>`.
fn without_own_url(reason: &str, key: &str) -> String {
    if key.is_empty() {
        return reason.to_string();
    }
    let needle = format!("/{}", crate::bucket::location::encode_key(key));
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        let ends = after
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || matches!(c, ')' | '?' | '"' | '\'' | ',' | ';'));
        out.push_str(&rest[..i]);
        out.push_str(if ends { "/<key>" } else { &needle });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The line that counts what [`lines_shown`] left out: always several keys
/// (and, for reasons, several reasons), never one.
fn more(s: &mut String, hidden: usize, noun: &str, reasons: &str) {
    if hidden > 0 {
        s.push_str(&format!(
            "\n… and {hidden} more {noun}{reasons} (every key: --json)"
        ));
    }
}

/// How a pass's progress is shown as it goes.
pub enum Shown {
    Nothing,
    /// Redrawn in place (stderr is a terminal).
    Bar(indicatif::ProgressBar),
    /// A line every [`LINE_EVERY`] (stderr is a file or a pipe: a cron
    /// job's log, CI), where a bar draws nothing and a long pass would
    /// otherwise say nothing until it ends. The pass's clock prints them
    /// ([`Tally::tick`]), not the files' completions: a stalled pass is
    /// when a log most needs them.
    Lines {
        model: String,
        started: std::time::Instant,
    },
}

/// How often [`Shown::Lines`] prints: a pass shorter than this prints no
/// progress line at all, only its summary.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

impl Shown {
    pub fn lines(model: &str) -> Shown {
        Shown::Lines {
            model: model.to_string(),
            started: std::time::Instant::now(),
        }
    }
}

/// Collects file results from any number of workers and shows the pass's
/// progress.
pub struct Tally {
    summary: Mutex<PassSummary>,
    shown: Shown,
    /// Keys handed to the model so far, and those it has finished with.
    queued: std::sync::atomic::AtomicU64,
    recorded: std::sync::atomic::AtomicU64,
    /// Set when the listing has ended: until then the count of files to do
    /// grows page by page, and an estimate of the time left would be a
    /// guess on a total not yet known.
    listed_all: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set while the change check asks the bucket about loaded keys.
    checking: std::sync::atomic::AtomicBool,
}

impl Tally {
    /// `listed_all` is the flag [`Tally::listing_ended`] sets, shared
    /// with a bar that hides its estimate until the total is known.
    pub fn new(
        summary: PassSummary,
        shown: Shown,
        listed_all: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Tally {
            summary: Mutex::new(summary),
            shown,
            queued: Default::default(),
            recorded: Default::default(),
            listed_all,
            checking: Default::default(),
        }
    }

    /// Notes whether the change check is asking the bucket (HEADs) about
    /// loaded keys: the progress lines say so, since a pass with nothing
    /// new may spend its time there.
    pub fn checking(&self, on: bool) {
        self.checking
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Notes that every page has been listed: the count of files is final.
    pub fn listing_ended(&self) {
        self.listed_all
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn bar(&self) -> Option<&indicatif::ProgressBar> {
        match &self.shown {
            Shown::Bar(bar) => Some(bar),
            _ => None,
        }
    }

    /// Notes a listed page: `listed` keys, `already` of them loaded before
    /// and `failed_earlier` recorded failed before, and `new` handed to the
    /// model. The change check's findings come later, on their own
    /// ([`Tally::changed`], [`Tally::retrying`]): it asks the bucket, and
    /// the new keys do not wait for its answers.
    pub fn listed(&self, listed: u64, already: u64, failed_earlier: u64, new: u64) {
        let mut s = self.summary.lock().unwrap();
        s.listed += listed;
        s.already_loaded += already;
        s.failed_earlier += failed_earlier;
        self.queue(new);
    }

    /// Counts `n` more keys handed to the model.
    fn queue(&self, n: u64) {
        self.queued
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = self.bar() {
            // Set, not increased: the bar starts with no length, which
            // `inc_length` leaves alone. Serialized by the summary's lock.
            bar.set_length(bar.length().unwrap_or(0) + n);
        }
    }

    /// Notes loaded keys whose object changed since they were loaded.
    pub fn changed(&self, keys: Vec<String>) {
        self.summary.lock().unwrap().etag_changed.extend(keys);
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

    /// Notes `failed` keys (counted as failed earlier when their page was
    /// listed) taken up again: `queued` of them handed to the model (the
    /// rest belong to another shard).
    pub fn retrying(&self, keys: Vec<String>, queued: u64) {
        let mut s = self.summary.lock().unwrap();
        s.failed_earlier = s.failed_earlier.saturating_sub(keys.len() as u64);
        s.retried.extend(keys);
        self.queue(queued);
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
            FileResult::FailedEarlier => s.failed_earlier += 1,
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
            FileResult::NotAttempted => s.not_attempted += 1,
        }
        self.recorded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &self.shown {
            Shown::Nothing => {}
            Shown::Bar(bar) => {
                bar.inc(1);
                let secs = bar.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} rows, {}",
                    s.rows(),
                    crate::pass::rate(s.rows() as f64 / secs, "rows")
                ));
            }
            Shown::Lines { .. } => {}
        }
    }

    /// Prints a progress line now, if progress is shown as lines: the
    /// pass calls it every [`LINE_EVERY`].
    pub fn tick(&self) {
        let Shown::Lines { model, started } = &self.shown else {
            return;
        };
        let rows = self.summary.lock().unwrap().rows();
        let line = progress_line(
            model,
            self.recorded.load(std::sync::atomic::Ordering::Relaxed),
            self.queued.load(std::sync::atomic::Ordering::Relaxed),
            self.listed_all.load(std::sync::atomic::Ordering::Relaxed),
            self.checking.load(std::sync::atomic::Ordering::Relaxed),
            rows,
            started.elapsed(),
        );
        crate::esayln!("{line}");
    }

    /// Notes the time of the measured phase (see [`PassSummary::timed_secs`]).
    pub fn timed(&self, secs: f64) {
        self.summary.lock().unwrap().timed_secs = Some(secs);
    }

    pub fn finish(self, elapsed: Duration) -> PassSummary {
        if let Some(bar) = self.bar() {
            bar.finish_and_clear();
        }
        let mut s = self.summary.into_inner().unwrap();
        s.elapsed_secs = elapsed.as_secs_f64();
        s
    }
}

/// One line of [`Shown::Lines`]: `async: 1,234/10,000 files, 56,789 rows,
/// 41.2 files/s, 30 s elapsed`; while the listing goes on, the count of
/// files is the listed so far, and says so; while the change check asks
/// the bucket about loaded keys, the line says that too (a pass with
/// nothing new may spend all of its time there).
fn progress_line(
    model: &str,
    done: u64,
    queued: u64,
    listed_all: bool,
    checking: bool,
    rows: u64,
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "{model}: {}/{} files{}, {} rows, {}, {:.0} s elapsed{}",
        grouped(done),
        grouped(queued),
        if listed_all { "" } else { " listed so far" },
        grouped(rows),
        crate::pass::rate(done as f64 / secs, "files"),
        elapsed.as_secs_f64(),
        if checking {
            "; checking the loaded objects for changes"
        } else {
            ""
        }
    )
}

/// Writes a report to stdout ([`crate::say!`]). Every error is dropped:
/// stdout is a copy of what the run writes to its files, and a reader that
/// went away early (`| head`) must not cost the run those files, as
/// `println!`'s panic did.
pub fn stdout(text: std::fmt::Arguments) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text).and_then(|()| out.flush());
}

/// Writes a line of progress or an error to stderr ([`crate::esay!`]),
/// dropping every error: `compare 2>&1 | head -1` ended the comparison with
/// a panic at its second line, before it wrote a file.
pub fn stderr(text: std::fmt::Arguments) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// `1 request`, `2 requests`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `88851` as `88,851`: figures a reader compares at a glance (chart labels).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Characters of a key shown in an error or log line.
const KEY_SHOWN: usize = 100;

/// Unicode's invisible formatting characters: bidirectional embeddings,
/// overrides and isolates, zero-width spaces and joiners, the byte-order
/// mark; and the line and paragraph separators, which some terminals and
/// editors break a line at.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180E}'
        | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{2028}' | '\u{2029}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// A key as an error or log line shows it: whole when short, else its first
/// hundred characters and its length in bytes, so a 4 KB key cannot bury
/// the message it is part of. Control characters are escaped so that a key
/// holding a newline still yields one line, and invisible formatting
/// characters so that a key cannot pass for another.
pub fn short_key(key: &str) -> String {
    match key.char_indices().nth(KEY_SHOWN) {
        None => printable(key),
        Some((at, _)) => format!("{}… ({} bytes)", printable(&key[..at]), key.len()),
    }
}

/// Text from outside (a key, a server's error message) made safe to print:
/// control characters escaped, so that it stays one line and cannot move
/// the cursor, clear the screen or retitle the terminal (a carriage return
/// would let it overwrite the start of its own line), and invisible
/// formatting characters escaped, so that it cannot pass for other text.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if is_invisible(c) {
            // Bidi overrides and zero-width characters would let a key
            // display as another (`rtl\u{202e}gnp.json` as `rtlnosj.png`).
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// JSON made safe for a terminal: besides what JSON itself escapes, C1
/// controls (U+0080–U+009F: U+009B is a one-byte CSI to many terminals)
/// and invisible formatting characters are written as `\uXXXX`. The text
/// reads back the same; printed raw, a key could have driven the terminal
/// or passed for another, as [`short_key`] prevents in the text output.
pub fn terminal_json(value: &impl Serialize) -> serde_json::Result<String> {
    struct TerminalSafe;
    impl serde_json::ser::Formatter for TerminalSafe {
        fn write_string_fragment<W>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()>
        where
            W: ?Sized + std::io::Write,
        {
            let mut plain = 0;
            for (i, c) in fragment.char_indices() {
                if c.is_control() || is_invisible(c) {
                    w.write_all(&fragment.as_bytes()[plain..i])?;
                    // JSON's escapes are UTF-16 units: a surrogate pair for
                    // the tag characters beyond the Basic Multilingual Plane.
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        write!(w, "\\u{unit:04x}")?;
                    }
                    plain = i + c.len_utf8();
                }
            }
            w.write_all(&fragment.as_bytes()[plain..])
        }
    }
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        TerminalSafe,
    ))?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
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
    fn reasons_from_a_server_cannot_drive_the_terminal() {
        let summary = PassSummary {
            failed: vec![KeyReason {
                key: "a.json".into(),
                reason: "PostgreSQL refused it (P0001): a\r\tb\u{1b}[31mRED".into(),
            }],
            ..Default::default()
        };
        let text = summary.render();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains(
                "failed file a.json: PostgreSQL refused it (P0001): a\\r\\tb\\u{1b}[31mRED"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_for_a_terminal_escapes_c1_controls_and_invisible_characters() {
        let key = "c\u{9b}2J\u{202e}gnp.json\tok é a\u{E0061}.json";
        let json = terminal_json(&serde_json::json!({ "key": key })).unwrap();
        assert_eq!(
            json,
            r#"{"key":"c\u009b2J\u202egnp.json\tok é a\udb40\udc61.json"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["key"], key, "the same text when read back");
    }

    #[test]
    fn a_progress_line_says_when_the_count_of_files_is_not_final() {
        let line = super::progress_line(
            "async",
            1234,
            10_000,
            true,
            false,
            56_789,
            std::time::Duration::from_secs(30),
        );
        assert_eq!(
            line,
            "async: 1,234/10,000 files, 56,789 rows, 41.1 files/s, 30 s elapsed"
        );
        let listing = super::progress_line(
            "sync",
            3,
            1000,
            false,
            false,
            0,
            std::time::Duration::from_secs(10),
        );
        assert!(
            listing.starts_with("sync: 3/1,000 files listed so far, 0 rows, 0.30 files/s"),
            "{listing}"
        );
        // A quiet pass whose time goes to the change check.
        let checking = super::progress_line(
            "async",
            0,
            0,
            true,
            true,
            0,
            std::time::Duration::from_secs(20),
        );
        assert_eq!(
            checking,
            "async: 0/0 files, 0 rows, 0.00 files/s, 20 s elapsed; checking the loaded objects for changes"
        );
    }

    #[test]
    fn figures_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(7022), "7,022");
        assert_eq!(grouped(88851), "88,851");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }

    #[test]
    fn the_timed_phase_line_carries_the_workers_cpu() {
        let line = timed_phase_line();
        let cpu = read_timed_phase_line(&line).unwrap();
        assert!((0.0..1e6).contains(&cpu), "{line}");
        assert_eq!(read_timed_phase_line(TIMED_PHASE_STARTS), None);
        assert_eq!(read_timed_phase_line("error: something"), None);
        let first = first_body_line(0.25);
        let (at, cpu) = read_first_body_line(&first).unwrap();
        assert_eq!(at, 0.25, "{first}");
        assert!((0.0..1e6).contains(&cpu), "{first}");
        assert_eq!(
            read_first_body_line(&line),
            None,
            "one line is not the other"
        );
        assert_eq!(read_timed_phase_line(&first), None);
    }

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
    fn counts_read_in_the_singular_and_the_plural() {
        let one = PassSummary {
            listed: 1,
            loaded: 1,
            requests: 1,
            retries: 1,
            rejected: 1,
            ..Default::default()
        };
        let text = one.render();
        assert!(text.starts_with("1 file listed: 1 loaded"), "{text}");
        assert!(text.contains("1 rejected record,"), "{text}");
        assert!(text.contains("1 request (1 retry)"), "{text}");
        let two = PassSummary {
            listed: 2,
            requests: 2,
            ..Default::default()
        };
        assert!(two.render().contains("2 requests (0 retries)"));
    }

    #[test]
    fn many_keys_failing_alike_share_a_line_and_the_summary_stays_short() {
        let kr = |key: String, reason: String| KeyReason { key, reason };
        // A bucket that went away: 512 keys answered 500, each reason naming
        // its own URL; then 5 keys whose connection closed, and one key
        // whose 500 names another key's URL (not its own).
        let mut fetch_errors: Vec<KeyReason> = (0..512)
            .map(|i| {
                let key = format!("k/{i:04} é.json");
                let url = format!("http://h:1/sim/k/{i:04}%20%C3%A9.json");
                kr(key, format!("HTTP 500 for {url} (gave up after 1 attempt)"))
            })
            .collect();
        fetch_errors.insert(
            3,
            kr(
                "odd.json".into(),
                "HTTP 500 for http://h:1/sim/odd.json.bak".into(),
            ),
        );
        fetch_errors.extend((0..5).map(|i| kr(format!("c{i}.json"), "connection closed".into())));
        let failed = (0..14)
            .map(|i| kr(format!("f{i:02}.json"), format!("not JSON at byte {i}")))
            .collect();
        let s = PassSummary {
            fetch_errors,
            failed,
            missing: (0..12).rev().map(|i| format!("m{i:02}.json")).collect(),
            ..Default::default()
        };
        let text = s.render();
        let lines: Vec<&str> = text.lines().collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
        };
        // The commonest reason first, its keys' URLs said once as <key>.
        let big = at(
            "not fetched, will retry next pass: k/0000 é.json, k/0001 é.json, k/0002 é.json \
             and 509 more: HTTP 500 for http://h:1/sim/<key> (gave up after 1 attempt)",
        );
        let closed = at(
            "not fetched, will retry next pass: c0.json, c1.json, c2.json and 2 more: connection closed",
        );
        let odd = at(
            "not fetched, will retry next pass: odd.json: HTTP 500 for http://h:1/sim/odd.json.bak",
        );
        assert!(big < closed && closed < odd, "{text}");
        at("failed file f09.json: not JSON at byte 9");
        assert!(!text.contains("f10.json"), "{text}");
        at("… and 4 more failed files, for 4 other reasons (every key: --json)");
        // In key order, whatever order they came in.
        assert_eq!(
            at("missing (404): m00.json") + 9,
            at("missing (404): m09.json")
        );
        assert_eq!(
            at("… and 2 more missing keys"),
            at("missing (404): m09.json") + 1
        );
        assert!(lines.len() < 40, "{text}");
    }

    #[test]
    fn the_same_failures_always_read_the_same() {
        let kr = |key: &str, reason: &str| KeyReason {
            key: key.into(),
            reason: reason.into(),
        };
        // Eleven reasons of one key each: all eleven shown (a line saying
        // one is hidden would take the same room), ties in key order.
        let mut items: Vec<KeyReason> = (0..11)
            .rev()
            .map(|i| kr(&format!("f{i:02}.json"), &format!("reason {i}")))
            .collect();
        let render = |items: &[KeyReason]| {
            PassSummary {
                failed: items.to_vec(),
                ..Default::default()
            }
            .render()
        };
        let text = render(&items);
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("failed file "))
            .collect();
        assert_eq!(failed.len(), 11, "{text}");
        assert_eq!(failed[0], "failed file f00.json: reason 0");
        assert!(!text.contains("more"), "{text}");
        items.reverse();
        assert_eq!(
            render(&items),
            text,
            "the order they came in does not matter"
        );
        // Hidden keys counted in the singular and the plural.
        let s = PassSummary {
            busy: (0..13).map(|i| format!("b{i:02}")).collect(),
            ..Default::default()
        };
        assert!(
            s.render()
                .contains("\n… and 3 more busy keys (every key: --json)")
        );
        let s = PassSummary {
            busy: (0..12).map(|i| format!("b{i:02}")).collect(),
            ..Default::default()
        };
        assert!(s.render().contains("\n… and 2 more busy keys"));
    }

    #[test]
    fn keys_cannot_pass_for_others() {
        assert_eq!(short_key("rtl\u{202e}gnp.json"), "rtl\\u{202e}gnp.json");
        assert_eq!(short_key("zw\u{200b}sp.json"), "zw\\u{200b}sp.json");
        assert_eq!(short_key("ls\u{2028}.json"), "ls\\u{2028}.json");
        assert_eq!(short_key("plain é.json"), "plain é.json");
    }

    #[test]
    fn a_quiet_watch_pass_is_one_timestamped_line() {
        use chrono::TimeZone as _;
        let at = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let quiet = PassSummary {
            listed: 3,
            already_loaded: 2,
            failed_earlier: 1,
            ..Default::default()
        };
        assert_eq!(
            quiet.render_timestamped(at),
            "2026-01-02 03:04:05 nothing new: 3 files listed (2 already loaded, 1 failed earlier) in 0.00 s"
        );
        let busy = PassSummary {
            listed: 1,
            loaded: 1,
            ..Default::default()
        };
        let text = busy.render_timestamped(at);
        assert!(
            text.starts_with("2026-01-02 03:04:05\n1 file listed"),
            "{text}"
        );
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééééé", 2), "éé…");
    }
}
