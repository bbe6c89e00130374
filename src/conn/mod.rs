//! Connections on their loop: one connection's state ([`Conn`]), the
//! loop's table of them with the write path ([`table`]), the roster
//! other threads read to list them ([`roster`]), and the rooms their
//! members are in ([`rooms`]).

pub(crate) mod dial;
pub(crate) mod metered;
pub(crate) mod requests;
pub(crate) mod rooms;
pub(crate) mod roster;
pub(crate) mod table;

use std::net::SocketAddr;

use bytes::BytesMut;
use mio::net::TcpStream;

use crate::buf::queue::WriteQueue;
use crate::error::CloseReason;
use crate::ext::Extensions;
use crate::transport::Layer;
use metered::Traffic;

/// Connection flags (a bit set keeps the struct small).
pub(crate) mod flag {
    /// Listed in the loop's flush list this turn.
    pub(crate) const DIRTY: u16 = 1;
    /// Over the high-water mark: not reading until the queue drains.
    pub(crate) const PAUSED: u16 = 1 << 1;
    /// Registered for WRITABLE (the kernel buffer was full).
    pub(crate) const WRITABLE: u16 = 1 << 2;
    /// Closing: flush what is queued, then close. No more reads or sends.
    pub(crate) const CLOSING: u16 = 1 << 3;
    /// A heartbeat ping was sent since the peer's last byte.
    pub(crate) const PINGED: u16 = 1 << 4;
    /// Listed to be read again next turn (read budget used up).
    pub(crate) const PENDING_READ: u16 = 1 << 5;
    /// A close linger timer is scheduled.
    pub(crate) const LINGER: u16 = 1 << 6;
    /// A frame (or WebSocket message, or TLS record) is in progress.
    pub(crate) const IN_FRAME: u16 = 1 << 7;
    /// A frame deadline timer is scheduled.
    pub(crate) const FRAME_TIMER: u16 = 1 << 8;
    /// A refused send (over the high-water mark, or refused by the
    /// packer) was logged at warn for this connection; later ones are
    /// logged at debug.
    pub(crate) const SEND_WARNED: u16 = 1 << 9;
    /// Dialed by this server (see `ConnTable::dials`).
    pub(crate) const OUTBOUND: u16 = 1 << 10;
    /// A connect is in progress (a dialed connection, waiting for its
    /// socket to become writable).
    pub(crate) const CONNECTING: u16 = 1 << 11;
    /// Requests of this connection wait for replies.
    pub(crate) const AWAITING: u16 = 1 << 12;
    /// A body that did not decode as its typed route's type was logged at
    /// warn for this connection; later ones are logged at debug.
    pub(crate) const BODY_WARNED: u16 = 1 << 13;
    /// The frame window restarts when its timer fires: a new frame began
    /// after the last one completed, or reads were paused, while the timer
    /// of the earlier window was still pending (see `Conn::window`).
    pub(crate) const FRAME_RESTART: u16 = 1 << 14;
    /// Its work is out at a worker or the logic thread, which holds its
    /// user data (`runtime::exec`): what needs the data waits in its lane.
    pub(crate) const EXEC: u16 = 1 << 15;

    /// The once-per-connection log flags: they travel with a task to its
    /// executor and back (`runtime::exec::Task::warned`).
    pub(crate) const WARNED: u16 = SEND_WARNED | BODY_WARNED;

    /// Set `bit` in `flags`; true if it was not set (the first time, for
    /// what is logged once per connection).
    pub(crate) fn first(flags: &mut u16, bit: u16) -> bool {
        let first = *flags & bit == 0;
        *flags |= bit;
        first
    }
}

/// One connection's state: socket, partial frame, write queue, heartbeat
/// clock, user data and layers. Idle, it holds no buffer at all.
pub(crate) struct Conn {
    /// The socket; `None` while a dialed connection is down between a loss
    /// and its next connect attempt.
    pub(crate) stream: Option<TcpStream>,
    pub(crate) peer: SocketAddr,
    pub(crate) generation: u32,
    /// Loop clock (milliseconds, wrapping) of the peer's last byte.
    pub(crate) last_active: u32,
    pub(crate) flags: u16,
    /// The connection's protocol: 0 for the server's own (accepted, and
    /// dials without a profile), else the dial profile's index
    /// (`config::ProfileConfig`).
    pub(crate) profile: u8,
    /// What the loop's partial-frame budget counts for this connection
    /// (`Unfinished::held` when last accounted).
    pub(crate) accounted: u32,
    /// Bytes received in the current frame window (saturating): the frame
    /// deadline's measure of progress, a count that only grows within a
    /// window, never a snapshot of the partial frame.
    pub(crate) window: u32,
    /// Bytes of a frame not yet complete; `None` between frames.
    pub(crate) partial: Option<BytesMut>,
    /// Frames waiting for the socket; `None` while nothing is queued.
    pub(crate) queue: Option<Box<WriteQueue>>,
    /// Why the connection is closing, once it is.
    pub(crate) close_reason: Option<Box<CloseReason>>,
    /// User data; taken out while a handler or hook holds it.
    pub(crate) data: Extensions,
    /// TLS, WebSocket, or nothing between the socket and the packer.
    pub(crate) layer: Layer,
    /// Its traffic (`ConnHandle::traffic`); zero-sized without the
    /// `metrics` feature.
    pub(crate) traffic: Traffic,
}

