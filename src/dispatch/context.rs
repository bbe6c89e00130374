//! What handlers, middleware and hooks see: [`Session`] (one connection)
//! and [`Context`] (one message on one connection).

use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;

use crate::buf::Payload;
use crate::codec::Message;
use crate::error::{CloseReason, Error, Result};
use crate::ext::Extensions;
use crate::id::ConnId;
use crate::runtime::exec::Place;
use crate::runtime::{ConnHandle, Hub, Responder};
use crate::stats::Counters;
use crate::transport::Goodbye;

/// Error type handlers and middleware may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a handler or middleware returns. `Err` is logged (with the
/// connection id) and counted in `Stats::handler_errors`; the connection
/// stays open. Call [`Session::close`] to close it.
pub type HandlerResult = std::result::Result<(), BoxError>;

/// Anything a handler may return: `()` or `Result<(), E>` for any error type
/// convertible into [`BoxError`].
pub trait IntoHandlerResult {
    /// Convert into a [`HandlerResult`].
    fn into_handler_result(self) -> HandlerResult;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> HandlerResult {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoHandlerResult for std::result::Result<(), E> {
    fn into_handler_result(self) -> HandlerResult {
        self.map_err(Into::into)
    }
}

/// One connection as seen from its own loop thread: by `on_open`,
/// `on_close`, and (through [`Context`]'s `Deref`) by handlers.
///
/// Holds the connection's typed user data ([`data`](Session::data)): at
/// most one value per type, living as long as the connection.
pub struct Session<'a> {
    /// Where it runs: on the connection's loop, or off it (a worker, the
    /// logic thread).
    pub(crate) at: Place<'a>,
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    /// The connection's profile index (0: the server's own).
    pub(crate) profile: u8,
    pub(crate) data: &'a mut Extensions,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Session<'_> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The name of the dial profile the connection speaks
    /// ([`Dial::profile`](crate::Dial::profile)); `None` for the server's
    /// own protocol (accepted connections, dials without a profile).
    /// Hooks are server-wide: this tells them which protocol they see.
    pub fn profile(&self) -> Option<&str> {
        self.at.runtime().config.profile_name(self.profile)
    }

    /// A handle to this connection, to keep or give to other threads.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle {
            id: self.id,
            runtime: self.at.runtime().clone(),
        }
    }

    /// For a UDP session: its peer is validated (see
    /// [`ConnHandle::validate_udp_peer`]); call it once your handshake
    /// has seen the peer echo a token only it could have received.
    pub fn validate_udp_peer(&self) {
        match self.at {
            Place::Loop(core) => core.table.validate_udp_peer(self.id),
            Place::Off(_) => self.handle().validate_udp_peer(),
        }
    }

    /// Server-wide operations (broadcast, connection list, stats).
    pub fn hub(&self) -> Hub {
        Hub {
            runtime: self.at.runtime().clone(),
        }
    }

    /// Queue a message (sequence number 0) to this connection.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) if the connection is closing,
    /// [`Error::BufferFull`](crate::Error::BufferFull) over the high-water
    /// mark, [`Error::Pack`](crate::Error::Pack) if the packer refuses it.
    pub fn send(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.send_payload(id, 0, Payload::Slice(body.as_ref()))
    }

    /// Like [`send`](Self::send), for a body held as [`Bytes`]: a large one
    /// (16 KiB or more) is queued by reference, without a copy, when the
    /// packer can frame it so
    /// ([`Packer::encode_around`](crate::Packer::encode_around)).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_bytes(&self, id: u32, body: Bytes) -> Result<()> {
        self.send_payload(id, 0, Payload::Shared(body))
    }

    #[inline]
    pub(crate) fn send_payload(&self, id: u32, seq: u32, body: Payload<'_>) -> Result<()> {
        let me = self.id;
        match self.at {
            Place::Loop(core) => core.table.send(me, id, seq, body),
            Place::Off(off) if off.closed.get() => Err(Error::Closed),
            Place::Off(off) => {
                off.send(id, seq, body);
                Ok(())
            }
        }
    }

    /// Close this connection for `reason` (after what is queued).
    pub(crate) fn close_for(&self, reason: CloseReason, goodbye: Option<&Goodbye>) {
        match self.at {
            Place::Loop(core) => core.table.close_with(self.id, reason, goodbye),
            Place::Off(off) => off.close(reason, goodbye.cloned()),
        }
    }

    /// Whether this is the first time the connection has `warned` (a
    /// `flag::*_WARNED`): its first is logged at warn, later ones at
    /// debug. Off the loop the task carries the flags, and brings them back.
    pub(crate) fn first_warning(&self, warned: u16) -> bool {
        match self.at {
            Place::Loop(core) => core.table.first_warning(self.id, warned),
            Place::Off(off) => off.first_warning(warned),
        }
    }

    /// The counters of the connection's loop.
    pub(crate) fn counters(&self) -> &Counters {
        &self.at.runtime().loops[self.id.loop_index()].counters
    }

    /// Close this connection once what is queued has been written
    /// (`on_close` gets [`CloseReason::Local`]). Messages already received
    /// but not yet handled are dropped.
    pub fn close(&self) {
        self.close_with_goodbye(None);
    }

    /// Close with a WebSocket close frame carrying `code` and `reason`
    /// (at most 123 bytes; a code that may not be sent becomes 1000), after
    /// what is queued; `on_close` gets [`CloseReason::Local`]. On other
    /// connections the same as [`close`](Session::close).
    pub fn close_with(&self, code: u16, reason: &str) {
        self.close_with_goodbye(Some(&Goodbye {
            code,
            reason: reason.into(),
        }));
    }

    fn close_with_goodbye(&self, goodbye: Option<&Goodbye>) {
        self.close_for(CloseReason::Local, goodbye);
    }

    /// This connection's user data: at most one value per type, kept until
    /// the connection closes (still readable in `on_close`).
    ///
    /// ```
    /// # fn handler(ctx: &mut netloom::Context<'_>) {
    /// struct User { name: String }
    /// if let Some(user) = ctx.data().get::<User>() {
    ///     log::info!("message from {}", user.name);
    /// }
    /// # }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    pub fn data(&self) -> &Extensions {
        self.data
    }

    /// Mutable access to this connection's user data.
    ///
    /// ```
    /// let builder = netloom::Server::builder().on_open(|session| {
    ///     session.data_mut().insert(std::time::Instant::now());
    /// });
    /// # drop(builder);
    /// ```
    pub fn data_mut(&mut self) -> &mut Extensions {
        self.data
    }
}

