//! [`UdpClient`]: the blocking client's UDP twin.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{next_seq, timed_out};
use crate::codec::{LengthPacker, Message, Packer};
use crate::config::{saturate, MAX_UDP_PAYLOAD};
use crate::error::{Error, PackError, Result};

/// A blocking UDP peer of a netloom server's `bind_udp` socket (or any
/// server speaking the same frames in datagrams): every message it sends
/// is one datagram; every datagram it receives may carry several
/// messages.
///
/// UDP does not retransmit: a request or reply the network loses is a
/// [`Error::Timeout`] here; retry it if it is idempotent. The socket is
/// connected to the server's address, so datagrams from anyone else are
/// never taken for replies.
///
/// ```no_run
/// use std::time::Duration;
/// use netloom::client::UdpClient;
///
/// let mut client = UdpClient::connect("127.0.0.1:6566")?;
/// client.set_timeout(Some(Duration::from_secs(1)))?;
/// client.send(1, b"hello")?;
/// let reply = client.recv()?;
/// assert_eq!(&reply.body[..], b"hello");
/// # Ok::<(), netloom::Error>(())
/// ```
pub struct UdpClient {
    socket: UdpSocket,
    packer: Arc<dyn Packer>,
    max_datagram: usize,
    out: BytesMut,
    buf: Vec<u8>,
    /// Messages received but not yet returned (a datagram's later frames;
    /// messages that came while a request waited for its reply).
    early: VecDeque<Message>,
    last_seq: u32,
    read_timeout: Option<Duration>,
}

impl fmt::Debug for UdpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpClient")
            .field("peer", &self.socket.peer_addr().ok())
            .finish()
    }
}