impl Conn {
    pub(crate) fn new(
        stream: Option<TcpStream>,
        peer: SocketAddr,
        generation: u32,
        now: u32,
        layer: Layer,
    ) -> Self {
        Conn {
            stream,
            peer,
            generation,
            last_active: now,
            flags: 0,
            profile: 0,
            accounted: 0,
            window: 0,
            partial: None,
            queue: None,
            close_reason: None,
            data: Extensions::new(),
            layer,
            traffic: Traffic::default(),
        }
    }

    #[inline]
    pub(crate) fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, f: u16) {
        self.flags |= f;
    }

    #[inline]
    pub(crate) fn unset(&mut self, f: u16) {
        self.flags &= !f;
    }

    /// It has a way to its peer: a socket (a dialed connection has none
    /// while it is down), or a UDP session's socket on its loop.
    #[inline]
    pub(crate) fn is_connected(&self) -> bool {
        self.stream.is_some() || self.layer.udp_peer().is_some_and(|u| u.is_attached())
    }

    /// Its write queue keeps frame boundaries: a dialed connection's (a
    /// reconnect keeps the frames that never started), a UDP session's
    /// (each frame is a datagram).
    #[inline]
    pub(crate) fn tracks_frames(&self) -> bool {
        self.has(flag::OUTBOUND) || self.layer.is_udp()
    }

    /// Something is still to be written: bytes queued, or what the layer
    /// owes the socket (TLS records sealed and not taken yet, a dial's
    /// WebSocket upgrade request).
    #[inline]
    pub(crate) fn unsent(&self) -> bool {
        self.queued() > 0 || self.layer.wants_write()
    }

    /// It never opened: without a connected socket (a dialed connection
    /// down or still connecting) nothing can be written, and before its
    /// handshake completes nothing queued may be.
    #[inline]
    pub(crate) fn unopened(&self) -> bool {
        !self.is_connected() || self.has(flag::CONNECTING) || self.layer.is_handshaking()
    }

    /// Closed now, it drops what it was to write: it opened and something
    /// is unsent (counted in `Stats::unflushed_closes`).
    #[inline]
    pub(crate) fn drops_unsent(&self) -> bool {
        !self.unopened() && self.unsent()
    }

    /// Bytes queued for the socket.
    #[inline]
    pub(crate) fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    /// What the connection holds for units not complete yet (the packer's
    /// partial frame, a TLS record, a WebSocket frame or fragmented
    /// message), as each reports it: the one look that feeds both the
    /// partial-frame budget and the frame deadline.
    #[inline]
    pub(crate) fn unfinished(&self) -> Unfinished {
        let partial = self.partial.as_ref();
        Unfinished {
            held: partial.map_or(0, BytesMut::capacity) + self.layer.held(),
            in_unit: partial.is_some_and(|p| !p.is_empty()) || self.layer.in_unit(),
        }
    }
}

/// See [`Conn::unfinished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unfinished {
    /// Bytes of memory held for them (allocations, not bytes received).
    pub(crate) held: usize,
    /// A unit is in progress (the frame deadline runs).
    pub(crate) in_unit: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_is_small() {
        // The slab slot of an idle connection is most of its user-space cost
        // (the design target is 200 bytes per idle connection in all).
        let size = std::mem::size_of::<Conn>();
        // In debug builds mio's socket carries a selector id (8 more bytes,
        // 16 with padding); release builds, what users run, have 136. The
        // `metrics` feature's traffic counts add 32 (168: within the
        // target still, measured RSS being the slot plus a few bytes).
        let traffic = std::mem::size_of::<Traffic>();
        assert_eq!(traffic, if cfg!(feature = "metrics") { 32 } else { 0 });
        let limit = if cfg!(debug_assertions) { 152 } else { 136 } + traffic;
        assert!(size <= limit, "Conn grew to {size} bytes");
    }
}
