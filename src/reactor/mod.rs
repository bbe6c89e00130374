//! The event loop and everything that reaches it.
//!
//! * [`ServerShared`]: what every thread of one server shares (config,
//!   packer, router, hooks, one [`LoopShared`] per loop).
//! * [`LoopShared`]: a loop's inbox, waker and counters: how other threads
//!   reach it.
//! * [`LoopCore`]: the loop's connections and write path, owned by the loop
//!   thread and reachable from handlers on that thread (via [`with_current`]).
//! * [`event_loop`]: poll → read/decode/dispatch → inbox → timers → flush.
//! * [`acceptor`]: accepts and hands sockets to loops.

pub(crate) mod acceptor;
pub(crate) mod event_loop;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Sender;
use mio::net::TcpStream;
use slab::Slab;

use crate::config::{Config, SlowPeerPolicy};
use crate::conn::pool::Pool;
use crate::conn::write::WriteQueue;
use crate::conn::{flag, Conn};
use crate::context::Session;
use crate::error::{CloseReason, Error, PackError, Result};
use crate::handle::ConnId;
use crate::packer::{LengthPacker, Packer};
use crate::router::Router;
use crate::stats::Counters;
use crate::transport::{Encoded, Goodbye, Protocol, QueueRef};

/// `on_open`: `Err(reason)` rejects the connection.
pub(crate) type OpenHook =
    Box<dyn Fn(&mut Session<'_>) -> std::result::Result<(), String> + Send + Sync>;
/// `on_close`.
pub(crate) type CloseHook = Box<dyn Fn(&mut Session<'_>, &CloseReason) + Send + Sync>;

/// A request to a loop from another thread.
pub(crate) enum Command {
    /// A freshly accepted socket to adopt, and what its listener speaks.
    Register(TcpStream, SocketAddr, Protocol),
    /// An encoded frame for one connection.
    Frame(ConnId, Bytes),
    /// A message encoded for every connection of the loop.
    Broadcast(Encoded),
    /// Close one connection (after flushing), with a WebSocket close frame
    /// of the application's choice.
    Close(ConnId, Option<Box<Goodbye>>),
    /// Reply with the ids of the loop's open connections.
    Snapshot(Sender<Vec<ConnId>>),
    /// Close everything, flushing until the deadline, then exit.
    Shutdown(Instant),
}

/// What every thread of one server shares.
pub(crate) struct ServerShared {
    pub(crate) layers: crate::transport::LayerConfig,
    pub(crate) config: Config,
    pub(crate) packer: Box<dyn Packer>,
    /// The default packer again, when it is the one in use: the hot paths
    /// call it directly (inlined) instead of through `packer`'s vtable.
    pub(crate) length_packer: Option<LengthPacker>,
    pub(crate) router: Router,
    pub(crate) on_open: Option<OpenHook>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) loops: Vec<LoopShared>,
    /// Open connections over all loops (checked against max_connections).
    pub(crate) live: AtomicUsize,
    pub(crate) shut_down: AtomicBool,
}

impl ServerShared {
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Hand a command to loop `index`, charging `bytes` to its inbox.
    pub(crate) fn push(&self, index: usize, bytes: usize, cmd: Command) -> Result<()> {
        let Some(lp) = self.loops.get(index) else {
            return Err(self.count_send_error(Error::Closed));
        };
        if bytes > 0 {
            let before = lp.inflight.fetch_add(bytes, Ordering::Relaxed);
            if before + bytes > self.config.inbox_capacity {
                lp.inflight.fetch_sub(bytes, Ordering::Relaxed);
                return Err(self.count_send_error(Error::InboxFull));
            }
        }
        if lp.tx.send(cmd).is_err() {
            lp.inflight.fetch_sub(bytes, Ordering::Relaxed);
            return Err(self.count_send_error(Error::ShutDown));
        }
        lp.notify();
        Ok(())
    }
}

/// How other threads reach one loop.
pub(crate) struct LoopShared {
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: mio::Waker,
    /// Set by senders, cleared by the loop before it drains the inbox: at
    /// most one wake-up syscall per batch of commands.
    pub(crate) notified: AtomicBool,
    /// Bytes of frames in the inbox (bounded by `inbox_capacity`).
    pub(crate) inflight: AtomicUsize,
    pub(crate) counters: Counters,
}

impl LoopShared {
    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake event loop: {e}");
            }
        }
    }
}

