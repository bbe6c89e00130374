//! What handlers, middleware and hooks see: [`Session`] (one connection)
//! and [`Context`] (one message on one connection).

use std::any::{Any, TypeId};
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;

use crate::conn::write::SHARE_MIN;
use crate::error::{CloseReason, Result};
use crate::handle::{ConnHandle, ConnId, Hub};
use crate::packer::Message;
use crate::reactor::LoopCore;

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

/// A small map from type to value: per-connection user data and
/// per-message middleware values. Allocates nothing while empty.
#[derive(Default)]
pub(crate) struct TypeMap(Vec<(TypeId, Box<dyn Any + Send>)>);

impl TypeMap {
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let t = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(k, _)| *k == t)
            .and_then(|(_, v)| v.downcast_ref())
    }

    pub(crate) fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let t = TypeId::of::<T>();
        self.0
            .iter_mut()
            .find(|(k, _)| *k == t)
            .and_then(|(_, v)| v.downcast_mut())
    }

    pub(crate) fn insert<T: Send + 'static>(&mut self, value: T) -> Option<T> {
        let t = TypeId::of::<T>();
        let old = match self.0.iter().position(|(k, _)| *k == t) {
            Some(i) => Some(self.0.swap_remove(i).1),
            None => None,
        };
        // Exact growth: most connections keep one or two values, and this
        // map lives as long as the connection.
        self.0.reserve_exact(1);
        self.0.push((t, Box::new(value)));
        old.and_then(|b| b.downcast().ok()).map(|b| *b)
    }

    pub(crate) fn remove<T: 'static>(&mut self) -> Option<T> {
        let t = TypeId::of::<T>();
        let i = self.0.iter().position(|(k, _)| *k == t)?;
        self.0.swap_remove(i).1.downcast().ok().map(|b| *b)
    }
}

/// One connection as seen from its own loop thread: by `on_open`,
/// `on_close`, and (through [`Context`]'s `Deref`) by handlers.
///
/// Holds the connection's typed user data: at most one value per type.
pub struct Session<'a> {
    pub(crate) core: &'a LoopCore,
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    pub(crate) data: &'a mut TypeMap,
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

    /// A handle to this connection, to keep or give to other threads.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle {
            id: self.id,
            server: self.core.server.clone(),
        }
    }

    /// Server-wide operations (broadcast, connection list, stats).
    pub fn hub(&self) -> Hub {
        Hub {
            server: self.core.server.clone(),
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
        self.core.send(
            self.id.key as usize,
            self.id.generation,
            id,
            0,
            body.as_ref(),
        )
    }

    /// Close this connection once what is queued has been written
    /// (`on_close` gets [`CloseReason::Local`]). Messages already received
    /// but not yet handled are dropped.
    pub fn close(&self) {
        self.core
            .close(self.id.key as usize, self.id.generation, CloseReason::Local);
    }

    /// This connection's user data of type `T`, if set.
    ///
    /// ```
    /// # fn handler(ctx: &mut netloom::Context<'_>) {
    /// struct User { name: String }
    /// if let Some(user) = ctx.data::<User>() {
    ///     log::info!("message from {}", user.name);
    /// }
    /// # }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    pub fn data<T: 'static>(&self) -> Option<&T> {
        self.data.get()
    }

    /// Mutable access to this connection's user data of type `T`.
    pub fn data_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.data.get_mut()
    }

    /// Store user data of type `T` on the connection, returning the old
    /// value of that type. It lives until the connection closes (it is still
    /// readable in `on_close`).
    pub fn set_data<T: Send + 'static>(&mut self, value: T) -> Option<T> {
        self.data.insert(value)
    }

    /// Remove and return the user data of type `T`.
    pub fn remove_data<T: 'static>(&mut self) -> Option<T> {
        self.data.remove()
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
    /// Middleware values; `None` (nothing to drop) until one is set.
    pub(crate) values: Option<TypeMap>,
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
    pub fn reply(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        let s = &self.session;
        let (key, generation) = (s.id.key as usize, s.id.generation);
        let body = body.as_ref();
        if body.len() >= SHARE_MIN {
            if let Some(shared) = self.shares_request(body) {
                return s.core.send_shared(key, generation, id, self.seq, shared);
            }
        }
        s.core.send(key, generation, id, self.seq, body)
    }

    /// `body` as a reference-counted slice of this message's body, if it
    /// lies inside it.
    fn shares_request(&self, body: &[u8]) -> Option<Bytes> {
        let inside = self.body.as_ptr_range();
        let range = body.as_ptr_range();
        (inside.start <= range.start && range.end <= inside.end)
            .then(|| self.source.slice_ref(body))
    }

    /// Pass a value down the chain (middleware to handler); one per type.
    pub fn set<T: Send + 'static>(&mut self, value: T) -> Option<T> {
        self.values
            .get_or_insert_with(TypeMap::default)
            .insert(value)
    }

    /// A value set by a middleware earlier in the chain.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.values.as_ref()?.get()
    }

    /// Take a value set earlier in the chain.
    pub fn take<T: 'static>(&mut self) -> Option<T> {
        self.values.as_mut()?.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typemap_one_value_per_type() {
        let mut m = TypeMap::default();
        assert_eq!(m.insert(1u32), None);
        assert_eq!(m.insert("a"), None);
        assert_eq!(m.insert(2u32), Some(1));
        assert_eq!(m.get::<u32>(), Some(&2));
        *m.get_mut::<&str>().unwrap() = "b";
        assert_eq!(m.remove::<&str>(), Some("b"));
        assert_eq!(m.get::<&str>(), None);
        assert_eq!(m.get::<u64>(), None);
    }
}
