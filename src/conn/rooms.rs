//! Rooms on one loop: which of *this loop's* connections are members of
//! which room ([`Rooms`], the loop's own, never locked), and the member
//! counts other threads read ([`RoomCounts`], behind a lock taken only when
//! membership changes or a count is read, never to publish).
//!
//! A room exists on a loop while it has a member there: the last member
//! leaving (or closing) removes it, so memory follows membership. Members
//! are kept by their whole [`ConnId`] (loop, slot and generation): a stale
//! id never names the slot's next occupant.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxBuildHasher;

use crate::error::{Error, Result};
use crate::id::ConnId;

/// The longest room name, in bytes. Longer names (and empty ones) are
/// refused with [`Error::RoomName`].
pub const MAX_ROOM_NAME: usize = 256;

/// The most rooms one connection may be a member of at once; one more
/// join is refused with [`Error::TooManyRooms`]. It bounds what a peer
/// that picks room names (a chat client) can make the server hold.
pub const MAX_ROOMS_PER_CONN: usize = 128;

/// Check a room name: 1 to [`MAX_ROOM_NAME`] bytes.
pub(crate) fn check_name(room: &str) -> Result<()> {
    if room.is_empty() || room.len() > MAX_ROOM_NAME {
        return Err(Error::RoomName(room.len()));
    }
    Ok(())
}

/// One loop's rooms. Room names may come from peers: that map hashes with
/// SipHash (`HashMap`'s default); connection ids are netloom's own, hashed
/// with Fx.
#[derive(Default)]
pub(crate) struct Rooms {
    /// Room name → its members on this loop (never empty).
    members: HashMap<Arc<str>, HashSet<ConnId, FxBuildHasher>>,
    /// Connection → the rooms it is in (never empty), for its close.
    of_conn: HashMap<ConnId, Vec<Arc<str>>, FxBuildHasher>,
}

impl Rooms {
    /// Make `id` a member of `room` (its name checked by the caller, the
    /// connection known open). True if it was not a member yet.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyRooms`] if it is in [`MAX_ROOMS_PER_CONN`] rooms.
    pub(crate) fn join(&mut self, id: ConnId, room: &str, counts: &RoomCounts) -> Result<bool> {
        let mine = self.of_conn.entry(id).or_default();
        if mine.iter().any(|r| &**r == room) {
            return Ok(false);
        }
        if mine.len() >= MAX_ROOMS_PER_CONN {
            return Err(Error::TooManyRooms(MAX_ROOMS_PER_CONN));
        }
        // One allocation of the name, shared by both maps and the counts.
        let name = match self.members.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        mine.push(name.clone());
        self.members.entry(name.clone()).or_default().insert(id);
        counts.add(&name, 1);
        Ok(true)
    }

    /// End `id`'s membership of `room`. True if it was a member.
    pub(crate) fn leave(&mut self, id: ConnId, room: &str, counts: &RoomCounts) -> bool {
        let Some(mine) = self.of_conn.get_mut(&id) else {
            return false;
        };
        let Some(at) = mine.iter().position(|r| &**r == room) else {
            return false;
        };
        let name = mine.swap_remove(at);
        if mine.is_empty() {
            self.of_conn.remove(&id);
        }
        self.drop_member(&name, id);
        counts.remove(std::iter::once(&name));
        true
    }

    /// A connection is gone: end all its memberships.
    pub(crate) fn remove_conn(&mut self, id: ConnId, counts: &RoomCounts) {
        let Some(mine) = self.of_conn.remove(&id) else {
            return;
        };
        for name in &mine {
            self.drop_member(name, id);
        }
        counts.remove(mine.iter());
    }

    fn drop_member(&mut self, room: &Arc<str>, id: ConnId) {
        if let Some(set) = self.members.get_mut(room) {
            set.remove(&id);
            if set.is_empty() {
                self.members.remove(room);
            } else {
                shrink_set(set);
            }
        }
        shrink_map(&mut self.members);
        shrink_map(&mut self.of_conn);
    }

