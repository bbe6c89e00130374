//! [`Layer`]: what one connection's bytes pass through between the socket
//! and the packer.

use std::io::{self, Write};

use super::udp::UdpPeer;
use super::{tls, ws, Goodbye, Incoming, Sink, Wire};
use crate::buf::queue::WriteQueue;
use crate::buf::{self, Flushed, LazyQueue};
use crate::error::CloseReason;
use crate::transport::Protocol;

/// Nothing (plain TCP), TLS, WebSocket, or WebSocket over TLS; or a UDP
/// session's datagram state. One pointer in the connection; plain TCP
/// allocates nothing.
#[derive(Default)]
pub(crate) struct Layer(Option<Box<Stack>>);

/// The layers of one connection, bottom (TLS) to top (WebSocket).
struct Stack {
    tls: Option<Box<tls::TlsSession>>,
    ws: Option<ws::WsSession>,
    /// A UDP session (then neither TLS nor WebSocket).
    udp: Option<UdpPeer>,
}

impl Layer {
    pub(super) fn new(tls: Option<Box<tls::TlsSession>>, ws: Option<ws::WsSession>) -> Layer {
        if tls.is_none() && ws.is_none() {
            return Layer(None);
        }
        Layer(Some(Box::new(Stack { tls, ws, udp: None })))
    }

    /// A UDP session's: datagrams, no stream layer.
    pub(crate) fn udp(peer: UdpPeer) -> Layer {
        Layer(Some(Box::new(Stack {
            tls: None,
            ws: None,
            udp: Some(peer),
        })))
    }

    /// The datagram state of a UDP session.
    #[inline]
    pub(crate) fn udp_peer(&self) -> Option<&UdpPeer> {
        self.0.as_ref()?.udp.as_ref()
    }

    /// The datagram state of a UDP session, to change.
    #[inline]
    pub(crate) fn udp_peer_mut(&mut self) -> Option<&mut UdpPeer> {
        self.0.as_mut()?.udp.as_mut()
    }

    /// A UDP session.
    #[inline]
    pub(crate) fn is_udp(&self) -> bool {
        self.udp_peer().is_some()
    }

    /// The layers of a connection this server dialed, for one connect
    /// attempt: TLS as the client when the dial asks for it (its
    /// ClientHello waiting to be written), WebSocket as the client when it
    /// is a `Dial::ws` (its upgrade request waiting behind the TLS
    /// handshake).
    ///
    /// # Errors
    ///
    /// `TlsHandshake` if rustls refuses to start a session, `BadUpgrade`
    /// if the upgrade request does not build.
    pub(crate) fn dialed(
        tls: Option<&tls::TlsConnector>,
        ws: Option<&std::sync::Arc<ws::WsDial>>,
    ) -> Result<Layer, CloseReason> {
        let tls = match tls {
            Some(connector) => Some(Box::new(connector.session()?)),
            None => None,
        };
        let ws = match ws {
            Some(dial) => Some(ws::WsSession::dialing(dial)?),
            None => None,
        };
        Ok(Layer::new(tls, ws))
    }

    /// The layers of a dialed connection that is down (not connected): a
    /// WebSocket dial's says so (what is sent meanwhile is framed for it,
    /// and waits for the next connection), and does nothing else.
    pub(crate) fn down(ws: Option<&std::sync::Arc<ws::WsDial>>) -> Layer {
        Layer::new(None, ws.map(ws::WsSession::down))
    }

    fn tls(&self) -> Option<&tls::TlsSession> {
        self.0.as_ref()?.tls.as_deref()
    }

    fn tls_mut(&mut self) -> Option<&mut tls::TlsSession> {
        self.0.as_mut()?.tls.as_deref_mut()
    }

    fn ws(&self) -> Option<&ws::WsSession> {
        self.0.as_ref()?.ws.as_ref()
    }

    fn ws_mut(&mut self) -> Option<&mut ws::WsSession> {
        self.0.as_mut()?.ws.as_mut()
    }