impl UdpClient {
    /// A socket on an ephemeral port of the wildcard address of `addr`'s
    /// family, connected to the first address `addr` resolves to; the
    /// default [`LengthPacker`], datagrams up to 65,507 bytes, no timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `addr` does not resolve or the socket cannot be
    /// made, [`Error::Config`] if it resolves to no address.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<UdpClient> {
        let Some(peer) = addr.to_socket_addrs()?.next() else {
            return Err(Error::Config(
                "UdpClient: address resolved to nothing".into(),
            ));
        };
        let local: SocketAddr = if peer.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(peer)?;
        Ok(UdpClient {
            socket,
            packer: Arc::new(LengthPacker::default()),
            max_datagram: MAX_UDP_PAYLOAD,
            out: BytesMut::new(),
            buf: vec![0; MAX_UDP_PAYLOAD + 1],
            early: VecDeque::new(),
            last_seq: 0,
            read_timeout: None,
        })
    }

    /// Use `packer` instead of the default [`LengthPacker`].
    pub fn with_packer(mut self, packer: impl Packer) -> Self {
        self.packer = Arc::new(packer);
        self
    }

    /// The largest datagram sent or received (at most 65,507; a longer
    /// one received is dropped). Match the server's
    /// `UdpConfig::max_datagram`.
    pub fn with_max_datagram(mut self, bytes: usize) -> Self {
        self.max_datagram = bytes.clamp(1, MAX_UDP_PAYLOAD);
        self
    }

    /// The server's address.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socket cannot tell.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        Ok(self.socket.peer_addr()?)
    }

    /// This side's address (the server sees it as the session's peer).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socket cannot tell.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    /// How long [`recv`](Self::recv) waits (`None`: for ever).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses it (a zero duration).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let timeout = timeout.map(saturate);
        self.socket.set_read_timeout(timeout)?;
        self.read_timeout = timeout;
        Ok(())
    }

    /// Send one message, one datagram (sequence number 0).
    ///
    /// # Errors
    ///
    /// [`Error::Pack`] if the packer refuses it,
    /// [`Error::DatagramTooLarge`] if its frame is longer than the
    /// datagram limit, [`Error::Io`] on a socket error (on Linux a
    /// datagram the server's host refused earlier shows here as
    /// `ConnectionRefused`).
    pub fn send(&mut self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.send_seq(id, 0, body)
    }

    /// Send one message with a sequence number, one datagram.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_seq(&mut self, id: u32, seq: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.out.clear();
        self.packer.encode(id, seq, body.as_ref(), &mut self.out)?;
        self.send_out()
    }

    /// Send several messages in one datagram, in order.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), for their frames together.
    pub fn send_batch<B: AsRef<[u8]>>(&mut self, messages: &[(u32, B)]) -> Result<()> {
        self.out.clear();
        for (id, body) in messages {
            self.packer.encode(*id, 0, body.as_ref(), &mut self.out)?;
        }
        self.send_out()
    }

    fn send_out(&mut self) -> Result<()> {
        if self.out.len() > self.max_datagram {
            return Err(Error::DatagramTooLarge {
                len: self.out.len(),
                max: self.max_datagram,
            });
        }
        self.socket.send(&self.out).map_err(timed_out)?;
        Ok(())
    }

    /// Wait for the next message (from a datagram received now, or the
    /// rest of one received before).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the timeout passed, [`Error::Pack`] for a
    /// datagram that does not decode into whole frames, and
    /// [`Error::DatagramTooLarge`] for one over the limit (either is
    /// dropped: call again for the next), [`Error::Io`] on a socket error.
    pub fn recv(&mut self) -> Result<Message> {
        loop {
            if let Some(m) = self.early.pop_front() {
                return Ok(m);
            }
            self.read_datagram()?;
        }
    }

    /// Receive one datagram and queue its messages.
    fn read_datagram(&mut self) -> Result<()> {
        let n = loop {
            match self.socket.recv(&mut self.buf) {
                Ok(n) if n > self.max_datagram => {
                    return Err(Error::DatagramTooLarge {
                        len: n,
                        max: self.max_datagram,
                    })
                }
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timed_out(e)),
            }
        };
        let mut datagram = BytesMut::from(&self.buf[..n]);
        let mut messages = Vec::new();
        while !datagram.is_empty() {
            let before = datagram.len();
            match self.packer.decode(&mut datagram)? {
                Some(_) if datagram.len() == before => {
                    return Err(Error::Pack(PackError::Malformed(
                        "packer returned a message without consuming input".into(),
                    )))
                }
                Some(m) => messages.push(m),
                None => {
                    return Err(Error::Pack(PackError::Malformed(format!(
                        "{} bytes of an unfinished frame at the end of a datagram",
                        datagram.len()
                    ))))
                }
            }
        }
        self.early.extend(messages);
        Ok(())
    }

    /// Send a message and wait for the next message back, whatever it is.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) and [`recv`](Self::recv).
    pub fn round_trip(&mut self, id: u32, body: impl AsRef<[u8]>) -> Result<Message> {
        self.send(id, body)?;
        self.recv()
    }

    /// Send a request with a fresh (odd) sequence number and wait, at most
    /// `timeout`, for the reply that carries it (the packer must carry a
    /// sequence number). Messages with sequence number 0 that come
    /// meanwhile (or were received before) are kept for
    /// [`recv`](Self::recv); any other sequence number (a late reply to an
    /// earlier request, a request from the server) is dropped, and so is
    /// a datagram that does not decode or is over the limit.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no reply comes in time (the request or its
    /// reply may have been lost); as [`send`](Self::send) otherwise.
    pub fn request(
        &mut self,
        id: u32,
        body: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Message> {
        self.last_seq = next_seq(self.last_seq);
        let seq = self.last_seq;
        self.send_seq(id, seq, body)?;
        let deadline = Instant::now() + saturate(timeout);
        let mut held = VecDeque::new();
        let result = loop {
            if let Some(i) = self.early.iter().position(|m| m.seq == seq) {
                let reply = self.early.remove(i);
                break reply.ok_or(Error::Timeout);
            }
            // Keep what is not ours in order for `recv`; drop late replies.
            held.extend(self.early.drain(..).filter(|m| m.seq == 0));
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(Error::Timeout);
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.read_datagram() {
                Ok(()) | Err(Error::Pack(_) | Error::DatagramTooLarge { .. }) => {}
                Err(e) => break Err(e),
            }
        };
        held.extend(self.early.drain(..).filter(|m| m.seq == 0));
        self.early = held;
        self.socket.set_read_timeout(self.read_timeout)?;
        result
    }
}
