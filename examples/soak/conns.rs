//! Client connections over each transport, blocking, with timeouts: the
//! packer over TCP and TLS (netloom's own `client::Client`), WebSocket over
//! ws:// and wss:// (tungstenite's client over a std or rustls stream), and
//! UDP (`client::UdpClient`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use netloom::client::{Client, UdpClient};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use tungstenite::{Message as WsMessage, WebSocket};

use crate::servers::ECHO;

/// How long any read, write or connect may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte stream of any of the kinds below.
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
    Udp,
}

impl Transport {
    pub const STREAMS: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];
    pub const ALL: [Transport; 5] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
        Transport::Udp,
    ];
}

/// Where the servers listen, and the client side of their certificate.
#[derive(Clone)]
pub struct Targets {
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub udp: SocketAddr,
    pub tls: SocketAddr,
    pub wss: SocketAddr,
    pub tls_client: Arc<rustls::ClientConfig>,
}

/// Why a burst failed.
#[derive(Debug)]
pub enum Failure {
    /// The connection failed (closed, reset, timed out).
    Io(String),
    /// An echo came back different from what was sent.
    Wrong(String),
    /// UDP: a datagram or its echo was lost (loopback rarely does it).
    Lost,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Io(e.to_string())
    }
}

pub enum Conn {
    Packer(Client),
    Ws(Box<WebSocket<Box<dyn Io>>>),
    Udp(UdpClient),
}

/// A TCP stream to `addr` with the timeouts set.
fn tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// A stream to `t` (TCP or TLS, the WebSocket upgrade not done yet).
pub fn stream(t: Transport, to: &Targets) -> Result<Box<dyn Io>, Failure> {
    Ok(match t {
        Transport::Tcp => Box::new(tcp(to.tcp)?),
        Transport::Ws => Box::new(tcp(to.ws)?),
        Transport::Tls | Transport::Wss => {
            let addr = if t == Transport::Tls { to.tls } else { to.wss };
            let name = ServerName::try_from("localhost")?;
            let conn = ClientConnection::new(to.tls_client.clone(), name)?;
            Box::new(StreamOwned::new(conn, tcp(addr)?))
        }
        Transport::Udp => return Err(Failure::Io("UDP is not a stream".into())),
    })
}

/// A WebSocket client over `io`, upgraded.
pub fn ws_upgrade(io: Box<dyn Io>) -> Result<WebSocket<Box<dyn Io>>, Failure> {
    let (ws, _) = tungstenite::client::client("ws://localhost/", io).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => Failure::Io(e.to_string()),
        tungstenite::HandshakeError::Interrupted(_) => Failure::Io("upgrade interrupted".into()),
    })?;
    Ok(ws)
}

impl Conn {
    pub fn open(t: Transport, to: &Targets) -> Result<Conn, Failure> {
        Ok(match t {
            Transport::Tcp => {
                let mut c = Client::connect_timeout(to.tcp, IO_TIMEOUT)?;
                c.set_timeout(Some(IO_TIMEOUT))?;
                Conn::Packer(c)
            }
            Transport::Tls => {
                let mut c = Client::connect_tls(to.tls, "localhost", to.tls_client.clone())?;
                c.set_timeout(Some(IO_TIMEOUT))?;
                Conn::Packer(c)
            }
            Transport::Ws | Transport::Wss => Conn::Ws(Box::new(ws_upgrade(stream(t, to)?)?)),
            Transport::Udp => {
                let mut c = UdpClient::connect(to.udp)?;
                c.set_timeout(Some(Duration::from_secs(1)))?;
                Conn::Udp(c)
            }
        })
    }

    /// Send every body, then read their echoes and check each one, in
    /// order. UDP goes one datagram at a time (a lost one is `Lost`).
    pub fn burst(&mut self, bodies: &[Vec<u8>]) -> Result<(), Failure> {
        let check = |sent: &[u8], got: &[u8]| {
            if sent == got {
                Ok(())
            } else {
                Err(Failure::Wrong(format!(
                    "sent {} bytes starting {:?}, got {} starting {:?}",
                    sent.len(),
                    &sent[..sent.len().min(9)],
                    got.len(),
                    &got[..got.len().min(9)]
                )))
            }
        };
        match self {
            Conn::Packer(c) => {
                for b in bodies {
                    c.send(ECHO, b)?;
                }
                for b in bodies {
                    let m = c.recv()?;
                    if m.id != ECHO {
                        return Err(Failure::Wrong(format!("echo on id {}", m.id)));
                    }
                    check(b, &m.body)?;
                }
            }
            Conn::Ws(ws) => {
                for b in bodies {
                    ws.write(WsMessage::binary(b.clone()))?;
                }
                ws.flush()?;
                for b in bodies {
                    let data = loop {
                        match ws.read()? {
                            WsMessage::Binary(d) => break d,
                            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                            other => return Err(Failure::Wrong(format!("got {other:?}"))),
                        }
                    };
                    check(b, &data)?;
                }
            }
            Conn::Udp(c) => {
                for b in bodies {
                    match c.round_trip(ECHO, b) {
                        Ok(m) => check(b, &m.body)?,
                        Err(netloom::Error::Timeout) => return Err(Failure::Lost),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Close politely: TLS close_notify, a WebSocket close handshake.
    pub fn close(self) {
        match self {
            Conn::Packer(c) => c.close(),
            Conn::Ws(mut ws) => {
                if ws.close(None).is_ok() {
                    // Until the server's close frame (or an error) comes.
                    while ws.read().is_ok() {}
                }
            }
            Conn::Udp(_) => {}
        }
    }
}
