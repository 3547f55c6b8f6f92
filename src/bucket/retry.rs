//! Retry with exponential backoff and jitter (each wait drawn between half and all of its ceiling, AWS's scheme:
//! spread the retries of many clients so they do not hit the bucket in
//! lock-step), and the retry loop both HTTP clients share: it tells the
//! pass's breaker ([`super::breaker`]) what each attempt found, and says
//! retries at `warn` a line a second at most.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first retry goes out almost at once, on a fresh connection: a
    /// single slow or failed GET is usually a bad connection, not a
    /// loaded bucket.
    pub first_delay: Duration,
    /// Later retries wait up to base, 2×base, 4×base… (capped).
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            first_delay: Duration::from_millis(100),
            base: Duration::from_secs(2),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt` (2 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        use rand::RngExt as _;
        let ceiling = if attempt <= 2 {
            self.first_delay
        } else {
            let exp = self.base.saturating_mul(1u32 << (attempt - 3).min(16));
            exp.min(self.cap)
        };
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::rng().random_range(ms / 2..=ms)
        })
    }
}

/// One request's retry bookkeeping, shared by both HTTP clients so that
/// they count, give up, wait and tell the pass's breaker alike; only the
/// sleeping differs.
pub(crate) struct Retrier<'a> {
    policy: &'a RetryPolicy,
    stats: &'a super::NetStats,
    url: &'a str,
    attempt: u32,
    /// Say each retry at `warn` (see [`Retrier::announced`]).
    announce: bool,
    /// The last attempt's failure, for the error when the breaker trips
    /// during the wait after it.
    last: Option<String>,
}

impl<'a> Retrier<'a> {
    pub(crate) fn new(policy: &'a RetryPolicy, stats: &'a super::NetStats, url: &'a str) -> Self {
        Retrier {
            policy,
            stats,
            url,
            attempt: 0,
            announce: false,
            last: None,
        }
    }

    /// Says every retry at `warn` instead of at most one a second: for
    /// requests nothing else happens during (the listing), so that a
    /// bucket that does not answer is not seconds of silence before the
    /// error.
    pub(crate) fn announced(mut self) -> Self {
        self.announce = true;
        self
    }

    /// Counts a request about to be sent; an error instead when the
    /// pass's breaker has declared the bucket unreachable (the request
    /// is not sent: [`super::FetchError::NotAttempted`] on a first attempt,
    /// the last failure on a retry).
    pub(crate) fn begin(&mut self) -> Result<(), super::FetchError> {
        if self.stats.breaker.is_open() {
            return Err(match self.last.take() {
                None => super::FetchError::NotAttempted,
                Some(why) => super::FetchError::Transient(why, self.attempt),
            });
        }
        self.attempt += 1;
        self.stats.add(&self.stats.requests, 1);
        // Every request at trace level, its URL shown without secrets (the
        // HTTP clients' own request logs are capped below trace for that reason).
        tracing::trace!(
            url = super::location::shown(self.url),
            attempt = self.attempt,
            "request"
        );
        Ok(())
    }

    /// The attempt succeeded: the bucket answers.
    pub(crate) fn succeeded(&self) {
        self.stats.breaker.answered();
    }

    /// After a failed attempt: how long to wait before the next one, or the
    /// final error when the attempts are used up, the failure is permanent
    /// or the bucket has been declared unreachable.
    pub(crate) fn failed(
        &mut self,
        outcome: super::sync_client::Attempt,
    ) -> Result<Duration, super::FetchError> {
        use super::sync_client::Attempt;
        let why = match outcome {
            Attempt::Fail(e) => {
                self.stats.breaker.answered();
                return Err(e);
            }
            Attempt::Retry(why) => {
                self.stats.breaker.answered();
                why
            }
            Attempt::Lost(why, how) => {
                self.stats.breaker.lost(how);
                why
            }
            // Fetched again at once, and not counted as an attempt.
            Attempt::Outgrew => {
                self.stats.breaker.answered();
                self.attempt -= 1;
                return Ok(Duration::ZERO);
            }
        };
        if self.attempt >= self.policy.max_attempts
            || self.stats.breaker.is_open()
            || !self.stats.may_retry()
        {
            return Err(super::FetchError::Transient(why, self.attempt));
        }
        self.stats.add(&self.stats.retries, 1);
        let wait = self.policy.delay(self.attempt + 1);
        let line = retry_line(&why, self.attempt, self.policy.max_attempts, wait);
        let url = super::location::shown(self.url);
        if self.announce {
            tracing::warn!(url, "{line}");
        } else {
            self.stats.retry_log.say(&line, &url);
        }
        self.last = Some(why);
        Ok(wait)
    }
}

/// Says object retries at `warn` without flooding: at most one line a
/// second, naming how many others came since the last one; the others go
/// to `info` (`-v` shows every retry). With 256 files in flight on a
/// bucket that stopped answering, that is one line a second instead of
/// hundreds.
#[derive(Debug, Default)]
pub(crate) struct RetryLog {
    state: std::sync::Mutex<LogState>,
    /// Every retry at `info` only: for requests whose caller sums up
    /// their failures in a line of its own (the change check's HEADs).
    quiet: bool,
}

#[derive(Debug, Default)]
struct LogState {
    last_shown: Option<std::time::Instant>,
    held_back: u64,
}

/// The shortest time between two retry lines at `warn`.
const RETRY_LINE_EVERY: Duration = Duration::from_secs(1);

impl RetryLog {
    /// A log that says every retry at `info` only (see `quiet`).
    pub(crate) fn quiet() -> Self {
        RetryLog {
            quiet: true,
            ..RetryLog::default()
        }
    }

    fn say(&self, line: &str, url: &str) {
        if self.quiet {
            tracing::info!(url, "{line}");
            return;
        }
        let now = std::time::Instant::now();
        let held_back = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match s.last_shown {
                Some(t) if now.duration_since(t) < RETRY_LINE_EVERY => {
                    s.held_back += 1;
                    None
                }
                Some(t) => {
                    s.last_shown = Some(now);
                    Some((std::mem::take(&mut s.held_back), now.duration_since(t)))
                }
                None => {
                    s.last_shown = Some(now);
                    Some((0, Duration::ZERO))
                }
            }
        };
        match held_back {
            None => tracing::info!(url, "{line}"),
            Some((0, _)) => tracing::warn!(url, "{line}"),
            Some((n, since)) => tracing::warn!(url, "{line} ({})", others(n, since)),
        }
    }
}

/// "and 37 other retries in the last 1.2 s (-v shows each)".
fn others(n: u64, since: Duration) -> String {
    format!(
        "and {} in the last {:.1} s; -v shows each",
        crate::report::plural(n, "other retry", "other retries"),
        since.as_secs_f64()
    )
}

/// What a retry says: what failed, which attempt of how many, and when
/// the next one goes.
pub fn retry_line(why: &str, attempt: u32, of: u32, wait: Duration) -> String {
    format!(
        "{why}: attempt {attempt} of {of} failed, next try in {:.1} s",
        wait.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_line_says_what_failed_the_attempt_and_the_wait() {
        assert_eq!(
            retry_line("HTTP 503 for x", 2, 5, Duration::from_millis(1500)),
            "HTTP 503 for x: attempt 2 of 5 failed, next try in 1.5 s"
        );
    }

    #[test]
    fn held_back_retries_are_counted_in_the_next_line() {
        assert_eq!(
            others(37, Duration::from_millis(1200)),
            "and 37 other retries in the last 1.2 s; -v shows each"
        );
        let log = RetryLog::default();
        log.say("a", "u");
        log.say("b", "u");
        log.say("c", "u");
        let s = log.state.lock().unwrap();
        assert_eq!(s.held_back, 2, "two lines within the second were held back");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(2) <= Duration::from_millis(100));
        assert!(p.delay(3) >= Duration::from_secs(1) && p.delay(3) <= Duration::from_secs(2));
        assert!(p.delay(4) >= Duration::from_secs(2) && p.delay(4) <= Duration::from_secs(4));
        assert!(p.delay(30) <= Duration::from_secs(20));
    }
}
