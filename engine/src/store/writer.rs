//! Group commit: one writer task per pod gathers the sends of every room that arrive while earlier
//! transactions run and commits them together, so one fsync (or one Postgres round trip) serves
//! many messages; where the store allows, a few batches commit at once. Each room keeps at most one batch in flight, which
//! keeps its seq order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{Appended, NewMessage, Store, StoreError};
use crate::metrics::METRICS;

/// Upper bound of messages in one transaction, so one commit never grows without limit.
const MAX_BATCH: usize = 1024;

pub type AppendResult = Result<Vec<Appended>, Arc<StoreError>>;

struct Request {
    messages: Vec<NewMessage>,
    reply: oneshot::Sender<AppendResult>,
}

/// Handle that room actors use to submit their batches.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer task. It ends once every `Writer` handle is dropped and the queue is empty,
    /// which is how shutdown waits for the last commits.
    pub fn spawn(store: Arc<dyn Store>, timeout: Duration) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(run(store, rx, timeout));
        (Writer { tx }, task)
    }

    /// Queues one room's batch; the receiver answers after the commit (or the failure).
    pub async fn submit(&self, messages: Vec<NewMessage>) -> oneshot::Receiver<AppendResult> {
        let (reply, rx) = oneshot::channel();
        // A closed writer drops the request, and the receiver then reports the failure.
        let _ = self.tx.send(Request { messages, reply }).await;
        rx
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Request>, timeout: Duration) {
    // Commits in flight at once: a batch is gathered and started while earlier ones commit. Each
    // room has at most one batch in flight (see the room actor), so this never reorders a room.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(store.parallel_commits().max(1)));
    let mut commits = tokio::task::JoinSet::new();
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let mut requests = vec![first];
        let mut count = requests[0].messages.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    count += next.messages.len();
                    requests.push(next);
                }
                Err(_) => break,
            }
        }
        commits.spawn(commit(store.clone(), requests, count, timeout, permit));
        // Reap finished commits so the set does not grow.
        while commits.try_join_next().is_some() {}
    }
    // Shutdown: the last commits finish before the writer does.
    while commits.join_next().await.is_some() {}
}

async fn commit(
    store: Arc<dyn Store>,
    requests: Vec<Request>,
    count: usize,
    timeout: Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let batch: Vec<NewMessage> = requests.iter().flat_map(|r| r.messages.iter().cloned()).collect();
    let started = Instant::now();
    // The store's own busy/acquire/statement timeouts are the real bound; this one only guards
    // against a driver that hangs, at twice the configured time.
    let result = match tokio::time::timeout(timeout * 2, store.append(batch)).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Timeout),
    };
    METRICS.commit_seconds.observe(started.elapsed().as_secs_f64());
    METRICS.commit_batch_size.observe(count as f64);
    match result {
        Ok(mut appended) => {
            for request in requests.into_iter().rev() {
                let tail = appended.split_off(appended.len() - request.messages.len());
                let _ = request.reply.send(Ok(tail));
            }
        }
        Err(err) => {
            tracing::error!(error = %err, messages = count, "commit failed");
            METRICS.store_errors.inc();
            let err = Arc::new(err);
            for request in requests {
                let _ = request.reply.send(Err(err.clone()));
            }
        }
    }
}
