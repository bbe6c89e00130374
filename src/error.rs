//! Errors and close reasons.
//!
//! * [`Error`] is what a netloom call returns; each variant says what the
//!   caller should do about it.
//! * [`PackError`] is what a [`Packer`](crate::Packer) returns when the peer
//!   broke the wire protocol (or a message cannot be encoded).
//! * [`CloseReason`] is handed to `on_close`: why a connection ended.

use std::fmt;
use std::io;
use std::sync::Arc;

/// `Result` with netloom's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error type of netloom's public API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection is closed or closing (or the handle is stale: its slot
    /// now belongs to another connection). Nothing was sent; drop the handle.
    #[error("connection closed")]
    Closed,
    /// The connection's write queue is over its high-water mark: the peer
    /// reads slower than you write. Nothing was queued. Retry later, drop the
    /// message, or close the peer; the loop stops reading from this peer
    /// until its queue drains.
    #[error("write queue full (peer reads too slowly)")]
    BufferFull,
    /// The target event loop's inbox holds more cross-thread bytes than
    /// `Config::inbox_capacity`. Nothing was queued; slow down the producer.
    #[error("event loop inbox full")]
    InboxFull,
    /// The server is shutting down or has shut down. Nothing was sent.
    #[error("server is shut down")]
    ShutDown,
    /// The packer refused to encode the message (e.g. body over the limit).
    /// Nothing was queued; this is a bug in the caller or a limit to raise.
    #[error("encode failed: {0}")]
    Pack(#[from] PackError),
    /// A configuration value is invalid; the message says which and why.
    /// Returned by the builder before any thread starts.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An operating-system error (bind, listen, thread spawn, poll).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A thread of the server panicked outside any handler (a netloom bug);
    /// reported by `shutdown` after every other thread was joined.
    #[error("server thread panicked: {0}")]
    ThreadPanicked(String),
    /// `shutdown` reached its deadline; connections still open were closed
    /// without flushing (or while a worker still ran their handler). The
    /// server is fully stopped nonetheless (a worker still in a handler
    /// ends it on its own).
    #[error("shutdown deadline passed with {0} connection(s) unflushed")]
    ShutdownTimeout(usize),
    /// A request got no reply within its timeout. The peer may still
    /// handle it; a reply that comes later is counted and dropped, never
    /// handed to another request. Retry if the request is idempotent.
    ///
    /// Also every blocking-client operation that ran out of time
    /// ([`Client`](crate::client::Client)'s `recv`, `send`, `round_trip`,
    /// `connect_timeout`, …), whichever kind the OS gave the socket call
    /// (`WouldBlock` or `TimedOut`): a `recv` can be retried, a `send` may
    /// have written part of its message (close the client).
    #[error("timed out")]
    Timeout,
    /// The connection was lost before the reply came (the request may or
    /// may not have been handled), or a dialed connection that refuses
    /// sends while it is down (`WhileDown::Refuse`) is down. For a
    /// connection that reconnects, retry once it is back.
    #[error("connection lost or down")]
    Disconnected,
    /// A request was made on a connection whose framing carries no
    /// sequence number (the default `LengthPacker`, or a WebSocket
    /// connection in message mode), so no reply could ever be matched to
    /// it. Nothing was sent. Use `SeqPacker`, `TlvPacker` or a packer that
    /// carries one (see `Packer::carries_seq`), or `send` and a route for
    /// the answer.
    #[error("the connection's framing carries no sequence number: requests need one")]
    NoSeq,
    /// A typed reply (`reply_json`, `send_msgpack`, …) could not be
    /// encoded: the serializer refused the value (a map with keys JSON
    /// cannot have, a type whose `Serialize` fails). Nothing was sent. A
    /// bug in the application's type, not the peer's doing.
    #[error("typed message could not be encoded: {0}")]
    Encode(String),
    /// A message for a UDP session would make a datagram of `len` bytes,
    /// over `UdpConfig::max_datagram` (`max`). Nothing was sent. Send less
    /// per message (or raise the limit, up to what the path carries
    /// without IP fragmentation, if you can).
    #[error("a datagram of {len} bytes exceeds the limit of {max} bytes")]
    DatagramTooLarge {
        /// The frame's length.
        len: usize,
        /// `UdpConfig::max_datagram`.
        max: usize,
    },
    /// A room name is empty or longer than [`MAX_ROOM_NAME`](crate::MAX_ROOM_NAME)
    /// bytes. Nothing was joined, left or published: reject the input
    /// (a peer's, typically) or shorten the name.
    #[error("room name of {0} bytes: empty or over the limit")]
    RoomName(usize),
    /// The connection is a member of [`MAX_ROOMS_PER_CONN`](crate::MAX_ROOMS_PER_CONN)
    /// rooms already; it joined nothing. Leave a room first.
    #[error("connection is in the most rooms it may be in ({0})")]
    TooManyRooms(usize),
    /// The cluster's broker (Redis) is unreachable, or the queue to it is
    /// full: the message reached this node's connections, not the other
    /// nodes'. Delivery is at most once: retry if it matters. The node
    /// reconnects by itself; the text says what failed.
    #[error("broker unavailable: {0}")]
    Broker(String),
}

