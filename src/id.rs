//! [`ConnId`]: the name of one connection, valid on any thread.

use std::fmt;

/// Identifies one connection for the lifetime of the server.
///
/// It is the owning event loop's index, the connection's slot in that
/// loop's table and the slot's generation. The generation makes ids unique
/// even when a slot is reused: a message sent to a closed connection's id
/// never reaches the connection that took its slot.
///
/// Displayed as `loop:slot.generation`, e.g. `0:17.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) loop_index: u32,
    pub(crate) key: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    pub(crate) fn new(loop_index: usize, key: usize, generation: u32) -> Self {
        ConnId {
            loop_index: loop_index as u32,
            key: key as u32,
            generation,
        }
    }

    /// The event loop that owns the connection.
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }

    /// The connection's slot in its loop's table.
    pub(crate) fn key(&self) -> usize {
        self.key as usize
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}.{}", self.loop_index, self.key, self.generation)
    }
}
