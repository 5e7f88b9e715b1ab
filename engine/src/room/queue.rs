//! A bounded queue that holds no buffer while it is empty: each member's outbox (the frames its
//! room has queued for one connection) and each room's inbox (the commands its actor has not
//! taken yet).
//!
//! tokio's bounded mpsc allocates a block of 32 slots and its channel state when it is made: about
//! 1.5 KiB per member and 3.5 KiB per room (a room's command is larger than a frame), though an
//! idle reader's outbox and an idle room's inbox are empty nearly all the time. At tens of
//! thousands of readers that was a third of what a socket cost. This queue is a `VecDeque` behind
//! a mutex, which allocates when an item first waits and gives its buffer back with the last one,
//! a `Notify` for the one receiver, and one for senders waiting for space. A room never waits on
//! an outbox (a full one means the reader cannot keep up); a session waits on a full inbox, which
//! is how a busy room slows its members down. A sender may end the queue with a last word of type
//! `L` (an outbox's kick) that goes ahead of whatever is still queued.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// A queue for `capacity` items: the senders' end and the receiver's.
pub fn bounded<T, L>(capacity: usize) -> (Sender<T, L>, Receiver<T, L>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), capacity: capacity.max(1), senders: 1, closed: false, last: None }),
        ready: Notify::new(),
        space: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The receiver has `capacity` items it has not taken yet.
    Full,
    /// The receiver has gone or closed the queue.
    Closed,
}

struct Shared<T, L> {
    state: Mutex<State<T, L>>,
    /// Wakes the receiver when an item arrives in an empty queue, or the last sender goes.
    ready: Notify,
    /// Wakes senders waiting on a full queue when it has room again, or is closed.
    space: Notify,
}

struct State<T, L> {
    items: VecDeque<T>,
    capacity: usize,
    senders: usize,
    closed: bool,
    last: Option<L>,
}

impl<T, L> State<T, L> {
    /// The oldest item. The buffer goes with the last item: an idle queue holds none, and a busy
    /// one allocates once per batch it falls behind by.
    fn take(&mut self) -> Option<T> {
        let item = self.items.pop_front();
        if self.items.is_empty() && self.items.capacity() > 0 {
            self.items = VecDeque::new();
        }
        item
    }
}

impl<T, L> Shared<T, L> {
    fn state(&self) -> MutexGuard<'_, State<T, L>> {
        // Nothing panics while holding it; a poisoned lock still guards a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` if there is room, and wakes the receiver if it may be waiting.
    fn push(&self, item: T) -> Result<(), (Refused, T)> {
        let mut state = self.state();
        if state.closed {
            return Err((Refused::Closed, item));
        }
        if state.items.len() >= state.capacity {
            return Err((Refused::Full, item));
        }
        let was_empty = state.items.is_empty();
        state.items.push_back(item);
        drop(state);
        // A receiver that found items keeps taking them until the queue is empty, so only the
        // first item after that needs to wake it: one wakeup per batch, not per item.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }
}

/// The senders' end.
pub struct Sender<T, L = ()>(Arc<Shared<T, L>>);

impl<T, L> Sender<T, L> {
    /// Queues an item without waiting.
    pub fn try_send(&self, item: T) -> Result<(), Refused> {
        self.0.push(item).map_err(|(refused, _)| refused)
    }

    /// Queues an item, waiting while the queue is full; fails only once the receiver is gone.
    pub async fn send(&self, mut item: T) -> Result<(), Refused> {
        loop {
            // Registered before the check, so space made between the check and the wait wakes it.
            let space = self.0.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match self.0.push(item) {
                Err((Refused::Full, back)) => item = back,
                done => return done.map_err(|(refused, _)| refused),
            }
            space.await;
        }
    }

