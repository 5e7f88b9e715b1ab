//! Shared counters and latency histograms for one scenario run, and their JSON summary.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Latencies are recorded in microseconds, up to a minute (beyond: clamped, and visible as max).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Histograms split in shards so the client's threads rarely wait on one another's lock.
pub struct Latency {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latency {
    pub fn new() -> Latency {
        Latency { shards: (0..16).map(|_| Mutex::new(histogram())).collect() }
    }

    pub fn record_ns(&self, shard: usize, ns: u64) {
        let us = (ns / 1000).max(1);
        self.shards[shard % self.shards.len()].lock().unwrap().saturating_record(us);
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            all.add(&*shard.lock().unwrap()).expect("same bounds");
        }
        all
    }

    /// count, p50/p99/p99.9/max in milliseconds.
    pub fn summary(&self) -> Value {
        summary(&self.merged())
    }
}

pub fn summary(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// Frame accounting of every receiver, by seq: what arrived, what was skipped, what came twice.
#[derive(Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    /// Connections the server closed (or that broke) before the run ended.
    pub dropped: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
