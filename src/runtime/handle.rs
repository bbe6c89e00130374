//! The application's handles: [`ConnHandle`] (one connection) and [`Hub`]
//! (the whole server), usable from any thread.
//!
//! On the connection's own loop thread a send writes straight into the
//! connection's queue; from any other thread the message goes to the loop's
//! inbox (which wakes the loop) and is encoded there.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::{with_current, Command, LoopCore, Runtime};
use crate::buf::Payload;
use crate::error::{CloseReason, Error, Result};
use crate::id::ConnId;
use crate::stats::Stats;
use crate::transport::Goodbye;

/// A cheap, thread-safe reference to one connection.
///
/// Clone it freely and keep it anywhere (`Clone + Send + Sync`). Once the
/// connection closes, every operation returns [`Error::Closed`] or is
/// counted in `Stats::send_errors` (see [`ConnHandle::send`]).
#[derive(Clone)]
pub struct ConnHandle {
    pub(crate) id: ConnId,
    pub(crate) runtime: Arc<Runtime>,
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

    /// Queue a message (sequence number 0) for the peer.
    ///
    /// On the connection's own loop thread (inside a handler or hook) the
    /// message goes straight into the write queue and every failure is
    /// reported here. From any other thread the body is copied and handed
    /// to the loop, which encodes it; if the connection turns out to be
    /// closed or over its high-water mark by then, the message is dropped
    /// and counted in `Stats::send_errors`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] (on the owning loop: the connection is gone),
    /// [`Error::BufferFull`] (on the owning loop: over the high-water mark),
    /// [`Error::InboxFull`], [`Error::ShutDown`], [`Error::Pack`] (on the
    /// owning loop: the packer refused it).
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
        self.send_payload(id, seq, Payload::Slice(body), || {
            Bytes::copy_from_slice(body)
        })
    }

    /// Like [`send`](Self::send), for a body the application already holds
    /// as [`Bytes`]: it is not copied on its way to the loop, and a large
    /// one (16 KiB or more) is queued by reference when the packer can
    /// frame it so ([`Packer::encode_around`](crate::Packer::encode_around)).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_bytes(&self, id: u32, body: Bytes) -> Result<()> {
        let shared = body.clone();
        self.send_payload(id, 0, Payload::Shared(shared), move || body)
    }

    fn send_payload(
        &self,
        id: u32,
        seq: u32,
        local: Payload<'_>,
        owned: impl FnOnce() -> Bytes,
    ) -> Result<()> {
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            return Err(runtime.count_send_error(Error::ShutDown));
        }
        let to = self.id;
        if let Some(r) = with_current(runtime, to.loop_index(), |core| {
            core.table.send(to, id, seq, local)
        }) {
            return r;
        }
        let body = owned();
        let len = body.len();
        runtime.push(to.loop_index(), len, Command::Send { to, id, seq, body })
    }

    /// Close the connection after its queued messages are flushed
    /// (`on_close` gets [`CloseReason::Local`]). Closing a closed
    /// connection, or one of a server that has shut down, does nothing.
    pub fn close(&self) {
        self.close_with_goodbye(None);
    }

    /// Close with a WebSocket close frame carrying `code` and `reason`; see
    /// [`Session::close_with`](crate::Session::close_with). On other
    /// connections the same as [`close`](Self::close).
    pub fn close_with(&self, code: u16, reason: &str) {
        self.close_with_goodbye(Some(Goodbye {
            code,
            reason: reason.into(),
        }));
    }

    fn close_with_goodbye(&self, goodbye: Option<Goodbye>) {
        let id = self.id;
        let local = with_current(&self.runtime, id.loop_index(), |core| {
            core.table
                .close_with(id, CloseReason::Local, goodbye.as_ref());
        });
        if local.is_none() {
            // Fails only once the loop is gone: the connection is closed.
            let _ = self.runtime.push(
                id.loop_index(),
                0,
                Command::Close(id, goodbye.map(Box::new)),
            );
        }
    }

    /// For a UDP session: its peer has shown that it receives at its
    /// address (the application's own handshake saw it echo something it
    /// could only have received), so the amplification bound
    /// (`UdpConfig::amplification`) no longer applies to it. Does nothing
    /// on other connections, or on one that is gone.
    pub fn validate_udp_peer(&self) {
        let id = self.id;
        let job = move |core: &LoopCore| core.table.validate_udp_peer(id);
        if with_current(&self.runtime, id.loop_index(), job).is_none() {
            let job = Box::new(job);
            let _ = self
                .runtime
                .push(id.loop_index(), 0, Command::Run { bytes: 0, job });
        }
    }

    /// A [`Hub`] for the server this connection belongs to.
    pub fn hub(&self) -> Hub {
        Hub {
            runtime: self.runtime.clone(),
        }
    }
}

