//! UDP's datagram state: what one virtual session (a peer address on one
//! of the loop's UDP sockets) knows beyond a connection, and how a
//! datagram becomes messages. No socket here: the reactor makes every
//! socket call (`reactor/event_loop/udp.rs`).
//!
//! ```text
//! datagram ──► whole frames only ──► messages ──► router (as TCP)
//!              (a cut or bad frame drops the whole datagram, counted)
//! send ──► one frame ──► one datagram (≤ max_datagram; to an unvalidated
//!          peer only while sent ≤ amplification × received)
//! ```

use std::net::SocketAddr;

use bytes::BytesMut;

use crate::codec::reader::{decode_messages, split_frames, Batch};
use crate::codec::ServerPacker;
use crate::config::{UdpConfig, UdpValidation};
use crate::error::CloseReason;

/// One session's datagram state: which of its loop's UDP sockets it came
/// in on, and the amplification bound's counts until it is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpPeer {
    /// Index of the socket among the loop's UDP sockets.
    pub(crate) socket: u32,
    received: u64,
    sent: u64,
    datagrams: u32,
    validated: bool,
}

impl UdpPeer {
    pub(crate) fn new(socket: u32) -> Self {
        UdpPeer {
            socket,
            received: 0,
            sent: 0,
            datagrams: 0,
            validated: false,
        }
    }

    /// A session this server dialed (`Dial::udp`): no socket until its
    /// loop makes one; the peer is the one the application chose, so it
    /// needs no validation.
    pub(crate) fn dialed() -> Self {
        UdpPeer {
            validated: true,
            ..UdpPeer::new(Self::UNATTACHED)
        }
    }

    /// `socket` of a dialed session whose socket is not made yet.
    pub(crate) const UNATTACHED: u32 = u32::MAX;

    /// It has its socket on the loop.
    pub(crate) fn is_attached(&self) -> bool {
        self.socket != Self::UNATTACHED
    }

    /// A datagram of `len` bytes came from the peer.
    pub(crate) fn received(&mut self, len: usize, config: &UdpConfig) {
        self.received = self.received.saturating_add(len as u64);
        self.datagrams = self.datagrams.saturating_add(1);
        if self.datagrams >= 2 && config.validation == UdpValidation::SecondDatagram {
            self.validated = true;
        }
    }

    /// The application validated the peer (its own handshake).
    pub(crate) fn validate(&mut self) {
        self.validated = true;
    }

    #[cfg(test)]
    pub(crate) fn is_validated(&self) -> bool {
        self.validated
    }

    /// May a datagram of `len` bytes go to the peer, `amplification`
    /// being the bound's multiple (0: no bound)?
    pub(crate) fn allows(&self, len: usize, amplification: u32) -> bool {
        if self.validated || amplification == 0 {
            return true;
        }
        let sent = self.sent.saturating_add(len as u64);
        sent <= self.received.saturating_mul(u64::from(amplification))
    }

    /// A datagram of `len` bytes went to the peer.
    pub(crate) fn sent(&mut self, len: usize) {
        self.sent = self.sent.saturating_add(len as u64);
    }
}

/// In a UDP session's user data from its start ([`Session::data`]): the
/// local address its datagrams came to. Its presence tells a hook or
/// handler that the connection is a UDP session.
///
/// [`Session::data`]: crate::Session::data
///
/// ```
/// let builder = netloom::Server::builder().on_open(|s| {
///     if let Some(udp) = s.data().get::<netloom::UdpSession>() {
///         log::info!("UDP peer {} on {}", s.peer_addr(), udp.local_addr());
///     }
/// });
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSession {
    pub(crate) local_addr: SocketAddr,
}

