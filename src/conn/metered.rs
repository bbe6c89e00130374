//! What the `metrics` feature measures below the stats: each connection's
//! traffic ([`Traffic`], read with `ConnHandle::traffic`) and each
//! request's latency (the `netloom_request_seconds` histogram).
//!
//! The feature chooses the implementation here and nowhere else. With it,
//! a connection carries four `u64` counts (32 bytes in its slab slot,
//! written by its loop, with no atomic: only the loop reads them, other
//! threads ask it through its inbox). Without it, [`Traffic`] is a
//! zero-sized type whose counts do nothing, so an idle connection costs
//! what it did before, and a request's reply reads no clock.

use std::time::{Duration, Instant};

#[cfg(feature = "metrics")]
pub use counted::Traffic;
#[cfg(feature = "metrics")]
pub(crate) use counted::{closing, observe_reply};
#[cfg(not(feature = "metrics"))]
pub(crate) use uncounted::{closing, observe_reply, Traffic};

use super::table::ConnTable;

#[cfg(feature = "metrics")]
mod counted {
    use super::*;
    use std::cell::Cell;

    use crate::config::FOREVER;
    use crate::error::{Error, Result};
    use crate::id::ConnId;

    /// One connection's traffic since it opened (a dialed connection's
    /// over all its reconnects), as its loop counted it.
    ///
    /// Bytes are those of the socket (TLS records and WebSocket frames
    /// included, as `Stats::bytes_in`); a message is one the packer
    /// decoded, or one queued for the peer. A UDP session counts the
    /// datagrams that reached it (not those dropped before, as
    /// `Oversized`, `Malformed` or for its state).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct Traffic {
        /// Bytes read from the peer.
        pub bytes_in: u64,
        /// Bytes written to the peer.
        pub bytes_out: u64,
        /// Messages decoded from the peer.
        pub messages_in: u64,
        /// Messages queued for the peer (sent, replied, broadcast, published).
        pub messages_out: u64,
    }

    impl Traffic {
        /// The counts are kept (they cost a look-up where no connection
        /// is at hand).
        pub(crate) const COUNTED: bool = true;

        #[inline]
        pub(crate) fn read(&mut self, bytes: usize) {
            self.bytes_in = self.bytes_in.wrapping_add(bytes as u64);
        }

        #[inline]
        pub(crate) fn wrote(&mut self, bytes: usize) {
            self.bytes_out = self.bytes_out.wrapping_add(bytes as u64);
        }

        #[inline]
        pub(crate) fn decoded(&mut self, messages: usize) {
            self.messages_in = self.messages_in.wrapping_add(messages as u64);
        }

        #[inline]
        pub(crate) fn queued(&mut self) {
            self.messages_out = self.messages_out.wrapping_add(1);
        }
    }

    /// A request sent at `deadline - timeout` got its reply now: into the
    /// latency histogram.
    #[inline]
    pub(crate) fn observe_reply(deadline: Instant, timeout: Duration) {
        // `start` computed the deadline as sent + timeout (capped): exact.
        if let Some(sent) = deadline.checked_sub(timeout.min(FOREVER)) {
            let seconds = sent.elapsed().as_secs_f64();
            ::metrics::histogram!("netloom_request_seconds").record(seconds);
        }
    }

    impl ConnTable {
        /// The traffic of connection `id` (closing ones too).
        pub(crate) fn traffic(&self, id: ConnId) -> Result<Traffic> {
            let mut slab = self.conns.borrow_mut();
            if let Some((_, conn)) = self.lookup(&mut slab, id) {
                return Ok(conn.traffic);
            }
            let last = CLOSED.with(Cell::get).filter(|(closed, _)| *closed == id);
            last.map(|(_, t)| t).ok_or(Error::Closed)
        }
    }

    thread_local! {
        /// The connection whose `on_close` runs on this loop thread now,
        /// and its final counts (it left the table before its hook).
        static CLOSED: Cell<Option<(ConnId, Traffic)>> = const { Cell::new(None) };
    }

    /// Connection `id` is gone with `traffic`: `ConnTable::traffic`
    /// answers for it until the guard is dropped (after its `on_close`).
    pub(crate) fn closing(id: ConnId, traffic: Traffic) -> impl Drop {
        struct Last;
        impl Drop for Last {
            fn drop(&mut self) {
                CLOSED.with(|c| c.set(None));
            }
        }
        CLOSED.with(|c| c.set(Some((id, traffic))));
        Last
    }
}

#[cfg(not(feature = "metrics"))]
mod uncounted {
    use super::*;

    /// Nothing kept: see the module's docs.
    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Traffic(());

    impl Traffic {
        pub(crate) const COUNTED: bool = false;

        #[inline]
        pub(crate) fn read(&mut self, _bytes: usize) {}

        #[inline]
        pub(crate) fn wrote(&mut self, _bytes: usize) {}

        #[inline]
        pub(crate) fn decoded(&mut self, _messages: usize) {}

        #[inline]
        pub(crate) fn queued(&mut self) {}
    }

    #[inline]
    pub(crate) fn observe_reply(_deadline: Instant, _timeout: Duration) {}

    /// Nothing kept: nothing to answer for a closed connection (the
    /// guard's shape only, as the counted one's).
    #[inline]
    pub(crate) fn closing(_id: crate::id::ConnId, _traffic: Traffic) -> impl Sized {
        Traffic(())
    }
}

impl ConnTable {
    /// `messages` were decoded from the connection at `key` of
    /// `generation` (where the read path no longer holds it).
    #[inline]
    pub(crate) fn count_decoded(&self, key: usize, generation: u32, messages: usize) {
        if !Traffic::COUNTED {
            return;
        }
        let mut slab = self.conns.borrow_mut();
        if let Some(conn) = slab.get_mut(key).filter(|c| c.generation == generation) {
            conn.traffic.decoded(messages);
        }
    }
}
