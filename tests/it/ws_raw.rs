//! A WebSocket client built from bytes (RFC 6455), for the protocol's
//! corner cases and hostile peers: any request, any frame.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::TIMEOUT;

/// A WebSocket client built from bytes: the request, frames and the close
/// handshake are written by hand (RFC 6455), so any frame can be sent.
pub(crate) struct RawWs {
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
}

pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub(crate) fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

impl RawWs {
    pub(crate) fn tcp(addr: SocketAddr) -> RawWs {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connect and upgrade; panics unless the answer is 101 with the RFC's
    /// accept key.
    pub(crate) fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let mut ws = RawWs::tcp(addr);
        ws.write(upgrade_request(path).as_bytes());
        let head = ws.response_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        ws
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub(crate) fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 << 10];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The HTTP response head (the bytes after it stay buffered).
    pub(crate) fn response_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(self.fill() > 0, "closed before the response head");
        }
    }

    /// Everything until end of file (for refused upgrades).
    pub(crate) fn read_to_end(&mut self) -> String {
        while self.fill() > 0 {}
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Send one frame: `first` is FIN/RSV/opcode, the payload masked
    /// (as clients must) unless `masked` is false.
    pub(crate) fn send_frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mut f = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let mask = [0x37, 0xfa, 0x21, 0x3d];
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        self.write(&f);
    }

    /// Read one server frame: (first byte, payload). Server frames are never
    /// masked. `None` at end of file.
    pub(crate) fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if self.fill() == 0 {
                assert!(self.buf.is_empty(), "EOF inside a frame");
                return None;
            }
        }
    }

    /// Skip data frames until a close frame: (code, reason).
    pub(crate) fn expect_close(&mut self) -> (u16, String) {
        loop {
            let (first, payload) = self.recv().expect("a close frame before EOF");
            if first & 0x0f == 0x8 {
                assert!(payload.len() >= 2, "close frame without a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
        }
    }

    pub(crate) fn expect_eof(&mut self) {
        assert!(self.recv().is_none(), "expected the server to close");
    }
}

pub(crate) fn parse_server_frame(b: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    if b.len() < 2 {
        return None;
    }
    assert_eq!(b[1] & 0x80, 0, "server frames must not be masked");
    let (len, head) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = b.get(head..head + len)?.to_vec();
    Some(((b[0], payload), head + len))
}

/// A masked client ping with a 125-byte payload (the most a control frame
/// carries): 131 bytes on the wire, 127 in the pong.
pub(crate) fn ping_frame() -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x89, 0x80 | 125];
    f.extend_from_slice(&mask);
    f.extend((0..125u8).map(|i| i ^ mask[i as usize % 4]));
    f
}

/// Write pings without reading until a write blocks for `stall`, or
/// `limit` bytes are out. Returns the bytes written.
pub(crate) fn flood_pings(ws: &mut RawWs, limit: usize, stall: Duration) -> usize {
    ws.stream.set_write_timeout(Some(stall)).unwrap();
    let batch: Vec<u8> = (0..256).flat_map(|_| ping_frame()).collect();
    let mut sent = 0;
    while sent < limit {
        match ws.stream.write(&batch) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return sent
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    sent
}
