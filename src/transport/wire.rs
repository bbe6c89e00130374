//! [`Wire`]: the server-wide layer settings, and the one place where a
//! message is encoded for a connection's protocol.

use bytes::BytesMut;

use super::{tls, ws, Layer, Protocol};
use crate::buf::queue::{SharedFrame, WriteQueue};
use crate::buf::Payload;
use crate::codec::ServerPacker;
use crate::config::Config;
use crate::error::{CloseReason, PackError, Result};

/// How messages travel on this server's connections: the packer, TLS and
/// WebSocket settings, and the protocols its listeners speak.
pub(crate) struct Wire {
    packer: ServerPacker,
    /// The packer carries a message's sequence number (asked once:
    /// `Packer::carries_seq`).
    packer_carries_seq: bool,
    tls: Option<tls::TlsAcceptor>,
    ws: Option<ws::WsSettings>,
    /// The protocols of the server's listeners (each once).
    listening: Vec<Protocol>,
}

impl Wire {
    /// Check and settle the settings (`Builder::start`). A server with
    /// WebSocket listeners has WebSocket settings (`bind_ws` makes them).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for an invalid WebSocket
    /// limit.
    pub(crate) fn new(
        packer: ServerPacker,
        tls: Option<tls::TlsAcceptor>,
        ws: Option<ws::WsSettings>,
        mut listening: Vec<Protocol>,
        config: &Config,
    ) -> Result<Wire> {
        listening.sort();
        listening.dedup();
        let mut ws = ws;
        if let Some(ws) = &mut ws {
            ws.validate(config)?;
        }
        let packer_carries_seq = ask_carries_seq(&packer);
        Ok(Wire {
            packer,
            packer_carries_seq,
            tls,
            ws,
            listening,
        })
    }

    /// The packer.
    pub(crate) fn packer(&self) -> &ServerPacker {
        &self.packer
    }

    /// Whether a connection speaking `protocol` carries sequence numbers,
    /// which requests need to find their replies.
    pub(crate) fn carries_seq(&self, protocol: Protocol) -> bool {
        self.packer_carries_seq
            && match protocol {
                Protocol::Raw => true,
                Protocol::WebSocket => self.ws.as_ref().is_some_and(|ws| ws.carries_seq()),
            }
    }

    /// Whether any connection can carry sequence numbers (no: a request
    /// fails before it reaches a loop).
    pub(crate) fn may_carry_seq(&self) -> bool {
        self.packer_carries_seq
    }

    /// The WebSocket settings, on a server with WebSocket listeners.
    pub(crate) fn ws(&self) -> Option<&ws::WsSettings> {
        self.ws.as_ref()
    }

    /// The layers of a newly accepted connection speaking `protocol`.
    pub(crate) fn layer(&self, protocol: Protocol) -> Result<Layer, CloseReason> {
        let tls = match &self.tls {
            Some(acceptor) => Some(Box::new(acceptor.session()?)),
            None => None,
        };
        let ws = match protocol {
            Protocol::WebSocket => self.ws.as_ref().map(ws::WsSettings::session),
            Protocol::Raw => None,
        };
        Ok(Layer::new(tls, ws))
    }

    /// A handshake must finish before the connection carries messages.
    pub(crate) fn has_handshake(&self, protocol: Protocol) -> bool {
        self.tls.is_some() || protocol != Protocol::Raw
    }

