//! [`ConnId`]: the name of one connection, valid on any thread.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

/// Identifies one connection of one server for the lifetime of the server.
///
/// It is the server's tag (unique among the servers of a process), the
/// owning event loop's index, the connection's slot in that loop's table
/// and the slot's generation. The generation makes ids unique even when a
/// slot is reused: a message sent to a closed connection's id never
/// reaches the connection that took its slot; the tag keeps an id of one
/// server from naming a connection of another (`hub_b.conn(id_of_a)`
/// sends nothing).
///
/// Displayed as `loop:slot.generation`, e.g. `0:17.3` (without the
/// server's tag: two servers of one process may log alike ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) server: u32,
    pub(crate) loop_index: u32,
    pub(crate) key: u32,
    pub(crate) generation: u32,
}

/// A tag for a server starting now: never 0, unique among the servers of
/// the process until 2^32 − 1 of them have started.
pub(crate) fn next_server_tag() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let tag = NEXT.fetch_add(1, Ordering::Relaxed);
        if tag != 0 {
            return tag;
        }
    }
}

impl ConnId {
    #[inline]
    pub(crate) fn new(server: u32, loop_index: usize, key: usize, generation: u32) -> Self {
        ConnId {
            server,
            loop_index: loop_index as u32,
            key: key as u32,
            generation,
        }
    }

    /// The event loop that owns the connection.
    #[inline]
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }

    /// The connection's slot in its loop's table. Read only by
    /// `ConnTable::lookup`, which checks the loop and the generation with
    /// it: no other code splits an id into parts.
    #[inline]
    pub(crate) fn key(&self) -> usize {
        self.key as usize
    }

    /// The id as one number, for logs, databases and maps in other
    /// systems. Lossless: [`from_u128`](Self::from_u128) gives the id back.
    ///
    /// Layout (bit 0 is the least significant):
    ///
    /// ```text
    ///  127        96 95         64 63          32 31           0
    /// ┌─────────────┬─────────────┬──────────────┬──────────────┐
    /// │ server tag  │ loop index  │     slot     │  generation  │
    /// └─────────────┴─────────────┴──────────────┴──────────────┘
    /// ```
    ///
    /// The high 64 bits are the server's tag (never 0) and the loop index
    /// (below 1024: `event_loops` is at most that), the low 64 bits the
    /// slot and generation, so a
    /// system without 128-bit integers can keep the two halves as two
    /// 64-bit numbers. No 64-bit form is offered: slot and generation
    /// take 64 bits by themselves, and dropping generation bits would let
    /// a stale id name a newer connection in the same slot.
    ///
    /// ```
    /// # fn handler(ctx: &mut netloom::Context<'_>) {
    /// let n: u128 = ctx.id().to_u128();
    /// assert_eq!(netloom::ConnId::from_u128(n), Some(ctx.id()));
    /// # }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    pub fn to_u128(&self) -> u128 {
        (u128::from(self.server) << 96)
            | (u128::from(self.loop_index) << 64)
            | (u128::from(self.key) << 32)
            | u128::from(self.generation)
    }

    /// The id [`to_u128`](Self::to_u128) made: `None` if the server tag
    /// (bits 96 to 127) is 0 (no id has that). A well-formed number of an
    /// id that never existed, or of another server's, gives an id whose
    /// sends fail with [`Error::Closed`](crate::Error::Closed).
    pub fn from_u128(n: u128) -> Option<ConnId> {
        let server = (n >> 96) as u32;
        if server == 0 {
            return None;
        }
        Some(ConnId {
            server,
            loop_index: (n >> 64) as u32,
            key: (n >> 32) as u32,
            generation: n as u32,
        })
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}.{}", self.loop_index, self.key, self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_round_trips_and_keeps_its_layout() {
        for (s, l, k, g) in [
            (1, 0, 0, 0),
            (1, 0, 1, 2),
            (u32::MAX, 1023, u32::MAX as usize, u32::MAX),
            (9, 7, 123_456, 1),
            (2, u32::MAX as usize, 5, 9),
        ] {
            let id = ConnId::new(s, l, k, g);
            let n = id.to_u128();
            assert_eq!(ConnId::from_u128(n), Some(id), "{id}");
            assert_eq!((n >> 96) as u32, s);
            assert_eq!((n >> 64) as u32 as usize, l);
            assert_eq!((n as u64) >> 32, k as u64);
            assert_eq!(n as u32, g);
        }
        assert_eq!(ConnId::new(1, 0, 1, 2).to_u128(), (1 << 96) | (1 << 32) | 2);
        // Distinct ids, distinct numbers: the generation is never dropped,
        // nor the server.
        assert_ne!(
            ConnId::new(1, 0, 1, 2).to_u128(),
            ConnId::new(1, 0, 1, 3).to_u128()
        );
        assert_ne!(ConnId::new(1, 0, 1, 2), ConnId::new(2, 0, 1, 2));
        assert_eq!(
            ConnId::from_u128((1 << 64) | 5),
            None,
            "no server has tag 0"
        );
    }

    #[test]
    fn server_tags_are_never_zero_and_differ() {
        let (a, b) = (next_server_tag(), next_server_tag());
        assert!(a != 0 && b != 0 && a != b);
    }
}