thread_local! {
    /// The loop running on this thread, if any.
    static CURRENT: RefCell<Option<std::rc::Rc<LoopCore>>> = const { RefCell::new(None) };
}

/// Run `f` on loop `index` of `server` if the calling thread is that loop.
pub(crate) fn with_current<R>(
    server: &std::sync::Arc<ServerShared>,
    index: usize,
    f: impl FnOnce(&LoopCore) -> R,
) -> Option<R> {
    CURRENT
        .try_with(|cur| {
            let cur = cur.borrow();
            let core = cur.as_ref()?;
            if core.index == index && std::ptr::eq(&*core.server, &**server) {
                Some(f(core))
            } else {
                None
            }
        })
        .ok()
        .flatten()
}

/// A loop's connections and their write path. Lives on the loop thread;
/// handlers reach it through `Context`/`Session` or [`with_current`].
/// Each `RefCell` is borrowed only for the length of one operation, never
/// across a call into user code.
pub(crate) struct LoopCore {
    pub(crate) index: usize,
    pub(crate) server: std::sync::Arc<ServerShared>,
    pub(crate) registry: mio::Registry,
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

impl LoopCore {
    pub(crate) fn new(
        index: usize,
        server: std::sync::Arc<ServerShared>,
        registry: mio::Registry,
    ) -> Self {
        LoopCore {
            index,
            server,
            registry,
            conns: RefCell::new(Slab::new()),
            pool: RefCell::new(Pool::default()),
            dirty: RefCell::new(Vec::new()),
            next_generation: Cell::new(0),
            closings: Cell::new(0),
        }
    }

    pub(crate) fn shared(&self) -> &LoopShared {
        &self.server.loops[self.index]
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared().counters
    }

    pub(crate) fn next_generation(&self) -> u32 {
        let g = self.next_generation.get().wrapping_add(1);
        self.next_generation.set(g);
        g
    }

    pub(crate) fn conn_id(&self, key: usize, generation: u32, protocol: Protocol) -> ConnId {
        ConnId {
            loop_index: self.index as u32,
            key: key as u32,
            generation,
            protocol,
        }
    }

    /// The id of a connection in the slab.
    pub(crate) fn id_of(&self, key: usize, conn: &Conn) -> ConnId {
        self.conn_id(key, conn.generation, conn.layer.protocol())
    }

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
        Counters::add(&self.counters().send_errors, 1);
        e
    }

    /// Would `extra` more bytes take `conn` over the high-water mark? If so
    /// apply the slow-peer policy and return the error for the sender.
    #[inline]
    fn check_high_water(&self, key: usize, conn: &mut Conn, extra: usize) -> Result<()> {
        let queued = conn.queued();
        if queued == 0 || queued + extra <= self.server.config.write_high_water {
            return Ok(());
        }
        self.over_high_water(key, conn, queued)
    }