    /// The members of `room` on this loop, but `except`.
    pub(crate) fn members(&self, room: &str, except: Option<ConnId>) -> Vec<ConnId> {
        self.members.get(room).map_or_else(Vec::new, |set| {
            set.iter()
                .filter(|id| Some(**id) != except)
                .copied()
                .collect()
        })
    }

    /// Whether `id` is a member of `room`.
    #[cfg(test)]
    fn is_member(&self, id: ConnId, room: &str) -> bool {
        self.members.get(room).is_some_and(|set| set.contains(&id))
    }

    /// How many rooms have a member on this loop.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.members.len()
    }
}

/// The capacity a map or set of `len` entries in `capacity` places gives
/// its memory back down to, once it is less than a quarter full (a spike
/// of rooms or members gone): room for as many entries again. Memory
/// follows membership, amortised O(1).
fn shrunk(len: usize, capacity: usize) -> Option<usize> {
    (capacity > 64 && len < capacity / 4).then_some(len * 2)
}

/// [`shrunk`] for a map.
fn shrink_map<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(map: &mut HashMap<K, V, S>) {
    if let Some(to) = shrunk(map.len(), map.capacity()) {
        map.shrink_to(to);
    }
}

/// [`shrunk`] for a member set.
fn shrink_set<T: std::hash::Hash + Eq, S: std::hash::BuildHasher>(set: &mut HashSet<T, S>) {
    if let Some(to) = shrunk(set.len(), set.capacity()) {
        set.shrink_to(to);
    }
}

/// One loop's member count per room, for other threads (`Hub::room_len`,
/// presence). The loop writes it as memberships change; a reader holds the
/// lock for one look-up.
#[derive(Debug, Default)]
pub(crate) struct RoomCounts {
    counts: Mutex<HashMap<Arc<str>, usize>>,
    /// Moves whenever a room appears on this loop or leaves it (its first
    /// member joined, its last left): readers that track which rooms
    /// exist (the cluster's subscriptions) look again only then.
    changes: AtomicU64,
}

