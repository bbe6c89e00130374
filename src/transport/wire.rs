//! [`Wire`]: the server-wide layer settings and the packer of each
//! profile, and the one place where a message is encoded for a
//! connection's protocol.

use bytes::{Bytes, BytesMut};

use super::{tls, ws, Layer, Protocol};
use crate::buf::queue::{SharedFrame, WriteQueue};
use crate::buf::Payload;
use crate::codec::ServerPacker;
use crate::config::{Config, SERVER_PROFILE};
use crate::error::{CloseReason, PackError, Result};

/// How messages travel on this server's connections: the packers (the
/// server's, then each dial profile's), TLS and WebSocket settings, and
/// the protocols its listeners speak.
pub(crate) struct Wire {
    /// The server's own packer (profile 0).
    server: ProfilePacker,
    /// Each dial profile's packer: index `i` is profile `i + 1`.
    profiles: Vec<ProfilePacker>,
    tls: Option<tls::TlsAcceptor>,
    ws: Option<ws::WsSettings>,
    /// The protocols of the server's listeners (each once).
    listening: Vec<Protocol>,
}

/// One profile's packer.
struct ProfilePacker {
    packer: ServerPacker,
    /// It carries a message's sequence number (asked once:
    /// `Packer::carries_seq`).
    carries_seq: bool,
}

impl ProfilePacker {
    fn new(packer: ServerPacker) -> Self {
        let carries_seq = ask_carries_seq(&packer);
        ProfilePacker {
            packer,
            carries_seq,
        }
    }
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
        profiles: Vec<ServerPacker>,
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
        Ok(Wire {
            server: ProfilePacker::new(packer),
            profiles: profiles.into_iter().map(ProfilePacker::new).collect(),
            tls,
            ws,
            listening,
        })
    }

    /// The packer of `profile` (the server's for an index it does not
    /// have, which a connection never carries).
    #[inline]
    fn profile(&self, profile: u8) -> &ProfilePacker {
        if profile == SERVER_PROFILE {
            return &self.server;
        }
        self.profile_cold(profile)
    }

    #[cold]
    fn profile_cold(&self, profile: u8) -> &ProfilePacker {
        (profile as usize)
            .checked_sub(1)
            .and_then(|i| self.profiles.get(i))
            .unwrap_or(&self.server)
    }

    /// The packer of a connection of `profile`.
    #[inline]
    pub(crate) fn packer(&self, profile: u8) -> &ServerPacker {
        &self.profile(profile).packer
    }

    /// Whether a connection of `profile` speaking `protocol` carries
    /// sequence numbers, which requests need to find their replies.
    pub(crate) fn carries_seq(&self, profile: u8, protocol: Protocol) -> bool {
        self.packer_carries_seq(profile)
            && match protocol {
                Protocol::Raw => true,
                Protocol::WebSocket => self.ws.as_ref().is_some_and(|ws| ws.carries_seq()),
                Protocol::WsClient { packer } => packer,
            }
    }

    /// Whether the packer of `profile` carries sequence numbers.
    pub(crate) fn packer_carries_seq(&self, profile: u8) -> bool {
        self.profile(profile).carries_seq
    }

    /// Whether any connection can carry sequence numbers (no: a request
    /// fails before it reaches a loop).
    pub(crate) fn may_carry_seq(&self) -> bool {
        self.server.carries_seq || self.profiles.iter().any(|p| p.carries_seq)
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
            // No listener speaks it (a dial's layers are `Layer::dialed`).
            Protocol::Raw | Protocol::WsClient { .. } => None,
        };
        Ok(Layer::new(tls, ws))
    }

    /// A handshake must finish before the connection carries messages.
    pub(crate) fn has_handshake(&self, protocol: Protocol) -> bool {
        self.tls.is_some() || protocol != Protocol::Raw
    }

    /// Encode one message for a connection of `profile` speaking
    /// `protocol` (WebSocket is the server's own protocol's: dialed
    /// connections speak `Raw`).
    #[inline]
    pub(crate) fn encode(
        &self,
        (profile, protocol): Speaks,
        id: u32,
        seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> std::result::Result<(), PackError> {
        let packer = self.packer(profile);
        match (protocol, &self.ws) {
            (Protocol::Raw, _) => packer.encode(id, seq, body, out),
            (Protocol::WebSocket, Some(ws)) => ws.encode(packer, id, seq, body, out),
            (Protocol::WsClient { packer: framed }, _) => {
                ws::encode_client(framed, packer, (id, seq), body, out)
            }
            (Protocol::WebSocket, None) => Err(PackError::Malformed(
                "no WebSocket listener on this server".into(),
            )),
        }
    }

    /// Queue one message on a connection of `profile` speaking
    /// `protocol`: a large shared body by reference when the packer can
    /// frame it so, anything else encoded into the queue. Nothing is
    /// queued on error.
    #[inline]
    pub(crate) fn queue_message(
        &self,
        speaks: Speaks,
        id: u32,
        seq: u32,
        body: &Payload<'_>,
        queue: &mut WriteQueue,
    ) -> std::result::Result<(), PackError> {
        if let (Some(shared), (profile, Protocol::Raw)) = (body.shareable(), speaks) {
            let framed = queue.encode_around(shared.clone(), |before, after| {
                self.packer(profile)
                    .encode_around(id, seq, shared.len(), before, after)
            })?;
            if framed {
                return Ok(());
            }
        }
        queue.encode_with(|out| self.encode(speaks, id, seq, body.as_slice(), out))
    }

    /// Encode one message once for every protocol the server listens with
    /// (a broadcast: every recipient's queue shares it), and with
    /// `dialed` for dialed connections too, which speak `Raw` whatever the
    /// listeners speak (a server that only dials has no listener at all).
    /// With `dialed`, the message is kept as it is as well: a recipient
    /// of a dial profile, or a WebSocket dial (whose frames are masked
    /// each afresh), has it encoded for itself, on its loop
    /// (`Encoded::message`), so that a message for the server's clients
    /// pays for no profile's packer.
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
                Protocol::WsClient { .. } => {}
            }
        }
        if dialed {
            let body = match body.shareable() {
                Some(shared) => shared.clone(),
                None => Bytes::copy_from_slice(body.as_slice()),
            };
            encoded.message = Some(Box::new((id, seq, body)));
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
            if self.packer(SERVER_PROFILE).encode_around(
                id,
                seq,
                shared.len(),
                &mut head,
                &mut tail,
            )? {
                return Ok(SharedFrame {
                    head: head.freeze(),
                    body: shared.clone(),
                    tail: tail.freeze(),
                });
            }
        }
        let body = body.as_slice();
        let mut out = BytesMut::with_capacity(body.len() + 16);
        self.encode((SERVER_PROFILE, protocol), id, seq, body, &mut out)?;
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

