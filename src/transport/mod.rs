//! Layers between the socket and the packer: raw bytes ⇄ plaintext ⇄
//! messages, with no socket inside (the reactor does every socket call).
//!
//! ```text
//! socket ⇄ [TLS (tls.rs): records ⇄ plaintext] ⇄ [WebSocket (ws.rs): frames ⇄ messages] ⇄ packer / router
//! ```
//!
//! Plain TCP is the identity. TLS lives in [`tls`] behind the `tls` feature,
//! WebSocket in [`ws`] behind the `ws` feature; for `wss://` the WebSocket
//! layer runs on the TLS plaintext. Every `cfg` for optional layers is in
//! this file: the reactor talks to [`Layer`] and [`LayerConfig`] only.

#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(feature = "ws")]
pub mod ws;

use std::cell::RefCell;
use std::io::{self, Write};

use bytes::{Bytes, BytesMut};

use crate::config::Config;
use crate::conn::pool::Pool;
use crate::conn::write::WriteQueue;
use crate::context::{Session, TypeMap};
use crate::error::{CloseReason, PackError, Result};
use crate::packer::{Message, Packer};

/// What a listener speaks, and so what each of its connections speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) enum Protocol {
    /// The server's packer straight over TCP (or TLS).
    #[default]
    Raw,
    /// WebSocket over TCP (or TLS): `ws://` (`wss://`).
    #[cfg(feature = "ws")]
    WebSocket,
}

/// A close frame the application asked for (`close_with`); layers without
/// a close frame of their own ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
pub(crate) struct Goodbye {
    pub(crate) code: u16,
    pub(crate) reason: Box<str>,
}

/// A parsed WebSocket upgrade request waiting for the application's verdict.
#[cfg(feature = "ws")]
pub(crate) type Upgrade = Box<ws::WsRequest>;
/// A parsed WebSocket upgrade request (none without the `ws` feature).
#[cfg(not(feature = "ws"))]
pub(crate) type Upgrade = std::convert::Infallible;

/// The server-wide layer settings.
#[derive(Default)]
pub(crate) struct LayerConfig {
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tls::TlsAcceptor>,
    #[cfg(feature = "ws")]
    pub(crate) ws: ws::WsSettings,
    /// The protocols of the server's listeners (each once).
    pub(crate) listening: Vec<Protocol>,
}

impl LayerConfig {
    /// Check and settle the layer settings; called by `Builder::start`.
    pub(crate) fn validate(&mut self, config: &Config) -> Result<()> {
        #[cfg(feature = "ws")]
        self.ws.validate(config)?;
        let _ = config;
        Ok(())
    }

    /// The layer for a newly accepted connection.
    pub(crate) fn layer(&self, protocol: Protocol) -> Result<Layer, CloseReason> {
        let _ = protocol;
        let stack = Stack {
            #[cfg(feature = "tls")]
            tls: match &self.tls {
                Some(acceptor) => Some(Box::new(acceptor.session()?)),
                None => None,
            },
            #[cfg(feature = "ws")]
            ws: match protocol {
                Protocol::WebSocket => Some(self.ws.session()),
                Protocol::Raw => None,
            },
        };
        #[cfg(feature = "tls")]
        if stack.tls.is_some() {
            return Ok(Layer(Some(Box::new(stack))));
        }
        #[cfg(feature = "ws")]
        if stack.ws.is_some() {
            return Ok(Layer(Some(Box::new(stack))));
        }
        let _ = stack;
        Ok(Layer(None))
    }

