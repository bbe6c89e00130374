//! Requests matched to replies by sequence number: [`ConnHandle::request`]
//! (wait for the reply), [`ConnHandle::request_with`] (a callback), and
//! [`Responder`] (answer a request later, from any thread).
//!
//! The connection's loop gives each request a sequence number (the packer
//! must carry one: `SeqPacker`, `TlvPacker`, or yours; see
//! `Packer::carries_seq`. On a connection whose framing carries none, the
//! default `LengthPacker` or a WebSocket connection in message mode, a
//! request fails at once with [`Error::NoSeq`]), keeps it until the
//! reply with that number comes, and fails it with [`Error::Timeout`] after
//! its timeout (on the loop's timer wheel) or [`Error::Disconnected`] when
//! the connection is lost or closed. A reply that comes after its request
//! timed out is counted (`Stats::late_replies`) and dropped.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::{with_current, Command, ConnHandle, LoopCore};
use crate::buf::Payload;
use crate::codec::Message;
use crate::config::saturate;
use crate::conn::requests::oneshot::{oneshot, NoReply, ReplyRx};
use crate::conn::requests::{Callback, ReplySink};
use crate::error::{Error, Result};

/// A request's reply, to wait for: see [`ConnHandle::request`].
#[must_use = "a request's reply is only read through its PendingReply"]
pub struct PendingReply {
    rx: ReplyRx,
    timeout: Duration,
}

impl fmt::Debug for PendingReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReply")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PendingReply {
    /// Block until the reply comes (or the request fails).
    ///
    /// Never call it on the connection's own loop thread (in one of its
    /// handlers): the loop could not read the reply while it waits, and
    /// the wait ends only with the timeout. Use
    /// [`request_with`](ConnHandle::request_with) there.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (no reply within the request's timeout),
    /// [`Error::Disconnected`] (the connection was lost or closed first),
    /// [`Error::ShutDown`] (the server stopped first), or the error of
    /// sending the request (e.g. [`Error::BufferFull`], or
    /// [`Error::NoSeq`] for a WebSocket connection in message mode,
    /// without waiting).
    pub fn wait(self) -> Result<Message> {
        // The loop answers by the timeout; the margin covers a busy turn.
        let wait = saturate(self.timeout) + Duration::from_secs(1);
        match self.rx.recv_timeout(wait) {
            Ok(reply) => reply,
            Err(NoReply::Empty) => Err(Error::Timeout),
            Err(NoReply::Gone) => Err(Error::ShutDown),
        }
    }

    /// The reply, if it came already (`None` while waiting).
    pub fn try_get(&self) -> Option<Result<Message>> {
        match self.rx.try_recv() {
            Ok(reply) => Some(reply),
            Err(NoReply::Empty) => None,
            Err(NoReply::Gone) => Some(Err(Error::ShutDown)),
        }
    }
}

