//! Wall-clock nanoseconds since the Unix epoch: the one time base every process of a run shares,
//! so a timestamp written into a message by one client can be read back by another.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;
