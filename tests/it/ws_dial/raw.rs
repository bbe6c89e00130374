//! A raw WebSocket server on std sockets for the dial's edge cases: it
//! can misbehave on purpose, byte by byte. Every read has a timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::ws::{self, WsResponse};
use netloom::Reconnect;

use crate::common::TIMEOUT;

// ---------------------------------------------------------------------------
// A raw WebSocket server on std sockets
// ---------------------------------------------------------------------------

/// The `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
pub(crate) fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// A raw server: a listener on loopback; `next()` accepts one connection
/// (bounded), its reads and writes time out.
pub(crate) struct Raw {
    listener: TcpListener,
}

impl Raw {
    pub(crate) fn new() -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Raw { listener }
    }

    pub(crate) fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port())
    }

    pub(crate) fn next(&self) -> Option<TcpStream> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(TIMEOUT)).unwrap();
                    s.set_write_timeout(Some(TIMEOUT)).unwrap();
                    return Some(s);
                }
                Err(_) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(2)); // polling accept, not synchronisation
                }
                Err(_) => return None,
            }
        }
    }
}

/// Read the upgrade request (byte by byte, bounded); its key.
pub(crate) fn read_request(s: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
        if head.len() > 64 << 10 {
            return Err(std::io::Error::other("request too long"));
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let key = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_owned())
        })
        .ok_or_else(|| std::io::Error::other("no key"))?;
    Ok(key)
}

pub(crate) fn answer_101(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
    .into_bytes()
}

/// Read the request and answer 101.
pub(crate) fn handshake(s: &mut TcpStream) -> std::io::Result<()> {
    let key = read_request(s)?;
    s.write_all(&answer_101(&key))
}

/// An unmasked server frame.
pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n < 65536 => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

pub(crate) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    frame(0x8, &p)
}

/// One client frame: (opcode, masked, payload unmasked).
pub(crate) fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, bool, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut n = u64::from(h[1] & 0x7f);
    if n == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b)?;
        n = u64::from(u16::from_be_bytes(b));
    } else if n == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)?;
        n = u64::from_be_bytes(b);
    }
    let masked = h[1] & 0x80 != 0;
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; n as usize];
    s.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
    }
    Ok((h[0] & 0x0f, masked, payload))
}

/// Reset the connection (SO_LINGER 0, then close).
pub(crate) fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the right size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// What a dialing server saw, in one channel, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ev {
    Open { response: bool },
    Reconnect,
    Msg(u32, Vec<u8>),
    Close(String),
    Disconnect(String),
}

pub(crate) fn events(builder: netloom::Builder) -> (netloom::Builder, Receiver<Ev>) {
    let (tx, rx) = unbounded::<Ev>();
    let (t1, t2, t3, t4, t5, t6) = (
        tx.clone(),
        tx.clone(),
        tx.clone(),
        tx.clone(),
        tx.clone(),
        tx,
    );
    let b = builder
        .route(ws::TEXT, move |ctx| {
            let _ = t1.send(Ev::Msg(ws::TEXT, ctx.body().to_vec()));
        })
        .route(ws::BINARY, move |ctx| {
            let _ = t2.send(Ev::Msg(ws::BINARY, ctx.body().to_vec()));
        })
        .on_open(move |s| {
            let response = s.data().get::<WsResponse>().is_some();
            let _ = t3.send(Ev::Open { response });
        })
        .on_reconnect(move |_s, _| {
            let _ = t4.send(Ev::Reconnect);
        })
        .on_close(move |_s, why| {
            let _ = t5.send(Ev::Close(format!("{why:?}")));
        })
        .on_disconnect(move |_s, d| {
            let _ = t6.send(Ev::Disconnect(format!("{:?}", d.reason)));
        });
    (b, rx)
}

pub(crate) fn quick_reconnect() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        ..Reconnect::default()
    }
}

pub(crate) fn report<T: Send + 'static>() -> (Sender<T>, Receiver<T>) {
    unbounded()
}

// ---------------------------------------------------------------------------