impl RoomCounts {
    fn add(&self, room: &Arc<str>, n: usize) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(room.clone()).or_default();
        if *count == 0 {
            self.changes.fetch_add(1, Ordering::Release);
        }
        *count += n;
    }

    fn remove<'r>(&self, rooms: impl Iterator<Item = &'r Arc<str>>) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for room in rooms {
            if let Some(n) = counts.get_mut(room) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(room);
                    self.changes.fetch_add(1, Ordering::Release);
                }
            }
        }
        shrink_map(&mut counts);
    }

    /// Members of `room` on this loop.
    pub(crate) fn get(&self, room: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(room).copied().unwrap_or(0)
    }

    /// Every room with a member on this loop, with its count.
    pub(crate) fn all(&self) -> Vec<(Arc<str>, usize)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.iter().map(|(r, n)| (r.clone(), *n)).collect()
    }

    /// How many times a room appeared or left (wrapping): compare two
    /// readings to know whether the set of rooms may have changed.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: usize, generation: u32) -> ConnId {
        ConnId::new(1, 0, key, generation)
    }

    #[test]
    fn join_leave_and_close_keep_counts_and_drop_empty_rooms() {
        let (mut rooms, counts) = (Rooms::default(), RoomCounts::default());
        assert!(rooms.join(id(1, 1), "a", &counts).unwrap());
        assert!(!rooms.join(id(1, 1), "a", &counts).unwrap(), "twice");
        assert!(rooms.join(id(2, 1), "a", &counts).unwrap());
        assert!(rooms.join(id(2, 1), "b", &counts).unwrap());
        assert_eq!((counts.get("a"), counts.get("b")), (2, 1));
        assert!(rooms.leave(id(1, 1), "a", &counts));
        assert!(!rooms.leave(id(1, 1), "a", &counts));
        rooms.remove_conn(id(2, 1), &counts);
        assert_eq!((counts.get("a"), counts.get("b")), (0, 0));
        assert_eq!(rooms.len(), 0, "empty rooms are removed");
        for i in 0..10_000 {
            rooms
                .join(id(i, 1), &format!("spike{}", i % 5000), &counts)
                .unwrap();
        }
        for i in 0..10_000 {
            rooms.remove_conn(id(i, 1), &counts);
        }
        assert!(
            rooms.members.capacity() <= 128,
            "{}",
            rooms.members.capacity()
        );
        assert!(
            rooms.of_conn.capacity() <= 128,
            "{}",
            rooms.of_conn.capacity()
        );
        assert!(rooms.of_conn.is_empty());
        assert!(counts.counts.lock().unwrap().is_empty());
    }

    #[test]
    fn a_stale_id_never_touches_the_slots_next_occupant() {
        let (mut rooms, counts) = (Rooms::default(), RoomCounts::default());
        rooms.join(id(3, 2), "a", &counts).unwrap();
        assert!(!rooms.leave(id(3, 1), "a", &counts), "older generation");
        rooms.remove_conn(id(3, 1), &counts);
        let other_loop = ConnId::new(1, 1, 3, 2);
        assert!(
            !rooms.leave(other_loop, "a", &counts),
            "twin on another loop"
        );
        assert!(rooms.is_member(id(3, 2), "a"));
        assert_eq!(counts.get("a"), 1);
    }

    #[test]
    fn members_skip_except_and_joins_are_bounded() {
        let (mut rooms, counts) = (Rooms::default(), RoomCounts::default());
        for i in 0..MAX_ROOMS_PER_CONN {
            rooms.join(id(1, 1), &format!("r{i}"), &counts).unwrap();
        }
        let refused = rooms.join(id(1, 1), "one more", &counts);
        assert!(matches!(refused, Err(Error::TooManyRooms(_))));
        assert_eq!(rooms.of_conn[&id(1, 1)].len(), MAX_ROOMS_PER_CONN);
        rooms.join(id(2, 1), "r0", &counts).unwrap();
        assert_eq!(rooms.members("r0", Some(id(1, 1))), vec![id(2, 1)]);
        assert!(rooms.members("nowhere", None).is_empty());
    }

    /// `shrink_map` and `shrink_set` give memory back from a map of more
    /// than 64 places less than a quarter full, and only then, keeping
    /// room for as many entries again: a map's capacity before, its
    /// length and its capacity after, filled to `len(capacity)` entries.
    #[test]
    fn maps_shrink_only_when_large_and_under_a_quarter_full() {
        fn map(reserve: usize, len: fn(usize) -> usize) -> (usize, usize, usize) {
            let mut map = HashMap::<usize, ()>::with_capacity(reserve);
            let before = map.capacity();
            map.extend((0..len(before)).map(|k| (k, ())));
            shrink_map(&mut map);
            (before, map.len(), map.capacity())
        }
        fn set(reserve: usize, len: fn(usize) -> usize) -> (usize, usize, usize) {
            let mut set = HashSet::<usize>::with_capacity(reserve);
            let before = set.capacity();
            set.extend(0..len(before));
            shrink_set(&mut set);
            (before, set.len(), set.capacity())
        }
        for sized in [map, set] {
            let (before, _, after) = sized(100, |cap| cap / 4);
            assert!(before > 64 && after == before, "a quarter full: kept");
            let (before, _, after) = sized(50, |_| 1);
            assert!(before <= 64 && after == before, "small: kept");
            for quarter in [|cap| cap / 4 - 1, |cap| cap / 10] {
                let (before, len, after) = sized(200, quarter);
                assert!(before > 64 && after < before, "under a quarter: shrunk");
                assert!(after >= 2 * len, "{len} in {after}: no room for as many");
            }
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("lobby").is_ok());
        assert!(check_name(&"x".repeat(MAX_ROOM_NAME)).is_ok());
        assert!(matches!(check_name(""), Err(Error::RoomName(0))));
        let long = "x".repeat(MAX_ROOM_NAME + 1);
        assert!(matches!(check_name(&long), Err(Error::RoomName(257))));
    }
}
