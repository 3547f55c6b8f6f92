//! The pass's circuit breaker: when every request for a while has gone
//! unanswered (timed out, refused, reset), the bucket is declared
//! unreachable and the pass stops starting files, instead of spending each
//! file's full retry schedule (about 20 s) on a bucket that is not there:
//! 10,000 files would otherwise take 14 minutes at 256 in flight and 58
//! hours one at a time.
//!
//! Every request of a pass reports here through the clients' retry path
//! ([`super::retry::Retrier`]): any HTTP answer (a 404, a 403, a 503, a
//! body) resets the streak; a transport failure extends it. The breaker
//! trips when the streak is at least [`BreakerConfig::requests`] long *and*
//! has lasted [`BreakerConfig::window`]: both, so neither a burst of
//! hundreds of in-flight requests failing in the same second nor one
//! object stalling through its own five attempts can trip it. Once
//! tripped it stays tripped for the pass: waits between retries end at
//! once, requests not yet sent are not sent, and the pass ends with one
//! line (see `pass::Unreachable`).
//!
//! [`Streak`] is the sans-IO rule; [`Breaker`] shares it between threads
//! and tasks and wakes their backoff sleeps when it trips.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a request went unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// No connection, headers or body bytes within the client's timeout.
    TimedOut,
    /// The connection was refused (nothing listening).
    Refused,
    /// The connection was reset, closed or failed otherwise.
    Broken,
    /// The server answered with something that is not HTTP (a bad status
    /// line, malformed or oversized headers, a broken chunked body).
    Garbled,
    /// The headers came, but the body arrived slower than the minimum
    /// rate: a bucket that trickles every object serves nothing, and must
    /// end a pass as surely as one that is silent.
    TooSlow,
    /// The server answered, but only with 5xx: an answer that says the
    /// bucket cannot serve. A storm of them must end a pass as surely as
    /// silence, or `sync` retries each file for seconds, for hours.
    ServerError,
}

impl Lost {
    /// How a streak of these reads: "N consecutive requests timed out".
    fn verb(self) -> &'static str {
        match self {
            Lost::TimedOut => "timed out",
            Lost::TooSlow => "sent their bodies slower than --min-download-rate",
            Lost::Refused => "were refused",
            Lost::Broken => "failed (reset or closed)",
            Lost::Garbled => {
                "were answered with something that is not HTTP (a bad status line, headers or body framing)"
            }
            Lost::ServerError => "were answered with a server error (HTTP 5xx)",
        }
    }
}

/// When the bucket is declared unreachable (`--unreachable-after`,
/// `--unreachable-requests`).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Unanswered requests in a row, at least.
    pub requests: u64,
    /// For at least this long since the first of them.
    pub window: Duration,
}

impl Default for BreakerConfig {
    /// 10 requests over 30 s. Ten is two files' worth of the default five
    /// attempts, so the `sync` model's one object stalling on every
    /// attempt cannot trip it alone. 15 s is shorter than one file's whole
    /// retry schedule (about 21 s with the default timeouts): a stoppage
    /// either ends within the window, and the retries ride it out, or
    /// trips the breaker before the files in flight run out of attempts
    /// (at 30 s, a bucket back after 21–30 s cost every file in flight a
    /// fetch error and the pass went on as if nothing had happened).
    fn default() -> Self {
        BreakerConfig {
            requests: 10,
            window: Duration::from_secs(15),
        }
    }
}

/// What tripped the breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// Unanswered requests in a row.
    pub requests: u64,
    /// Since the first of them.
    pub over: Duration,
    /// How they failed, when all failed alike.
    pub how: Option<Lost>,
}

impl Trip {
    /// "12 consecutive requests timed out over 31 s".
    pub fn describe(&self) -> String {
        format!(
            "{} consecutive requests {} over {:.0} s",
            self.requests,
            self.how.map_or("got no answer", Lost::verb),
            self.over.as_secs_f64()
        )
    }
}

/// The run of unanswered requests since the last answer: the breaker's
/// rule, without clocks or locks.
#[derive(Debug, Default, Clone)]
pub struct Streak {
    requests: u64,
    since: Option<Instant>,
    /// `Some(None)` once failures of different kinds were seen.
    how: Option<Option<Lost>>,
}

impl Streak {
    /// An answer came: the bucket is there.
    pub fn answered(&mut self) {
        *self = Streak::default();
    }

    /// A request went unanswered at `now`; the trip, if this one makes the
    /// streak long enough by both measures.
    pub fn lost(&mut self, how: Lost, now: Instant, cfg: &BreakerConfig) -> Option<Trip> {
        self.requests += 1;
        let since = *self.since.get_or_insert(now);
        self.how = Some(match self.how {
            None => Some(how),
            Some(h) if h == Some(how) => h,
            Some(_) => None,
        });
        let over = now.saturating_duration_since(since);
        (self.requests >= cfg.requests.max(1) && over >= cfg.window).then(|| Trip {
            requests: self.requests,
            over,
            how: self.how.flatten(),
        })
    }
}

