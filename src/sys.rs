//! Everything platform-specific, in one place. mio already picks epoll
//! (Linux) or kqueue (macOS, BSD); what is left are socket options.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Enable SO_KEEPALIVE: first probe after `period` of silence, then every
/// `period` where the platform lets us set the interval.
pub(crate) fn set_keepalive(stream: &mio::net::TcpStream, period: Duration) -> io::Result<()> {
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
