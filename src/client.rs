//! A small blocking client that speaks the same [`Packer`] as the server:
//! for tests, tools, bots and service-to-service calls. Plain TCP or TLS
//! ([`Client`]), or UDP ([`UdpClient`]).
//!
//! ```no_run
//! use netloom::client::Client;
//!
//! let mut client = Client::connect("127.0.0.1:6565")?;
//! client.send(0, b"hello")?;
//! let reply = client.recv()?;
//! assert_eq!(&reply.body[..], b"hello");
//! # Ok::<(), netloom::Error>(())
//! ```

mod udp;

pub use udp::UdpClient;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use crate::codec::{LengthPacker, Message, Packer};
use crate::error::{Error, Result};
#[cfg(feature = "tls")]
use crate::transport::tls::{ClientConfig, ClientTls};

/// The byte stream under a [`Client`]: TCP, or TLS over TCP.
trait Stream: Read + Write + Send {
    fn tcp(&self) -> &TcpStream;
    /// Say goodbye at the layer level (TLS close_notify), best effort.
    fn close(&mut self) {}
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

#[cfg(feature = "tls")]
impl Stream for ClientTls {
    fn tcp(&self) -> &TcpStream {
        ClientTls::tcp(self)
    }
    fn close(&mut self) {
        ClientTls::close(self);
    }
}

/// A blocking connection to a netloom (or any same-format) server.
///
/// One `Client` is one caller's: [`request`](Self::request) takes
/// `&mut self` (one request at a time), and a lost connection stays lost.
/// For **threads sharing one link, with reconnect**, dial it instead:
/// [`Hub::dial`](crate::Hub::dial) with a [`Reconnect`](crate::Reconnect)
/// policy on a server that only dials (no `bind`) gives a
/// [`ConnHandle`](crate::ConnHandle) that any number of threads clone and
/// call [`request`](crate::ConnHandle::request) on at once, each getting
/// its own reply (matched by sequence number), blocking in
/// [`PendingReply::wait`](crate::PendingReply::wait); the link comes back
/// by itself after a loss, and requests waiting at a loss fail with
/// [`Error::Disconnected`].
///
/// ```no_run
/// use std::time::Duration;
/// use netloom::{Dial, Reconnect, SeqPacker, Server};
///
/// let client = Server::builder().packer(SeqPacker::default()).start()?;
/// let backend = client.hub().dial(
///     Dial::new("127.0.0.1:7000".parse().unwrap()).reconnect(Reconnect::default()),
/// )?;
/// let workers: Vec<_> = (0..8)
///     .map(|_| {
///         let backend = backend.clone();
///         std::thread::spawn(move || {
///             let reply = backend.request(1, b"ping", Duration::from_secs(1))?.wait()?;
///             Ok::<_, netloom::Error>(reply.body)
///         })
///     })
///     .collect();
/// for w in workers {
///     let _ = w.join();
/// }
/// client.shutdown(Duration::from_secs(1))?;
/// # Ok::<(), netloom::Error>(())
/// ```
pub struct Client {
    stream: Box<dyn Stream>,
    packer: Arc<dyn Packer>,
    received: BytesMut,
    out: BytesMut,
    peer: SocketAddr,
    /// Messages read while waiting for a reply, for `recv`.
    early: VecDeque<Message>,
    /// The last request's sequence number.
    last_seq: u32,
    /// The read timeout `set_timeout` asked for.
    read_timeout: Option<Duration>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("peer", &self.peer).finish()
    }
}

