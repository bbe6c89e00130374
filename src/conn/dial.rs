//! [`DialState`]: what a loop keeps for a connection it dialed, beside the
//! connection itself (only dialed connections have one, so accepted ones
//! pay nothing for it).

use std::sync::Arc;

use crate::config::Dial;

/// A dialed connection's dialing state.
#[derive(Debug)]
pub(crate) struct DialState {
    pub(crate) spec: Arc<Dial>,
    /// Attempts since the last successful connect (0 while connected).
    pub(crate) attempt: u32,
    /// It connected at least once (`on_open` ran).
    pub(crate) opened: bool,
}

impl DialState {
    pub(crate) fn new(spec: Arc<Dial>) -> Self {
        DialState {
            spec,
            attempt: 0,
            opened: false,
        }
    }
}
