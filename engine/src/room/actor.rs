//! The room actor: a thin loop around the room's synchronous core (`core.rs`). It feeds the core
//! commands, timers and the answers of the I/O it asked for, and runs that I/O (store reads and
//! commits, the cluster's presence) as spawned tasks whose results come back as events, and
//! writes out the frames the core queued for idle readers (`write_out`). Nothing here waits on
//! anything but the loop's own `select!`.

use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use super::budget::RingUsage;
use super::core::{Done, Effect, HistoryRead, RoomCore};
use super::outbox::Unwritten;
use super::queue;
use super::{Command, LiveRooms, RoomContext, HISTORY_ON_JOIN, RESUME_MAX};
use crate::metrics::METRICS;
use crate::store::StoreError;

/// Readers' sockets one task writes a frame into: more tasks balance the cores better (tried 64
/// to 2,500 on a 2-core machine), fewer cost fewer wakeups.
const WRITE_SHARE: usize = 256;

pub(super) struct RoomActor {
    core: RoomCore,
    generation: u64,
    ctx: Arc<RoomContext>,
    registry: Weak<LiveRooms>,
    rx: queue::Receiver<Command>,
    _alive: mpsc::Sender<()>,
    /// The I/O running for this room.
    tasks: JoinSet<Done>,
    bus_up: watch::Receiver<bool>,
    subscribed: bool,
}

impl RoomActor {
    pub(super) fn new(
        id: crate::chat::RoomId,
        generation: u64,
        ctx: Arc<RoomContext>,
        registry: Weak<LiveRooms>,
        rx: queue::Receiver<Command>,
        alive: mpsc::Sender<()>,
        usage: Arc<RingUsage>,
    ) -> RoomActor {
        let mut bus_up = ctx.cluster.up();
        let up = *bus_up.borrow_and_update();
        let core = RoomCore::new(id, ctx.settings.clone(), usage, up);
        RoomActor { core, generation, ctx, registry, rx, _alive: alive, tasks: JoinSet::new(), bus_up, subscribed: false }
    }

    /// Runs the room until it stops. A plain fn around an `async move` block: an `async fn` that
    /// takes `self` by value keeps it twice in its state (the argument and the local), and every
    /// live room pays for its task's size (2,944 → 1,536 bytes, `-Zprint-type-sizes`).
    #[allow(clippy::manual_async_fn)]
    pub(super) fn run(mut self) -> impl std::future::Future<Output = ()> {
        async move { self.serve().await }
    }