/// A peer broke the wire protocol, or a message cannot be encoded.
///
/// Returned by [`Packer`](crate::Packer) implementations. A decode error
/// closes only the offending connection, with
/// [`CloseReason::Protocol`] carrying this value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The frame declares a body longer than the configured maximum. Checked
    /// before any byte is reserved for the body.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLong {
        /// Declared (or requested) body length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The bytes do not form a valid frame; the text says what was wrong.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Why a connection was closed; passed to `on_close`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side (read returned end of file).
    PeerClosed,
    /// The peer sent nothing for the heartbeat's idle timeout.
    IdleTimeout,
    /// The peer broke the wire protocol (bad frame, body over the limit).
    Protocol(PackError),
    /// The peer sent a message id no route handles and the server is
    /// configured with [`UnknownIdPolicy::Close`](crate::UnknownIdPolicy).
    UnknownId(u32),
    /// The peer read too slowly: its write queue went over the high-water
    /// mark with [`SlowPeerPolicy::Close`](crate::SlowPeerPolicy).
    SlowPeer,
    /// A handler, middleware or hook panicked while serving this connection.
    HandlerPanic,
    /// `on_open` rejected the connection; the text is its reason.
    Rejected(String),
    /// The server closed it on request: `ctx.close()` or `ConnHandle::close()`.
    Local,
    /// The server is shutting down.
    Shutdown,
    /// A socket error; the connection could not go on.
    Io(Arc<io::Error>),
    /// The TLS handshake failed (bad client hello, no common cipher, a
    /// plaintext client on a TLS port, …; on a dialed connection, also a
    /// server certificate that is not trusted or not for the server
    /// name); the text is rustls' error.
    TlsHandshake(String),
    /// The peer did not finish its handshake within the configured
    /// handshake timeout.
    HandshakeTimeout,
    /// A TLS error after the handshake (bad record, decryption failure).
    Tls(String),
    /// The peer closed the WebSocket with a close frame (answered before
    /// the connection closed). `code` 1005 means the frame had none.
    WsClosed {
        /// The peer's close code (1000 normal, 1001 going away, …).
        code: u16,
        /// The peer's close reason (may be empty).
        reason: String,
    },
    /// The peer broke the WebSocket protocol; the server sent a close frame
    /// with `code` (1002 protocol error or unmasked frame, 1003 unsupported
    /// data, 1007 invalid UTF-8, 1009 message or frame too big) and closed.
    WsProtocol {
        /// The close code sent to the peer.
        code: u16,
        /// What was wrong (tungstenite's error text).
        message: String,
    },
    /// `ws_on_upgrade` refused the WebSocket upgrade with this HTTP status
    /// (sent to the client).
    UpgradeRejected(u16),
    /// The request on a WebSocket listener was not a valid WebSocket
    /// upgrade (answered `400 Bad Request`, or `431` when too long); the
    /// text says what was wrong.
    BadUpgrade(String),
    /// A frame (or WebSocket message, or TLS record) the peer began was not
    /// completed in time: `Config::frame_timeout`, extended by the bytes
    /// that arrived at `Config::frame_min_rate` (a slow-body attack, or a
    /// link slower than the minimum rate).
    FrameTimeout,
    /// The loop's memory for partial frames (`Config::max_partial_bytes`)
    /// ran out, and this connection held the most.
    MemoryLimit,
    /// A dialed connection could not connect (refused, unreachable, …)
    /// and has no reconnect policy, or used up its attempts.
    ConnectFailed(Arc<io::Error>),
    /// A dialed connection's connect did not complete within its
    /// `connect_timeout` (and it has no reconnect policy, or used up its
    /// attempts).
    ConnectTimeout,
    /// A dialed connection's requests timed out this many times in a row
    /// (`Dial::reconnect_after_timeouts`): the link is taken for dead.
    RequestTimeouts(u32),
    /// A dialed connection's health check (`Dial::health_check`) failed:
    /// no answer within its timeout, or the request could not be made.
    HealthCheckFailed(String),
    /// A dialed host name (`Dial::host`) did not resolve, or resolved to
    /// nothing, or its resolver gave no answer within `connect_timeout`.
    ResolveFailed(String),
    /// A body did not decode as its typed route's type, and the server's
    /// policy is `BadBody::Close`; the text is the decoder's.
    BadBody(String),
    /// The connection's handlers fell behind: the work waiting for its
    /// worker pool or logic thread passed `Config::exec_backlog` on a
    /// connection whose reads may not pause (a dialed link, or one with
    /// requests waiting for replies). Others pause reading instead.
    Backlog,
}

