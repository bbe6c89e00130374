//! [`ConnTable`]: a loop's connections and their write path (send,
//! broadcast, close). Lives on the loop thread; handlers reach it through
//! their `Session`, other threads through the loop's inbox.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use slab::Slab;

mod sends;

use super::roster::Roster;
use super::{flag, Conn};
use crate::buf::pool::Pool;
use crate::buf::{LazyQueue, Payload};
use crate::config::{Config, SlowPeerPolicy};
use crate::error::{CloseReason, Error, Result};
use crate::id::ConnId;
use crate::stats::Counters;
use crate::transport::{Encoded, Goodbye, Wire};

/// A loop's connections. Each `RefCell` is borrowed only for the length of
/// one operation, never across a call into user code.
pub(crate) struct ConnTable {
    index: usize,
    wire: Arc<Wire>,
    write_high_water: usize,
    slow_peer: SlowPeerPolicy,
    counters: Arc<Counters>,
    roster: Arc<Roster>,
    pub(crate) conns: RefCell<Slab<Conn>>,
    pub(crate) pool: RefCell<Pool>,
    /// Keys with something to flush or to close at the end of the turn.
    pub(crate) dirty: RefCell<Vec<usize>>,
    next_generation: Cell<u32>,
    /// Moves whenever a connection of this loop starts closing: a batch
    /// being dispatched looks its connection up again only when this moved
    /// (a handler closed it, or another), not before every message.
    closings: Cell<u64>,
}

impl ConnTable {
    pub(crate) fn new(
        index: usize,
        wire: Arc<Wire>,
        config: &Config,
        counters: Arc<Counters>,
        roster: Arc<Roster>,
    ) -> Self {
        ConnTable {
            index,
            wire,
            write_high_water: config.write_high_water,
            slow_peer: config.slow_peer,
            counters,
            roster,
            conns: RefCell::new(Slab::new()),
            pool: RefCell::new(Pool::default()),
            dirty: RefCell::new(Vec::new()),
            next_generation: Cell::new(0),
            closings: Cell::new(0),
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
    pub(crate) fn id_of(&self, key: usize, conn: &Conn) -> ConnId {
        ConnId::new(self.index, key, conn.generation)
    }

    /// The id of slot `key` with `generation`.
    pub(crate) fn id(&self, key: usize, generation: u32) -> ConnId {
        ConnId::new(self.index, key, generation)
    }

    #[inline]
    pub(crate) fn mark_dirty(&self, key: usize, conn: &mut Conn) {
        if !conn.has(flag::DIRTY) {
            conn.set(flag::DIRTY);
            self.dirty.borrow_mut().push(key);
        }
    }

    /// The live connection at `key` with `generation`, unless closing.
    fn open_conn(slab: &mut Slab<Conn>, key: usize, generation: u32) -> Option<&mut Conn> {
        slab.get_mut(key)
            .filter(|c| c.generation == generation && !c.has(flag::CLOSING))
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
        if queued == 0 || queued + extra <= self.write_high_water {
            return Ok(());
        }
        self.over_high_water(key, conn, queued)
    }

    /// The queue is over the high-water mark: apply the slow-peer policy.
    #[cold]
    fn over_high_water(&self, key: usize, conn: &mut Conn, queued: usize) -> Result<()> {
        Counters::add(&self.counters.slow_peer_events, 1);
        match self.slow_peer {
            SlowPeerPolicy::Backpressure => {
                if !conn.has(flag::PAUSED) {
                    log::debug!(
                        "conn {} ({}): write queue over high-water mark ({queued} bytes); pausing reads",
                        self.id_of(key, conn),
                        conn.peer
                    );
                }
                conn.set(flag::PAUSED);
                Err(self.send_error(Error::BufferFull))
            }
            SlowPeerPolicy::Close => {
                self.begin_close(key, conn, CloseReason::SlowPeer, None);
                Err(self.send_error(Error::Closed))
            }
        }
    }

    /// Queue one message on a connection, after the connection and
    /// high-water checks; counts it and marks the connection dirty.
    #[inline]
    pub(crate) fn send(
        &self,
        key: usize,
        generation: u32,
        id: u32,
        seq: u32,
        body: Payload<'_>,
    ) -> Result<()> {
        let mut slab = self.conns.borrow_mut();
        let Some(conn) = Self::open_conn(&mut slab, key, generation) else {
            return Err(self.send_error(Error::Closed));
        };
        self.check_high_water(key, conn, body.as_slice().len())?;
        let protocol = conn.layer.protocol();
        let mut queue = LazyQueue {
            queue: &mut conn.queue,
            pool: &self.pool,
        };
        match self
            .wire
            .queue_message(protocol, id, seq, &body, queue.get())
        {
            Ok(()) => {
                Counters::bump(&self.counters.messages_out, 1);
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

    /// Queue an encoded message on every open connection of this loop but
    /// `except` (each gets the encoding for its protocol). A connection
    /// over its high-water mark misses it (counted).
    pub(crate) fn broadcast(&self, encoded: &Encoded, except: Option<ConnId>) {
        let mut slab = self.conns.borrow_mut();
        for (key, conn) in slab.iter_mut() {
            if conn.has(flag::CLOSING)
                || except.is_some_and(|x| x.key() == key && x.generation == conn.generation)
            {
                continue;
            }
            let Some(frame) = encoded.get(conn.layer.protocol()) else {
                continue;
            };
            if self.check_high_water(key, conn, frame.len()).is_ok() {
                let mut queue = LazyQueue {
                    queue: &mut conn.queue,
                    pool: &self.pool,
                };
                queue.get().push_frame(frame);
                Counters::bump(&self.counters.messages_out, 1);
                self.mark_dirty(key, conn);
            }
        }
    }

    /// Heartbeat ping: the layer's own (WebSocket ping frame) or a packer
    /// message with `ping_id` and an empty body.
    pub(crate) fn ping(&self, key: usize, generation: u32, ping_id: u32) {
        {
            let mut slab = self.conns.borrow_mut();
            let Some(conn) = Self::open_conn(&mut slab, key, generation) else {
                return;
            };
            let out = LazyQueue {
                queue: &mut conn.queue,
                pool: &self.pool,
            };
            if conn.layer.ping(out) {
                self.mark_dirty(key, conn);
                return;
            }
        }
        // A full queue just means the peer will be kicked instead.
        let _ = self.send(key, generation, ping_id, 0, Payload::Slice(&[]));
    }

    /// Start closing a connection: stop reading, flush, then close at the
    /// end of the turn. Later reasons do not replace the first.
    pub(crate) fn close(&self, key: usize, generation: u32, reason: CloseReason) {
        self.close_with(key, generation, reason, None);
    }

    /// [`close`](Self::close) with the application's WebSocket close frame.
    pub(crate) fn close_with(
        &self,
        key: usize,
        generation: u32,
        reason: CloseReason,
        goodbye: Option<&Goodbye>,
    ) {
        let mut slab = self.conns.borrow_mut();
        if let Some(conn) = Self::open_conn(&mut slab, key, generation) {
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
        let out = LazyQueue {
            queue: &mut conn.queue,
            pool: &self.pool,
        };
        conn.layer.begin_close(&reason, goodbye, out);
        conn.close_reason = Some(Box::new(reason));
        if let Some(p) = conn.partial.take() {
            self.pool.borrow_mut().put_read(p);
        }
        self.mark_dirty(key, conn);
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

    /// Whether the connection at `key` is gone or closing.
    pub(crate) fn is_closing(&self, key: usize) -> bool {
        self.conns
            .borrow()
            .get(key)
            .is_none_or(|c| c.has(flag::CLOSING))
    }
}
