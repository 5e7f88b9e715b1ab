//! The room's recent messages in memory, already serialized, so joins and resumes are answered
//! without touching the store. Invariant: the ring holds every message that is not deleted or
//! hidden with a seq above `floor` (the newest message it ever dropped).
//!
//! A ring is bounded by count and by bytes, and its bytes count towards the pod-wide budget
//! (`budget.rs`), which may ask it to drop its oldest entries when other rooms are more active.

use std::collections::VecDeque;
use std::sync::Arc;

use super::budget::{RingBudget, RingUsage};
use crate::chat::{Message, Seq};
use crate::protocol::MessageJson;

/// What an entry costs besides its JSON: the slot in the deque and the shared bytes' header.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 32;

pub struct Entry {
    pub seq: Seq,
    /// The `Message` object as JSON, shared by every welcome and history answer.
    pub json: MessageJson,
    /// The message this one answers, so its quote can follow the original's changes.
    pub reply_to: Option<Seq>,
}

/// Just the seq a message's `replyTo` names.
#[derive(serde::Deserialize)]
struct ReplyOf {
    #[serde(rename = "replyTo")]
    reply_to: Option<QuotedSeq>,
}

#[derive(serde::Deserialize)]
struct QuotedSeq {
    seq: Seq,
}

impl Entry {
    pub fn new(message: &Message) -> Entry {
        // Into an exactly sized `Arc<str>`: the serializer's buffer grew by doubling, and a ring
        // entry should cost its length only.
        let json = serde_json::to_string(message).unwrap_or_default();
        Entry { seq: message.seq, json: json.into(), reply_to: message.reply_to.as_ref().map(|q| q.seq) }
    }

    /// An entry for a message serialized elsewhere (another pod's).
    pub fn from_json(seq: Seq, json: MessageJson) -> Entry {
        let reply_to = serde_json::from_str::<ReplyOf>(&json).ok().and_then(|r| r.reply_to).map(|q| q.seq);
        Entry { seq, json, reply_to }
    }

    /// The message back from its JSON, to change it (a reaction, an edit, a quote).
    pub fn message(&self) -> Option<Message> {
        serde_json::from_str(&self.json).ok()
    }

    fn cost(&self) -> usize {
        self.json.len() + ENTRY_OVERHEAD
    }
}

/// The limits a ring is held to.
#[derive(Clone)]
pub struct RingLimits {
    pub count: usize,
    pub bytes: usize,
    pub budget: Arc<RingBudget>,
}

pub struct Ring {
    entries: VecDeque<Entry>,
    limits: RingLimits,
    usage: Arc<RingUsage>,
    /// Sum of the entries' costs.
    bytes: usize,
    floor: Seq,
}

impl Ring {
    /// `recent` are the newest stored messages, oldest first; `complete` says whether they are all
    /// the room has (otherwise the ring starts with a floor below the oldest of them).
    pub fn new(limits: RingLimits, usage: Arc<RingUsage>, recent: &[Message], complete: bool) -> Ring {
        let floor = match (complete, recent.first()) {
            (false, Some(first)) => first.seq - 1,
            _ => 0,
        };
        let mut ring = Ring { entries: VecDeque::new(), limits, usage, bytes: 0, floor };
        for message in recent {
            ring.push(Entry::new(message));
        }
        ring
    }

    pub fn push(&mut self, entry: Entry) {
        self.add_bytes(entry.cost());
        self.entries.push_back(entry);
        while self.entries.len() > self.limits.count || self.bytes > self.limits.bytes {
            self.pop_oldest();
        }
    }

    /// Puts back a message that was taken out (hidden, then kept by the owner) at its place in
    /// seq order. One at or below the floor is not the ring's to hold.
    pub fn restore(&mut self, entry: Entry) {
        if entry.seq <= self.floor {
            return;
        }
        let Err(at) = self.entries.binary_search_by_key(&entry.seq, |e| e.seq) else { return };
        self.add_bytes(entry.cost());
        self.entries.insert(at, entry);
        while self.entries.len() > self.limits.count || self.bytes > self.limits.bytes {
            self.pop_oldest();
        }
    }

    pub fn get(&self, seq: Seq) -> Option<&Entry> {
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok().and_then(|at| self.entries.get(at))
    }

    /// Replaces the entry with this seq (a reaction or an edit changed its message), if held.
    pub fn replace(&mut self, entry: Entry) {
        let Ok(at) = self.entries.binary_search_by_key(&entry.seq, |e| e.seq) else { return };
        let (old, new) = (self.entries[at].cost(), entry.cost());
        self.entries[at] = entry;
        self.add_bytes(new);
        self.sub_bytes(old);
        while self.entries.len() > self.limits.count || self.bytes > self.limits.bytes {
            self.pop_oldest();
        }
    }

    /// The seqs of the messages held that answer `seq`.
    pub fn replies_to(&self, seq: Seq) -> Vec<Seq> {
        self.entries.iter().filter(|e| e.reply_to == Some(seq)).map(|e| e.seq).collect()
    }

    /// The oldest seq held.
    pub fn oldest(&self) -> Option<Seq> {
        self.entries.front().map(|e| e.seq)
    }

    pub fn remove(&mut self, seq: Seq) {
        if let Ok(at) = self.entries.binary_search_by_key(&seq, |e| e.seq) {
            if let Some(entry) = self.entries.remove(at) {
                self.sub_bytes(entry.cost());
            }
        }
    }

