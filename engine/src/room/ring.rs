//! The room's recent messages in memory, already serialized, so joins and resumes are answered
//! without touching the store. Invariant: the ring holds every non-deleted message with a seq
//! above `floor` (the newest message it ever evicted).

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::chat::{Message, Seq};

pub struct Entry {
    pub seq: Seq,
    /// The `Message` object as JSON, shared by every welcome and history answer.
    pub json: Utf8Bytes,
}

impl Entry {
    pub fn new(message: &Message) -> Entry {
        Entry {
            seq: message.seq,
            json: serde_json::to_string(message).unwrap_or_default().into(),
        }
    }
}

pub struct Ring {
    entries: VecDeque<Entry>,
    capacity: usize,
    floor: Seq,
}

impl Ring {
    /// `recent` are the newest stored messages, oldest first; `complete` says whether they are all
    /// the room has (otherwise the ring starts with a floor below the oldest of them).
    pub fn new(capacity: usize, recent: &[Message], complete: bool) -> Ring {
        let entries: VecDeque<Entry> = recent.iter().map(Entry::new).collect();
        let floor = match (complete, entries.front()) {
            (false, Some(first)) => first.seq - 1,
            _ => 0,
        };
        Ring { entries, capacity, floor }
    }

    pub fn push(&mut self, entry: Entry) {
        if self.entries.len() == self.capacity {
            if let Some(old) = self.entries.pop_front() {
                self.floor = old.seq;
            }
        }
        self.entries.push_back(entry);
    }

    pub fn remove(&mut self, seq: Seq) {
        if let Ok(at) = self.entries.binary_search_by_key(&seq, |e| e.seq) {
            self.entries.remove(at);
        }
    }

    /// The newest `n` messages, oldest first, when the ring is sure to have them.
    pub fn latest(&self, n: usize) -> Option<impl Iterator<Item = &Entry>> {
        (self.entries.len() >= n || self.floor == 0).then(|| self.entries.iter().skip(self.entries.len().saturating_sub(n)))
    }

    /// Every message after `seq`, oldest first, when the ring is sure to have them all.
    pub fn after(&self, seq: Seq) -> Option<impl Iterator<Item = &Entry>> {
        (seq >= self.floor).then(|| {
            let start = self.entries.partition_point(|e| e.seq <= seq);
            self.entries.range(start..)
        })
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
        }
    }

    fn seqs<'a>(it: impl Iterator<Item = &'a Entry>) -> Vec<Seq> {
        it.map(|e| e.seq).collect()
    }

    #[test]
    fn evicting_raises_the_floor_and_after_refuses_below_it() {
        let mut ring = Ring::new(3, &[msg(1), msg(2)], true);
        assert_eq!(seqs(ring.after(0).unwrap()), vec![1, 2]);
        ring.push(Entry::new(&msg(3)));
        ring.push(Entry::new(&msg(4)));
        assert!(ring.after(0).is_none());
        assert_eq!(seqs(ring.after(1).unwrap()), vec![2, 3, 4]);
        assert_eq!(seqs(ring.latest(2).unwrap()), vec![3, 4]);
    }

    #[test]
    fn deletions_leave_the_ring_short_but_honest() {
        let mut ring = Ring::new(3, &[msg(5), msg(6), msg(7)], false);
        ring.remove(6);
        assert!(ring.latest(3).is_none(), "older messages live only in the store");
        assert_eq!(seqs(ring.after(5).unwrap()), vec![7]);
    }
}
