//! Counting the same content across rooms and authors. With Redis the count is shared by every pod
//! (`chat:dup:{hash}`, created with the window as its expiry by the first posting, then `INCR`); Redis that does not
//! answer within `REDIS_DEADLINE` (or is not connected) is passed over for this pod's own count, so
//! an outage never refuses or slows a send. Without Redis the pod's own count is the only one: a
//! map bounded in entries, whose expired windows are swept when it is full; when it is full of live
//! windows, new content is not counted (let through) until some expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bus::Bus;

/// Longest a send waits for Redis's count before using this pod's.
pub const REDIS_DEADLINE: Duration = Duration::from_millis(50);

/// A digest of normalised content (the first 16 bytes of its SHA-256).
pub type ContentHash = [u8; 16];

pub fn hash(normalised: &str) -> ContentHash {
    let digest = Sha256::digest(normalised.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// One content's count in the current window.
struct Window {
    started: Instant,
    count: u64,
}

pub struct RepeatCounter {
    window: Duration,
    max_tracked: usize,
    local: Mutex<HashMap<ContentHash, Window>>,
    bus: Option<Arc<Bus>>,
}

impl RepeatCounter {
    pub fn new(window: Duration, max_tracked: usize, bus: Option<Arc<Bus>>) -> RepeatCounter {
        RepeatCounter { window, max_tracked, local: Mutex::new(HashMap::new()), bus }
    }

    /// Counts one more posting of this content and answers how many there were in the window,
    /// this one included.
    pub async fn count(&self, content: ContentHash) -> u64 {
        if let Some(mut redis) = self.bus.as_ref().and_then(|b| b.connection()) {
            let key = format!("chat:dup:{}", hex(&content));
            let window = self.window.as_secs().max(1);
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("SET").arg(&key).arg(0).arg("NX").arg("EX").arg(window).ignore().cmd("INCR").arg(&key);
            match tokio::time::timeout(REDIS_DEADLINE, pipe.query_async::<(u64,)>(&mut redis)).await {
                Ok(Ok((count,))) => return count,
                Ok(Err(err)) => tracing::debug!(error = %err, "repeat count failed; counting on this pod"),
                Err(_) => tracing::debug!("repeat count timed out; counting on this pod"),
            }
        }
        self.count_here(content, Instant::now())
    }

    fn count_here(&self, content: ContentHash, now: Instant) -> u64 {
        let Ok(mut local) = self.local.lock() else { return 0 };
        if let Some(w) = local.get_mut(&content) {
            if now.duration_since(w.started) < self.window {
                w.count += 1;
                return w.count;
            }
            *w = Window { started: now, count: 1 };
            return 1;
        }
        if local.len() >= self.max_tracked {
            let window = self.window;
            local.retain(|_, w| now.duration_since(w.started) < window);
            if local.len() >= self.max_tracked {
                return 1;
            }
        }
        local.insert(content, Window { started: now, count: 1 });
        1
    }

    /// Contents this pod counts itself right now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.local.lock().map(|l| l.len()).unwrap_or(0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_window_and_starts_over_after_it() {
        let counter = RepeatCounter::new(Duration::from_secs(60), 10, None);
        let t0 = Instant::now();
        let h = hash("same words");
        assert_eq!([1, 2, 3].map(|_| counter.count_here(h, t0)), [1, 2, 3]);
        assert_eq!(counter.count_here(hash("other"), t0), 1);
        assert_eq!(counter.count_here(h, t0 + Duration::from_secs(61)), 1);
    }

    #[test]
    fn the_map_stays_within_its_bound() {
        let counter = RepeatCounter::new(Duration::from_secs(60), 3, None);
        let t0 = Instant::now();
        for i in 0..10 {
            counter.count_here(hash(&i.to_string()), t0);
        }
        assert_eq!(counter.tracked(), 3);
        // Once the windows expire, room is made for new content.
        counter.count_here(hash("late"), t0 + Duration::from_secs(61));
        assert_eq!(counter.tracked(), 1);
    }
}
