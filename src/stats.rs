//! Counters: each loop owns a cache-line-aligned block of relaxed atomics
//! (no sharing on the hot path); [`Stats`] is their sum, read at any time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::CloseReason;

/// Per-loop counters, written by their loop (the acceptor adds to
/// `connections` when it assigns a socket; failed sends and acceptor-wide
/// counts from any thread go to loop 0's block), read by anyone.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) closed: [AtomicU64; CloseReason::KINDS],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) slow_peer_events: AtomicU64,
    pub(crate) exec_pauses: AtomicU64,
    pub(crate) bad_bodies: AtomicU64,
    pub(crate) unknown_ids: AtomicU64,
    pub(crate) handler_errors: AtomicU64,
    pub(crate) unflushed_closes: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) request_timeouts: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) datagrams_in: AtomicU64,
    pub(crate) datagrams_out: AtomicU64,
    pub(crate) datagram_drops: [AtomicU64; DatagramDrop::KINDS],
    /// A gauge, stored by the loop: what its partial-frame budget counts.
    pub(crate) partial_held: AtomicU64,
}

/// Why a UDP datagram was dropped (see [`Stats::datagrams_dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatagramDrop {
    /// Received: longer than `UdpConfig::max_datagram` (it was truncated
    /// on its way in).
    Oversized = 0,
    /// Received: a frame cut at the datagram's end, or refused by the
    /// packer. The whole datagram is dropped; the session stays.
    Malformed = 1,
    /// Received: from a new peer while `UdpConfig::max_sessions` (or
    /// `max_connections`) sessions were open.
    SessionLimit = 2,
    /// Received: for a session that is closing, or from a new peer while
    /// the server shuts down; or on a UDP dial's socket from another
    /// address.
    Closing = 3,
    /// To be sent: to a peer not yet validated, over the amplification
    /// bound (`UdpConfig::amplification`).
    Unvalidated = 4,
    /// To be sent: longer than `UdpConfig::max_datagram` (the send failed
    /// with `Error::DatagramTooLarge`, or a broadcast skipped the session).
    TooLarge = 5,
    /// To be sent: the socket refused it (an error other than "would
    /// block": no route, message too long for the path, …).
    SendFailed = 6,
    /// Received: for a session whose work waiting for its worker pool or
    /// logic thread is over `Config::exec_backlog` (a TCP connection's
    /// reads would pause; a UDP socket is shared, so the session's
    /// datagrams are dropped until the backlog is under half, but for
    /// replies to its requests, which are taken).
    Backlog = 7,
}

impl DatagramDrop {
    pub(crate) const KINDS: usize = 8;
    const ALL: [DatagramDrop; Self::KINDS] = [
        DatagramDrop::Oversized,
        DatagramDrop::Malformed,
        DatagramDrop::SessionLimit,
        DatagramDrop::Closing,
        DatagramDrop::Unvalidated,
        DatagramDrop::TooLarge,
        DatagramDrop::SendFailed,
        DatagramDrop::Backlog,
    ];

    /// Its short name: `"oversized"`, `"malformed"`, `"session_limit"`,
    /// `"closing"`, `"unvalidated"`, `"too_large"`, `"send_failed"`,
    /// `"backlog"`.
    pub fn name(self) -> &'static str {
        match self {
            DatagramDrop::Oversized => "oversized",
            DatagramDrop::Malformed => "malformed",
            DatagramDrop::SessionLimit => "session_limit",
            DatagramDrop::Closing => "closing",
            DatagramDrop::Unvalidated => "unvalidated",
            DatagramDrop::TooLarge => "too_large",
            DatagramDrop::SendFailed => "send_failed",
            DatagramDrop::Backlog => "backlog",
        }
    }
}

impl Counters {
    /// Add from any thread (an atomic read-modify-write).
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Add to a counter that only the owning loop writes: a plain load and
    /// store, no locked instruction on the hot path. Readers on other
    /// threads still see a consistent (if slightly old) value.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Set a gauge that only the owning loop writes.
    #[inline]
    pub(crate) fn set(gauge: &AtomicU64, n: usize) {
        gauge.store(n as u64, Relaxed);
    }
}