impl UdpSession {
    /// The server's address the peer sends to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Why a datagram received was dropped instead of handled.
#[derive(Debug)]
pub(crate) struct Malformed(pub(crate) CloseReason);

/// Decode every frame of one datagram into `batch`: all of them, or none
/// (a frame cut at the datagram's end, or one the packer refuses, drops
/// the whole datagram: frames never continue in the next datagram).
pub(crate) fn decode_datagram(
    packer: &ServerPacker,
    mut datagram: BytesMut,
    batch: &mut Batch,
    peer: SocketAddr,
) -> Result<(), Malformed> {
    let split = match packer {
        ServerPacker::Length(p) => split_frames(p, &mut datagram, batch, peer),
        ServerPacker::Custom(p) => split_frames(&**p, &mut datagram, batch, peer),
    };
    let result = match split {
        Some((result, _missing)) => result,
        None => {
            let alloc = datagram.capacity();
            let decoded = decode_messages(packer.as_dyn(), &mut datagram, &mut batch.msgs, peer);
            batch.msgs_alloc = alloc;
            decoded
        }
    };
    let left = datagram.len();
    match result {
        Ok(()) if left == 0 => Ok(()),
        Ok(()) => {
            batch.clear();
            Err(Malformed(CloseReason::Protocol(
                crate::error::PackError::Malformed(format!(
                    "{left} bytes of an unfinished frame at the end of a datagram"
                )),
            )))
        }
        Err(reason) => {
            batch.clear();
            Err(Malformed(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{LengthPacker, Packer};

    fn frames(list: &[(u32, &[u8])]) -> BytesMut {
        let p = LengthPacker::default();
        let mut out = BytesMut::new();
        for (id, body) in list {
            p.encode(*id, 0, body, &mut out).unwrap();
        }
        out
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn every_frame_of_a_datagram_is_a_message() {
        let packer = ServerPacker::Length(LengthPacker::default());
        let mut batch = Batch::default();
        let dg = frames(&[(1, b"a"), (2, b""), (3, b"ccc")]);
        decode_datagram(&packer, dg, &mut batch, peer()).unwrap();
        let got: Vec<(u32, Vec<u8>)> = batch
            .iter()
            .map(|(id, _, b, _, _)| (id, b.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![(1, b"a".to_vec()), (2, vec![]), (3, b"ccc".to_vec())]
        );
    }

    #[test]
    fn a_cut_or_bad_frame_drops_the_whole_datagram() {
        let packer = ServerPacker::Length(LengthPacker::new(16));
        let mut batch = Batch::default();
        let mut cut = frames(&[(1, b"whole"), (2, b"cut here")]);
        cut.truncate(cut.len() - 1);
        assert!(decode_datagram(&packer, cut, &mut batch, peer()).is_err());
        assert_eq!(batch.len(), 0, "the whole frame before it is dropped too");
        let long = frames(&[(1, b"ok"), (2, &[0; 17])]);
        assert!(decode_datagram(&packer, long, &mut batch, peer()).is_err());
        assert_eq!(batch.len(), 0);
        let short = BytesMut::from(&[1u8, 2, 3][..]);
        assert!(decode_datagram(&packer, short, &mut batch, peer()).is_err());
    }

    #[test]
    fn an_unvalidated_peer_gets_at_most_the_multiple_of_what_it_sent() {
        let config = UdpConfig::default();
        let mut p = UdpPeer::new(0);
        p.received(100, &config);
        assert!(p.allows(250, 3));
        p.sent(250);
        assert!(p.allows(50, 3));
        p.sent(50);
        assert!(!p.allows(1, 3), "301 > 3 x 100");
        assert!(p.allows(1, 0), "0 turns the bound off");
        p.received(10, &config);
        assert!(p.is_validated(), "the second datagram validates");
        assert!(p.allows(1_000_000, 3));
    }

    #[test]
    fn under_application_validation_only_the_application_validates() {
        let config = UdpConfig {
            validation: UdpValidation::Application,
            ..UdpConfig::default()
        };
        let mut p = UdpPeer::new(0);
        for _ in 0..5 {
            p.received(10, &config);
        }
        assert!(!p.is_validated());
        assert!(!p.allows(151, 3));
        p.validate();
        assert!(p.allows(151, 3));
    }
}
