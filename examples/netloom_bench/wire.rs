//! The benchmark's traffic: frames in netloom's default format
//! (`len u32 LE | id u32 LE | body`), bodies cut from one pseudo-random
//! pattern at an offset derived from (connection, sequence number), and the
//! connect helper that spreads source addresses over 127.0.0.2, 127.0.0.3, …
//!
//! A frame's bytes are a pure function of (connection, sequence, size), so
//! the generator verifies every echoed byte without keeping a copy of what
//! it sent, and sends bodies straight out of the pattern (no copy either).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Header length of the default packer.
pub const HEADER: usize = 8;

/// Message id of the keep-alive frames sent by `idle` and `c1000k` (empty
/// body; every benchmark server echoes it).
pub const PING_ID: u32 = 0x474e_4950; // "PING"

/// Distinct body offsets into the pattern.
const OFFSETS: usize = 4096;

/// Bytes every frame body is a window of (or, for JSON bodies, one of
/// `OFFSETS` records of `size` bytes).
#[derive(Debug)]
pub struct Pattern {
    bytes: Vec<u8>,
    size: usize,
    json: bool,
}

/// The shortest JSON body (`{"id":…,"name":"","ok":true}`).
pub const JSON_MIN: usize = 37;

impl Pattern {
    /// A pattern for bodies of `size` bytes.
    pub fn new(size: usize) -> Self {
        // xorshift64*: cheap, deterministic, no repeating short period.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut bytes = Vec::with_capacity(size + OFFSETS + 8);
        while bytes.len() < size + OFFSETS {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            bytes.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        Pattern {
            bytes,
            size,
            json: false,
        }
    }

    /// A pattern of JSON bodies of exactly `size` bytes (at least
    /// [`JSON_MIN`]): `{"id":<10 digits>,"name":"<hex>","ok":true}`, the
    /// struct of three fields the JSON servers decode, in the form
    /// serde_json writes it back (so the echo is byte for byte).
    pub fn json(size: usize) -> Self {
        let size = size.max(JSON_MIN);
        let noise = Pattern::new(size);
        let mut bytes = Vec::with_capacity(size * OFFSETS);
        for i in 0..OFFSETS {
            let id = 1_000_000_000 + (i as u64).wrapping_mul(2_654_435_761) % 8_999_999_999;
            let hex: String = noise.bytes[i..i + size - JSON_MIN]
                .iter()
                .map(|b| char::from(b"0123456789abcdef"[usize::from(b & 15)]))
                .collect();
            let body = format!(r#"{{"id":{id},"name":"{hex}","ok":true}}"#);
            debug_assert_eq!(body.len(), size);
            bytes.extend_from_slice(body.as_bytes());
        }
        Pattern {
            bytes,
            size,
            json: true,
        }
    }

    /// Whole frame length (header + body).
    pub fn frame_len(&self) -> usize {
        HEADER + self.size
    }

    /// The header of frame `seq` on connection `conn`.
    pub fn header(&self, conn: u32, seq: u64) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(&(self.size as u32).to_le_bytes());
        h[4..].copy_from_slice(&frame_id(conn, seq).to_le_bytes());
        h
    }

    /// The body of frame `seq` on connection `conn`.
    pub fn body(&self, conn: u32, seq: u64) -> &[u8] {
        let mix = (u64::from(conn).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            ^ seq.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let off = (mix >> 52) as usize % OFFSETS;
        if self.json {
            return &self.bytes[off * self.size..(off + 1) * self.size];
        }
        &self.bytes[off..off + self.size]
    }
}

/// Message id of frame `seq` on connection `conn` (echoed back by every
/// server, so it is verified too).
pub fn frame_id(conn: u32, seq: u64) -> u32 {
    conn.wrapping_mul(0x9e37).wrapping_add(seq as u32)
}

/// A PING frame (empty body).
pub fn ping_frame() -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[4..].copy_from_slice(&PING_ID.to_le_bytes());
    h
}

/// Source address `index` of `sources`: 127.0.0.2, 127.0.0.3, … (carrying
/// into the third byte past 127.0.0.255). `None` when `sources` is 0: let
/// the kernel choose (127.0.0.1 towards a loopback server).
pub fn source_addr(index: usize, sources: usize) -> Option<IpAddr> {
    if sources == 0 {
        return None;
    }
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    Some(IpAddr::V4(Ipv4Addr::from(base + (index % sources) as u32)))
}

/// Source addresses to use for `conns` connections when none are given:
/// none up to 10,000 connections, else one per 10,000. Linux hands out odd
/// ports to `connect` first; once half of one address's range is used,
/// each connect searches the range and the rate drops to ~1,000/s.
pub fn auto_sources(conns: usize) -> usize {
    if conns <= 10_000 {
        0
    } else {
        conns.div_ceil(10_000)
    }
}

/// Connect to `addr` from source address `index % sources` (see
/// [`source_addr`]), with TCP_NODELAY, and return the socket non-blocking.
///
/// The source port is chosen at connect time (IP_BIND_ADDRESS_NO_PORT), so
/// each source address offers a whole ephemeral port range per destination
/// instead of sharing one range across destinations.
pub fn connect(
    addr: SocketAddr,
    index: usize,
    sources: usize,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(src) = source_addr(index, sources) {
        crate::os::bind_address_no_port(&sock)?;
        sock.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    }
    sock.connect_timeout(&SockAddr::from(addr), timeout)?;
    sock.set_tcp_nodelay(true)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// A short name for a connect error, and who is to blame.
pub fn classify(e: &io::Error) -> (&'static str, Blame) {
    match e.raw_os_error() {
        Some(libc::EMFILE) => ("EMFILE", Blame::ClientFdLimit),
        Some(libc::ENFILE) => ("ENFILE", Blame::SystemFdLimit),
        Some(libc::EADDRNOTAVAIL) => ("EADDRNOTAVAIL", Blame::Ports),
        Some(libc::EADDRINUSE) => ("EADDRINUSE", Blame::Ports),
        Some(libc::ECONNREFUSED) => ("ECONNREFUSED", Blame::Server),
        Some(libc::ECONNRESET) => ("ECONNRESET", Blame::Server),
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => ("ENOMEM", Blame::Memory),
        _ if e.kind() == io::ErrorKind::TimedOut => ("timeout", Blame::Server),
        _ => ("other", Blame::Other),
    }
}

/// What stopped a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// This process's RLIMIT_NOFILE.
    ClientFdLimit,
    /// The system-wide file table (fs.file-max).
    SystemFdLimit,
    /// No free (source address, port) pair: add sources or widen
    /// net.ipv4.ip_local_port_range.
    Ports,
    /// Refused, reset or not answered: the server (or its backlog).
    Server,
    /// Kernel memory.
    Memory,
    /// Anything else.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_differ_per_conn_and_seq() {
        let j = Pattern::json(64);
        let body: serde_json::Value = serde_json::from_slice(j.body(2, 9)).unwrap();
        assert_eq!(serde_json::to_vec(&body).unwrap().len(), 64);
        assert!(body["ok"].as_bool().unwrap());
        let p = Pattern::new(64);
        assert_ne!(p.body(0, 0), p.body(0, 1));
        assert_ne!(p.body(0, 0), p.body(1, 0));
        assert_eq!(p.header(3, 7)[..4], 64u32.to_le_bytes());
    }
}
