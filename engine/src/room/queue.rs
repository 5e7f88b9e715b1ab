//! A bounded queue that holds no buffer while it is empty: each room's inbox (the commands its
//! actor has not taken yet).
//!
//! tokio's bounded mpsc allocates a block of 32 slots and its channel state when it is made: about
//! 3.5 KiB per room, though an idle room's inbox is empty nearly all the time. This queue is a
//! `VecDeque` behind a mutex, which allocates when an item first waits and gives its buffer back
//! with the last one, a `Notify` for the one receiver, and one for senders waiting for space. A
//! session waits on a full inbox, which is how a busy room slows its members down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// A queue for `capacity` items: the senders' end and the receiver's.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), capacity: capacity.max(1), senders: 1, closed: false }),
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

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver when an item arrives in an empty queue, or the last sender goes.
    ready: Notify,
    /// Wakes senders waiting on a full queue when it has room again, or is closed.
    space: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    senders: usize,
    closed: bool,
}

impl<T> State<T> {
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

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
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
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
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
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.state().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
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
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
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

    /// Refuses every later item; those already queued can still be taken.
    pub fn close(&mut self) {
        self.0.state().closed = true;
        self.0.space.notify_waiters();
    }

    fn take(&self, state: &mut State<T>) -> Option<T> {
        let was_full = state.items.len() >= state.capacity;
        let item = state.take();
        if was_full && item.is_some() {
            self.0.space.notify_waiters();
        }
        item
    }
}

impl<T> Drop for Receiver<T> {
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

    /// A room's inbox, its commands as text.
    fn inbox(capacity: usize) -> (Sender<String>, Receiver<String>) {
        bounded(capacity)
    }

    fn frame(text: &str) -> String {
        text.to_string()
    }

    /// The next item if one is queued.
    fn try_recv(rx: &mut Receiver<String>) -> Option<String> {
        rx.recv().now_or_never().flatten()
    }

    #[tokio::test]
    async fn frames_arrive_in_order_up_to_the_capacity() {
        let (tx, mut rx) = inbox(2);
        assert_eq!(tx.try_send(frame("a")), Ok(()));
        assert_eq!(tx.try_send(frame("b")), Ok(()));
        assert_eq!(tx.try_send(frame("c")), Err(Refused::Full));
        assert_eq!(rx.recv().await.unwrap(), "a");
        assert_eq!(tx.try_send(frame("d")), Ok(()));
        assert_eq!(try_recv(&mut rx).unwrap(), "b");
        assert_eq!(rx.recv().await.unwrap(), "d");
        assert!(try_recv(&mut rx).is_none());
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_for_a_frame_and_ends_when_the_room_lets_go() {
        let (tx, mut rx) = inbox(4);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(f) = rx.recv().await {
                got.push(f.to_string());
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
        let (tx, mut rx) = inbox(4);
        // Polled once (nothing queued), then dropped, as a `select!` does with its other branches.
        assert!(rx.recv().now_or_never().is_none());
        tx.try_send(frame("a")).unwrap();
        assert_eq!(rx.recv().await.unwrap(), "a");
    }

    #[test]
    fn an_idle_room_holds_no_buffer() {
        let (tx, mut rx) = inbox(4);
        assert_eq!(rx.0.state().items.capacity(), 0, "nothing allocated before a frame waits");
        tx.try_send(frame("a")).unwrap();
        tx.try_send(frame("b")).unwrap();
        assert!(try_recv(&mut rx).is_some());
        assert!(rx.0.state().items.capacity() > 0, "kept while frames wait");
        assert!(try_recv(&mut rx).is_some());
        assert_eq!(rx.0.state().items.capacity(), 0, "given back with the last frame");
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_hears_when_the_receiver_goes() {
        let (tx, mut rx) = inbox(1);
        tx.send(frame("a")).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(frame("b")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a full queue keeps the sender waiting");
        assert_eq!(rx.recv().await.unwrap(), "a");
        assert_eq!(waiting.await.unwrap(), Ok(()), "taking an item makes room");
        assert_eq!(rx.recv().await.unwrap(), "b");

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
        let (tx, mut rx) = inbox(4);
        tx.try_send(frame("a")).unwrap();
        rx.close();
        assert_eq!(tx.send(frame("b")).await, Err(Refused::Closed));
        assert_eq!(rx.recv().await.unwrap(), "a");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn the_receiver_ends_when_the_last_sender_goes() {
        let (tx, mut rx) = inbox(4);
        let second = tx.clone();
        drop(tx);
        assert!(rx.recv().now_or_never().is_none(), "one sender is still there");
        drop(second);
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn the_senders_hear_that_the_receiver_went() {
        let (tx, rx) = inbox(4);
        tx.try_send(frame("a")).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(frame("b")), Err(Refused::Closed));
    }

    /// A receiver in a `select!` whose other branch keeps winning (its recv dropped, made again)
    /// still takes every item at once: each one is answered before the next is sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_frame_waits_for_a_later_wakeup() {
        let (tx, mut rx) = inbox(1024);
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let (noise_tx, mut noise_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    f = rx.recv() => match f {
                        Some(f) => {
                            let _ = ack_tx.send(f.parse().unwrap());
                            while let Some(f) = try_recv(&mut rx) { let _ = ack_tx.send(f.parse().unwrap()); }
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
