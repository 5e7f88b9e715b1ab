//! Who is in a room, counted by reader (authorId) rather than by connection, so two tabs of one
//! reader count once. Frames about it are coalesced by the actor; this only keeps the tally.

use std::collections::HashMap;

use crate::chat::{AuthorId, Profile};

/// Readers listed in one presence frame; `online` still counts everybody.
pub const MEMBERS_LISTED: usize = 100;

struct Reader {
    tabs: u32,
    profile: Profile,
    /// Arrival order, so the listed readers are the earliest present ones.
    since: u64,
}

#[derive(Default)]
pub struct Presence {
    readers: HashMap<AuthorId, Reader>,
    arrivals: u64,
}

impl Presence {
    /// A tab of this reader arrived. Returns whether the room's reader list changed.
    pub fn arrive(&mut self, profile: &Profile) -> bool {
        self.arrivals += 1;
        let since = self.arrivals;
        let reader = self
            .readers
            .entry(profile.author_id.clone())
            .or_insert_with(|| Reader { tabs: 0, profile: profile.clone(), since });
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

    pub fn online(&self) -> usize {
        self.readers.len()
    }

    /// The first `MEMBERS_LISTED` readers by arrival.
    pub fn listed(&self) -> Vec<&Profile> {
        let mut readers: Vec<&Reader> = self.readers.values().collect();
        readers.sort_unstable_by_key(|r| r.since);
        readers.into_iter().take(MEMBERS_LISTED).map(|r| &r.profile).collect()
    }
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
        assert_eq!(presence.online(), 2);
        assert!(!presence.leave(&AuthorId::from_store("a")));
        assert_eq!(presence.online(), 2);
        assert!(presence.leave(&AuthorId::from_store("a")));
        assert_eq!(presence.online(), 1);
    }

    #[test]
    fn the_list_is_capped_and_in_arrival_order() {
        let mut presence = Presence::default();
        for i in 0..150 {
            presence.arrive(&profile(&format!("{i:016x}"), "x"));
        }
        let listed = presence.listed();
        assert_eq!(listed.len(), MEMBERS_LISTED);
        assert_eq!(listed[0].author_id.as_str(), format!("{:016x}", 0));
        assert_eq!(presence.online(), 150);
    }
}
