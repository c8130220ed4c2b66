//! How long decisions take, per slot, as a Prometheus histogram: from the request's arrival in the
//! engine to its answer, fallbacks and the wait for a slow model included. Request threads record
//! with a few relaxed atomic additions: no lock, no allocation.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: finer below 2 ms, where the answers are, and up
/// to 10 s, the longest deadline a slot may declare, so that a slot's deadline shows as the bucket
/// its fallbacks land in.
pub const BOUNDS_US: [u64; 20] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// One histogram: a count per bucket (not cumulative; rendering sums them), the sum and the count.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Latency {
    /// Records one decision.
    pub fn observe(&self, took: Duration) {
        // Rounded up: 50.2 µs is past the 50 µs bound (a bucket holds what is less or equal).
        let us = u64::try_from(took.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Appends the histogram `name` with `labels` (`key="value",…`) in Prometheus' text format.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BOUNDS_US.get(i).map_or_else(|| "+Inf".to_owned(), |us| seconds(*us));
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let sum = seconds(self.sum_us.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Microseconds as seconds, exactly (`1500` → `0.0015`).
fn seconds(us: u64) -> String {
    let s = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(l: &Latency) -> Vec<(String, u64)> {
        let mut out = String::new();
        l.render("t", "slot=\"s\"", &mut out);
        out.lines()
            .filter(|l| l.starts_with("t_bucket"))
            .map(|l| {
                let le = l.split("le=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
                (le, l.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX))
            })
            .collect()
    }

    #[test]
    fn a_decision_lands_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let l = Latency::default();
        l.observe(Duration::from_micros(50)); // on a bound: that bucket (le is "less or equal")
        l.observe(Duration::from_nanos(50_001)); // a nanosecond past the bound: the next bucket
        l.observe(Duration::from_micros(1_999));
        l.observe(Duration::from_secs(30)); // past every bound
        let b = rendered(&l);
        let at = |le: &str| b.iter().find(|(l, _)| l == le).map(|(_, n)| *n);
        assert_eq!(at("0.00005"), Some(1));
        assert_eq!(at("0.0001"), Some(2));
        assert_eq!(at("0.0015"), Some(2));
        assert_eq!(at("0.002"), Some(3));
        assert_eq!(at("10"), Some(3));
        assert_eq!(at("+Inf"), Some(4));
        assert_eq!(b.len(), BOUNDS_US.len() + 1);
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {b:?}");
        let mut out = String::new();
        l.render("t", "", &mut out);
        assert!(out.contains("t_count{} 4\n"), "{out}");
        assert!(out.contains("t_sum{} 30.0021\n"), "{out}");
        assert!(out.contains("t_bucket{le=\"+Inf\"} 4\n"), "{out}");
    }

    #[test]
    fn seconds_are_written_exactly() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(50), "0.00005");
        assert_eq!(seconds(1_500), "0.0015");
        assert_eq!(seconds(100_000), "0.1");
        assert_eq!(seconds(3_002_100), "3.0021");
    }
}
