//! Who is in a room, counted by reader (authorId) rather than by connection, so two tabs of one
//! reader count once. This keeps the pod's own tally; `room_wide` merges it with the readers
//! other pods report. Frames about it are coalesced by the actor.

use std::collections::HashMap;

use crate::bus::presence::Present;
use crate::chat::{now_millis, AuthorId, Profile};

/// Readers listed in one presence frame; `online` still counts everybody.
pub const MEMBERS_LISTED: usize = 100;

struct Reader {
    tabs: u32,
    profile: Profile,
    since: i64,
}

#[derive(Default)]
pub struct Presence {
    readers: HashMap<AuthorId, Reader>,
}

impl Presence {
    /// A tab of this reader arrived. Returns whether the room's reader list changed.
    pub fn arrive(&mut self, profile: &Profile) -> bool {
        let reader = self.readers.entry(profile.author_id.clone()).or_insert_with(|| Reader {
            tabs: 0,
            profile: profile.clone(),
            since: now_millis(),
        });
        reader.tabs += 1;
        let changed = reader.tabs == 1 || reader.profile != *profile;
        reader.profile = profile.clone();
        changed
    }

    /// A tab of this reader left. Returns whether the room's reader list changed.
    pub fn leave(&mut self, author: &AuthorId) -> bool {
        let Some(reader) = self.readers.get_mut(author) else { return false };
        reader.tabs -= 1;
        if reader.tabs == 0 {
            self.readers.remove(author);
            return true;
        }
        false
    }

    /// The reader changed nickname or avatar (in any tab).
    pub fn rename(&mut self, profile: &Profile) -> bool {
        match self.readers.get_mut(&profile.author_id) {
            Some(reader) if reader.profile != *profile => {
                reader.profile = profile.clone();
                true
            }
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    /// Whether this reader has a tab in the room on this pod.
    pub fn is_here(&self, author: &AuthorId) -> bool {
        self.readers.contains_key(author)
    }

    /// Readers online in the room: ours, plus those only other pods have (a reader with tabs on
    /// two other pods is reported by both).
    pub fn online_with(&self, remote: &[Present]) -> usize {
        let elsewhere: std::collections::HashSet<&AuthorId> =
            remote.iter().map(|r| &r.author_id).filter(|id| !self.readers.contains_key(*id)).collect();
        self.readers.len() + elsewhere.len()
    }

    /// This pod's readers, as other pods will see them.
    pub fn readers(&self) -> Vec<Present> {
        self.readers
            .values()
            .map(|r| Present {
                author_id: r.profile.author_id.clone(),
                nickname: r.profile.nickname.clone(),
                avatar: r.profile.avatar.clone(),
                since: r.since,
            })
            .collect()
    }
}

/// The room's readers on every pod: each reader once (the earliest arrival wins), the count of
/// all of them, and the first `MEMBERS_LISTED` by arrival.
pub fn room_wide(local: Vec<Present>, remote: &[Present]) -> (usize, Vec<Profile>) {
    let mut all: HashMap<AuthorId, Present> = HashMap::with_capacity(local.len() + remote.len());
    for reader in local.into_iter().chain(remote.iter().cloned()) {
        match all.get(&reader.author_id) {
            Some(known) if known.since <= reader.since => {}
            _ => {
                all.insert(reader.author_id.clone(), reader);
            }
        }
    }
    let online = all.len();
    let mut readers: Vec<Present> = all.into_values().collect();
    readers.sort_unstable_by(|a, b| (a.since, a.author_id.as_str()).cmp(&(b.since, b.author_id.as_str())));
    (online, readers.iter().take(MEMBERS_LISTED).map(Present::profile).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: &str, nickname: &str) -> Profile {
        Profile { author_id: AuthorId::from_store(id), nickname: nickname.into(), avatar: "fox".into() }
    }

    #[test]
    fn two_tabs_count_once() {
        let mut presence = Presence::default();
        assert!(presence.arrive(&profile("a", "Ann")));
        assert!(!presence.arrive(&profile("a", "Ann")));
        assert!(presence.arrive(&profile("b", "Bob")));
        assert_eq!(room_wide(presence.readers(), &[]).0, 2);
        assert!(!presence.leave(&AuthorId::from_store("a")));
        assert_eq!(room_wide(presence.readers(), &[]).0, 2);
        assert!(presence.leave(&AuthorId::from_store("a")));
        assert_eq!(room_wide(presence.readers(), &[]).0, 1);
    }

    #[test]
    fn the_list_is_capped_merged_across_pods_and_in_arrival_order() {
        let present = |i: i64| Present {
            author_id: AuthorId::from_store(&format!("{i:016x}")),
            nickname: "x".into(),
            avatar: String::new(),
            since: i,
        };
        let local: Vec<Present> = (0..100).map(|i| present(i * 2)).collect();
        let remote: Vec<Present> = (0..50).map(|i| present(i * 2 + 1)).chain([present(0)]).collect();
        let (online, listed) = room_wide(local, &remote);
        assert_eq!(online, 150, "a reader on two pods counts once");
        let mut presence = Presence::default();
        presence.arrive(&profile("0000000000000001", "here"));
        let twice = [present(7), present(7), present(1)];
        assert_eq!(presence.online_with(&twice), 2, "a reader on two other pods counts once");
        assert_eq!(listed.len(), MEMBERS_LISTED);
        assert_eq!(listed[1].author_id.as_str(), format!("{:016x}", 1));
    }
}