/// Server-wide operations from any thread: broadcast, the live connection
/// list and count, handles by id, stats.
///
/// Get one from `ServerHandle::hub`, `Session::hub` or `ConnHandle::hub`;
/// clone it freely.
#[derive(Clone)]
pub struct Hub {
    pub(crate) runtime: Arc<Runtime>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("loops", &self.runtime.loops.len())
            .finish()
    }
}

impl Hub {
    /// Send one message to every open connection on every loop that the
    /// server accepted (connections it dialed, [`dial`](Self::dial), are
    /// left out: they are links to other servers, not clients).
    ///
    /// The message is encoded once per protocol the server listens with
    /// (raw TCP, WebSocket) and shared by all recipients' queues. A
    /// recipient over its high-water mark misses it (counted in
    /// `Stats::send_errors`). Returns after handing it to every loop;
    /// delivery is asynchronous.
    ///
    /// # Errors
    ///
    /// [`Error::Pack`] if the packer rejects the message, [`Error::ShutDown`],
    /// or [`Error::InboxFull`] if any loop's inbox is full (the other loops
    /// still get it).
    pub fn broadcast(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.broadcast_payload(id, Payload::Slice(body.as_ref()), None)
    }

    /// Like [`broadcast`](Self::broadcast), for a body the application
    /// already holds as [`Bytes`]: a large one (16 KiB or more) is shared by
    /// every recipient without being copied, when the packer can frame it so.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast).
    pub fn broadcast_bytes(&self, id: u32, body: Bytes) -> Result<()> {
        self.broadcast_payload(id, Payload::Shared(body), None)
    }

