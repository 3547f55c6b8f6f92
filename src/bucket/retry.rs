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
        Duration::from_millis(if ms == 0 { 0 } else { rand::rng().random_range(ms / 2..=ms) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(2) <= Duration::from_millis(100));
        assert!(p.delay(3) >= Duration::from_secs(1) && p.delay(3) <= Duration::from_secs(2));
        assert!(p.delay(4) >= Duration::from_secs(2) && p.delay(4) <= Duration::from_secs(4));
        assert!(p.delay(30) <= Duration::from_secs(20));
    }
}
