//! A member's outbox: the frames its room has queued for one connection, bounded.
//!
//! tokio's bounded mpsc allocates a block of 32 slots and its channel state when it is made,
//! about 1.5 KiB per member, though an idle reader's queue is empty nearly all the time: at tens
//! of thousands of readers that was a fifth of what a socket cost. This queue is a `VecDeque`
//! behind a mutex, which allocates when a frame first waits, and a `Notify` for the one session
//! that reads it. The room never waits on it: a full queue tells the room that the reader cannot
//! keep up, and a session that has gone tells it the member left.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::protocol::Frame;

/// A queue for `capacity` frames: the room's end and the session's.
pub fn outbox(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { frames: VecDeque::new(), capacity: capacity.max(1), sender_gone: false, receiver_gone: false }),
        ready: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The reader has `capacity` frames it has not taken yet.
    Full,
    /// The session has ended.
    Closed,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the session when a frame arrives in an empty queue, or the room lets go.
    ready: Notify,
}

struct State {
    frames: VecDeque<Frame>,
    capacity: usize,
    sender_gone: bool,
    receiver_gone: bool,
}

impl State {
    /// The oldest frame. The queue's buffer goes with its last frame: an idle reader holds none,
    /// and a busy one allocates once per batch it falls behind by.
    fn take(&mut self) -> Option<Frame> {
        let frame = self.frames.pop_front();
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
        frame
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still guards a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The room's end.
pub struct Sender(Arc<Shared>);

impl Sender {
    /// Queues a frame without waiting.
    pub fn try_send(&self, frame: Frame) -> Result<(), Refused> {
        let mut state = self.0.state();
        if state.receiver_gone {
            return Err(Refused::Closed);
        }
        if state.frames.len() >= state.capacity {
            return Err(Refused::Full);
        }
        let was_empty = state.frames.is_empty();
        state.frames.push_back(frame);
        drop(state);
        // A session that found frames keeps taking them until the queue is empty, so only the
        // first frame after that needs to wake it: one wakeup per batch, not per frame.
        if was_empty {
            self.0.ready.notify_one();
        }
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.state().sender_gone = true;
        self.0.ready.notify_one();
    }
}

/// The session's end.
pub struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next frame; `None` once the room has let go and every queued frame was taken.
    /// Cancel-safe: a frame is either returned or stays queued.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            {
                let mut state = self.0.state();
                if let Some(frame) = state.take() {
                    return Some(frame);
                }
                if state.sender_gone {
                    return None;
                }
            }
            // A frame queued between the check and here left a permit: this returns at once.
            self.0.ready.notified().await;
        }
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Frame> {
        self.0.state().take()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.receiver_gone = true;
        // The room may hold its end a while longer: the frames go now.
        state.frames = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn frame(text: &str) -> Frame {
        Frame::from(text.to_string())
    }

    #[tokio::test]
    async fn frames_arrive_in_order_up_to_the_capacity() {
        let (tx, mut rx) = outbox(2);
        assert_eq!(tx.try_send(frame("a")), Ok(()));
        assert_eq!(tx.try_send(frame("b")), Ok(()));
        assert_eq!(tx.try_send(frame("c")), Err(Refused::Full));
        assert_eq!(rx.recv().await.unwrap().as_str(), "a");
        assert_eq!(tx.try_send(frame("d")), Ok(()));
        assert_eq!(rx.try_recv().unwrap().as_str(), "b");
        assert_eq!(rx.recv().await.unwrap().as_str(), "d");
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_for_a_frame_and_ends_when_the_room_lets_go() {
        let (tx, mut rx) = outbox(4);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(f) = rx.recv().await {
                got.push(f.as_str().to_string());
            }
            got
        });
        for text in ["a", "b", "c"] {
            tokio::task::yield_now().await;
            tx.try_send(frame(text)).unwrap();
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), ["a", "b", "c"], "queued frames are taken before the end");
    }

    #[tokio::test]
    async fn a_dropped_recv_loses_nothing() {
        let (tx, mut rx) = outbox(4);
        // Polled once (nothing queued), then dropped, as a `select!` does with its other branches.
        assert!(rx.recv().now_or_never().is_none());
        tx.try_send(frame("a")).unwrap();
        assert_eq!(rx.recv().await.unwrap().as_str(), "a");
    }

    #[test]
    fn an_idle_reader_holds_no_buffer() {
        let (tx, mut rx) = outbox(4);
        assert_eq!(rx.0.state().frames.capacity(), 0, "nothing allocated before a frame waits");
        tx.try_send(frame("a")).unwrap();
        tx.try_send(frame("b")).unwrap();
        assert!(rx.try_recv().is_some());
        assert!(rx.0.state().frames.capacity() > 0, "kept while frames wait");
        assert!(rx.try_recv().is_some());
        assert_eq!(rx.0.state().frames.capacity(), 0, "given back with the last frame");
    }

    #[test]
    fn the_room_hears_that_the_session_ended() {
        let (tx, rx) = outbox(4);
        tx.try_send(frame("a")).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(frame("b")), Err(Refused::Closed));
    }

    /// A session in a `select!` whose other branch keeps winning (its recv dropped, made again)
    /// still takes every frame at once: each one is answered before the next is sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_frame_waits_for_a_later_wakeup() {
        let (tx, mut rx) = outbox(1024);
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let (noise_tx, mut noise_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    f = rx.recv() => match f {
                        Some(f) => {
                            let _ = ack_tx.send(f.as_str().parse().unwrap());
                            while let Some(f) = rx.try_recv() { let _ = ack_tx.send(f.as_str().parse().unwrap()); }
                        }
                        None => return,
                    },
                    _ = noise_rx.recv() => {}
                }
            }
        });
        for i in 0..20_000u32 {
            tx.try_send(frame(&i.to_string())).unwrap();
            if i % 3 == 0 {
                let _ = noise_tx.send(());
            }
            if i % 2 == 0 {
                let _ = noise_tx.send(());
                tx.try_send(frame(&(i + 1_000_000).to_string())).unwrap();
            }
            loop {
                let got = tokio::time::timeout(std::time::Duration::from_secs(2), ack_rx.recv()).await.expect("frame not taken").unwrap();
                if got == i {
                    break;
                }
            }
        }
    }
}