impl ConnHandle {
    /// Send a request: the message `id` with `body` and a fresh sequence
    /// number, whose reply (the message that comes back with the same
    /// sequence number) is handed to the returned [`PendingReply`] instead
    /// of the routes. Many requests may be in flight on one connection,
    /// from any number of threads; each gets its own reply.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use netloom::{SeqPacker, Server};
    ///
    /// let client = Server::builder().packer(SeqPacker::default()).start()?;
    /// let backend = client.hub().connect("127.0.0.1:7000")?;
    /// let reply = backend.request(7, b"get user 42", Duration::from_secs(2))?.wait()?;
    /// println!("{} bytes", reply.body.len());
    /// # Ok::<(), netloom::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), for the request itself; the reply's own
    /// errors come from [`PendingReply::wait`]. [`Error::NoSeq`] at once
    /// when the server's packer carries no sequence number (the default
    /// `LengthPacker`): no reply could ever be matched to the request. A
    /// WebSocket connection in message mode carries none either; that is
    /// known on its loop, so from another thread `wait` returns the error
    /// (at once, not after the timeout).
    pub fn request(
        &self,
        id: u32,
        body: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<PendingReply> {
        let (tx, rx) = oneshot();
        let body = body.as_ref();
        self.start_request(id, body, timeout, ReplySink::Channel(tx))?;
        Ok(PendingReply { rx, timeout })
    }

    /// Like [`request`](Self::request), with the reply (or its error:
    /// [`Error::Timeout`], [`Error::Disconnected`], [`Error::ShutDown`],
    /// or the send's) handed to `on_reply`, which runs on the connection's
    /// loop thread: keep it short, and never block in it. The form to use
    /// inside handlers. `on_reply` may itself call into the loop (retry on
    /// the same handle, say).
    ///
    /// `on_reply` runs exactly once if this returns `Ok`, never if it
    /// returns an error.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), when the request cannot be sent at once (on
    /// the connection's own loop thread) or cannot reach the loop
    /// ([`Error::ShutDown`], [`Error::InboxFull`]); from other threads,
    /// errors the loop finds (a closed connection) reach `on_reply`.
    pub fn request_with(
        &self,
        id: u32,
        body: impl AsRef<[u8]>,
        timeout: Duration,
        on_reply: impl FnOnce(Result<Message>) + Send + 'static,
    ) -> Result<()> {
        let sink = ReplySink::Callback(Callback::new(on_reply));
        self.start_request(id, body.as_ref(), timeout, sink)
    }

    fn start_request(
        &self,
        id: u32,
        body: &[u8],
        timeout: Duration,
        sink: ReplySink,
    ) -> Result<()> {
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            sink.forget();
            return Err(runtime.count_send_error(Error::ShutDown));
        }
        // No connection of this server carries a sequence number: say so
        // now, on any thread (a WebSocket connection in message mode is
        // known only on its loop, which fails the request at once).
        if !runtime.wire.may_carry_seq() {
            sink.forget();
            return Err(runtime.count_send_error(Error::NoSeq));
        }
        let to = self.id;
        let mut sink = Some(sink);
        let local = with_current(runtime, to.loop_index(), |core| {
            let sink = sink.take().expect("taken once");
            start_on(core, to, id, Payload::Slice(body), timeout, sink, false)
        });
        if let Some(r) = local {
            return r;
        }
        let sink = sink.take().expect("not taken by the loop");
        let body = Bytes::copy_from_slice(body);
        let len = body.len();
        let cmd = Command::Request {
            to,
            id,
            body,
            timeout,
            sink,
        };
        runtime.push_or(to.loop_index(), len, cmd, |cmd| {
            // The caller gets the error: the sink gets nothing.
            if let Command::Request { sink, .. } = cmd {
                sink.forget();
            }
        })
    }
}

/// Start a request on its connection's loop. If it cannot be sent, the
/// error goes to `sink` (`report`: the caller is gone, a cross-thread
/// request) or back to the caller.
pub(crate) fn start_on(
    core: &LoopCore,
    to: crate::id::ConnId,
    id: u32,
    body: Payload<'_>,
    timeout: Duration,
    sink: ReplySink,
    report: bool,
) -> Result<()> {
    let table = &core.table;
    // The connection first: a stale id fails before any request state is
    // touched.
    let at = match table.begin_request(to) {
        Ok(at) => at,
        Err(e) => return refuse(core, sink, e, report),
    };
    let now = std::time::Instant::now();
    let seq =
        table
            .requests
            .borrow_mut()
            .start(at.key, at.generation, at.dialed, timeout, sink, now);
    let orphans = table.requests.borrow_mut().take_orphans();
    for sink in orphans {
        table.deliver(sink, Err(Error::Disconnected));
    }
    if let Err(e) = table.send(to, id, seq, body) {
        let sink = table
            .requests
            .borrow_mut()
            .cancel(at.key, at.generation, seq);
        match sink {
            Some(sink) => return refuse(core, sink, e, report),
            None => return Err(e),
        }
    }
    Ok(())
}

/// A request that could not be sent: its error goes to `sink` when
/// `report`ing, else back to the caller (and the sink gets nothing).
fn refuse(core: &LoopCore, sink: ReplySink, e: Error, report: bool) -> Result<()> {
    if report {
        core.table.deliver(sink, Err(e));
        Ok(())
    } else {
        sink.forget();
        Err(e)
    }
}

/// Answers one request later, from any thread: it carries the request's
/// sequence number, so the reply finds the requester's waiting request.
/// Get it from `Context::responder` in the request's handler.
#[derive(Clone)]
pub struct Responder {
    pub(crate) handle: ConnHandle,
    pub(crate) seq: u32,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("conn", &self.handle.id)
            .field("seq", &self.seq)
            .finish()
    }
}

impl Responder {
    /// Send the reply: message `id` with `body` and the request's sequence
    /// number.
    ///
    /// # Errors
    ///
    /// As [`ConnHandle::send`].
    pub fn respond(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.handle.send_seq(id, self.seq, body)
    }

    /// The request's sequence number.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// The requester's connection.
    pub fn handle(&self) -> &ConnHandle {
        &self.handle
    }
}
