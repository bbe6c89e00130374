//! Naming connections across threads: [`ConnId`], [`ConnHandle`] and [`Hub`].
//!
//! A handle is a loop index, a slab key and a generation. Sending through it
//! on the connection's own loop thread writes straight into the connection's
//! queue; from any other thread the frame is encoded on the caller's thread
//! and handed to the loop's inbox, which wakes the loop.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::reactor::{self, Command, ServerShared};
use crate::stats::{Counters, Stats};
use crate::transport::Protocol;

/// Identifies one connection for the lifetime of the server.
///
/// The generation makes ids unique even when a slab slot is reused: a
/// message sent to a closed connection's id never reaches the connection
/// that took its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) loop_index: u32,
    pub(crate) key: u32,
    pub(crate) generation: u32,
    /// What the connection speaks (so other threads can encode for it).
    pub(crate) protocol: Protocol,
}

impl ConnId {
    /// The event loop that owns the connection.
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}.{}", self.loop_index, self.key, self.generation)
    }
}

/// A cheap, thread-safe reference to one connection.
///
/// Clone it freely and keep it anywhere (`Clone + Send + Sync`). Once the
/// connection closes, every operation returns [`Error::Closed`] or is
/// counted in `Stats::send_errors` (see [`ConnHandle::send`]).
#[derive(Clone)]
pub struct ConnHandle {
    pub(crate) id: ConnId,
    pub(crate) server: Arc<ServerShared>,
}

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle").field("id", &self.id).finish()
    }
}

impl ConnHandle {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Encode a message (sequence number 0) and queue it for the peer.
    ///
    /// On the connection's own loop thread (inside a handler or hook) the
    /// frame goes straight into the write queue and every failure is
    /// reported here. From any other thread the frame is encoded here and
    /// handed to the loop; if the connection turns out to be closed or over
    /// its high-water mark when the loop applies it, the frame is dropped
    /// and counted in `Stats::send_errors`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] (on the owning loop: the connection is gone),
    /// [`Error::BufferFull`] (on the owning loop: over the high-water mark),
    /// [`Error::InboxFull`], [`Error::ShutDown`], [`Error::Pack`].
    pub fn send(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.send_seq(id, 0, body)
    }

    /// Like [`send`](Self::send) with an explicit sequence number, for
    /// packers that carry one.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_seq(&self, id: u32, seq: u32, body: impl AsRef<[u8]>) -> Result<()> {
        let body = body.as_ref();
        let server = &self.server;
        if server.is_shut_down() {
            return Err(server.count_send_error(Error::ShutDown));
        }
        if let Some(r) = reactor::with_current(server, self.id.loop_index(), |core| {
            core.send(self.id.key as usize, self.id.generation, id, seq, body)
        }) {
            return r;
        }
        let frame = server.encode(self.id.protocol, id, seq, body)?;
        server.push(
            self.id.loop_index(),
            frame.len(),
            Command::Frame(self.id, frame),
        )
    }

    /// Close the connection after its queued messages are flushed
    /// (`on_close` gets [`CloseReason::Local`](crate::CloseReason::Local)).
    /// Closing an already closed connection does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] when the server is gone.
    pub fn close(&self) -> Result<()> {
        if reactor::with_current(&self.server, self.id.loop_index(), |core| {
            core.close(
                self.id.key as usize,
                self.id.generation,
                crate::CloseReason::Local,
            )
        })
        .is_some()
        {
            return Ok(());
        }
        self.server
            .push(self.id.loop_index(), 0, Command::Close(self.id, None))
    }

    /// A [`Hub`] for the server this connection belongs to.
    pub fn hub(&self) -> Hub {
        Hub {
            server: self.server.clone(),
        }
    }
}

/// Server-wide operations from any thread: broadcast, the live connection
/// list and count, handles by id, stats.
///
/// Get one from `ServerHandle::hub`, `Context::hub` or `ConnHandle::hub`;
/// clone it freely.
#[derive(Clone)]
pub struct Hub {
    pub(crate) server: Arc<ServerShared>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("loops", &self.server.loops.len())
            .finish()
    }
}

