//! [`ConnTable`]: a loop's connections and their write path (send,
//! broadcast, close). Lives on the loop thread; handlers reach it through
//! their `Session`, other threads through the loop's inbox.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use slab::Slab;

use std::collections::HashMap;

mod awaiting;
mod dials;
mod rooms;
mod sends;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use super::dial::DialState;
use super::requests::Requests;
use super::rooms::Rooms;
use super::roster::Roster;
use super::{flag, Conn};
use crate::buf::pool::Pool;
use crate::buf::queue::SharedFrame;
use crate::buf::{LazyQueue, Payload};
use crate::config::{Config, SlowPeerPolicy, WhileDown};
use crate::error::{CloseReason, Error, Result};
use crate::id::ConnId;
use crate::stats::Counters;
use crate::transport::{Encoded, Goodbye, Wire};

/// A loop's connections. Each `RefCell` is borrowed only for the length of
/// one operation, never across a call into user code.
pub(crate) struct ConnTable {
    /// The server's tag (see `ConnId`).
    server: u32,
    index: usize,
    wire: Arc<Wire>,
    write_high_water: usize,
    /// A UDP session's high-water mark (`UdpConfig::send_queue`).
    udp_high_water: usize,
    /// The longest datagram a UDP session sends (`UdpConfig::max_datagram`).
    max_datagram: usize,
    slow_peer: SlowPeerPolicy,
    /// Bytes the connections hold for unfinished frames
    /// (`Conn::held_unfinished`).
    partial_held: Cell<usize>,
    counters: Arc<Counters>,
    roster: Arc<Roster>,
    pub(crate) conns: RefCell<Slab<Conn>>,
    pub(crate) pool: RefCell<Pool>,
    /// Keys with something to flush or to close at the end of the turn.
    pub(crate) dirty: RefCell<Vec<usize>>,
    next_generation: Cell<u32>,
    /// Requests waiting for replies.
    pub(crate) requests: RefCell<Requests>,
    /// The dialing state of the connections this loop dialed.
    pub(crate) dials: RefCell<HashMap<usize, DialState>>,
    /// Dialed connections not connecting yet (by id: one closed before it
    /// connected frees its slot, which another may take meanwhile).
    to_dial: RefCell<Vec<ConnId>>,
    /// Moves whenever a connection of this loop starts closing: a batch
    /// being dispatched looks its connection up again only when this moved
    /// (a handler closed it, or another), not before every message.
    closings: Cell<u64>,
    /// The rooms this loop's connections are in (`table/rooms.rs`).
    rooms: RefCell<Rooms>,
}

impl ConnTable {
    pub(crate) fn new(
        server: u32,
        index: usize,
        wire: Arc<Wire>,
        config: &Config,
        counters: Arc<Counters>,
        roster: Arc<Roster>,
    ) -> Self {
        ConnTable {
            server,
            index,
            wire,
            write_high_water: config.write_high_water,
            udp_high_water: config.udp.send_queue,
            max_datagram: config.udp.max_datagram,
            slow_peer: config.slow_peer,
            partial_held: Cell::new(0),
            counters,
            roster,
            conns: RefCell::new(Slab::new()),
            pool: RefCell::new(Pool::default()),
            dirty: RefCell::new(Vec::new()),
            next_generation: Cell::new(0),
            requests: RefCell::default(),
            dials: RefCell::default(),
            to_dial: RefCell::default(),
            closings: Cell::new(0),
            rooms: RefCell::default(),
        }
    }

    /// The loop's index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The server's wire settings.
    pub(crate) fn wire(&self) -> &Wire {
        &self.wire
    }

    /// The loop's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Add a connection (its generation from
    /// [`next_generation`](Self::next_generation)); it takes the slot
    /// `conns.vacant_key()` named.
    pub(crate) fn insert(&self, conn: Conn) -> usize {
        let generation = conn.generation;
        let key = self.conns.borrow_mut().insert(conn);
        self.roster.add(key, generation);
        key
    }

    /// Remove a connection for good.
    pub(crate) fn remove(&self, key: usize) -> Option<Conn> {
        let conn = self.conns.borrow_mut().try_remove(key)?;
        self.roster.remove(key);
        self.leave_all_rooms(self.id_of(key, &conn));
        self.dials.borrow_mut().remove(&key);
        let held = self.partial_held.get() - conn.accounted as usize;
        self.partial_held.set(held);
        Counters::set(&self.counters.partial_held, held);
        Some(conn)
    }

    /// A new generation for a slot (never 0: the roster's "free").
    pub(crate) fn next_generation(&self) -> u32 {
        let mut g = self.next_generation.get().wrapping_add(1);
        if g == 0 {
            g = 1;
        }
        self.next_generation.set(g);
        g
    }

