//! One memory budget for the rings of every room on the pod. Each ring adds and subtracts what
//! its entries cost; when the total passes `--ring-memory`, the shedder asks the least recently
//! active rooms to drop their oldest entries. Those rooms answer joins and resumes that reach
//! further back from the store, exactly as rooms that are not loaded do, so readers only see a
//! slower read. The actors do the dropping themselves: the shedder never touches a ring.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Command, LiveRooms};
use crate::metrics::METRICS;

/// The shedder brings the total down to this share of the budget, so it does not run again for
/// every new message once the budget is reached.
const SHED_TO_PERCENT: usize = 90;
/// The shedder runs at most this often: rooms need a moment to apply what it asked.
const SHED_EVERY: Duration = Duration::from_millis(100);

pub struct RingBudget {
    limit: usize,
    used: AtomicUsize,
    over: Notify,
}

impl RingBudget {
    pub fn new(limit: usize) -> RingBudget {
        RingBudget { limit, used: AtomicUsize::new(0), over: Notify::new() }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn add(&self, n: usize) {
        let used = self.used.fetch_add(n, Ordering::Relaxed) + n;
        METRICS.ring_bytes.set(used as i64);
        if used > self.limit {
            self.over.notify_one();
        }
    }

    pub fn sub(&self, n: usize) {
        let used = self.used.fetch_sub(n, Ordering::Relaxed) - n;
        METRICS.ring_bytes.set(used as i64);
    }
}

/// One room's share of the budget, as the shedder sees it.
#[derive(Default)]
pub struct RingUsage {
    bytes: AtomicUsize,
    /// Milliseconds since the process started, at the room's last join or message.
    last_active: AtomicU64,
}

impl RingUsage {
    pub fn set_bytes(&self, bytes: usize) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn touch(&self) {
        self.last_active.store(since_start(), Ordering::Relaxed);
    }
}

fn since_start() -> u64 {
    static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64
}

/// Runs for the life of the registry: whenever the budget is exceeded, asks the least recently
/// active rooms to shed their oldest entries until the total would be back under it.
pub(super) async fn shed_when_over(budget: Arc<RingBudget>, rooms: Weak<LiveRooms>) {
    loop {
        budget.over.notified().await;
        let Some(live) = rooms.upgrade() else { return };
        let used = budget.used();
        if used <= budget.limit {
            continue;
        }
        let mut excess = used - budget.limit * SHED_TO_PERCENT / 100;
        let mut candidates: Vec<(u64, usize, _)> = live
            .iter()
            .map(|e| (e.usage.last_active.load(Ordering::Relaxed), e.usage.bytes.load(Ordering::Relaxed), e.value().clone()))
            .filter(|(_, bytes, _)| *bytes > 0)
            .collect();
        drop(live);
        candidates.sort_by_key(|(last_active, ..)| *last_active);
        for (_, bytes, room) in candidates {
            if excess == 0 {
                break;
            }
            let shed = bytes.min(excess);
            // A room whose queue is full is busy, hence not a good candidate anyway.
            if room.tx.try_send(Command::ShedRing { bytes: shed }).is_ok() {
                excess -= shed;
            }
        }
        tokio::time::sleep(SHED_EVERY).await;
    }
}