    /// Plain TCP: received bytes go to the packer as they are.
    pub(crate) fn is_plain(&self) -> bool {
        self.0.is_none()
    }

    /// What the connection speaks.
    pub(crate) fn protocol(&self) -> Protocol {
        match self.ws() {
            Some(ws) if ws.is_client() => Protocol::WsClient {
                packer: ws.packer_mode(),
            },
            Some(_) => Protocol::WebSocket,
            None => Protocol::Raw,
        }
    }

    /// Still handshaking (TLS, or the WebSocket upgrade): no application
    /// data flows yet.
    pub(crate) fn is_handshaking(&self) -> bool {
        let Some(stack) = self.0.as_deref() else {
            return false;
        };
        stack.tls.as_ref().is_some_and(|t| t.is_handshaking())
            || stack.ws.as_ref().is_some_and(|w| w.is_upgrading())
    }

    /// A TLS record, or a WebSocket frame or fragmented message, is not
    /// complete yet.
    pub(crate) fn in_unit(&self) -> bool {
        let Some(stack) = self.0.as_deref() else {
            return false;
        };
        stack.tls.as_ref().is_some_and(|t| t.in_unit())
            || stack.ws.as_ref().is_some_and(ws::WsSession::in_unit)
    }

    /// Memory the layers hold for what is not complete yet (each layer
    /// reports its own buffers: TLS's partial record, the WebSocket
    /// layer's partial frame and tungstenite's message buffer).
    pub(crate) fn held(&self) -> usize {
        let Some(stack) = self.0.as_deref() else {
            return 0;
        };
        stack.tls.as_ref().map_or(0, |t| t.held())
            + stack.ws.as_ref().map_or(0, ws::WsSession::held)
    }

