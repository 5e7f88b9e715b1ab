//! Gives freed heap back to the system after a burst. glibc's allocator keeps what a burst of
//! connections or loaded rooms freed in its per-thread arenas for the life of the process, so a
//! pod that weathered a spike would keep its peak RSS (and stay near its container limit) until
//! restarted. Every few seconds, when the pod's load has fallen since the last look, the free
//! pages are released.

use std::time::Duration;

use crate::metrics::METRICS;

const EVERY: Duration = Duration::from_secs(5);

pub async fn release_after_bursts() {
    let mut last = load();
    loop {
        tokio::time::sleep(EVERY).await;
        let now = load();
        if now < last {
            release();
        }
        last = now;
    }
}

/// What the pod holds because of its clients: sockets and ring bytes, in rough bytes.
fn load() -> i64 {
    METRICS.connections.get() * 8 * 1024 + METRICS.ring_bytes.get()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}