    /// A handshake must finish before the connection carries messages.
    pub(crate) fn has_handshake(&self, protocol: Protocol) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        protocol != Protocol::Raw
    }

    /// Encode one message for a connection speaking `protocol`.
    pub(crate) fn encode(
        &self,
        protocol: Protocol,
        packer: &dyn Packer,
        id: u32,
        seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> std::result::Result<(), PackError> {
        match protocol {
            Protocol::Raw => packer.encode(id, seq, body, out),
            #[cfg(feature = "ws")]
            Protocol::WebSocket => ws::encode(self.ws.mode, packer, id, seq, body, out),
        }
    }

    /// Encode one message once for every protocol the server listens with
    /// (broadcast).
    pub(crate) fn encode_all(
        &self,
        packer: &dyn Packer,
        id: u32,
        seq: u32,
        body: &[u8],
    ) -> std::result::Result<Encoded, PackError> {
        let mut encoded = Encoded::default();
        for &protocol in &self.listening {
            let mut out = BytesMut::with_capacity(body.len() + 16);
            self.encode(protocol, packer, id, seq, body, &mut out)?;
            let frame = Some(out.freeze());
            match protocol {
                Protocol::Raw => encoded.raw = frame,
                #[cfg(feature = "ws")]
                Protocol::WebSocket => encoded.ws = frame,
            }
        }
        Ok(encoded)
    }

    /// Run the application's upgrade hook, then keep the request as
    /// connection data. `Err(status)` rejects the upgrade.
    pub(crate) fn decide_upgrade(
        &self,
        upgrade: Upgrade,
        session: &mut Session<'_>,
    ) -> std::result::Result<(), u16> {
        #[cfg(feature = "ws")]
        return self.ws.decide(upgrade, session);
        #[cfg(not(feature = "ws"))]
        {
            let _ = session;
            match upgrade {}
        }
    }
}

/// One message encoded for each protocol the server listens with.
#[derive(Clone, Default)]
pub(crate) struct Encoded {
    raw: Option<Bytes>,
    #[cfg(feature = "ws")]
    ws: Option<Bytes>,
}

impl Encoded {
    /// The frame for a connection speaking `protocol`.
    pub(crate) fn get(&self, protocol: Protocol) -> Option<&Bytes> {
        match protocol {
            Protocol::Raw => self.raw.as_ref(),
            #[cfg(feature = "ws")]
            Protocol::WebSocket => self.ws.as_ref(),
        }
    }

    /// Bytes held (charged to a loop's inbox budget).
    pub(crate) fn len(&self) -> usize {
        let len = self.raw.as_ref().map_or(0, Bytes::len);
        #[cfg(feature = "ws")]
        let len = len + self.ws.as_ref().map_or(0, Bytes::len);
        len
    }
}

/// A connection's write queue as a layer sees it: taken from the loop's
/// pool on first use.
pub(crate) struct QueueRef<'a> {
    pub(crate) queue: &'a mut Option<Box<WriteQueue>>,
    pub(crate) pool: &'a RefCell<Pool>,
}

impl QueueRef<'_> {
    /// The queue, taken from the pool if the connection has none.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn get(&mut self) -> &mut WriteQueue {
        self.queue
            .get_or_insert_with(|| self.pool.borrow_mut().take_write())
    }

    /// Drop everything queued (it can never be sent).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn discard(&mut self) {
        if let Some(q) = self.queue.take() {
            self.pool.borrow_mut().put_write(q);
        }
    }
}

/// Where a layer puts what it received.
#[cfg_attr(not(all(feature = "tls", feature = "ws")), allow(dead_code))]
pub(crate) struct Sink<'a> {
    /// The byte stream for the packer.
    pub(crate) stream: &'a mut BytesMut,
    /// Whole messages, bypassing the packer (WebSocket message mode).
    pub(crate) messages: &'a mut Vec<Message>,
    /// The connection's user data (layer details such as `TlsInfo`).
    pub(crate) data: &'a mut TypeMap,
    /// The connection's write queue, for protocol replies (pong, close).
    pub(crate) out: QueueRef<'a>,
    /// The loop's scratch for TLS plaintext under WebSocket.
    pub(crate) plain: &'a mut BytesMut,
}

