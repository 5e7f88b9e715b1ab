//! Retention: a background task that keeps the store within `--retention-days` and
//! `--max-messages-per-room`, and drops bans that have ended. It deletes in small batches with a
//! pause between them, so a room's commits (which share SQLite's single writer) wait for at most
//! one short batch. Rooms and their seq counters are never pruned: a pruned message's seq stays
//! taken, and history and resume simply no longer return it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Store, StoreError};
use crate::chat::{now_millis, RoomId};
use crate::metrics::METRICS;

/// Rows one delete statement removes: a few milliseconds of work, even on SQLite with
/// `synchronous = FULL`.
const BATCH: usize = 256;
/// Between two batches the writer is left to the rooms' commits.
const PAUSE: Duration = Duration::from_millis(10);
/// Rooms examined per query when enforcing the per-room maximum.
const ROOM_PAGE: usize = 100;
/// The first pass runs this soon after start (or sooner, with a shorter `--prune-every`).
const FIRST_PASS: Duration = Duration::from_secs(10);

/// What to keep, from the flags.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Messages older than this go. None: kept forever.
    pub max_age: Option<Duration>,
    /// Messages a room keeps, the newest. 0: unlimited.
    pub max_messages: u64,
    /// Newest non-deleted messages of a room that are never pruned by count: what a live room
    /// may hold in memory, so it never shows a message the store no longer has.
    pub protect: usize,
    pub every: Duration,
}

/// Starts the pruner; it runs until the task is aborted.
pub fn spawn(store: Arc<dyn Store>, retention: Retention) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(retention.every.min(FIRST_PASS)).await;
        loop {
            let started = Instant::now();
            match pass(store.as_ref(), &retention).await {
                Ok(pruned) if pruned.any() => tracing::info!(
                    by_age = pruned.by_age,
                    by_count = pruned.by_count,
                    bans = pruned.bans,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pruned"
                ),
                Ok(_) => {}
                // The next pass starts over where this one stopped.
                Err(err) => tracing::warn!(error = %err, "pruning failed"),
            }
            tokio::time::sleep(retention.every).await;
        }
    })
}

#[derive(Debug, Default)]
struct Pruned {
    by_age: u64,
    by_count: u64,
    bans: u64,
}

impl Pruned {
    fn any(&self) -> bool {
        self.by_age + self.by_count + self.bans > 0
    }
}

async fn pass(store: &dyn Store, retention: &Retention) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    if let Some(max_age) = retention.max_age {
        let before = now_millis() - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let by_age = METRICS.messages_pruned.with_label_values(&["age"]);
        pruned.by_age = in_batches(|| async {
            let n = store.prune_older_than(before, BATCH).await?;
            by_age.inc_by(n);
            Ok(n)
        })
        .await?;
    }
    if retention.max_messages > 0 {
        let by_count = METRICS.messages_pruned.with_label_values(&["count"]);
        let mut after: Option<RoomId> = None;
        loop {
            let rooms = store.rooms_over(retention.max_messages, retention.protect, after.clone(), ROOM_PAGE).await?;
            for (room, upto) in &rooms {
                pruned.by_count += in_batches(|| async {
                    let n = store.prune_room(room.clone(), *upto, BATCH).await?;
                    by_count.inc_by(n);
                    Ok(n)
                })
                .await?;
            }
            if rooms.len() < ROOM_PAGE {
                break;
            }
            after = rooms.last().map(|(room, _)| room.clone());
        }
    }
    let now = now_millis();
    pruned.bans = in_batches(|| store.prune_bans(now, BATCH)).await?;
    Ok(pruned)
}

/// Runs `batch` until it deletes less than a full batch (nothing left, or on Postgres another
/// pod holds the rest), pausing between batches; returns the total.
async fn in_batches<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}