/// What a connection speaks: its profile (0: the server's own) and
/// protocol.
pub(crate) type Speaks = (u8, Protocol);

/// One message encoded for each protocol the server listens with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Encoded {
    raw: Option<SharedFrame>,
    ws: Option<SharedFrame>,
    /// The message itself (id, seq, body), for recipients of a dial
    /// profile, which their own packer encodes (see `Wire::encode_all`).
    message: Option<Box<(u32, u32, Bytes)>>,
}

impl Encoded {
    /// The frame for a connection of the server's own protocol speaking
    /// `protocol` (a recipient of a dial profile gets [`message`](Self::message)).
    pub(crate) fn get(&self, protocol: Protocol) -> Option<&SharedFrame> {
        match protocol {
            Protocol::Raw => self.raw.as_ref(),
            Protocol::WebSocket => self.ws.as_ref(),
            // Masked afresh for each frame: never shared.
            Protocol::WsClient { .. } => None,
        }
    }

    /// The message (id, seq, body) for a recipient of a dial profile or a
    /// WebSocket dial: `None` unless the recipients may be dialed
    /// connections.
    pub(crate) fn message(&self) -> Option<&(u32, u32, Bytes)> {
        self.message.as_deref()
    }

    /// Bytes held (charged to a loop's inbox budget). A body shared by
    /// both protocols' frames (and the message) is counted each time: an
    /// upper bound.
    pub(crate) fn len(&self) -> usize {
        let frames: usize = [&self.raw, &self.ws]
            .into_iter()
            .flatten()
            .map(SharedFrame::len)
            .sum();
        frames + self.message.as_ref().map_or(0, |m| m.2.len())
    }
}