    /// The id of a connection in the table.
    #[inline]
    pub(crate) fn id_of(&self, key: usize, conn: &Conn) -> ConnId {
        ConnId::new(self.server, self.index, key, conn.generation)
    }

    /// The id of slot `key` with `generation`.
    pub(crate) fn id(&self, key: usize, generation: u32) -> ConnId {
        ConnId::new(self.server, self.index, key, generation)
    }

    #[inline]
    pub(crate) fn mark_dirty(&self, key: usize, conn: &mut Conn) {
        if !conn.has(flag::DIRTY) {
            conn.set(flag::DIRTY);
            self.dirty.borrow_mut().push(key);
        }
    }

    /// The one way from a [`ConnId`] to its connection: its slot and the
    /// connection in it, if `id` names that connection (this loop, that
    /// slot, that generation, checked together). `None` for another
    /// loop's id, a stale id (the slot's earlier occupant) or a free slot:
    /// nothing is created, reset or removed for such an id.
    #[inline]
    pub(crate) fn lookup<'s>(
        &self,
        slab: &'s mut Slab<Conn>,
        id: ConnId,
    ) -> Option<(usize, &'s mut Conn)> {
        let key = id.key();
        let conn = slab.get_mut(key)?;
        (self.id_of(key, conn) == id).then_some((key, conn))
    }

    /// [`lookup`](Self::lookup), unless the connection is closing.
    #[inline]
    fn open_conn<'s>(&self, slab: &'s mut Slab<Conn>, id: ConnId) -> Option<(usize, &'s mut Conn)> {
        self.lookup(slab, id).filter(|(_, c)| !c.has(flag::CLOSING))
    }

    /// Count a failed send and return the error.
    fn send_error(&self, e: Error) -> Error {
        Counters::add(&self.counters.send_errors, 1);
        e
    }

    /// Would `extra` more bytes take `conn` over the high-water mark? If so
    /// apply the slow-peer policy and return the error for the sender.
    #[inline]
    fn check_high_water(&self, key: usize, conn: &mut Conn, extra: usize) -> Result<()> {
        let queued = conn.queued();
        // A UDP session's own mark holds while its socket is full; before
        // the socket was tried (a handler's burst in one turn), the
        // connections' mark.
        let mark = match conn.has(flag::WRITABLE) && conn.layer.is_udp() {
            true => self.udp_high_water,
            false => self.write_high_water,
        };
        if queued == 0 || queued + extra <= mark {
            return Ok(());
        }
        self.over_high_water(key, conn, queued)
    }

    /// The queue is over the high-water mark: apply the slow-peer policy
    /// and return the error for the sender (counted).
    #[cold]
    fn over_high_water(&self, key: usize, conn: &mut Conn, queued: usize) -> Result<()> {
        self.slow_peer(key, conn, queued);
        Err(self.send_error(match self.slow_peer {
            SlowPeerPolicy::Backpressure => Error::BufferFull,
            SlowPeerPolicy::Close => Error::Closed,
        }))
    }

    /// Whether backpressure may pause reading `conn`. Not if this side
    /// waits for replies on it (it dialed it, or sent requests on it):
    /// what it would stop reading is the replies, and a backend that
    /// blocks writing them would stop reading our queue too, jamming both
    /// for good. Such a connection's sends are refused instead, while its
    /// reads go on. Nor a UDP session's: its datagrams come through a
    /// socket all its loop's sessions share.
    pub(crate) fn may_pause(conn: &Conn) -> bool {
        !conn.has(flag::OUTBOUND | flag::AWAITING) && !conn.layer.is_udp()
    }

    /// Apply the slow-peer policy to a connection whose queue holds
    /// `queued` bytes, over the mark: stop reading it until it drains
    /// (unless it [waits for replies](Self::may_pause)), or close it.
    #[cold]
    fn slow_peer(&self, key: usize, conn: &mut Conn, queued: usize) {
        Counters::add(&self.counters.slow_peer_events, 1);
        match self.slow_peer {
            SlowPeerPolicy::Backpressure if !Self::may_pause(conn) => {}
            SlowPeerPolicy::Backpressure => {
                if !conn.has(flag::PAUSED) {
                    log::debug!(
                        "conn {} ({}): write queue over high-water mark ({queued} bytes); pausing reads",
                        self.id_of(key, conn),
                        conn.peer
                    );
                }
                conn.set(flag::PAUSED);
            }
            SlowPeerPolicy::Close => self.begin_close(key, conn, CloseReason::SlowPeer, None),
        }
    }

    /// After a layer queued its own replies (`answered` bytes: pongs,
    /// close frames; what a read made it answer): the same mark and
    /// policy as for messages, so a peer that makes the server answer and
    /// never reads is paused (or closed) like any slow peer. One that may
    /// not be paused (this side waits for replies on it) is closed as a
    /// slow peer once the answers it left unread over the mark reach the
    /// mark again: its sends are refused over the mark, but answers are
    /// not, and its queue would grow without bound.
    pub(crate) fn check_layer_output(&self, key: usize, conn: &mut Conn, answered: usize) {
        let queued = conn.queued();
        let Some(queue) = conn.queue.as_deref_mut() else {
            return;
        };
        if queued <= self.write_high_water {
            queue.answered_over_mark = 0;
            return;
        }
        queue.answered_over_mark = queue.answered_over_mark.saturating_add(answered);
        let unread = queue.answered_over_mark;
        if conn.has(flag::CLOSING) {
            return;
        }
        self.slow_peer(key, conn, queued);
        if !Self::may_pause(conn) && unread > self.write_high_water && !conn.has(flag::CLOSING) {
            log::debug!(
                "conn {} ({}): {unread} bytes of answers unread over the high-water mark; closing",
                self.id_of(key, conn),
                conn.peer
            );
            self.begin_close(key, conn, CloseReason::SlowPeer, None);
        }
    }

    /// Queue one message on a connection, after the connection and
    /// high-water checks; counts it and marks the connection dirty.
    #[inline]
    pub(crate) fn send(&self, to: ConnId, id: u32, seq: u32, body: Payload<'_>) -> Result<()> {
        let mut slab = self.conns.borrow_mut();
        let Some((key, conn)) = self.open_conn(&mut slab, to) else {
            return Err(self.send_error(Error::Closed));
        };
        if !conn.is_connected() && self.refuses_while_down(key) {
            return Err(self.send_error(Error::Disconnected));
        }
        self.check_high_water(key, conn, body.as_slice().len())?;
        if conn.layer.is_udp() {
            return self.send_datagram(key, conn, id, seq, body.as_slice());
        }
        let speaks = (conn.profile, conn.layer.protocol());
        let outbound = conn.has(flag::OUTBOUND);
        let mut queue = LazyQueue {
            queue: &mut conn.queue,
            pool: &self.pool,
            track: outbound,
        };
        let q = queue.get();
        if outbound {
            q.track_frames();
        }
        match self.wire.queue_message(speaks, id, seq, &body, q) {
            Ok(()) => {
                if seq != 0 {
                    // A request or a reply: meaningless on another
                    // connection (a dialed one's next, after a loss).
                    queue.get().bind_last();
                }
                Counters::bump(&self.counters.messages_out, 1);
                conn.traffic.queued();
                self.mark_dirty(key, conn);
                Ok(())
            }
            Err(e) => {
                queue.release_if_empty();
                self.log_refusal(key, conn, id, &e);
                Err(self.send_error(Error::Pack(e)))
            }
        }
    }

    /// A dialed connection that is down refuses sends
    /// (`WhileDown::Refuse`).
    #[cold]
    fn refuses_while_down(&self, key: usize) -> bool {
        let dials = self.dials.borrow();
        dials
            .get(&key)
            .is_some_and(|d| d.spec.while_down == WhileDown::Refuse)
    }

    /// Queue an encoded message on every open accepted connection of this
    /// loop but `except` (each gets the encoding for its protocol). A connection
    /// over its high-water mark misses it (counted).
    pub(crate) fn broadcast(&self, encoded: &Encoded, except: Option<ConnId>) {
        let mut slab = self.conns.borrow_mut();
        for (key, conn) in slab.iter_mut() {
            // Dialed connections are the server's own links to other
            // servers, not its clients: a broadcast never reaches them.
            if conn.has(flag::CLOSING | flag::OUTBOUND) || except == Some(self.id_of(key, conn)) {
                continue;
            }
            if let Some(frame) = encoded.get(conn.layer.protocol()) {
                self.push_shared(key, conn, frame);
            }
        }
    }

    /// Queue a frame shared with other recipients, unless the connection
    /// is over its high-water mark (then it misses it, counted).
    fn push_shared(&self, key: usize, conn: &mut Conn, frame: &SharedFrame) {
        if conn.layer.is_udp() && frame.len() > self.max_datagram {
            let e = self.datagram_too_large(frame.len());
            log::debug!("conn {}: {e}", self.id_of(key, conn));
            return;
        }
        if self.check_high_water(key, conn, frame.len()).is_ok() {
            let track = conn.tracks_frames();
            let mut queue = LazyQueue {
                queue: &mut conn.queue,
                pool: &self.pool,
                track,
            };
            let q = queue.get();
            if track {
                q.track_frames();
            }
            q.push_frame(frame);
            Counters::bump(&self.counters.messages_out, 1);
            conn.traffic.queued();
            self.mark_dirty(key, conn);
        }
    }

    /// Start closing a connection: stop reading, flush, then close at the
    /// end of the turn. Later reasons do not replace the first.
    pub(crate) fn close(&self, key: usize, generation: u32, reason: CloseReason) {
        self.close_with(self.id(key, generation), reason, None);
    }

    /// [`close`](Self::close) the connection `id` names, with the
    /// application's WebSocket close frame.
    pub(crate) fn close_with(&self, id: ConnId, reason: CloseReason, goodbye: Option<&Goodbye>) {
        let mut slab = self.conns.borrow_mut();
        if let Some((key, conn)) = self.open_conn(&mut slab, id) {
            self.begin_close(key, conn, reason, goodbye);
        }
    }

    fn begin_close(
        &self,
        key: usize,
        conn: &mut Conn,
        reason: CloseReason,
        goodbye: Option<&Goodbye>,
    ) {
        self.set_closing(conn);
        // The layer's goodbye (a WebSocket close frame) goes after what is
        // queued; nothing can be queued after it.
        let outbound = conn.has(flag::OUTBOUND);
        let out = LazyQueue {
            queue: &mut conn.queue,
            pool: &self.pool,
            track: outbound,
        };
        conn.layer.begin_close(&reason, goodbye, out);
        conn.close_reason = Some(Box::new(reason));
        self.release_partial(conn);
        self.mark_dirty(key, conn);
    }

    /// Bytes all connections hold for unfinished frames.
    pub(crate) fn partial_held(&self) -> usize {
        self.partial_held.get()
    }

    /// Bring the budget up to date with what `conn` holds for unfinished
    /// units now; returns whether it is inside one (for the frame
    /// deadline). A closing connection counts too: one waiting for the
    /// peer's half of a close handshake still holds what its layers hold.
    pub(crate) fn account_partial(&self, conn: &mut Conn) -> bool {
        let unfinished = conn.unfinished();
        let now = u32::try_from(unfinished.held).unwrap_or(u32::MAX);
        let held = self.partial_held.get() - conn.accounted as usize + now as usize;
        self.partial_held.set(held);
        Counters::set(&self.counters.partial_held, held);
        conn.accounted = now;
        unfinished.in_unit
    }

    /// Drop a connection's partial frame (it closes), back to the pool.
    pub(crate) fn release_partial(&self, conn: &mut Conn) {
        if let Some(p) = conn.partial.take() {
            self.pool.borrow_mut().put_read(p);
        }
        let _ = self.account_partial(conn);
    }

    /// The connection holding the most for unfinished units, if any holds
    /// something: its key, generation, and whether it is closing already.
    pub(crate) fn largest_partial(&self) -> Option<(usize, u32, bool)> {
        let slab = self.conns.borrow();
        slab.iter()
            .filter(|(_, c)| c.accounted > 0)
            .max_by_key(|(_, c)| c.accounted)
            .map(|(k, c)| (k, c.generation, c.has(flag::CLOSING)))
    }

    /// Mark `conn` closing (nothing more is read from it or handled).
    pub(crate) fn set_closing(&self, conn: &mut Conn) {
        conn.set(flag::CLOSING);
        self.closings.set(self.closings.get().wrapping_add(1));
    }

    /// How many connections started closing so far (wrapping): compare two
    /// readings to know whether any did in between.
    pub(crate) fn closings(&self) -> u64 {
        self.closings.get()
    }

    /// Before a batch is dispatched: `None` if connection `id` is gone or
    /// closing, else whether its messages may be replies to its requests,
    /// and its profile (whose routes take them).
    pub(crate) fn batch_state(&self, id: ConnId) -> Option<(bool, u8)> {
        let mut slab = self.conns.borrow_mut();
        let (_, conn) = self.open_conn(&mut slab, id)?;
        Some((conn.has(flag::AWAITING), conn.profile))
    }

    /// Whether connection `id` is gone or closing.
    pub(crate) fn is_closing(&self, id: ConnId) -> bool {
        self.open_conn(&mut self.conns.borrow_mut(), id).is_none()
    }

    /// Whether connection `id` is gone (removed for good), not closing.
    pub(crate) fn is_gone(&self, id: ConnId) -> bool {
        self.lookup(&mut self.conns.borrow_mut(), id).is_none()
    }
}