/// A snapshot of the server's counters, summed over all loops.
///
/// Read it with `ServerHandle::stats` or `Hub::stats`; it never pauses the
/// loops (each field is read separately, so fields may be a moment apart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now (accepted and not yet closed).
    pub connections: u64,
    /// Connections accepted since start (excluding `rejected`).
    pub accepted: u64,
    /// Accepted sockets closed at once because `max_connections` was reached.
    pub rejected: u64,
    /// Errors from `accept` (EMFILE, ENFILE, …).
    pub accept_errors: u64,
    /// Connections closed, per reason kind (read with [`Stats::closed_by`]).
    closed: [u64; CloseReason::KINDS],
    /// Bytes read from peers.
    pub bytes_in: u64,
    /// Bytes written to peers.
    pub bytes_out: u64,
    /// Messages decoded from peers.
    pub messages_in: u64,
    /// Messages queued for peers (a broadcast counts once per recipient).
    pub messages_out: u64,
    /// Sends that failed or were dropped: closed or stale target, full
    /// queue, full inbox, encode error.
    pub send_errors: u64,
    /// Times a connection's write queue went over its high-water mark.
    pub slow_peer_events: u64,
    /// Times a connection's reads paused because work waiting for its
    /// worker pool or logic thread passed `Config::exec_backlog`.
    pub exec_pauses: u64,
    /// Bodies that did not decode as their typed route's type (see
    /// `Builder::bad_body`).
    pub bad_bodies: u64,
    /// Messages with an id no route handles.
    pub unknown_ids: u64,
    /// Handlers or middleware that returned `Err`.
    pub handler_errors: u64,
    /// Connections closed with data still unsent (bytes queued, or TLS
    /// records sealed and not yet written) because the close linger or
    /// the shutdown deadline ran out, or the partial-frame budget dropped
    /// a connection already closing, or because their peer was taken
    /// for dead (heartbeat, health check, request timeouts: no linger
    /// then) (that data was dropped), and
    /// dialed connections that lost a message cut in the middle when
    /// their socket went (they reconnect).
    pub unflushed_closes: u64,
    /// Dialed connections that connected (the first time or again; over
    /// TLS, completed their handshake).
    pub connects: u64,
    /// Connect attempts of dialed connections that failed or timed out
    /// (over TLS, also in the handshake).
    pub connect_failures: u64,
    /// Requests that got no reply within their timeout.
    pub request_timeouts: u64,
    /// Replies that came after their request timed out (dropped).
    pub late_replies: u64,
    /// UDP datagrams received whole (each may carry several messages),
    /// including those dropped as `Malformed` or for a session's sake.
    pub datagrams_in: u64,
    /// UDP datagrams sent.
    pub datagrams_out: u64,
    /// UDP datagrams dropped, per cause (read with
    /// [`Stats::datagrams_dropped`]).
    datagrams_dropped: [u64; DatagramDrop::KINDS],
    /// Bytes of memory held now (a gauge, not a count) for frames, TLS
    /// records and WebSocket messages not complete yet, over all
    /// connections: what `Config::max_partial_bytes` bounds per loop.
    pub partial_held: u64,
}

