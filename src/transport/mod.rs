//! Layers between the socket and the packer: raw bytes ⇄ plaintext ⇄
//! messages, with no socket inside (the reactor makes every socket call)
//! and no user callback (the reactor asks the application, and tells the
//! layer its verdict).
//!
//! ```text
//! socket ⇄ [TLS (tls/): records ⇄ plaintext] ⇄ [WebSocket (ws/): frames ⇄ messages] ⇄ packer / router
//! ```
//!
//! * [`Wire`]: the server-wide settings (packer, TLS, WebSocket, the
//!   listeners' protocols) and the one place where a message is encoded
//!   for a connection's protocol.
//! * [`Layer`]: one connection's layers; plain TCP has none and allocates
//!   nothing.
//!
//! A layer compiled out (feature `tls` or `ws` off) is replaced by a stub
//! module of the same shape whose types are uninhabited: the code above
//! calls one interface, and `cfg` stands only here, where the
//! implementation is chosen.

mod layer;
pub(crate) mod udp;
mod wire;

#[cfg(not(feature = "tls"))]
pub(crate) mod no_tls;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(not(feature = "tls"))]
pub(crate) use no_tls as tls;

#[cfg(not(feature = "ws"))]
pub(crate) mod no_ws;
#[cfg(feature = "ws")]
pub(crate) mod ws;
#[cfg(not(feature = "ws"))]
pub(crate) use no_ws as ws;

pub(crate) use layer::Layer;
pub(crate) use wire::{Encoded, Wire};

use bytes::BytesMut;

use crate::buf::LazyQueue;
use crate::codec::Message;

/// What a listener speaks, and so what each of its connections speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) enum Protocol {
    /// The server's packer straight over TCP (or TLS).
    #[default]
    Raw,
    /// WebSocket over TCP (or TLS): `ws://` (`wss://`).
    WebSocket,
    /// The client's end of WebSocket (`Dial::ws`): masked frames; with
    /// `packer`, binary messages carry packer frames. No listener speaks
    /// it.
    WsClient { packer: bool },
}

/// A close frame the application asked for (`close_with`); layers without
/// a close frame of their own ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Goodbye {
    pub(crate) code: u16,
    pub(crate) reason: Box<str>,
}

/// Where a layer puts what it received. Whole messages and protocol
/// replies come only from the WebSocket layer.
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
pub(crate) struct Sink<'a> {
    /// The byte stream for the packer.
    pub(crate) stream: &'a mut BytesMut,
    /// Whole messages, bypassing the packer (WebSocket message mode).
    pub(crate) messages: &'a mut Vec<Message>,
    /// The connection's write queue, for protocol replies (pong, close).
    pub(crate) out: LazyQueue<'a>,
    /// The loop's scratch for TLS plaintext under WebSocket.
    pub(crate) plain: &'a mut BytesMut,
}

/// What a batch of received bytes produced, besides messages and stream
/// bytes.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// The peer closed its side at the layer level (TLS close_notify).
    pub(crate) peer_closed: bool,
    /// The layer has output to write (handshake, alerts, pong, close).
    pub(crate) wants_write: bool,
    /// A WebSocket upgrade request is complete: the application decides.
    pub(crate) upgrade: Option<Box<ws::WsRequest>>,
    /// The TLS handshake completed: what it settled.
    pub(crate) tls_info: Option<tls::TlsInfo>,
    /// A dial's WebSocket upgrade was answered and checked: it is open.
    pub(crate) ws_response: Option<Box<ws::WsResponse>>,
}

impl Incoming {
    /// What a lower layer reported, then the layer above it.
    fn and(self, above: Incoming) -> Incoming {
        Incoming {
            peer_closed: self.peer_closed || above.peer_closed,
            wants_write: self.wants_write || above.wants_write,
            upgrade: above.upgrade.or(self.upgrade),
            tls_info: self.tls_info.or(above.tls_info),
            ws_response: above.ws_response.or(self.ws_response),
        }
    }
}