    /// The queue is over the high-water mark: apply the slow-peer policy.
    #[cold]
    fn over_high_water(&self, key: usize, conn: &mut Conn, queued: usize) -> Result<()> {
        Counters::add(&self.counters().slow_peer_events, 1);
        match self.server.config.slow_peer {
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

    /// Encode a message straight into a connection's write queue.
    pub(crate) fn send(
        &self,
        key: usize,
        generation: u32,
        id: u32,
        seq: u32,
        body: &[u8],
    ) -> Result<()> {
        let server = &*self.server;
        self.queue_message(key, generation, body.len(), |queue, protocol| {
            queue.encode_with(|out| match (protocol, &server.length_packer) {
                (Protocol::Raw, Some(packer)) => packer.encode(id, seq, body, out),
                _ => server
                    .layers
                    .encode(protocol, &*server.packer, id, seq, body, out),
            })
        })
    }

    /// As [`send`](Self::send), for a body that shares the receive buffer:
    /// a packer-framed message queues it by reference
    /// (`Packer::encode_around`) instead of copying it.
    pub(crate) fn send_shared(
        &self,
        key: usize,
        generation: u32,
        id: u32,
        seq: u32,
        body: Bytes,
    ) -> Result<()> {
        let (packer, layers) = (&*self.server.packer, &self.server.layers);
        self.queue_message(key, generation, body.len(), |queue, protocol| {
            if protocol == Protocol::Raw {
                let framed = queue.encode_around(body.clone(), |before, after| {
                    packer.encode_around(id, seq, body.len(), before, after)
                })?;
                if framed {
                    return Ok(());
                }
            }
            queue.encode_with(|out| layers.encode(protocol, packer, id, seq, &body, out))
        })
    }

    /// Queue one message of `len` body bytes with `encode`, after the
    /// connection and high-water checks; counts it and marks the
    /// connection dirty.
    #[inline]
    fn queue_message(
        &self,
        key: usize,
        generation: u32,
        len: usize,
        encode: impl FnOnce(&mut WriteQueue, Protocol) -> std::result::Result<(), PackError>,
    ) -> Result<()> {
        let mut slab = self.conns.borrow_mut();
        let Some(conn) = Self::open_conn(&mut slab, key, generation) else {
            return Err(self.send_error(Error::Closed));
        };
        self.check_high_water(key, conn, len)?;
        let protocol = conn.layer.protocol();
        let queue = conn
            .queue
            .get_or_insert_with(|| self.pool.borrow_mut().take_write());
        match encode(queue, protocol) {
            Ok(()) => {
                Counters::bump(&self.counters().messages_out, 1);
                self.mark_dirty(key, conn);
                Ok(())
            }
            Err(e) => {
                if let Some(q) = conn.queue.take_if(|q| q.is_empty()) {
                    self.pool.borrow_mut().put_write(q);
                }
                Err(self.send_error(Error::Pack(e)))
            }
        }
    }

    /// Queue an encoded frame (from another thread) on one connection.
    pub(crate) fn push_frame(&self, id: ConnId, frame: Bytes) -> Result<()> {
        let key = id.key as usize;
        let mut slab = self.conns.borrow_mut();
        let Some(conn) = Self::open_conn(&mut slab, key, id.generation) else {
            return Err(self.send_error(Error::Closed));
        };
        self.check_high_water(key, conn, frame.len())?;
        self.push_shared(key, conn, frame);
        Ok(())
    }

    fn push_shared(&self, key: usize, conn: &mut Conn, frame: Bytes) {
        conn.queue
            .get_or_insert_with(|| self.pool.borrow_mut().take_write())
            .push_shared(frame);
        Counters::bump(&self.counters().messages_out, 1);
        self.mark_dirty(key, conn);
    }

    /// Queue an encoded message on every open connection of this loop
    /// (each gets the encoding for its protocol).
    pub(crate) fn broadcast(&self, encoded: &Encoded) {
        let mut slab = self.conns.borrow_mut();
        for (key, conn) in slab.iter_mut() {
            if conn.has(flag::CLOSING) {
                continue;
            }
            let Some(frame) = encoded.get(conn.layer.protocol()) else {
                continue;
            };
            if self.check_high_water(key, conn, frame.len()).is_ok() {
                self.push_shared(key, conn, frame.clone());
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
            let out = QueueRef {
                queue: &mut conn.queue,
                pool: &self.pool,
            };
            if conn.layer.ping(out) {
                self.mark_dirty(key, conn);
                return;
            }
        }
        // A full queue just means the peer will be kicked instead.
        let _ = self.send(key, generation, ping_id, 0, &[]);
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
        let out = QueueRef {
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

    /// Ids of the open (not closing) connections.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.conns
            .borrow()
            .iter()
            .filter(|(_, c)| !c.has(flag::CLOSING))
            .map(|(k, c)| self.id_of(k, c))
            .collect()
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}