impl<'a> Session<'a> {
    /// The application state of type `T` given to
    /// [`Builder::state`](crate::Builder::state), shared by every
    /// connection and loop (`None` if none of that type was given).
    ///
    /// The reference lives as long as the session, so it can be held
    /// while the connection's data is changed. A lookup among the few
    /// state types; no lock, no reference count. To move the state into
    /// another thread, store it as an `Arc<T>` and clone that.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// struct Metrics { logins: AtomicU64 }
    ///
    /// let builder = netloom::Server::builder()
    ///     .state(Metrics { logins: AtomicU64::new(0) })
    ///     .route(1, |ctx| {
    ///         if let Some(m) = ctx.state::<Metrics>() {
    ///             m.logins.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     });
    /// # drop(builder);
    /// ```
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&'a T> {
        let at: Place<'a> = self.at;
        at.state().get()
    }
}

/// One message being handled: the message plus its connection's
/// [`Session`] (reachable through `Deref`), and a typed store for values
/// middleware passes down to the handler.
pub struct Context<'a> {
    pub(crate) session: Session<'a>,
    pub(crate) id: u32,
    pub(crate) seq: u32,
    /// The body, borrowed from the loop's receive buffer (or a message).
    pub(crate) body: &'a [u8],
    /// What `body` lies in: sliced when the handler keeps the body.
    pub(crate) source: &'a Bytes,
    /// Bytes of the allocation `source` lies in: what sharing a slice of
    /// it keeps alive.
    pub(crate) source_alloc: usize,
    /// Values middleware passes down; emptied between messages.
    pub(crate) values: Extensions,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("conn", &self.session.id)
            .field("msg_id", &self.id)
            .field("seq", &self.seq)
            .field("len", &self.body.len())
            .finish()
    }
}

impl<'a> Deref for Context<'a> {
    type Target = Session<'a>;
    fn deref(&self) -> &Session<'a> {
        &self.session
    }
}

impl<'a> DerefMut for Context<'a> {
    fn deref_mut(&mut self) -> &mut Session<'a> {
        &mut self.session
    }
}

impl<'a> Context<'a> {
    /// The message id (the route that led here).
    pub fn msg_id(&self) -> u32 {
        self.id
    }

