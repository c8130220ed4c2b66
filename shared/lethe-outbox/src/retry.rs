//! The retry policy: how many attempts a message gets and how long to wait between them (exponential
//! backoff, capped, with jitter).

use std::time::Duration;

use lethe_domain::UtcMicros;

use crate::{MessageId, OutboxError, Result};

/// How a failed delivery is retried.
///
/// After the `n`-th failed attempt (`n ≥ 1`) the next one waits `min(base_delay · 2^(n-1), max_delay)`,
/// shortened by up to `jitter` of itself (a fraction in `0..=1`), so retries of many messages spread out.
/// The jitter is drawn from the message id and `n`: reproducible for a message, different across messages.
/// After `max_attempts` attempts without success the message is dead-lettered.
///
/// The default (8 attempts, 1 min base, 6 h cap, 20 % jitter) retries for about two hours.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// The largest fraction by which a wait may be shortened, in `0..=1`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(6 * 3600),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy.
    ///
    /// # Errors
    /// [`OutboxError::InvalidRetryPolicy`] if `max_attempts` is 0, `base_delay` exceeds `max_delay`, or
    /// `jitter` is not a number in `0..=1`.
    pub fn validate(&self) -> Result<()> {
        if self.max_attempts == 0 {
            return Err(OutboxError::InvalidRetryPolicy("max_attempts must be at least 1"));
        }
        if self.base_delay > self.max_delay {
            return Err(OutboxError::InvalidRetryPolicy("base_delay exceeds max_delay"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(OutboxError::InvalidRetryPolicy("jitter must be within 0..=1"));
        }
        Ok(())
    }

    /// The wait after `failed_attempts` failures (at least 1) of message `id`, jitter included.
    #[must_use]
    pub fn delay(&self, id: MessageId, failed_attempts: u32) -> Duration {
        let n = failed_attempts.max(1);
        let base = self.base_delay.as_micros();
        let grown = base.saturating_mul(1u128 << (n - 1).min(64));
        let capped = grown.min(self.max_delay.as_micros());
        let capped = u64::try_from(capped).unwrap_or(u64::MAX);
        let cut = if self.jitter > 0.0 { (capped as f64 * self.jitter * unit(id, n)) as u64 } else { 0 };
        Duration::from_micros(capped.saturating_sub(cut))
    }

    /// When the next attempt is due, after `failed_attempts` failures with the last one at `at`.
    #[must_use]
    pub fn next_attempt_at(&self, id: MessageId, failed_attempts: u32, at: UtcMicros) -> UtcMicros {
        let delay = i64::try_from(self.delay(id, failed_attempts).as_micros()).unwrap_or(i64::MAX);
        UtcMicros(at.0.saturating_add(delay))
    }
}

/// A number in `[0, 1)` derived from the message id's random bits and the attempt number (splitmix64).
fn unit(id: MessageId, n: u32) -> f64 {
    let b = id.as_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&b[8..]);
    let mut x = u64::from_be_bytes(low) ^ u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy { max_attempts: 8, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(10), jitter }
    }

    #[test]
    fn doubles_then_caps_without_jitter() {
        let p = policy(0.0);
        let id = MessageId::new_v7();
        let secs: Vec<u64> = (1..=7).map(|n| p.delay(id, n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(p.delay(id, 0), Duration::from_secs(1));
        assert_eq!(p.delay(id, u32::MAX), Duration::from_secs(10));
        assert_eq!(p.next_attempt_at(id, 2, UtcMicros(5)), UtcMicros(2_000_005));
    }

    #[test]
    fn jitter_shortens_within_bounds_and_spreads() {
        let p = policy(0.5);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..200 {
            let id = MessageId::new_v7();
            for n in 1..=8 {
                let plain = policy(0.0).delay(id, n);
                let d = p.delay(id, n);
                assert!(d <= plain && d >= plain / 2, "{d:?} vs {plain:?}");
                assert_eq!(d, p.delay(id, n), "reproducible");
            }
            distinct.insert(p.delay(id, 1));
        }
        assert!(distinct.len() > 100, "jitter spreads retries: {}", distinct.len());
    }

    #[test]
    fn validates() {
        assert!(RetryPolicy::default().validate().is_ok());
        assert!(RetryPolicy { max_attempts: 0, ..policy(0.0) }.validate().is_err());
        assert!(RetryPolicy { jitter: 1.5, ..policy(0.0) }.validate().is_err());
        assert!(RetryPolicy { jitter: f64::NAN, ..policy(0.0) }.validate().is_err());
        assert!(RetryPolicy { base_delay: Duration::from_secs(11), ..policy(0.0) }.validate().is_err());
    }
}