    /// Drops the oldest entries until at least `bytes` are freed (or the ring is empty), for the
    /// pod's budget. Returns how many entries went.
    pub fn shed(&mut self, bytes: usize) -> usize {
        let target = self.bytes.saturating_sub(bytes);
        let mut dropped = 0;
        while self.bytes > target && self.pop_oldest() {
            dropped += 1;
        }
        dropped
    }

    fn pop_oldest(&mut self) -> bool {
        let Some(old) = self.entries.pop_front() else { return false };
        self.floor = self.floor.max(old.seq);
        self.sub_bytes(old.cost());
        true
    }

    fn add_bytes(&mut self, n: usize) {
        self.bytes += n;
        self.usage.set_bytes(self.bytes);
        self.limits.budget.add(n);
    }

    fn sub_bytes(&mut self, n: usize) {
        self.bytes -= n;
        self.usage.set_bytes(self.bytes);
        self.limits.budget.sub(n);
    }

    /// Bytes of JSON the ring holds (its messages as a welcome would carry them).
    pub fn json_bytes(&self) -> usize {
        self.bytes - self.entries.len() * ENTRY_OVERHEAD
    }

    /// The newest `n` messages, oldest first, when the ring is sure to have them.
    pub fn latest(&self, n: usize) -> Option<impl DoubleEndedIterator<Item = &Entry>> {
        (self.entries.len() >= n || self.floor == 0).then(|| self.entries.iter().skip(self.entries.len().saturating_sub(n)))
    }

    /// Every message after `seq`, oldest first, when the ring is sure to have them all.
    pub fn after(&self, seq: Seq) -> Option<impl DoubleEndedIterator<Item = &Entry>> {
        (seq >= self.floor).then(|| {
            let start = self.entries.partition_point(|e| e.seq <= seq);
            self.entries.range(start..)
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.limits.budget.sub(self.bytes);
        self.usage.set_bytes(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{AuthorId, RoomId};

    fn msg(seq: Seq) -> Message {
        Message {
            seq,
            room_id: RoomId::parse("r").unwrap(),
            author_id: AuthorId::from_store("0123456789abcdef"),
            nickname: "nick".into(),
            avatar: "otter".into(),
            content: format!("m{seq}"),
            created_at: 0,
            client_id: format!("c{seq}"),
            reactions: Default::default(),
            reply_to: None,
            edited_at: None,
        }
    }

    fn limits(count: usize, bytes: usize) -> RingLimits {
        RingLimits { count, bytes, budget: Arc::new(RingBudget::new(usize::MAX)) }
    }

    fn ring(limits: RingLimits, recent: &[Message], complete: bool) -> Ring {
        Ring::new(limits, Arc::new(RingUsage::default()), recent, complete)
    }

    fn seqs<'a>(it: impl Iterator<Item = &'a Entry>) -> Vec<Seq> {
        it.map(|e| e.seq).collect()
    }

    #[test]
    fn evicting_raises_the_floor_and_after_refuses_below_it() {
        let mut ring = ring(limits(3, usize::MAX), &[msg(1), msg(2)], true);
        assert_eq!(seqs(ring.after(0).unwrap()), vec![1, 2]);
        ring.push(Entry::new(&msg(3)));
        ring.push(Entry::new(&msg(4)));
        assert!(ring.after(0).is_none());
        assert_eq!(seqs(ring.after(1).unwrap()), vec![2, 3, 4]);
        assert_eq!(seqs(ring.latest(2).unwrap()), vec![3, 4]);
    }

    #[test]
    fn deletions_leave_the_ring_short_but_honest() {
        let mut ring = ring(limits(3, usize::MAX), &[msg(5), msg(6), msg(7)], false);
        ring.remove(6);
        assert!(ring.latest(3).is_none(), "older messages live only in the store");
        assert_eq!(seqs(ring.after(5).unwrap()), vec![7]);
    }

    #[test]
    fn a_restored_message_goes_back_in_seq_order_unless_below_the_floor() {
        let mut ring = ring(limits(3, usize::MAX), &[msg(5), msg(6), msg(7)], false);
        ring.remove(6);
        ring.restore(Entry::new(&msg(6)));
        ring.restore(Entry::new(&msg(6)));
        assert_eq!(seqs(ring.after(4).unwrap()), vec![5, 6, 7], "once, in its place");
        ring.restore(Entry::new(&msg(4)));
        assert_eq!(seqs(ring.after(4).unwrap()), vec![5, 6, 7], "4 is below the floor: the store has it");
    }

    #[test]
    fn bytes_bound_the_ring_and_count_in_the_budget() {
        let one = Entry::new(&msg(1)).cost();
        let budget = Arc::new(RingBudget::new(usize::MAX));
        let limits = RingLimits { count: 100, bytes: one * 3, budget: budget.clone() };
        let mut ring = ring(limits, &[msg(1), msg(2), msg(3), msg(4)], true);
        assert_eq!(seqs(ring.after(1).unwrap()), vec![2, 3, 4], "the oldest went to stay under the byte cap");
        assert!(ring.after(0).is_none());
        assert_eq!(budget.used(), one * 3);
        assert_eq!(ring.shed(one + 1), 2, "shedding frees whole entries, oldest first");
        assert_eq!(seqs(ring.after(3).unwrap()), vec![4]);
        assert!(ring.latest(2).is_none(), "what was shed is read from the store");
        drop(ring);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn an_entry_costs_about_its_json() {
        let mut m = msg(1);
        m.content = "가".repeat(2000);
        let entry = Entry::new(&m);
        assert!(entry.cost() < entry.json.len() + 128, "{} for {} bytes of JSON", entry.cost(), entry.json.len());
    }
}