    /// Encode one message for a connection speaking `protocol`.
    #[inline]
    pub(crate) fn encode(
        &self,
        protocol: Protocol,
        id: u32,
        seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> std::result::Result<(), PackError> {
        match (protocol, &self.ws) {
            (Protocol::Raw, _) => self.packer.encode(id, seq, body, out),
            (Protocol::WebSocket, Some(ws)) => ws.encode(&self.packer, id, seq, body, out),
            (Protocol::WebSocket, None) => Err(PackError::Malformed(
                "no WebSocket listener on this server".into(),
            )),
        }
    }

    /// Queue one message on a connection speaking `protocol`: a large
    /// shared body by reference when the packer can frame it so, anything
    /// else encoded into the queue. Nothing is queued on error.
    #[inline]
    pub(crate) fn queue_message(
        &self,
        protocol: Protocol,
        id: u32,
        seq: u32,
        body: &Payload<'_>,
        queue: &mut WriteQueue,
    ) -> std::result::Result<(), PackError> {
        if let (Some(shared), Protocol::Raw) = (body.shareable(), protocol) {
            let framed = queue.encode_around(shared.clone(), |before, after| {
                self.packer
                    .encode_around(id, seq, shared.len(), before, after)
            })?;
            if framed {
                return Ok(());
            }
        }
        queue.encode_with(|out| self.encode(protocol, id, seq, body.as_slice(), out))
    }

    /// Encode one message once for every protocol the server listens with
    /// (a broadcast: every recipient's queue shares it), and with
    /// `dialed` for dialed connections too, which speak `Raw` whatever the
    /// listeners speak (a server that only dials has no listener at all).
    pub(crate) fn encode_all(
        &self,
        id: u32,
        seq: u32,
        body: &Payload<'_>,
        dialed: bool,
    ) -> std::result::Result<Encoded, PackError> {
        let mut encoded = Encoded::default();
        let raw_too = dialed && !self.listening.contains(&Protocol::Raw);
        let protocols = self
            .listening
            .iter()
            .chain(raw_too.then_some(&Protocol::Raw));
        for &protocol in protocols {
            let frame = self.encode_shared(protocol, id, seq, body)?;
            match protocol {
                Protocol::Raw => encoded.raw = Some(frame),
                Protocol::WebSocket => encoded.ws = Some(frame),
            }
        }
        Ok(encoded)
    }

    fn encode_shared(
        &self,
        protocol: Protocol,
        id: u32,
        seq: u32,
        body: &Payload<'_>,
    ) -> std::result::Result<SharedFrame, PackError> {
        if let (Some(shared), Protocol::Raw) = (body.shareable(), protocol) {
            let (mut head, mut tail) = (BytesMut::new(), BytesMut::new());
            if self
                .packer
                .encode_around(id, seq, shared.len(), &mut head, &mut tail)?
            {
                return Ok(SharedFrame {
                    head: head.freeze(),
                    body: shared.clone(),
                    tail: tail.freeze(),
                });
            }
        }
        let body = body.as_slice();
        let mut out = BytesMut::with_capacity(body.len() + 16);
        self.encode(protocol, id, seq, body, &mut out)?;
        Ok(SharedFrame {
            head: out.freeze(),
            ..SharedFrame::default()
        })
    }
}

/// Ask the packer (user code: a panic means no) whether it carries
/// sequence numbers.
fn ask_carries_seq(packer: &ServerPacker) -> bool {
    let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        packer.as_dyn().carries_seq()
    }));
    asked.unwrap_or_else(|_| {
        log::warn!("the packer panicked in carries_seq: requests will fail with NoSeq");
        false
    })
}

/// One message encoded for each protocol the server listens with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Encoded {
    raw: Option<SharedFrame>,
    ws: Option<SharedFrame>,
}

impl Encoded {
    /// The frame for a connection speaking `protocol`.
    pub(crate) fn get(&self, protocol: Protocol) -> Option<&SharedFrame> {
        match protocol {
            Protocol::Raw => self.raw.as_ref(),
            Protocol::WebSocket => self.ws.as_ref(),
        }
    }

    /// Bytes held (charged to a loop's inbox budget). A body shared by
    /// both protocols' frames is counted twice: an upper bound.
    pub(crate) fn len(&self) -> usize {
        [&self.raw, &self.ws]
            .into_iter()
            .flatten()
            .map(SharedFrame::len)
            .sum()
    }
}