/// What a batch of received bytes produced, besides messages and stream
/// bytes.
#[derive(Default)]
pub(crate) struct Incoming {
    /// The peer closed its side at the layer level (TLS close_notify).
    pub(crate) peer_closed: bool,
    /// The layer has output to write (handshake, alerts, pong, close).
    pub(crate) wants_write: bool,
    /// A WebSocket upgrade request is complete: the application decides.
    pub(crate) upgrade: Option<Upgrade>,
}

/// What a connection's bytes pass through: nothing (plain TCP), TLS,
/// WebSocket, or WebSocket over TLS. One pointer in the connection; plain
/// TCP allocates nothing.
#[derive(Default)]
pub(crate) struct Layer(Option<Box<Stack>>);

/// The layers of one connection, bottom (TLS) to top (WebSocket).
#[derive(Default)]
struct Stack {
    #[cfg(feature = "tls")]
    tls: Option<Box<tls::TlsSession>>,
    #[cfg(feature = "ws")]
    ws: Option<ws::WsSession>,
}

impl Layer {
    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<&tls::TlsSession> {
        self.0.as_ref()?.tls.as_deref()
    }

    #[cfg(feature = "ws")]
    fn ws(&self) -> Option<&ws::WsSession> {
        self.0.as_ref()?.ws.as_ref()
    }

    #[cfg(feature = "ws")]
    fn ws_mut(&mut self) -> Option<&mut ws::WsSession> {
        self.0.as_mut()?.ws.as_mut()
    }

    /// Plain TCP: received bytes go to the packer as they are.
    pub(crate) fn is_plain(&self) -> bool {
        self.0.is_none()
    }

    /// What the connection speaks.
    pub(crate) fn protocol(&self) -> Protocol {
        #[cfg(feature = "ws")]
        if self.ws().is_some() {
            return Protocol::WebSocket;
        }
        Protocol::Raw
    }

    /// Still handshaking (TLS, or the WebSocket upgrade): no application
    /// data flows yet.
    pub(crate) fn is_handshaking(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls().is_some_and(|t| t.is_handshaking()) {
            return true;
        }
        #[cfg(feature = "ws")]
        if self.ws().is_some_and(|w| w.is_upgrading()) {
            return true;
        }
        false
    }