    /// Like [`broadcast`](Self::broadcast), to every connection but
    /// `except` (typically the sender of what is being relayed).
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast).
    pub fn broadcast_except(&self, except: ConnId, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.broadcast_payload(id, Payload::Slice(body.as_ref()), Some(except))
    }

    fn broadcast_payload(&self, id: u32, body: Payload<'_>, except: Option<ConnId>) -> Result<()> {
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            return Err(runtime.count_send_error(Error::ShutDown));
        }
        let encoded = runtime
            .wire
            .encode_all(id, 0, &body, false) // a broadcast never reaches dialed connections
            .map_err(|e| runtime.count_send_error(Error::Pack(e)))?;
        let mut result = Ok(());
        for index in 0..runtime.loops.len() {
            let local = with_current(runtime, index, |core| {
                core.table.broadcast(&encoded, except);
            });
            if local.is_none() {
                let cmd = Command::Broadcast(encoded.clone(), except);
                if let Err(e) = runtime.push(index, encoded.len(), cmd) {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Send one message to each connection of `to` (a room, a team), on
    /// any loops: encoded once per protocol the server listens with, and
    /// shared by every recipient's queue, as a broadcast is.
    ///
    /// The ids are grouped by loop: each loop gets one command (the
    /// calling thread's own loop, in a handler, is written directly).
    /// Counted per recipient in `Stats::messages_out`. A recipient that is
    /// closed, stale or over its high-water mark misses it, counted in
    /// `Stats::send_errors`, as are the recipients on a loop whose inbox
    /// was full. An id listed twice gets the message twice. Returns after
    /// handing it to every loop concerned; delivery is asynchronous.
    ///
    /// ```
    /// # fn handler(ctx: &mut netloom::Context<'_>) -> netloom::Result<()> {
    /// struct Room(Vec<netloom::ConnId>);
    /// if let Some(room) = ctx.data().get::<Room>() {
    ///     ctx.hub().send_to(room.0.iter().copied(), 20, ctx.body())?;
    /// }
    /// # Ok(())
    /// # }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Pack`] if the packer rejects the message (nothing sent),
    /// [`Error::ShutDown`], or [`Error::InboxFull`] if a loop's inbox is
    /// full (the other loops still get it).
    pub fn send_to(
        &self,
        to: impl IntoIterator<Item = ConnId>,
        id: u32,
        body: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.send_to_payload(to, id, Payload::Slice(body.as_ref()))
    }

    /// Like [`send_to`](Self::send_to), for a body the application already
    /// holds as [`Bytes`]: a large one (16 KiB or more) is shared by every
    /// recipient without being copied, when the packer can frame it so.
    ///
    /// # Errors
    ///
    /// As [`send_to`](Self::send_to).
    pub fn send_to_bytes(
        &self,
        to: impl IntoIterator<Item = ConnId>,
        id: u32,
        body: Bytes,
    ) -> Result<()> {
        self.send_to_payload(to, id, Payload::Shared(body))
    }

    fn send_to_payload(
        &self,
        to: impl IntoIterator<Item = ConnId>,
        id: u32,
        body: Payload<'_>,
    ) -> Result<()> {
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            return Err(runtime.count_send_error(Error::ShutDown));
        }
        let mut per_loop: Vec<Vec<ConnId>> = vec![Vec::new(); runtime.loops.len()];
        for conn in to {
            match per_loop.get_mut(conn.loop_index()) {
                Some(ids) => ids.push(conn),
                // No such loop: an id from elsewhere.
                None => runtime.count_send_errors(1),
            }
        }
        if per_loop.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let encoded = runtime
            .wire
            .encode_all(id, 0, &body, true)
            .map_err(|e| runtime.count_send_error(Error::Pack(e)))?;
        let mut result = Ok(());
        for (index, ids) in per_loop.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let local = with_current(runtime, index, |core| {
                core.table.send_encoded(&ids, &encoded);
            });
            if local.is_none() {
                let n = ids.len();
                let cmd = Command::SendTo(ids, encoded.clone());
                if let Err(e) = runtime.push(index, encoded.len(), cmd) {
                    // `push` counted one; the loop's other recipients too.
                    runtime.count_send_errors(n - 1);
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Number of open connections: accepted and not yet closed, including
    /// sockets on their way to a loop (one atomic read; never pauses a loop).
    pub fn connection_count(&self) -> usize {
        self.runtime.live.load(Ordering::Relaxed)
    }

    /// Handles to every connection open now.
    ///
    /// Read from each loop's roster, which the loop updates as connections
    /// open and close: it never waits for a loop, however busy or stuck,
    /// and may be called from handlers on any loop. The list is a snapshot;
    /// it may include connections that are closing meanwhile.
    pub fn connections(&self) -> Vec<ConnHandle> {
        self.connection_ids()
            .into_iter()
            .map(|id| self.conn(id))
            .collect()
    }

    /// The ids of every connection open now (see
    /// [`connections`](Self::connections)).
    pub fn connection_ids(&self) -> Vec<ConnId> {
        let loops = self.runtime.loops.iter().enumerate();
        let tag = self.runtime.tag;
        loops.flat_map(|(i, l)| l.roster.ids(tag, i)).collect()
    }

    /// A handle for a connection id (for example one stored in your session
    /// table). A stale id gives a handle whose sends fail.
    pub fn conn(&self, id: ConnId) -> ConnHandle {
        ConnHandle {
            id,
            runtime: self.runtime.clone(),
        }
    }

    /// The server's counters, summed over loops.
    pub fn stats(&self) -> Stats {
        Stats::sum(self.runtime.loops.iter().map(|l| &*l.counters))
    }
}
