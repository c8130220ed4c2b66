//! Counters of the collection edge, exposed as Prometheus text. Label values are bounded: they come
//! from fixed enums, never from input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Counters by name and bounded label.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    /// Adds one to `name{reason="label"}`.
    pub fn inc(&self, name: &'static str, label: &'static str) {
        self.add(name, label, 1);
    }

    /// Adds `n` to `name{reason="label"}`.
    pub fn add(&self, name: &'static str, label: &'static str, n: u64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name, label)).or_default() += n;
        }
    }

    /// The current value.
    pub fn get(&self, name: &'static str, label: &'static str) -> u64 {
        self.counters.lock().map(|c| c.get(&(name, label)).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(c) = self.counters.lock() else { return out };
        let mut last = "";
        for ((name, label), v) in c.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{{reason=\"{label}\"}} {v}");
        }
        out
    }
}
