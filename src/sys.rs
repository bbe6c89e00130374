//! Everything platform-specific, in one place. mio already picks epoll
//! (Linux) or kqueue (macOS, BSD); what is left are socket options, and the
//! crate's one `unsafe` block: a read into uninitialised spare capacity.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Enable SO_KEEPALIVE: first probe after `period` of silence, then every
/// `period` where the platform lets us set the interval.
fn set_keepalive(stream: &mio::net::TcpStream, period: Duration) -> io::Result<()> {
    let ka = TcpKeepalive::new().with_time(period);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "windows"
    ))]
    let ka = ka.with_interval(period);
    SockRef::from(stream).set_tcp_keepalive(&ka)
}

/// The socket options of a connection (the server's, or its profile's),
/// once it is accepted or has connected: TCP_NODELAY, SO_KEEPALIVE,
/// SO_LINGER and the buffer sizes (a dialed socket had its buffers set
/// as its connect started, in [`connect`]; setting them again is
/// harmless).
/// A failure is logged at debug and otherwise ignored (the connection
/// works without them).
pub(crate) fn tune(stream: &mio::net::TcpStream, peer: SocketAddr, options: &SocketOptions) {
    if options.nodelay {
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
    }
    if let Some(period) = options.keepalive {
        if let Err(e) = set_keepalive(stream, period) {
            log::debug!("{peer}: cannot set SO_KEEPALIVE: {e}");
        }
    }
    let sock = SockRef::from(stream);
    if let Some(linger) = options.linger {
        if let Err(e) = sock.set_linger(Some(linger)) {
            log::debug!("{peer}: cannot set SO_LINGER: {e}");
        }
    }
    set_buffers(&sock, peer, options);
}

fn set_buffers(sock: &SockRef<'_>, peer: SocketAddr, options: &SocketOptions) {
    if let Some(size) = options.recv_buffer {
        if let Err(e) = sock.set_recv_buffer_size(size) {
            log::debug!("{peer}: cannot set SO_RCVBUF: {e}");
        }
    }
    if let Some(size) = options.send_buffer {
        if let Err(e) = sock.set_send_buffer_size(size) {
            log::debug!("{peer}: cannot set SO_SNDBUF: {e}");
        }
    }
}

/// Start a non-blocking connect to `addr`, its buffer sizes set at once
/// (the rest of the options wait for [`tune`] once it connects).
pub(crate) fn connect(
    addr: SocketAddr,
    options: &SocketOptions,
) -> io::Result<mio::net::TcpStream> {
    let stream = mio::net::TcpStream::connect(addr)?;
    set_buffers(&SockRef::from(&stream), addr, options);
    Ok(stream)
}

/// Socket options of a connection (the server's, or a dial profile's:
/// `config` holds and checks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketOptions {
    /// TCP_NODELAY.
    pub(crate) nodelay: bool,
    /// SO_KEEPALIVE with this idle time (and probe interval).
    pub(crate) keepalive: Option<Duration>,
    /// SO_LINGER: `Some(ZERO)` makes close reset the connection (RST)
    /// instead of the orderly FIN.
    pub(crate) linger: Option<Duration>,
    /// SO_RCVBUF in bytes (the kernel may double or clamp it).
    pub(crate) recv_buffer: Option<usize>,
    /// SO_SNDBUF in bytes (the kernel may double or clamp it).
    pub(crate) send_buffer: Option<usize>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            keepalive: None,
            linger: None,
            recv_buffer: None,
            send_buffer: None,
        }
    }
}

/// A non-blocking listener with SO_REUSEADDR (Unix: restart without
/// waiting for TIME_WAIT) and the given backlog.
pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// The UDP sockets for `addr` on a server of `loops` event loops: one per
/// loop where the kernel spreads datagrams over sockets bound alike by
/// their source address (`SO_REUSEPORT` on Linux), so that every peer
/// lands on one loop; elsewhere one socket, for loop 0 (on macOS and the
/// BSDs `SO_REUSEPORT` hands unicast datagrams to one socket only). Each
/// gets the server's buffer sizes. With port 0 the first socket picks the
/// port and the others bind to it.
pub(crate) fn udp_sockets(
    addr: SocketAddr,
    loops: usize,
    options: &SocketOptions,
) -> io::Result<Vec<mio::net::UdpSocket>> {
    let spread = if cfg!(any(target_os = "linux", target_os = "android")) {
        loops
    } else {
        1
    };
    let mut sockets = Vec::with_capacity(spread);
    let mut at = addr;
    // The group's sockets all set SO_REUSEPORT, which would let them join
    // another server's group on the port: bind once without it first, so
    // a port in use is refused as a TCP one is (and port 0 picks a free
    // port for the group). It must be closed before the group binds (a
    // socket without the option keeps the others out): a process binding
    // the port in between wins it, and the group's bind then fails.
    if spread > 1 {
        at = std::net::UdpSocket::bind(addr)?.local_addr()?;
    }
    for _ in 0..spread {
        let socket = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        if at.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if spread > 1 {
            socket.set_reuse_port(true)?;
        }
        set_buffers(&SockRef::from(&socket), at, options);
        socket.bind(&at.into())?;
        socket.set_nonblocking(true)?;
        let socket = mio::net::UdpSocket::from_std(socket.into());
        at = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// A UDP dial's socket: an ephemeral port on the wildcard address of
/// `peer`'s family, connected to `peer` (only its datagrams are received),
/// with the dial's buffer sizes.
pub(crate) fn udp_dial(
    peer: SocketAddr,
    options: &SocketOptions,
) -> io::Result<mio::net::UdpSocket> {
    let local: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))?;
    set_buffers(&SockRef::from(&socket), peer, options);
    socket.bind(&local.into())?;
    socket.connect(&peer.into())?;
    socket.set_nonblocking(true)?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// Read at most `max` bytes from `stream` into the spare capacity of
/// `buf`, which grows by what was read. Never reallocates.
#[allow(unsafe_code)]
pub(crate) fn read_into_spare(
    stream: &mio::net::TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let asked = spare.len().min(max);
    let n = SockRef::from(stream).recv(&mut spare[..asked])?;
    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity
    // and returns at most its length. No safe API reads from a socket into
    // uninitialised memory on stable Rust (`BorrowedBuf` is unstable), and
    // zeroing the capacity first would cost a pass over up to a whole
    // frame for every read.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tune_sets_every_option_it_is_given() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let options = SocketOptions {
            nodelay: true,
            keepalive: Some(Duration::from_secs(30)),
            linger: Some(Duration::ZERO),
            recv_buffer: Some(64 << 10),
            send_buffer: Some(96 << 10),
        };
        let stream = connect(addr, &options).unwrap();
        let sock = SockRef::from(&stream);
        // The kernel may double a buffer size, never shrink it below.
        assert!(sock.recv_buffer_size().unwrap() >= 64 << 10);
        assert!(sock.send_buffer_size().unwrap() >= 96 << 10);
        let _accepted = listener.accept().unwrap();
        tune(&stream, addr, &options);
        assert!(sock.tcp_nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.linger().unwrap(), Some(Duration::ZERO));
        let plain = mio::net::TcpStream::connect(addr).unwrap();
        tune(&plain, addr, &SocketOptions::default());
        assert_eq!(SockRef::from(&plain).linger().unwrap(), None);
    }
}
