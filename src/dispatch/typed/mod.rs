//! Typed messages: bodies decoded into the application's types and
//! replies encoded from them, in JSON (feature `json`), MessagePack
//! (`msgpack`) or Protocol Buffers (`protobuf`), on any transport and
//! packer. The routes are the builder's (`Builder::route_json`, …); here
//! are the formats, what a handler reads and sends with them
//! (`Context::json`, `Context::reply_json`, …), and what happens to a
//! body that does not decode ([`BadBody`], [`DecodeError`]).
//!
//! Decoding reads the body where it lies (the receive buffer): a type
//! that borrows (`&str`, `&[u8]` with serde) borrows from it. Encoding
//! goes into a buffer kept per thread, then into the write queue: no
//! allocation per message once the buffer has grown to the largest reply.

#[cfg(all(feature = "json", feature = "ws"))]
mod envelope;
#[cfg(feature = "json")]
mod json;
#[cfg(feature = "msgpack")]
mod msgpack;
#[cfg(feature = "protobuf")]
mod protobuf;
#[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
mod scratch;

#[cfg(all(feature = "json", feature = "ws"))]
pub(crate) use envelope::{
    dispatcher as envelope_dispatcher, typed as envelope_handler, PING as ENVELOPE_PING,
};

#[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
use scratch::with_scratch;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;

use super::context::{Context, HandlerResult, Session};
use crate::error::{panic_message, CloseReason};

/// A body that did not decode as its route's type: handed to
/// `Builder::on_bad_body`, then to the server's [`BadBody`] policy.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message {msg_id}: body is not {format}: {message}")]
pub struct DecodeError {
    /// The format expected (`"json"`, `"msgpack"`, `"protobuf"`, or the
    /// envelope's `"json envelope"`).
    pub format: &'static str,
    /// The message id it came with.
    pub msg_id: u32,
    /// The decoder's words.
    pub message: String,
}

#[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
impl DecodeError {
    /// The error of a body of message `msg_id` that is not `format`, in
    /// the decoder's words, cut to [`MESSAGE_MAX`] bytes: the words may
    /// quote the body (escaped, so longer than it), and they go into the
    /// log, the close reason and a `BadBody::Reply` to the peer.
    pub(crate) fn new(format: &'static str, msg_id: u32, words: impl fmt::Display) -> Self {
        use fmt::Write;
        let mut message = Bounded(String::new());
        // A `Bounded` stops taking text at the bound: the error is cut, not
        // an error.
        let _ = write!(message, "{words}");
        DecodeError {
            format,
            msg_id,
            message: message.0,
        }
    }
}

/// The most bytes of a [`DecodeError`]'s message (then `…`).
#[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
pub(crate) const MESSAGE_MAX: usize = 256;

/// A string that takes at most [`MESSAGE_MAX`] bytes of text (cut at a
/// character's boundary, marked with `…`), without formatting the rest.
#[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
struct Bounded(String);

#[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Room for the `…` (3 bytes) too.
        let room = (MESSAGE_MAX - 3).saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        self.0.push('…');
        Err(fmt::Error)
    }
}

/// What the server does with a body that does not decode as its route's
/// type ([`Builder::bad_body`](crate::Builder::bad_body)). Whatever it
/// is, the first bad body of a connection is logged at warn (later ones
/// at debug), counted in `Stats::bad_bodies`, and other connections are
/// not affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BadBody {
    /// Drop the message (the default).
    #[default]
    Drop,
    /// Answer with this message id, the request's sequence number and the
    /// error's text as the body.
    Reply(u32),
    /// Close the connection with
    /// [`CloseReason::BadBody`](crate::CloseReason::BadBody).
    Close,
}

/// The hook `Builder::on_bad_body` sets.
pub(crate) type BadBodyHook = Box<dyn Fn(&mut Session<'_>, &DecodeError) + Send + Sync>;

impl fmt::Display for BadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadBody::Drop => f.write_str("drop"),
            BadBody::Reply(id) => write!(f, "reply with id {id}"),
            BadBody::Close => f.write_str("close"),
        }
    }
}