impl CloseReason {
    /// Number of distinct kinds, for per-kind counters.
    pub(crate) const KINDS: usize = 26;

    /// A small stable index per kind, used by [`Stats`](crate::Stats).
    pub(crate) fn kind_index(&self) -> usize {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::IdleTimeout => 1,
            CloseReason::Protocol(_) => 2,
            CloseReason::UnknownId(_) => 3,
            CloseReason::SlowPeer => 4,
            CloseReason::HandlerPanic => 5,
            CloseReason::Rejected(_) => 6,
            CloseReason::Local => 7,
            CloseReason::Shutdown => 8,
            CloseReason::Io(_) => 9,
            CloseReason::TlsHandshake(_) => 10,
            CloseReason::HandshakeTimeout => 11,
            CloseReason::Tls(_) => 12,
            CloseReason::WsClosed { .. } => 13,
            CloseReason::WsProtocol { .. } => 14,
            CloseReason::UpgradeRejected(_) => 15,
            CloseReason::BadUpgrade(_) => 16,
            CloseReason::FrameTimeout => 17,
            CloseReason::MemoryLimit => 18,
            CloseReason::ConnectFailed(_) => 19,
            CloseReason::ConnectTimeout => 20,
            CloseReason::RequestTimeouts(_) => 21,
            CloseReason::HealthCheckFailed(_) => 22,
            CloseReason::ResolveFailed(_) => 23,
            CloseReason::Backlog => 24,
            CloseReason::BadBody(_) => 25,
        }
    }

    /// Short name of the kind, as used in stats and logs.
    pub(crate) fn kind_name(index: usize) -> &'static str {
        [
            "peer_closed",
            "idle_timeout",
            "protocol",
            "unknown_id",
            "slow_peer",
            "handler_panic",
            "rejected",
            "local",
            "shutdown",
            "io",
            "tls_handshake",
            "handshake_timeout",
            "tls",
            "ws_closed",
            "ws_protocol",
            "upgrade_rejected",
            "bad_upgrade",
            "frame_timeout",
            "memory_limit",
            "connect_failed",
            "connect_timeout",
            "request_timeouts",
            "health_check_failed",
            "resolve_failed",
            "backlog",
            "bad_body",
        ][index]
    }

    /// The reason for a socket error: a reset or broken pipe means the
    /// peer went away; anything else is an I/O failure.
    pub(crate) fn from_io(e: io::Error) -> CloseReason {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => CloseReason::PeerClosed,
            _ => CloseReason::Io(Arc::new(e)),
        }
    }

    /// What this reason says about the connection's transport, which
    /// decides what the server still sends and reads on the way out.
    pub(crate) fn ending(&self) -> Ending {
        match self {
            CloseReason::PeerClosed
            | CloseReason::Io(_)
            | CloseReason::ConnectFailed(_)
            | CloseReason::ConnectTimeout
            | CloseReason::ResolveFailed(_) => Ending::Gone,
            CloseReason::TlsHandshake(_) | CloseReason::Tls(_) => Ending::TlsFailed,
            CloseReason::HandshakeTimeout
            | CloseReason::WsClosed { .. }
            | CloseReason::WsProtocol { .. }
            | CloseReason::UpgradeRejected(_)
            | CloseReason::BadUpgrade(_) => Ending::LayerDone,
            CloseReason::IdleTimeout
            | CloseReason::RequestTimeouts(_)
            | CloseReason::HealthCheckFailed(_) => Ending::Unresponsive,
            CloseReason::Protocol(_)
            | CloseReason::UnknownId(_)
            | CloseReason::SlowPeer
            | CloseReason::HandlerPanic
            | CloseReason::Rejected(_)
            | CloseReason::Local
            | CloseReason::Shutdown
            | CloseReason::FrameTimeout
            | CloseReason::MemoryLimit
            | CloseReason::Backlog
            | CloseReason::BadBody(_) => Ending::Ours,
        }
    }

    /// True for reasons that mean the peer misbehaved or failed (logged at
    /// warn rather than debug).
    pub(crate) fn is_failure(&self) -> bool {
        matches!(
            self,
            CloseReason::Protocol(_)
                | CloseReason::UnknownId(_)
                | CloseReason::SlowPeer
                | CloseReason::HandlerPanic
                | CloseReason::Io(_)
                | CloseReason::TlsHandshake(_)
                | CloseReason::HandshakeTimeout
                | CloseReason::Tls(_)
                | CloseReason::WsProtocol { .. }
                | CloseReason::BadUpgrade(_)
                | CloseReason::FrameTimeout
                | CloseReason::MemoryLimit
                | CloseReason::ConnectFailed(_)
                | CloseReason::ConnectTimeout
                | CloseReason::RequestTimeouts(_)
                | CloseReason::HealthCheckFailed(_)
                | CloseReason::ResolveFailed(_)
                | CloseReason::Backlog
                | CloseReason::BadBody(_)
        )
    }
}

