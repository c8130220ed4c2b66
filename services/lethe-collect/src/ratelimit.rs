//! Rate limits per client address (checked before any token is verified) and per key (a site's
//! write key, or a token's id): token buckets in memory, refilled continuously.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The buckets of one kind (addresses or keys), with when they were last swept.
#[derive(Debug)]
struct Table<K> {
    buckets: HashMap<K, (f64, Instant)>,
    swept: Option<Instant>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Self { buckets: HashMap::new(), swept: None }
    }
}

/// Buckets, per address and per key; a full bucket is forgotten, so memory follows the number of
/// active clients, up to a bound.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    capacity: usize,
    addresses: Mutex<Table<IpAddr>>,
    keys: Mutex<Table<String>>,
}

/// How long to wait before the next request would pass, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// Most buckets of each kind.
const MAX_BUCKETS: usize = 100_000;

/// Least time between two sweeps of a full table. A sweep walks every bucket under the table's
/// lock, so a table full of active clients (a flood from many addresses) is swept at most this
/// often, not on every request of a new client.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl RateLimiter {
    /// A limiter with these limits.
    pub fn new(limits: Limits) -> Self {
        Self::with_capacity(limits, MAX_BUCKETS)
    }

    /// A limiter remembering at most `capacity` addresses and `capacity` keys.
    fn with_capacity(limits: Limits, capacity: usize) -> Self {
        Self { limits, capacity, addresses: Mutex::default(), keys: Mutex::default() }
    }

    /// Takes a token from the bucket of `key` in `table`, which holds buckets of `rate`. A client not
    /// seen (or forgotten) starts with a full bucket. When the table is full, the buckets that are
    /// full again are forgotten (at most every [`SWEEP_EVERY`]); if none are, a new client is refused
    /// until some are: the clients the table holds keep their limits, and a flood from more clients
    /// than it holds costs no more than one sweep a second.
    fn take<K, Q>(&self, table: &Mutex<Table<K>>, key: &Q, rate: Rate) -> Result<(), RetryAfter>
    where
        K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        let mut table = table.lock().map_err(|_| RetryAfter(1))?;
        if let Some((tokens, at)) = table.buckets.get_mut(key) {
            *tokens = refilled(*tokens, *at, now, rate).min(rate.burst);
            *at = now;
            return spend(tokens, rate);
        }
        if table.buckets.len() >= self.capacity {
            if table.swept.is_none_or(|swept| now.duration_since(swept) >= SWEEP_EVERY) {
                table.buckets.retain(|_, (tokens, at)| refilled(*tokens, *at, now, rate) < rate.burst);
                table.swept = Some(now);
            }
            if table.buckets.len() >= self.capacity {
                return Err(RetryAfter(SWEEP_EVERY.as_secs().max(1)));
            }
        }
        let mut tokens = rate.burst;
        let taken = spend(&mut tokens, rate);
        table.buckets.insert(key.to_owned(), (tokens, now));
        taken
    }

    /// One request from an address.
    ///
    /// # Errors
    /// The address is over its rate, or the limiter holds as many active addresses as it can.
    pub fn address(&self, addr: IpAddr) -> Result<(), RetryAfter> {
        self.take(&self.addresses, &addr, self.limits.per_address)
    }

    /// One request with a key.
    ///
    /// # Errors
    /// The key is over its rate, or the limiter holds as many active keys as it can.
    pub fn key(&self, key: &str) -> Result<(), RetryAfter> {
        self.take(&self.keys, key, self.limits.per_key)
    }
}

/// The tokens a bucket that held `tokens` at `at` holds at `now`, before its burst caps them.
fn refilled(tokens: f64, at: Instant, now: Instant, rate: Rate) -> f64 {
    tokens + now.duration_since(at).as_secs_f64() * rate.per_second
}

/// Takes a token from a bucket holding `tokens`, or says how long until one is there.
fn spend(tokens: &mut f64, rate: Rate) -> Result<(), RetryAfter> {
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        Ok(())
    } else {
        Err(RetryAfter(((1.0 - *tokens) / rate.per_second).ceil().max(1.0) as u64))
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

    fn address(i: u32) -> IpAddr {
        IpAddr::from(i.to_be_bytes())
    }

    #[test]
    fn a_full_table_of_active_clients_refuses_new_ones_and_keeps_serving_its_own() {
        // Buckets that refill in about 17 minutes: none is full again during the test.
        let slow = Rate { per_second: 0.001, burst: 5.0 };
        let l = RateLimiter::with_capacity(Limits { per_address: slow, per_key: slow }, 3);
        assert!((0..3).all(|i| l.address(address(i)).is_ok()));
        assert_eq!(l.address(address(3)), Err(RetryAfter(1)), "no room: a new address waits");
        assert_eq!(l.address(address(4)), Err(RetryAfter(1)));
        assert!(l.address(address(0)).is_ok(), "an address the table holds keeps its own limit");
        assert_eq!(l.addresses.lock().unwrap().buckets.len(), 3, "the table stays bounded");
        // Keys have a table of their own: the addresses filling theirs take no room from them.
        assert!((0..3).all(|i| l.key(&format!("site-{i}")).is_ok()));
        assert_eq!(l.key("site-3"), Err(RetryAfter(1)));
    }

    #[test]
    fn a_full_table_forgets_the_buckets_that_refilled_by_their_own_rate() {
        // Addresses refill at once; keys almost never. A sweep of each table judges its buckets by
        // its own rate: the keys' buckets are not forgotten by the addresses' rate.
        let l = RateLimiter::with_capacity(
            Limits {
                per_address: Rate { per_second: 1e12, burst: 2.0 },
                per_key: Rate { per_second: 0.001, burst: 1_000.0 },
            },
            2,
        );
        assert!(l.address(address(0)).is_ok() && l.address(address(1)).is_ok());
        std::thread::sleep(Duration::from_millis(2));
        assert!(l.address(address(2)).is_ok(), "the refilled buckets were forgotten to make room");
        assert_eq!(l.addresses.lock().unwrap().buckets.len(), 1);
        assert!(l.key("a").is_ok() && l.key("b").is_ok());
        assert_eq!(l.key("c"), Err(RetryAfter(1)), "a key's bucket a thousand tokens short is not full");
        assert_eq!(l.keys.lock().unwrap().buckets.len(), 2);
    }

    #[test]
    fn a_full_table_is_swept_at_most_once_a_second() {
        let slow = Rate { per_second: 0.001, burst: 5.0 };
        let l = RateLimiter::with_capacity(Limits { per_address: slow, per_key: slow }, 1);
        assert!(l.address(address(0)).is_ok());
        assert!(l.address(address(1)).is_err());
        let swept = l.addresses.lock().unwrap().swept.expect("the refusal swept the table");
        assert!(l.address(address(2)).is_err());
        assert_eq!(l.addresses.lock().unwrap().swept, Some(swept), "the next refusal did not sweep again");
    }
}