    async fn serve(&mut self) {
        METRICS.rooms_active.inc();
        tracing::debug!(room = %self.core.id(), "room started");
        loop {
            let due = self.core.next_due();
            let idle = self.core.idle_until().filter(|_| self.tasks.is_empty());
            // One timer for both deadlines: each armed timer is part of the task's state.
            let wake = due.into_iter().chain(idle).min().map(tokio::time::Instant::from_std);
            let mut stop = false;
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.core.command(cmd),
                    None => break,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(done) => self.core.done(done),
                    Err(err) => tracing::error!(room = %self.core.id(), error = %err, "room task failed"),
                },
                _ = sleep_until(wake.unwrap_or_else(far_future)), if wake.is_some() => {
                    let now = Instant::now();
                    match idle {
                        Some(idle) if idle <= now => stop = true,
                        _ => self.core.tick(now),
                    }
                }
                Ok(()) = self.bus_up.changed() => {
                    let up = *self.bus_up.borrow_and_update();
                    self.core.bus_changed(up);
                }
            }
            // Outside the `select!`, so its output is not kept beside the stop's own state.
            if stop {
                self.stop().await;
                break;
            }
            self.run_effects();
            write_out(self.core.take_unwritten());
            if self.core.is_shutting_down() && self.core.is_quiet_but_members() && self.tasks.is_empty() {
                break;
            }
        }
        if self.subscribed {
            self.ctx.cluster.unsubscribe(self.core.id());
        }
        METRICS.rooms_active.dec();
        tracing::debug!(room = %self.core.id(), "room stopped");
    }

    /// Leaves the registry, then answers nothing that was already queued: every waiting request
    /// sees its reply dropped and asks the registry again, which starts a fresh actor.
    async fn stop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            super::unregister(&registry, self.core.id(), self.generation);
        }
        self.rx.close();
        while self.rx.recv().await.is_some() {}
    }

    /// Starts the I/O the core asked for; each task answers with the core's next event.
    fn run_effects(&mut self) {
        for effect in self.core.take_effects() {
            let store = self.ctx.store.clone();
            let room = self.core.id().clone();
            match effect {
                Effect::Load { recent } => {
                    self.tasks.spawn(async move { Done::Loaded(store.load_room(room, recent).await) });
                }
                Effect::Commit(messages) => {
                    let writer = self.ctx.writer.clone();
                    self.tasks.spawn(async move {
                        let answer = writer.submit(messages).await;
                        // The writer answers every batch; a dropped answer means it stopped.
                        Done::Committed(answer.await.unwrap_or_else(|_| Err(Arc::new(StoreError::Timeout))))
                    });
                }
                Effect::Repair { after, page } => {
                    self.tasks.spawn(async move { Done::Repaired(store.after(room, after, page).await) });
                }
                Effect::History { conn, read, author } => {
                    self.tasks.spawn(async move {
                        let messages = match read {
                            HistoryRead::After(since) => store.after(room.clone(), since, RESUME_MAX as usize).await,
                            HistoryRead::Latest => store.history(room.clone(), None, HISTORY_ON_JOIN).await,
                        };
                        // The reader's own reactions on them, for its welcome's `myReactions`.
                        let result = match messages {
                            Ok(messages) => match (messages.first(), messages.last()) {
                                (Some(first), Some(last)) => {
                                    store.reactions_by(room, author, first.seq, last.seq).await.map(|mine| (messages, mine))
                                }
                                _ => Ok((messages, Vec::new())),
                            },
                            Err(err) => Err(err),
                        };
                        Done::History { conn, read, result }
                    });
                }
                Effect::React { conn, seq, author, emoji, on } => {
                    self.tasks.spawn(async move {
                        let outcome = store.react(room, seq, author.clone(), emoji, on).await;
                        Done::Reacted { conn, seq, author, emoji, on, outcome }
                    });
                }
                Effect::Edit { conn, seq, author, content } => {
                    let window_ms = i64::try_from(self.ctx.settings.edit_window.as_millis()).unwrap_or(i64::MAX);
                    self.tasks
                        .spawn(async move { Done::Edited { conn, seq, outcome: store.edit(room, seq, author, content, window_ms).await } });
                }
                Effect::Delete { seq, author, requester } => {
                    self.tasks.spawn(async move { Done::Deleted { seq, requester, outcome: store.delete(room, seq, author).await } });
                }
                Effect::Report { conn, seq, reporter } => {
                    let auto_hide = self.ctx.settings.auto_hide_reports;
                    self.tasks
                        .spawn(async move { Done::Reported { conn, seq, outcome: store.report(room, seq, reporter, auto_hide).await } });
                }
                Effect::Dismiss { seq, reply } => {
                    self.tasks.spawn(async move { Done::Dismissed { reply, outcome: store.dismiss(room, seq).await } });
                }
                Effect::Ban { author, until, reply } => {
                    self.tasks.spawn(async move {
                        let outcome = store.ban(room, author.clone(), until).await;
                        Done::Banned { author, until, reply, outcome }
                    });
                }
                Effect::Unban { author, reply } => {
                    self.tasks.spawn(async move {
                        let outcome = store.unban(room, author.clone()).await;
                        Done::Unbanned { author, reply, outcome }
                    });
                }
                Effect::SetLock { locked, reply } => {
                    self.tasks.spawn(async move { Done::Locked { locked, reply, outcome: store.set_locked(room, locked).await } });
                }
                Effect::SetSlowMode { seconds, reply } => {
                    self.tasks
                        .spawn(async move { Done::SlowModeSet { seconds, reply, outcome: store.set_slow_mode(room, seconds).await } });
                }
                Effect::Pin { seq, reply } => {
                    self.tasks.spawn(async move { Done::Pinned { unpin: seq.is_none(), reply, outcome: store.pin(room, seq).await } });
                }
                Effect::Publish(event) => self.ctx.cluster.publish(&room, &event),
                Effect::Notify(notice) => self.ctx.webhooks.notify(&room, notice),
                Effect::Subscribe => {
                    if !self.subscribed {
                        self.ctx.cluster.subscribe(&room);
                        self.subscribed = true;
                    }
                }
                Effect::SyncPresence { ours, always } => {
                    let shared = ours.is_some();
                    let sync = self.ctx.cluster.sync_presence(room, ours);
                    self.tasks.spawn(async move { Done::PresenceSynced { sync: sync.await, always, shared } });
                }
            }
        }
    }
}

/// Writes the frames the core queued for readers nobody else is writing to: up to `WRITE_SHARE`
/// here, the rest in tasks of that many each, which the runtime's workers share. A crowded post's
/// fan-out then uses every core for a wakeup per few hundred readers rather than one per reader
/// (bench/README.md, "Writing from the room"). Each write is a non-blocking write into a socket's
/// kernel buffer and never waits; what a full socket does not take is left to its session.
fn write_out(mut unwritten: Vec<Unwritten>) {
    while unwritten.len() > WRITE_SHARE {
        let part = unwritten.split_off(unwritten.len() - WRITE_SHARE);
        tokio::spawn(async move { part.into_iter().for_each(Unwritten::write) });
    }
    unwritten.into_iter().for_each(Unwritten::write);
}

/// A deadline for a disabled `select!` arm (never polled, but it must be built).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400)
}
