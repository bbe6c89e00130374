//! Requests matched to replies by sequence number: [`ConnHandle::request`]
//! (wait for the reply), [`ConnHandle::request_with`] (a callback), and
//! [`Responder`] (answer a request later, from any thread).
//!
//! The connection's loop gives each request a sequence number (the packer
//! must carry one: `SeqPacker`, `TlvPacker`, or yours), keeps it until the
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
use crate::conn::requests::{Reply, ReplySink};
use crate::error::{Error, Result};

/// A request's reply, to wait for: see [`ConnHandle::request`].
#[must_use = "a request's reply is only read through its PendingReply"]
pub struct PendingReply {
    rx: crossbeam_channel::Receiver<Reply>,
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
    /// sending the request (e.g. [`Error::BufferFull`]).
    pub fn wait(self) -> Result<Message> {
        // The loop answers by the timeout; the margin covers a busy turn.
        let wait = saturate(self.timeout) + Duration::from_secs(1);
        match self.rx.recv_timeout(wait) {
            Ok(reply) => reply,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(Error::ShutDown),
        }
    }

    /// The reply, if it came already (`None` while waiting).
    pub fn try_get(&self) -> Option<Result<Message>> {
        match self.rx.try_recv() {
            Ok(reply) => Some(reply),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(Err(Error::ShutDown)),
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
    /// errors come from [`PendingReply::wait`].
    pub fn request(
        &self,
        id: u32,
        body: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<PendingReply> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let body = body.as_ref();
        self.start_request(id, body, timeout, ReplySink::Channel(tx))?;
        Ok(PendingReply { rx, timeout })
    }

    /// Like [`request`](Self::request), with the reply (or its error:
    /// [`Error::Timeout`], [`Error::Disconnected`], or the send's) handed to
    /// `on_reply`, which runs on the connection's loop thread: keep it
    /// short, and never block in it. The form to use inside handlers.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), when the request cannot be sent at once (on
    /// the connection's own loop thread); from other threads such errors
    /// reach `on_reply`.
    pub fn request_with(
        &self,
        id: u32,
        body: impl AsRef<[u8]>,
        timeout: Duration,
        on_reply: impl FnOnce(Result<Message>) + Send + 'static,
    ) -> Result<()> {
        let sink = ReplySink::Callback(Box::new(on_reply));
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
            return Err(runtime.count_send_error(Error::ShutDown));
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
        runtime.push(to.loop_index(), len, cmd)
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
    let (key, generation) = (to.key(), to.generation);
    let dialed = table.mark_awaiting(key, generation);
    let seq = table.requests.borrow_mut().start(
        key,
        generation,
        dialed,
        timeout,
        sink,
        std::time::Instant::now(),
    );
    let sent = table.send(key, generation, id, seq, body);
    if let Err(e) = sent {
        let sink = table.requests.borrow_mut().cancel(key, seq);
        match (sink, report) {
            (Some(sink), true) => sink.deliver(Err(e)),
            _ => return Err(e),
        }
    }
    Ok(())
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