    /// Ends the queue with `last`: what is still queued is dropped, later items are refused, and
    /// the receiver gets `None` and then this from `last_word`.
    pub fn close_with(&self, last: L) {
        let mut state = self.0.state();
        if state.closed {
            return;
        }
        state.closed = true;
        state.last = Some(last);
        state.items = VecDeque::new();
        drop(state);
        self.0.ready.notify_one();
        self.0.space.notify_waiters();
    }
}

impl<T, L> Clone for Sender<T, L> {
    fn clone(&self) -> Self {
        self.0.state().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T, L> Drop for Sender<T, L> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.senders -= 1;
        if state.senders == 0 {
            drop(state);
            self.0.ready.notify_one();
        }
    }
}

/// The receiver's end.
pub struct Receiver<T, L = ()>(Arc<Shared<T, L>>);

impl<T, L> Receiver<T, L> {
    /// The next item; `None` once every sender has gone (or the queue was closed) and every queued
    /// item was taken. Cancel-safe: an item is either returned or stays queued.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.0.state();
                if let Some(item) = self.take(&mut state) {
                    return Some(item);
                }
                if state.senders == 0 || state.closed {
                    return None;
                }
            }
            // An item queued between the check and here left a permit: this returns at once.
            self.0.ready.notified().await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let mut state = self.0.state();
        self.take(&mut state)
    }

    /// Resolves once the queue has ended (a last word, or every sender gone), whatever is still
    /// queued; for a receiver busy with an item it took, to learn that it should stop.
    pub async fn ended(&self) {
        loop {
            {
                let state = self.0.state();
                if state.last.is_some() || state.senders == 0 {
                    return;
                }
            }
            // Also woken by items arriving; it then looks again.
            self.0.ready.notified().await;
        }
    }

    /// The sender's last word, once the queue has ended with one.
    pub fn last_word(&self) -> Option<L> {
        self.0.state().last.take()
    }

    /// Refuses every later item; those already queued can still be taken.
    pub fn close(&mut self) {
        self.0.state().closed = true;
        self.0.space.notify_waiters();
    }

    fn take(&self, state: &mut State<T, L>) -> Option<T> {
        let was_full = state.items.len() >= state.capacity;
        let item = state.take();
        if was_full && item.is_some() {
            self.0.space.notify_waiters();
        }
        item
    }
}

impl<T, L> Drop for Receiver<T, L> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.closed = true;
        // A sender may hold its end a while longer: the items go now.
        state.items = VecDeque::new();
        drop(state);
        self.0.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::protocol::Frame;

    /// A member's outbox, as the room uses it: frames, and a kick as the last word.
    fn outbox(capacity: usize) -> (Sender<Frame, &'static str>, Receiver<Frame, &'static str>) {
        bounded(capacity)
    }

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
        let (tx, rx) = outbox(4);
        assert_eq!(rx.0.state().items.capacity(), 0, "nothing allocated before a frame waits");
        tx.try_send(frame("a")).unwrap();
        tx.try_send(frame("b")).unwrap();
        assert!(rx.try_recv().is_some());
        assert!(rx.0.state().items.capacity() > 0, "kept while frames wait");
        assert!(rx.try_recv().is_some());
        assert_eq!(rx.0.state().items.capacity(), 0, "given back with the last frame");
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_hears_when_the_receiver_goes() {
        let (tx, mut rx) = outbox(1);
        tx.send(frame("a")).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(frame("b")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a full queue keeps the sender waiting");
        assert_eq!(rx.recv().await.unwrap().as_str(), "a");
        assert_eq!(waiting.await.unwrap(), Ok(()), "taking an item makes room");
        assert_eq!(rx.recv().await.unwrap().as_str(), "b");

        tx.send(frame("c")).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(frame("d")).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(Refused::Closed), "a waiting sender learns the receiver went");
    }

    #[tokio::test]
    async fn a_closed_queue_gives_what_it_holds_then_ends() {
        let (tx, mut rx) = outbox(4);
        tx.try_send(frame("a")).unwrap();
        rx.close();
        assert_eq!(tx.send(frame("b")).await, Err(Refused::Closed));
        assert_eq!(rx.recv().await.unwrap().as_str(), "a");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_last_word_goes_ahead_of_what_is_queued_and_ends_the_queue() {
        let (tx, mut rx) = outbox(4);
        tx.try_send(frame("a")).unwrap();
        assert!(rx.ended().now_or_never().is_none(), "a queued frame does not end it");
        // The receiver waiting on `ended` wakes for the last word.
        tokio::join!(rx.ended(), async {
            tokio::task::yield_now().await;
            tx.close_with("kicked");
        });
        assert_eq!(tx.try_send(frame("b")), Err(Refused::Closed));
        assert!(rx.recv().await.is_none(), "what was queued goes with the last word");
        assert_eq!(rx.last_word(), Some("kicked"));
        assert_eq!(rx.last_word(), None, "said once");
    }

    #[tokio::test]
    async fn the_receiver_ends_when_the_last_sender_goes() {
        let (tx, mut rx) = outbox(4);
        let second = tx.clone();
        drop(tx);
        assert!(rx.recv().now_or_never().is_none(), "one sender is still there");
        drop(second);
        assert!(rx.recv().await.is_none());
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