impl Stats {
    pub(crate) fn sum<'a>(all: impl Iterator<Item = &'a Counters>) -> Stats {
        let mut s = Stats::default();
        for c in all {
            s.connections += c.connections.load(Relaxed);
            s.accepted += c.accepted.load(Relaxed);
            s.rejected += c.rejected.load(Relaxed);
            s.accept_errors += c.accept_errors.load(Relaxed);
            for (sum, n) in s.closed.iter_mut().zip(&c.closed) {
                *sum += n.load(Relaxed);
            }
            s.bytes_in += c.bytes_in.load(Relaxed);
            s.bytes_out += c.bytes_out.load(Relaxed);
            s.messages_in += c.messages_in.load(Relaxed);
            s.messages_out += c.messages_out.load(Relaxed);
            s.send_errors += c.send_errors.load(Relaxed);
            s.slow_peer_events += c.slow_peer_events.load(Relaxed);
            s.exec_pauses += c.exec_pauses.load(Relaxed);
            s.bad_bodies += c.bad_bodies.load(Relaxed);
            s.unknown_ids += c.unknown_ids.load(Relaxed);
            s.handler_errors += c.handler_errors.load(Relaxed);
            s.unflushed_closes += c.unflushed_closes.load(Relaxed);
            s.connects += c.connects.load(Relaxed);
            s.connect_failures += c.connect_failures.load(Relaxed);
            s.request_timeouts += c.request_timeouts.load(Relaxed);
            s.late_replies += c.late_replies.load(Relaxed);
            s.datagrams_in += c.datagrams_in.load(Relaxed);
            s.datagrams_out += c.datagrams_out.load(Relaxed);
            for (sum, n) in s.datagrams_dropped.iter_mut().zip(&c.datagram_drops) {
                *sum += n.load(Relaxed);
            }
            s.partial_held += c.partial_held.load(Relaxed);
        }
        s
    }

    /// Connections closed for reasons of the same kind as `reason`
    /// (the payload of the reason is ignored).
    ///
    /// ```
    /// let stats = netloom::Stats::default();
    /// assert_eq!(stats.closed_by(&netloom::CloseReason::IdleTimeout), 0);
    /// ```
    pub fn closed_by(&self, reason: &CloseReason) -> u64 {
        self.closed[reason.kind_index()]
    }

    /// All connections closed so far, whatever the reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// UDP datagrams dropped for `cause`.
    ///
    /// ```
    /// use netloom::{DatagramDrop, Stats};
    /// assert_eq!(Stats::default().datagrams_dropped(DatagramDrop::Malformed), 0);
    /// ```
    pub fn datagrams_dropped(&self, cause: DatagramDrop) -> u64 {
        self.datagrams_dropped[cause as usize]
    }

    /// UDP datagrams dropped so far, whatever the cause.
    pub fn datagrams_dropped_total(&self) -> u64 {
        self.datagrams_dropped.iter().sum()
    }

    /// UDP datagrams dropped so far per cause, by the cause's short name,
    /// every cause included.
    pub fn datagrams_dropped_by_cause(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DatagramDrop::ALL
            .iter()
            .map(|&c| (c.name(), self.datagrams_dropped[c as usize]))
    }

    /// Connections closed so far per kind of reason, by the kind's short
    /// name (`"peer_closed"`, `"idle_timeout"`, …), every kind included.
    ///
    /// ```
    /// let stats = netloom::Stats::default();
    /// assert!(stats.closed_by_kind().any(|(kind, n)| kind == "idle_timeout" && n == 0));
    /// ```
    pub fn closed_by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.closed
            .iter()
            .enumerate()
            .map(|(i, &n)| (CloseReason::kind_name(i), n))
    }
}

/// One line, every counter named as its field is (`connections=3
/// accepted=10 … closed=7 closed.peer_closed=5 closed.idle_timeout=2`):
/// the closes per kind follow, those that are not zero.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            ("connections", self.connections),
            ("accepted", self.accepted),
            ("rejected", self.rejected),
            ("accept_errors", self.accept_errors),
            ("closed", self.closed_total()),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("messages_in", self.messages_in),
            ("messages_out", self.messages_out),
            ("send_errors", self.send_errors),
            ("slow_peer_events", self.slow_peer_events),
            ("exec_pauses", self.exec_pauses),
            ("bad_bodies", self.bad_bodies),
            ("unknown_ids", self.unknown_ids),
            ("handler_errors", self.handler_errors),
            ("unflushed_closes", self.unflushed_closes),
            ("connects", self.connects),
            ("connect_failures", self.connect_failures),
            ("request_timeouts", self.request_timeouts),
            ("late_replies", self.late_replies),
            ("datagrams_in", self.datagrams_in),
            ("datagrams_out", self.datagrams_out),
            ("datagrams_dropped", self.datagrams_dropped_total()),
            ("partial_held", self.partial_held),
        ];
        for (i, (name, n)) in fields.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={n}")?;
        }
        for (kind, n) in self.closed_by_kind().filter(|&(_, n)| n > 0) {
            write!(f, " closed.{kind}={n}")?;
        }
        for (cause, n) in self.datagrams_dropped_by_cause().filter(|&(_, n)| n > 0) {
            write!(f, " datagrams_dropped.{cause}={n}")?;
        }
        Ok(())
    }
}