impl Client {
    /// Connect over plain TCP, with the default [`LengthPacker`] and
    /// TCP_NODELAY.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if no address accepts the connection,
    /// [`Error::Timeout`] if the system gave up waiting for an answer.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client> {
        let tcp = TcpStream::connect(addr).map_err(timed_out)?;
        Client::from_tcp(tcp, |tcp| Ok(Box::new(tcp)))
    }

    /// Like [`connect`](Self::connect), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] after `timeout`, [`Error::Io`] if the
    /// connection fails otherwise.
    pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> Result<Client> {
        let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(timed_out)?;
        Client::from_tcp(tcp, |tcp| Ok(Box::new(tcp)))
    }

    /// Connect over TLS (rustls): `server_name` is checked against the
    /// server's certificate by `config`'s verifier. The handshake completes
    /// before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the connection or the handshake fails,
    /// [`Error::Timeout`] if the system gave up waiting for the server,
    /// [`Error::Config`] if `server_name` is not a valid DNS name or IP.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> Result<Client> {
        let tcp = TcpStream::connect(addr).map_err(timed_out)?;
        Client::from_tcp(tcp, |tcp| {
            let tls = ClientTls::connect(tcp, server_name, config).map_err(|e| match e {
                Error::Io(e) => timed_out(e),
                e => e,
            })?;
            Ok(Box::new(tls))
        })
    }

    fn from_tcp(
        tcp: TcpStream,
        wrap: impl FnOnce(TcpStream) -> Result<Box<dyn Stream>>,
    ) -> Result<Client> {
        tcp.set_nodelay(true)?;
        let peer = tcp.peer_addr()?;
        Ok(Client {
            stream: wrap(tcp)?,
            packer: Arc::new(LengthPacker::default()),
            received: BytesMut::new(),
            out: BytesMut::new(),
            peer,
            early: VecDeque::new(),
            last_seq: 0,
            read_timeout: None,
        })
    }

    /// Use another wire format (the server's packer).
    pub fn with_packer(mut self, packer: impl Packer) -> Self {
        self.packer = Arc::new(packer);
        self
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Read and write timeouts (`None`: block forever, the default). A
    /// [`recv`](Self::recv) (or [`round_trip`](Self::round_trip)) that
    /// waits longer returns [`Error::Timeout`] and may be retried: bytes of
    /// a message that had begun to arrive are kept. A
    /// [`send`](Self::send) that waits longer for the peer to read also
    /// returns [`Error::Timeout`], but part of the message may have gone
    /// out: the stream's framing is then unknown, so close the client.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `timeout` is zero.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let tcp = self.stream.tcp();
        tcp.set_read_timeout(timeout)?;
        tcp.set_write_timeout(timeout)?;
        self.read_timeout = timeout;
        Ok(())
    }

    /// `TCP_NODELAY` (on by default: small messages leave at once).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from the socket.
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        Ok(self.stream.tcp().set_nodelay(on)?)
    }

    /// `SO_KEEPALIVE`: probe a silent peer after `period`, then every
    /// `period` where the platform allows; `None` turns it off.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from the socket.
    pub fn set_keepalive(&self, period: Option<Duration>) -> Result<()> {
        let sock = socket2::SockRef::from(self.stream.tcp());
        match period {
            None => sock.set_keepalive(false)?,
            Some(p) => sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(p))?,
        }
        Ok(())
    }

    /// `SO_LINGER`: how long closing waits for unsent data (`Some(0)`:
    /// reset instead of a normal close); `None`, the default, closes in the
    /// background.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from the socket.
    pub fn set_linger(&self, linger: Option<Duration>) -> Result<()> {
        Ok(socket2::SockRef::from(self.stream.tcp()).set_linger(linger)?)
    }

    /// Send one message (sequence number 0).
    ///
    /// # Errors
    ///
    /// [`Error::Pack`] if the packer refuses it, [`Error::Timeout`] if the
    /// write timeout passed (see [`set_timeout`](Self::set_timeout)),
    /// [`Error::Io`] on a socket error.
    pub fn send(&mut self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.send_seq(id, 0, body)
    }

    /// Send one message with a sequence number (for packers that carry one).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_seq(&mut self, id: u32, seq: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.out.clear();
        self.packer.encode(id, seq, body.as_ref(), &mut self.out)?;
        self.stream.write_all(&self.out).map_err(timed_out)?;
        self.stream.flush().map_err(timed_out)?;
        Ok(())
    }

    /// Wait for the next message.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server closed the connection,
    /// [`Error::Pack`] if it sent bytes the packer rejects,
    /// [`Error::Timeout`] if the read timeout passed (retry if you like),
    /// [`Error::Io`] on a socket error.
    pub fn recv(&mut self) -> Result<Message> {
        if let Some(m) = self.early.pop_front() {
            return Ok(m);
        }
        self.read_message()
    }

    fn read_message(&mut self) -> Result<Message> {
        let mut chunk = [0u8; 16 << 10];
        loop {
            if let Some(m) = self.packer.decode(&mut self.received)? {
                return Ok(m);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(Error::Closed),
                Err(e) => return Err(timed_out(e)),
            }
        }
    }

    /// Send a message and wait for the next message back, whatever it is
    /// (for packers without a sequence number; see [`request`](Self::request)).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) and [`recv`](Self::recv).
    pub fn round_trip(&mut self, id: u32, body: impl AsRef<[u8]>) -> Result<Message> {
        self.send(id, body)?;
        self.recv()
    }

    /// Send a request with a fresh sequence number and wait, at most
    /// `timeout`, for the reply that carries it (the packer must carry a
    /// sequence number: `SeqPacker`, `TlvPacker`, …). Messages with
    /// sequence number 0 that come meanwhile are kept for
    /// [`recv`](Self::recv); a late reply to an earlier request that timed
    /// out is dropped, never taken for this one's. Sequence numbers are
    /// odd, as a dialing side's are (a server answering on the same
    /// connection numbers its own requests even: see the guide's
    /// "Requests and replies").
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no reply comes in time (a `timeout` longer
    /// than [`FOREVER`](crate::FOREVER) is `FOREVER`); as
    /// [`send`](Self::send) and [`recv`](Self::recv) otherwise.
    pub fn request(
        &mut self,
        id: u32,
        body: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Message> {
        self.last_seq = next_seq(self.last_seq);
        let seq = self.last_seq;
        self.send_seq(id, seq, body)?;
        let deadline = std::time::Instant::now() + crate::config::saturate(timeout);
        let result = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(Error::Timeout);
            }
            self.stream.tcp().set_read_timeout(Some(left))?;
            match self.read_message() {
                Ok(m) if m.seq == seq => break Ok(m),
                Ok(m) if m.seq == 0 => self.early.push_back(m),
                Ok(_late) => {}
                Err(e) => break Err(e),
            }
        };
        self.stream.tcp().set_read_timeout(self.read_timeout)?;
        result
    }

    /// Close the connection (TLS: after close_notify).
    pub fn close(mut self) {
        self.stream.close();
        let _ = self.stream.tcp().shutdown(Shutdown::Both);
    }
}

/// The sequence number of a blocking client's next request after `last`:
/// odd, as every dialing side numbers its requests (`Requests`): 1, 3, …,
/// u32::MAX, then 1 again.
fn next_seq(last: u32) -> u32 {
    match last {
        0 => 1,
        last => last.wrapping_add(2),
    }
}

/// A socket error as the client reports it: [`Error::Timeout`] for the
/// kinds a blocking call that ran out of time returns (`WouldBlock` on
/// Linux and macOS, `TimedOut` on Windows and from `connect_timeout`),
/// [`Error::Io`] for the rest.
fn timed_out(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::Io(e),
    }
}