/// The server's answer to bodies that do not decode: its hook
/// (`Builder::on_bad_body`) and its policy (`Builder::bad_body`).
#[derive(Default)]
pub(crate) struct BadBodies {
    pub(crate) hook: Option<BadBodyHook>,
    pub(crate) policy: BadBody,
}

impl BadBodies {
    /// A handler's body did not decode: count and log it (at warn the
    /// first time per connection), run the hook, apply the policy.
    pub(crate) fn handle(&self, ctx: &mut Context<'_>, e: &DecodeError) {
        let (id, peer, policy) = (ctx.session.id, ctx.session.peer, self.policy);
        crate::stats::Counters::add(&ctx.session.counters().bad_bodies, 1);
        if ctx.session.first_warning(crate::conn::flag::BODY_WARNED) {
            log::warn!("conn {id} ({peer}): {e} ({policy}; later ones on this connection are logged at debug)");
        } else {
            log::debug!("conn {id} ({peer}): {e} ({policy})");
        }
        if let Some(hook) = &self.hook {
            // Like every hook, a panic in it closes this connection only.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(&mut ctx.session, e))) {
                log::error!(
                    "conn {id} ({peer}): on_bad_body panicked: {}",
                    panic_message(&*panic)
                );
                ctx.session.close_for(CloseReason::HandlerPanic, None);
                return;
            }
        }
        match policy {
            BadBody::Drop => {}
            BadBody::Reply(reply_id) => {
                let _ = ctx.reply(reply_id, e.to_string());
            }
            BadBody::Close => ctx
                .session
                .close_for(CloseReason::BadBody(e.to_string()), None),
        }
    }
}

/// A typed handler of one envelope type, given the `data` member's JSON.
pub(crate) type DataFn = Box<dyn Fn(&mut Context<'_>, &str) -> HandlerResult + Send + Sync>;

/// hotpot's JSON envelope's handlers by type name (`Builder::route_envelope`):
/// collected by the builder, frozen as the server starts, read by the
/// WebSocket text route that dispatches them.
#[derive(Default)]
pub(crate) struct Envelopes {
    pending: Vec<(String, DataFn)>,
    table: Arc<OnceLock<FxHashMap<String, DataFn>>>,
}

impl Envelopes {
    /// Add (or replace) the handler of `kind`; true for the first one (the
    /// caller then installs the dispatching route).
    #[cfg_attr(not(all(feature = "json", feature = "ws")), allow(dead_code))]
    pub(crate) fn add(&mut self, kind: String, f: DataFn) -> bool {
        let first = self.pending.is_empty();
        self.pending.retain(|(k, _)| *k != kind);
        self.pending.push((kind, f));
        first
    }

    /// What the dispatching route reads.
    #[cfg_attr(not(all(feature = "json", feature = "ws")), allow(dead_code))]
    pub(crate) fn table(&self) -> Arc<OnceLock<FxHashMap<String, DataFn>>> {
        self.table.clone()
    }

    /// Freeze the handlers (the server starts).
    pub(crate) fn freeze(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.table.set(self.pending.drain(..).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by mutation testing: the bound could grow or shrink, and the
    /// cut step forward past a character, with every test passing.
    #[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
    #[test]
    fn a_decode_errors_words_are_cut_at_the_bound_on_a_character_boundary() {
        let words = |s: String| DecodeError::new("json", 1, s).message;
        let fits = "a".repeat(MESSAGE_MAX - 3);
        assert_eq!(words(fits.clone()), fits, "what fits is kept whole");
        let cut = words("a".repeat(MESSAGE_MAX + 10));
        assert_eq!(cut.len(), 256, "the bound the guide gives");
        assert_eq!(cut, format!("{}…", "a".repeat(MESSAGE_MAX - 3)));
        // The bound falls inside the 2-byte "é": cut before it.
        let mid = format!("{}é{}", "a".repeat(MESSAGE_MAX - 4), "b".repeat(10));
        assert_eq!(words(mid), format!("{}…", "a".repeat(MESSAGE_MAX - 4)));
    }

    #[test]
    fn a_bad_body_policy_reads_as_what_it_does() {
        assert_eq!(BadBody::Drop.to_string(), "drop");
        assert_eq!(BadBody::Reply(7).to_string(), "reply with id 7");
        assert_eq!(BadBody::Close.to_string(), "close");
    }
}