    /// The message's sequence number (0 for packers without one).
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// The message body, borrowed for the handler's run: it lies in the
    /// loop's receive buffer. To keep it longer, take
    /// [`body_bytes`](Context::body_bytes) (no copy) or copy it.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The body as [`Bytes`] that outlive the handler: they share the
    /// receive buffer (a reference-count increment, no copy), which is then
    /// not reused until they are dropped.
    ///
    /// ```
    /// # fn keep(ctx: &mut netloom::Context<'_>) -> netloom::Result<()> {
    /// let body: bytes::Bytes = ctx.body_bytes();
    /// std::thread::spawn(move || println!("{} bytes", body.len()));
    /// # Ok(())
    /// # }
    /// # let _ = netloom::Server::builder().route(1, keep);
    /// ```
    pub fn body_bytes(&self) -> Bytes {
        self.source.slice_ref(self.body)
    }

    /// The whole message, with its body as in
    /// [`body_bytes`](Context::body_bytes).
    pub fn to_message(&self) -> Message {
        Message {
            id: self.id,
            seq: self.seq,
            body: self.body_bytes(),
        }
    }

    /// Answer this message: queue `body` with message id `id` and this
    /// message's sequence number.
    ///
    /// A large body (16 KiB or more) that is this message's body or a slice
    /// of it (an echo, a forwarded payload) is queued by reference, without
    /// copying, when the packer supports it
    /// ([`Packer::encode_around`](crate::Packer::encode_around)).
    ///
    /// ```
    /// # fn echo(ctx: &mut netloom::Context<'_>) -> netloom::Result<()> {
    /// ctx.reply(ctx.msg_id(), ctx.body())
    /// # }
    /// # let _ = netloom::Server::builder().route(1, echo);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::send`].
    #[inline]
    pub fn reply(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        let body = body.as_ref();
        let payload = match self.shares_request(body) {
            Some(shared) => Payload::Shared(shared),
            None => Payload::Slice(body),
        };
        self.session.send_payload(id, self.seq, payload)
    }

    /// A [`Responder`] that answers this message later, from any thread,
    /// with its sequence number (for requests whose answer takes work
    /// done elsewhere).
    ///
    /// ```
    /// # fn slow(ctx: &mut netloom::Context<'_>) {
    /// let responder = ctx.responder();
    /// let question = ctx.body_bytes();
    /// std::thread::spawn(move || {
    ///     let answer = question.to_ascii_uppercase(); // the slow part
    ///     let _ = responder.respond(2, answer);
    /// });
    /// # }
    /// # let _ = netloom::Server::builder().route(1, slow);
    /// ```
    pub fn responder(&self) -> Responder {
        Responder {
            handle: self.session.handle(),
            seq: self.seq,
        }
    }

    /// Like [`reply`](Self::reply), for a body held as [`Bytes`] (see
    /// [`Session::send_bytes`]).
    ///
    /// # Errors
    ///
    /// As [`Session::send`].
    pub fn reply_bytes(&self, id: u32, body: Bytes) -> Result<()> {
        self.session
            .send_payload(id, self.seq, Payload::Shared(body))
    }

    /// `body` as a reference-counted slice of this message's body, if it
    /// lies inside it and is worth sharing: large enough, and at least
    /// half the allocation it would keep alive (the high-water mark counts
    /// the body; below that, a copy holds less than the share would pin).
    #[inline]
    fn shares_request(&self, body: &[u8]) -> Option<Bytes> {
        if body.len() < crate::buf::queue::SHARE_MIN || body.len() * 2 < self.source_alloc {
            return None;
        }
        let inside = self.body.as_ptr_range();
        let range = body.as_ptr_range();
        (inside.start <= range.start && range.end <= inside.end)
            .then(|| self.source.slice_ref(body))
    }

    /// The values middleware earlier in the chain passed down (one per
    /// type), for this message only.
    ///
    /// ```
    /// use netloom::{Context, HandlerResult, Next};
    ///
    /// struct UserId(u64);
    ///
    /// fn auth(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
    ///     ctx.values_mut().insert(UserId(7));
    ///     next.run(ctx)
    /// }
    ///
    /// fn handler(ctx: &mut Context<'_>) -> netloom::Result<()> {
    ///     let uid = ctx.values().get::<UserId>().map_or(0, |u| u.0);
    ///     ctx.reply(1, uid.to_string())
    /// }
    /// # let _ = netloom::Server::builder().middleware(auth).route(1, handler);
    /// ```
    pub fn values(&self) -> &Extensions {
        &self.values
    }

    /// Mutable access to this message's values (see
    /// [`values`](Self::values)).
    pub fn values_mut(&mut self) -> &mut Extensions {
        &mut self.values
    }
}