impl Hub {
    /// Send one message to every open connection on every loop.
    ///
    /// The frame is encoded once per protocol the server listens with (raw
    /// TCP, WebSocket) and shared by all recipients' queues. A
    /// recipient over its high-water mark misses it (counted in
    /// `Stats::send_errors`). Returns after handing the frame to every loop;
    /// delivery is asynchronous.
    ///
    /// # Errors
    ///
    /// [`Error::Pack`] if the packer rejects the message, [`Error::ShutDown`],
    /// or [`Error::InboxFull`] if any loop's inbox is full (the other loops
    /// still get it).
    pub fn broadcast(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        let server = &self.server;
        if server.is_shut_down() {
            return Err(Error::ShutDown);
        }
        let encoded = server
            .layers
            .encode_all(&*server.packer, id, 0, body.as_ref())
            .map_err(|e| server.count_send_error(Error::Pack(e)))?;
        let mut result = Ok(());
        for index in 0..server.loops.len() {
            let local = reactor::with_current(server, index, |core| core.broadcast(&encoded));
            if local.is_none() {
                let r = server.push(index, encoded.len(), Command::Broadcast(encoded.clone()));
                if r.is_err() {
                    result = r;
                }
            }
        }
        result
    }

    /// Number of open connections: accepted and not yet closed, including
    /// sockets on their way to a loop (one atomic read; never pauses a loop).
    pub fn connection_count(&self) -> usize {
        self.server.live.load(Ordering::Relaxed)
    }

    /// Handles to every connection open now.
    ///
    /// Each loop answers between two turns, so no loop pauses; the list is a
    /// snapshot that may include connections closing meanwhile. A loop that
    /// does not answer within one second (it is stuck in a handler) is left
    /// out of the list.
    pub fn connections(&self) -> Vec<ConnHandle> {
        let server = &self.server;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ids = Vec::new();
        let mut waiting = 0;
        for index in 0..server.loops.len() {
            match reactor::with_current(server, index, |core| core.ids()) {
                Some(local) => ids.extend(local),
                None => {
                    if server.push(index, 0, Command::Snapshot(tx.clone())).is_ok() {
                        waiting += 1;
                    }
                }
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        for _ in 0..waiting {
            match rx.recv_deadline(deadline) {
                Ok(part) => ids.extend(part),
                Err(_) => break,
            }
        }
        ids.into_iter().map(|id| self.conn(id)).collect()
    }

    /// A handle for a connection id (for example one stored in your session
    /// table). A stale id gives a handle whose sends fail.
    pub fn conn(&self, id: ConnId) -> ConnHandle {
        ConnHandle {
            id,
            server: self.server.clone(),
        }
    }

    /// The server's counters, summed over loops.
    pub fn stats(&self) -> Stats {
        Stats::sum(self.server.loops.iter().map(|l| &l.counters))
    }
}

impl ServerShared {
    /// Encode a frame on the calling thread, for handing to a loop.
    pub(crate) fn encode(
        &self,
        protocol: Protocol,
        id: u32,
        seq: u32,
        body: &[u8],
    ) -> Result<Bytes> {
        let mut out = BytesMut::with_capacity(body.len() + 16);
        let encoded = self
            .layers
            .encode(protocol, &*self.packer, id, seq, body, &mut out);
        match encoded {
            Ok(()) => Ok(out.freeze()),
            Err(e) => Err(self.count_send_error(Error::Pack(e))),
        }
    }

    /// Count a failed send (on loop 0's counters: any block serves) and
    /// return the error.
    pub(crate) fn count_send_error(&self, e: Error) -> Error {
        if let Some(l) = self.loops.first() {
            Counters::add(&l.counters.send_errors, 1);
        }
        e
    }
}
