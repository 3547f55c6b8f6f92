//! Retry with exponential backoff and jitter (each wait drawn between half and all of its ceiling, AWS's scheme:
//! spread the retries of many clients so they do not hit the bucket in
//! lock-step).

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
/// they count, give up and wait alike; only the sleeping differs.
pub(crate) struct Retrier<'a> {
    policy: &'a RetryPolicy,
    stats: &'a super::NetStats,
    url: &'a str,
    attempt: u32,
    /// Say each retry at `warn` (see [`Retrier::announced`]).
    announce: bool,
}

impl<'a> Retrier<'a> {
    pub(crate) fn new(policy: &'a RetryPolicy, stats: &'a super::NetStats, url: &'a str) -> Self {
        Retrier {
            policy,
            stats,
            url,
            attempt: 0,
            announce: false,
        }
    }

    /// Says each retry at `warn` instead of `info`: for requests nothing
    /// else happens during (the listing), so that a bucket that does not
    /// answer is not seconds of silence before the error.
    pub(crate) fn announced(mut self) -> Self {
        self.announce = true;
        self
    }

    /// Counts a request about to be sent.
    pub(crate) fn begin(&mut self) {
        self.attempt += 1;
        self.stats.add(&self.stats.requests, 1);
        // Every request at trace level, its URL shown without secrets (the
        // HTTP clients' own request logs are capped below trace for that reason).
        tracing::trace!(
            url = super::location::shown(self.url),
            attempt = self.attempt,
            "request"
        );
    }

    /// After a failed attempt: how long to wait before the next one, or the
    /// final error when the attempts are used up or the failure is permanent.
    pub(crate) fn failed(
        &self,
        outcome: super::sync_client::Attempt,
    ) -> Result<Duration, super::FetchError> {
        match outcome {
            super::sync_client::Attempt::Fail(e) => Err(e),
            super::sync_client::Attempt::Retry(why) if self.attempt >= self.policy.max_attempts => {
                Err(super::FetchError::Transient(why, self.attempt))
            }
            super::sync_client::Attempt::Retry(why) => {
                self.stats.add(&self.stats.retries, 1);
                let wait = self.policy.delay(self.attempt + 1);
                let line = retry_line(&why, self.attempt, self.policy.max_attempts, wait);
                let url = super::location::shown(self.url);
                if self.announce {
                    tracing::warn!(url, "{line}");
                } else {
                    tracing::info!(url, "{line}");
                }
                Ok(wait)
            }
        }
    }
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
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(2) <= Duration::from_millis(100));
        assert!(p.delay(3) >= Duration::from_secs(1) && p.delay(3) <= Duration::from_secs(2));
        assert!(p.delay(4) >= Duration::from_secs(2) && p.delay(4) <= Duration::from_secs(4));
        assert!(p.delay(30) <= Duration::from_secs(20));
    }
}
