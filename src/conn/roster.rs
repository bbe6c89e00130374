//! [`Roster`]: which connections a loop has open, readable from any thread
//! without asking the loop (so listing connections never waits on a loop,
//! however busy or stuck it is).

use std::sync::{Mutex, PoisonError};

use super::rooms::RoomCounts;
use crate::id::ConnId;

/// One loop's open connections: the generation of each occupied slot of
/// its table (0: free). The loop writes it when a connection opens or is
/// removed; readers copy it under a lock held for that copy only.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    slots: Mutex<Vec<u32>>,
    /// The loop's member count per room (written by its `ConnTable`).
    pub(crate) rooms: RoomCounts,
}

impl Roster {
    /// Slot `key` now holds the connection of `generation` (never 0).
    pub(crate) fn add(&self, key: usize, generation: u32) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() <= key {
            slots.resize(key + 1, 0);
        }
        slots[key] = generation;
    }

    /// Slot `key` is free again.
    pub(crate) fn remove(&self, key: usize) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = slots.get_mut(key) {
            *g = 0;
        }
    }

    /// The ids of the connections open now on loop `loop_index` of the
    /// server tagged `server`.
    pub(crate) fn ids(&self, server: u32, loop_index: usize) -> Vec<ConnId> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .iter()
            .enumerate()
            .filter(|(_, &g)| g != 0)
            .map(|(key, &g)| ConnId::new(server, loop_index, key, g))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_is_open() {
        let r = Roster::default();
        r.add(3, 7);
        r.add(0, 1);
        r.remove(3);
        r.add(5, 2);
        r.remove(9);
        assert_eq!(
            r.ids(7, 2),
            [ConnId::new(7, 2, 0, 1), ConnId::new(7, 2, 5, 2)]
        );
    }
}
