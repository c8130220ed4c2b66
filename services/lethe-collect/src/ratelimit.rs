//! Rate limits per client address (checked before any token is verified) and per key (a site's
//! write key, or a token's id): token buckets in memory, refilled continuously.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// A rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// The limits of the collection edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub per_address: Rate,
    pub per_key: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_address: Rate { per_second: 1_000.0, burst: 2_000.0 },
            per_key: Rate { per_second: 20_000.0, burst: 40_000.0 },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Bucket {
    Address(IpAddr),
    Key(String),
}

/// Buckets; forgotten once full again, so memory follows the number of active clients.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    buckets: Mutex<HashMap<Bucket, (f64, Instant)>>,
}

/// How long to wait before the next request would pass, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// A limiter with these limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits, buckets: Mutex::new(HashMap::new()) }
    }

    fn take(&self, bucket: Bucket, rate: Rate) -> Result<(), RetryAfter> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().map_err(|_| RetryAfter(1))?;
        if buckets.len() >= MAX_BUCKETS {
            let full = |(tokens, at): &(f64, Instant)| {
                tokens + now.duration_since(*at).as_secs_f64() * rate.per_second >= rate.burst
            };
            buckets.retain(|_, v| !full(v));
        }
        let (tokens, at) = buckets.entry(bucket).or_insert((rate.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate.per_second).min(rate.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(RetryAfter(((1.0 - *tokens) / rate.per_second).ceil().max(1.0) as u64))
        }
    }

    /// One request from an address.
    ///
    /// # Errors
    /// The address is over its rate.
    pub fn address(&self, addr: IpAddr) -> Result<(), RetryAfter> {
        self.take(Bucket::Address(addr), self.limits.per_address)
    }

    /// One request with a key.
    ///
    /// # Errors
    /// The key is over its rate.
    pub fn key(&self, key: &str) -> Result<(), RetryAfter> {
        self.take(Bucket::Key(key.to_owned()), self.limits.per_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_bucket() {
        let l = RateLimiter::new(Limits {
            per_address: Rate { per_second: 1.0, burst: 3.0 },
            per_key: Rate { per_second: 1.0, burst: 2.0 },
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.address(a).is_ok()));
        assert_eq!(l.address(a), Err(RetryAfter(1)));
        assert!(l.address(b).is_ok(), "buckets are per address");
        assert!(l.key("site-1").is_ok() && l.key("site-1").is_ok());
        assert!(l.key("site-1").is_err());
        assert!(l.key("site-2").is_ok());
    }
}