/// How a connection's transport stands when it closes ([`CloseReason::ending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The peer is gone or the socket failed: nothing more can be sent, and
    /// there is nothing to read.
    Gone,
    /// The TLS layer failed: no TLS goodbye can be sent (rustls already
    /// queued its alert).
    TlsFailed,
    /// A layer already ended its own protocol (a WebSocket close frame was
    /// exchanged, an HTTP error answered the upgrade, the handshake timed
    /// out): only the transport's goodbye (TLS close_notify) is left.
    LayerDone,
    /// The server closes a working connection: every layer says goodbye
    /// (WebSocket close frame, then TLS close_notify) after what is queued.
    Ours,
    /// We took the peer for dead (heartbeat, health check, timeouts): no linger.
    Unresponsive,
}

impl Ending {
    /// The transport can still carry a goodbye (TLS close_notify).
    pub(crate) fn can_say_goodbye(self) -> bool {
        !matches!(self, Ending::Gone | Ending::TlsFailed)
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

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::UnknownId(id) => write!(f, "unknown message id {id}"),
            CloseReason::SlowPeer => f.write_str("slow peer"),
            CloseReason::HandlerPanic => f.write_str("handler panicked"),
            CloseReason::Rejected(why) => write!(f, "rejected: {why}"),
            CloseReason::Local => f.write_str("closed by server"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
            CloseReason::TlsHandshake(e) => write!(f, "TLS handshake failed: {e}"),
            CloseReason::HandshakeTimeout => f.write_str("handshake timeout"),
            CloseReason::Tls(e) => write!(f, "TLS error: {e}"),
            CloseReason::WsClosed { code, reason } => {
                write!(f, "WebSocket closed by peer ({code}")?;
                if !reason.is_empty() {
                    write!(f, " {reason:?}")?;
                }
                f.write_str(")")
            }
            CloseReason::WsProtocol { code, message } => {
                write!(f, "WebSocket protocol error ({code}): {message}")
            }
            CloseReason::UpgradeRejected(status) => {
                write!(f, "WebSocket upgrade rejected with HTTP {status}")
            }
            CloseReason::BadUpgrade(e) => write!(f, "bad WebSocket upgrade request: {e}"),
            CloseReason::FrameTimeout => f.write_str("frame not completed in time"),
            CloseReason::MemoryLimit => {
                f.write_str("loop's partial-frame memory exhausted; held the most")
            }
            CloseReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            CloseReason::ConnectTimeout => f.write_str("connect timed out"),
            CloseReason::RequestTimeouts(n) => write!(f, "{n} requests in a row timed out"),
            CloseReason::HealthCheckFailed(why) => write!(f, "health check failed: {why}"),
            CloseReason::ResolveFailed(why) => write!(f, "host name did not resolve: {why}"),
            CloseReason::Backlog => write!(f, "handlers fell behind (exec backlog full)"),
            CloseReason::BadBody(why) => write!(f, "a body did not decode: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_indices_are_dense_and_named() {
        let all = [
            CloseReason::PeerClosed,
            CloseReason::IdleTimeout,
            CloseReason::Protocol(PackError::Malformed("x".into())),
            CloseReason::UnknownId(7),
            CloseReason::SlowPeer,
            CloseReason::HandlerPanic,
            CloseReason::Rejected("full".into()),
            CloseReason::Local,
            CloseReason::Shutdown,
            CloseReason::Io(Arc::new(io::Error::other("boom"))),
            CloseReason::TlsHandshake("bad hello".into()),
            CloseReason::HandshakeTimeout,
            CloseReason::Tls("bad record".into()),
            CloseReason::WsClosed {
                code: 1000,
                reason: "bye".into(),
            },
            CloseReason::WsProtocol {
                code: 1007,
                message: "invalid utf-8".into(),
            },
            CloseReason::UpgradeRejected(403),
            CloseReason::BadUpgrade("no Upgrade header".into()),
            CloseReason::FrameTimeout,
            CloseReason::MemoryLimit,
            CloseReason::ConnectFailed(Arc::new(io::ErrorKind::ConnectionRefused.into())),
            CloseReason::ConnectTimeout,
            CloseReason::RequestTimeouts(3),
            CloseReason::HealthCheckFailed("timed out".into()),
            CloseReason::ResolveFailed("no such host".into()),
            CloseReason::Backlog,
            CloseReason::BadBody("not json".into()),
        ];
        assert_eq!(all.len(), CloseReason::KINDS);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.kind_index(), i);
            assert!(!CloseReason::kind_name(i).is_empty());
            assert!(!r.to_string().is_empty());
        }
    }
}