    /// Bytes just read from the socket: hand what they carry to `sink`.
    /// TLS decrypts `input` in place, so its contents are garbage after.
    ///
    /// What a lower layer saw stands even when a layer above it fails:
    /// the peer's close_notify is answered (and, on TLS 1.2, what is
    /// queued dropped) whatever the WebSocket layer made of the plaintext
    /// before it. And what it saw before it failed goes up: the messages
    /// of the records before a bad one are handled.
    pub(crate) fn receive(
        &mut self,
        input: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> Result<Incoming, CloseReason> {
        let Some(stack) = self.0.as_deref_mut() else {
            sink.stream.extend_from_slice(input);
            return Ok(Incoming::default());
        };
        let mut tls_closed = false;
        let result = match (&mut stack.tls, &mut stack.ws) {
            (Some(tls), Some(ws)) => {
                let mut plain = std::mem::take(sink.plain);
                let below = tls.receive(input, &mut plain);
                tls_closed = below.as_ref().is_ok_and(|b| b.peer_closed);
                // What TLS decrypted before a bad record goes up all the
                // same (as it does to the packer without WebSocket): those
                // records were sound. A TLS failure is the one reported:
                // nothing more can be said over it.
                let above = match &below {
                    Err(_) if plain.is_empty() => Ok(Incoming::default()),
                    _ => ws.receive(&plain, sink),
                };
                plain.clear();
                *sink.plain = plain;
                match (below, above) {
                    (Ok(below), Ok(above)) => Ok(below.and(above)),
                    (Err(reason), _) | (Ok(_), Err(reason)) => Err(reason),
                }
            }
            (Some(tls), None) => {
                let result = tls.receive(input, sink.stream);
                tls_closed = result.as_ref().is_ok_and(|i| i.peer_closed);
                result
            }
            (None, Some(ws)) => ws.receive(input, sink),
            (None, None) => {
                sink.stream.extend_from_slice(input);
                Ok(Incoming::default())
            }
        };
        if let (true, Some(tls)) = (tls_closed, &mut stack.tls) {
            // The peer ended its TLS session: answer with close_notify
            // (TLS 1.2: now, dropping what is queued; 1.3: after it).
            if tls.answer_peer_close() {
                sink.out.discard();
            }
        }
        result
    }

    /// The application's verdict on a WebSocket upgrade: answer it (101, or
    /// the rejection status).
    ///
    /// # Errors
    ///
    /// The close reason when the upgrade was rejected.
    pub(crate) fn finish_upgrade(
        &mut self,
        wire: &Wire,
        verdict: std::result::Result<(), u16>,
        out: LazyQueue<'_>,
    ) -> Result<(), CloseReason> {
        match (self.ws_mut(), wire.ws()) {
            (Some(ws), Some(settings)) => ws.finish_upgrade(settings, verdict, out),
            _ => Ok(()),
        }
    }

    /// The connection starts closing for `reason`: queue the layer's
    /// goodbye after what is queued (a WebSocket close frame), or drop what
    /// can never be sent.
    pub(crate) fn begin_close(
        &mut self,
        reason: &CloseReason,
        goodbye: Option<&Goodbye>,
        mut out: LazyQueue<'_>,
    ) {
        if self.tls_mut().is_some_and(|tls| tls.said_goodbye()) {
            // After close_notify nothing may follow (replies to what came
            // before the peer's close_notify included).
            out.discard();
            return;
        }
        if let Some(ws) = self.ws_mut() {
            ws.begin_close(reason, goodbye, out);
        }
    }

    /// Closing and waiting for the peer's half of a close handshake (a
    /// WebSocket close frame): keep reading until it comes.
    pub(crate) fn awaits_peer_close(&self) -> bool {
        self.ws().is_some_and(ws::WsSession::awaits_peer_close)
    }

    /// The transport is gone (end of file, socket error): wait for nothing.
    pub(crate) fn peer_gone(&mut self) {
        if let Some(ws) = self.ws_mut() {
            ws.peer_gone();
        }
    }

    /// Send the heartbeat ping of this layer (a WebSocket ping frame), or
    /// return false to let the caller send the packer's ping message.
    pub(crate) fn ping(&mut self, out: LazyQueue<'_>) -> bool {
        match self.ws_mut() {
            Some(ws) => {
                ws.ping(out);
                true
            }
            None => false,
        }
    }

    /// The connection is closing by our choice and everything queued is
    /// written: say goodbye at the transport level (TLS close_notify), once
    /// the WebSocket close handshake (if any) is over.
    pub(crate) fn close_notify(&mut self) {
        if self.awaits_peer_close() {
            return;
        }
        if let Some(tls) = self.tls_mut() {
            tls.close_notify();
        }
    }

    /// The peer ended its TLS session and our close_notify is owed once the
    /// queue is written (TLS 1.3).
    pub(crate) fn owes_goodbye(&self) -> bool {
        self.tls().is_some_and(|t| t.owes_goodbye())
    }

    /// Something other than the write queue waits to be written (TLS's
    /// records, a dial's upgrade request).
    pub(crate) fn wants_write(&self) -> bool {
        self.tls().is_some_and(|t| t.wants_write())
            || self.ws().is_some_and(ws::WsSession::owes_request)
    }

    /// Write the queue (through the layers) to `w` until done or `w` would
    /// block. The queue is held back while a WebSocket upgrade is pending
    /// (the 101 response goes first).
    pub(crate) fn flush(
        &mut self,
        queue: Option<&mut WriteQueue>,
        w: &mut dyn Write,
    ) -> io::Result<Flushed> {
        let Some(stack) = self.0.as_deref_mut() else {
            return buf::write_queue(queue, w);
        };
        // A dial's upgrade request goes first, alone.
        if let Some(request) = stack.ws.as_mut().and_then(ws::WsSession::request_to_write) {
            let flushed = match &mut stack.tls {
                Some(tls) => tls.flush(Some(request), w),
                None => buf::write_queue(Some(request), w),
            };
            if let Some(ws) = &mut stack.ws {
                ws.request_written();
            }
            return flushed;
        }
        let upgrading = stack.ws.as_ref().is_some_and(|ws| ws.is_upgrading());
        let queue = queue.filter(|_| !upgrading);
        match &mut stack.tls {
            Some(tls) => tls.flush(queue, w),
            None => buf::write_queue(queue, w),
        }
    }
}