    /// Bytes just read from the socket: hand what they carry to `sink`.
    /// TLS decrypts `input` in place, so its contents are garbage after.
    pub(crate) fn receive(
        &mut self,
        input: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> Result<Incoming, CloseReason> {
        let Some(stack) = self.0.as_deref_mut() else {
            sink.stream.extend_from_slice(input);
            return Ok(Incoming::default());
        };
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut stack.tls {
            let mut incoming = Incoming::default();
            #[cfg(feature = "ws")]
            if let Some(ws) = &mut stack.ws {
                let mut plain = std::mem::take(sink.plain);
                let decrypted = Self::receive_tls(tls, input, &mut plain, sink.data, &mut incoming);
                let result = decrypted.and_then(|()| ws.receive(&plain, sink));
                plain.clear();
                *sink.plain = plain;
                return result.map(|ws_in| Incoming {
                    wants_write: incoming.wants_write || ws_in.wants_write,
                    upgrade: ws_in.upgrade,
                    ..incoming
                });
            }
            Self::receive_tls(tls, input, sink.stream, sink.data, &mut incoming)?;
            return Ok(incoming);
        }
        #[cfg(feature = "ws")]
        if let Some(ws) = &mut stack.ws {
            return ws.receive(input, sink);
        }
        let _ = stack;
        sink.stream.extend_from_slice(input);
        Ok(Incoming::default())
    }

    #[cfg(feature = "tls")]
    fn receive_tls(
        tls: &mut tls::TlsSession,
        input: &mut [u8],
        out: &mut BytesMut,
        data: &mut TypeMap,
        incoming: &mut Incoming,
    ) -> Result<(), CloseReason> {
        let received = tls.receive(input, out)?;
        // TLS 1.3 without session tickets finishes with nothing to send:
        // still flush, or what on_open queued would wait.
        let done = received.handshake_done.is_some();
        if let Some(info) = received.handshake_done {
            data.insert(info);
        }
        incoming.peer_closed = received.peer_closed;
        incoming.wants_write = done || tls.wants_write();
        Ok(())
    }

    /// The application's verdict on a WebSocket upgrade: answer it (101, or
    /// the rejection status).
    ///
    /// # Errors
    ///
    /// The close reason when the upgrade was rejected.
    pub(crate) fn finish_upgrade(
        &mut self,
        layers: &LayerConfig,
        verdict: std::result::Result<(), u16>,
        out: QueueRef<'_>,
    ) -> Result<(), CloseReason> {
        #[cfg(feature = "ws")]
        if let Some(ws) = self.ws_mut() {
            return ws.finish_upgrade(&layers.ws, verdict, out);
        }
        let _ = (layers, verdict, out);
        Ok(())
    }

    /// The connection starts closing for `reason`: queue the layer's
    /// goodbye after what is queued (a WebSocket close frame), or drop what
    /// can never be sent.
    pub(crate) fn begin_close(
        &mut self,
        reason: &CloseReason,
        goodbye: Option<&Goodbye>,
        out: QueueRef<'_>,
    ) {
        #[cfg(feature = "ws")]
        if let Some(ws) = self.ws_mut() {
            ws.begin_close(reason, goodbye, out);
            return;
        }
        let _ = (reason, goodbye, out);
    }

    /// Closing and waiting for the peer's half of a close handshake (a
    /// WebSocket close frame): keep reading until it comes.
    pub(crate) fn awaits_peer_close(&self) -> bool {
        #[cfg(feature = "ws")]
        if let Some(ws) = self.ws() {
            return ws.awaits_peer_close();
        }
        false
    }

    /// The transport is gone (end of file, socket error): wait for nothing.
    pub(crate) fn peer_gone(&mut self) {
        #[cfg(feature = "ws")]
        if let Some(ws) = self.ws_mut() {
            ws.peer_gone();
        }
    }

    /// Send the heartbeat ping of this layer (a WebSocket ping frame), or
    /// return false to let the reactor send the packer's ping message.
    pub(crate) fn ping(&mut self, out: QueueRef<'_>) -> bool {
        #[cfg(feature = "ws")]
        if let Some(ws) = self.ws_mut() {
            ws.ping(out);
            return true;
        }
        let _ = out;
        false
    }

    /// The connection is closing by our choice and everything queued is
    /// written: say goodbye at the transport level (TLS close_notify), once
    /// the WebSocket close handshake (if any) is over.
    pub(crate) fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        {
            let waiting = self.awaits_peer_close();
            if let Some(tls) = self.0.as_mut().and_then(|s| s.tls.as_mut()) {
                if !waiting {
                    tls.close_notify();
                }
            }
        }
    }

    /// Something other than the write queue waits to be written.
    pub(crate) fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls() {
            return tls.wants_write();
        }
        false
    }

    /// Write the queue (through the layers) to `w` until done or `w` would
    /// block (`*blocked` set). Returns bytes written to `w`. The queue is
    /// held back while a WebSocket upgrade is pending (the 101 response goes
    /// first).
    pub(crate) fn flush(
        &mut self,
        queue: Option<&mut WriteQueue>,
        w: &mut dyn Write,
        blocked: &mut bool,
    ) -> io::Result<usize> {
        #[cfg(feature = "ws")]
        let queue = queue.filter(|_| !self.ws().is_some_and(|ws| ws.is_upgrading()));
        #[cfg(feature = "tls")]
        if let Some(tls) = self.0.as_mut().and_then(|s| s.tls.as_mut()) {
            return tls.flush(queue, w, blocked);
        }
        let Some(queue) = queue else {
            return Ok(0);
        };
        let mut written = 0;
        while !queue.is_empty() {
            match queue.write_to(w) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}
