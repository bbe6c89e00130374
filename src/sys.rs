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

/// The socket options every connection gets, accepted or dialed:
/// TCP_NODELAY when `nodelay`, SO_KEEPALIVE when `keepalive` is set. A
/// failure is logged at debug and otherwise ignored (the connection works
/// without them).
pub(crate) fn tune(
    stream: &mio::net::TcpStream,
    peer: SocketAddr,
    nodelay: bool,
    keepalive: Option<Duration>,
) {
    if nodelay {
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
    }
    if let Some(period) = keepalive {
        if let Err(e) = set_keepalive(stream, period) {
            log::debug!("{peer}: cannot set SO_KEEPALIVE: {e}");
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