/// A pass's breaker, shared by every client of the pass (it lives in the
/// pass's [`super::NetStats`]).
#[derive(Debug, Default)]
pub struct Breaker {
    cfg: BreakerConfig,
    open: AtomicBool,
    state: Mutex<(Streak, Option<Trip>)>,
    /// Wakes blocking backoff sleeps when it trips.
    tripped: Condvar,
    /// Wakes async backoff sleeps when it trips.
    notify: tokio::sync::Notify,
    /// Trips without a word: a breaker of requests whose caller reports
    /// the outcome itself (the change check's HEADs), where "bucket
    /// unreachable; starting no more files" would not be true.
    quiet: bool,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            ..Breaker::default()
        }
    }

    /// A breaker that trips as [`Breaker::new`]'s does, without saying so.
    pub fn quiet(cfg: BreakerConfig) -> Self {
        Breaker {
            quiet: true,
            ..Breaker::new(cfg)
        }
    }

    /// Whether the bucket has been declared unreachable.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// What tripped it, once it has.
    pub fn trip(&self) -> Option<Trip> {
        if !self.is_open() {
            return None;
        }
        self.lock().1.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Streak, Option<Trip>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request got an HTTP answer (or a body).
    pub fn answered(&self) {
        if self.is_open() {
            return;
        }
        self.lock().0.answered();
    }

    /// A request went unanswered.
    pub fn lost(&self, how: Lost) {
        if self.is_open() {
            return;
        }
        let mut state = self.lock();
        if state.1.is_some() {
            return;
        }
        if let Some(trip) = state.0.lost(how, Instant::now(), &self.cfg) {
            if !self.quiet {
                tracing::warn!(
                    "bucket unreachable: {}; starting no more files (see --unreachable-after)",
                    trip.describe()
                );
            }
            state.1 = Some(trip);
            self.open.store(true, Ordering::Release);
            drop(state);
            self.tripped.notify_all();
            self.notify.notify_waiters();
        }
    }

    /// Sleeps `d` on this thread, or less if the breaker trips meanwhile.
    pub fn sleep_blocking(&self, d: Duration) {
        let state = self.lock();
        let _ = self
            .tripped
            .wait_timeout_while(state, d, |_| !self.is_open());
    }

    /// Sleeps `d` on this task, or less if the breaker trips meanwhile.
    pub async fn sleep(&self, d: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a trip in between still wakes it.
        notified.as_mut().enable();
        if self.is_open() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = notified => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            requests: 3,
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn trips_only_when_the_streak_is_long_enough_in_both_count_and_time() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut streak = Streak::default();
        // A burst: many in one second is not enough.
        for _ in 0..100 {
            assert_eq!(streak.lost(Lost::TimedOut, s(1), &cfg()), None);
        }
        let mut slow = Streak::default();
        // Long enough but too few: one object's own attempts.
        assert_eq!(slow.lost(Lost::TimedOut, s(0), &cfg()), None);
        assert_eq!(slow.lost(Lost::TimedOut, s(20), &cfg()), None);
        let trip = slow.lost(Lost::TimedOut, s(30), &cfg()).unwrap();
        assert_eq!(
            trip.describe(),
            "3 consecutive requests timed out over 30 s"
        );
        assert_eq!(
            streak
                .lost(Lost::Refused, s(11), &cfg())
                .unwrap()
                .describe(),
            "101 consecutive requests got no answer over 10 s"
        );
    }

    #[test]
    fn an_answer_resets_the_streak() {
        let t0 = Instant::now();
        let mut streak = Streak::default();
        streak.lost(Lost::Refused, t0, &cfg());
        streak.lost(Lost::Refused, t0, &cfg());
        streak.answered();
        let later = t0 + Duration::from_secs(60);
        assert_eq!(streak.lost(Lost::Refused, later, &cfg()), None);
        assert_eq!(streak.lost(Lost::Refused, later, &cfg()), None);
        assert_eq!(
            streak.lost(Lost::Refused, later, &cfg()),
            None,
            "the window starts again"
        );
    }

    #[test]
    fn a_trip_wakes_sleepers_at_once_and_stays() {
        let b = std::sync::Arc::new(Breaker::new(BreakerConfig {
            requests: 1,
            window: Duration::ZERO,
        }));
        let sleeper = {
            let b = b.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                b.sleep_blocking(Duration::from_secs(30));
                t.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        b.lost(Lost::TimedOut);
        assert!(sleeper.join().unwrap() < Duration::from_secs(5));
        b.answered();
        assert!(b.is_open() && b.trip().is_some());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), b.sleep(Duration::from_secs(30)))
                .await
                .expect("an open breaker does not sleep");
        });
    }
}
