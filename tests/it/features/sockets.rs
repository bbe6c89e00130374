//! Socket options read back from the server's own sockets, and IPv6
//! listeners.
//!
//! On Linux the server's descriptors belong to this process: a socket is
//! found by its addresses in `/proc/net/tcp{,6}` (which gives its inode),
//! then by that inode among `/proc/self/fd`. Its options are read on a
//! duplicate of the descriptor, held only for the reading, while the
//! connection (or listener) is known to be open.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
#[cfg(target_os = "linux")]
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::Server;
#[cfg(target_os = "linux")]
use socket2::Socket;

use super::{assert_echoes, local};
#[cfg(target_os = "linux")]
use crate::common::start;
use crate::common::{echo, Client, TIMEOUT};

/// An address of `/proc/net/tcp{,6}`: hex words as the kernel stores them
/// (network order read as native u32s), a colon, the port in hex.
#[cfg(target_os = "linux")]
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::new();
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The inode of the TCP socket bound to `local` and connected to `remote`
/// (`None`: the listener on `local`).
#[cfg(target_os = "linux")]
fn socket_inode(local: SocketAddr, remote: Option<SocketAddr>) -> Option<u64> {
    let table = if local.is_ipv6() {
        "/proc/net/tcp6"
    } else {
        "/proc/net/tcp"
    };
    let text = std::fs::read_to_string(table).expect("read /proc/net/tcp");
    text.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st queues tr retrnsmt uid timeout inode
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || parse_proc_addr(f[1]) != Some(local) {
            return None;
        }
        let matches = match remote {
            Some(remote) => parse_proc_addr(f[2]) == Some(remote),
            None => f[3] == "0A", // TCP_LISTEN
        };
        if matches {
            f[9].parse().ok()
        } else {
            None
        }
    })
}

/// A duplicate of this process's descriptor for the server's socket with
/// these addresses (see [`socket_inode`]). Drop it before the connection
/// or listener may close.
#[cfg(target_os = "linux")]
pub(super) fn server_socket(local: SocketAddr, remote: Option<SocketAddr>) -> Socket {
    use std::os::fd::{FromRawFd, RawFd};
    let inode = socket_inode(local, remote)
        .unwrap_or_else(|| panic!("no TCP socket {local} -> {remote:?} in /proc/net"));
    let link = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd") {
        let Ok(entry) = entry else { continue };
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.as_os_str() == link.as_str()) {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor (or
            // fails with EBADF); the original is untouched.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                continue;
            }
            // SAFETY: `dup` is a fresh descriptor that nothing else owns.
            let sock = unsafe { Socket::from_raw_fd(dup) };
            // The number may have been reused meanwhile: check it is ours.
            let addr = |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
            if addr(sock.local_addr()) == Some(local)
                && remote.is_none_or(|r| addr(sock.peer_addr()) == Some(r))
            {
                return sock;
            }
        }
    }
    panic!("socket {local} -> {remote:?} (inode {inode}) is not among this process's descriptors")
}

/// A listener's accept queue from `TCP_INFO`: (connections waiting to be
/// accepted, the backlog it was given).
#[cfg(target_os = "linux")]
pub(super) fn accept_queue(listener: &Socket) -> (u32, u32) {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero tcp_info is a valid value of this plain C struct.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes; the descriptor is open.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    // For listeners the kernel puts these two in the fields below.
    (info.tcpi_unacked, info.tcpi_sacked)
}

/// `nodelay` and `keepalive` are set on every accepted socket: read back
/// from the server's side of the connection. Defaults: `TCP_NODELAY` on,
/// `SO_KEEPALIVE` off; with `nodelay(false)` and `keepalive(37 s)`:
/// `TCP_NODELAY` off, `SO_KEEPALIVE` on with 37 s before the first probe
/// and between probes. Fails if either setting is ignored (or forced).
#[cfg(target_os = "linux")]
#[test]
fn accepted_sockets_get_the_configured_options() {
    let period = Duration::from_secs(37);
    for configured in [false, true] {
        let (open_tx, opens) = unbounded();
        let mut builder = Server::builder()
            .event_loops(1)
            .on_open(move |session| {
                let _ = open_tx.send(session.peer_addr());
            })
            .route(1, echo);
        if configured {
            builder = builder.nodelay(false).keepalive(period);
        }
        let server = start(builder);
        let mut client = Client::connect(server.local_addr());
        let peer = opens.recv_timeout(TIMEOUT).expect("on_open ran");
        assert_eq!(peer, local(&client));
        let sock = server_socket(server.local_addr(), Some(peer));
        let what = if configured { "configured" } else { "default" };
        assert_eq!(
            sock.tcp_nodelay().unwrap(),
            !configured,
            "{what}: TCP_NODELAY"
        );
        assert_eq!(
            sock.keepalive().unwrap(),
            configured,
            "{what}: SO_KEEPALIVE"
        );
        if configured {
            assert_eq!(sock.tcp_keepalive_time().unwrap(), period, "TCP_KEEPIDLE");
            assert_eq!(
                sock.tcp_keepalive_interval().unwrap(),
                period,
                "TCP_KEEPINTVL"
            );
        }
        drop(sock);
        assert_echoes(&mut client, b"options read");
        server.shutdown(TIMEOUT).unwrap();
    }
}

/// `backlog(n)` is the listener's backlog, read back with `TCP_INFO`
/// (default 1024, capped by the kernel's `somaxconn`), and listeners have
/// `SO_REUSEADDR`. Fails if the backlog is ignored or hard-coded.
#[cfg(target_os = "linux")]
#[test]
fn listeners_get_the_configured_backlog_and_reuseaddr() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);
    for backlog in [None, Some(37)] {
        let mut builder = Server::builder().event_loops(1).route(1, echo);
        if let Some(n) = backlog {
            builder = builder.backlog(n);
        }
        let server = start(builder);
        let listener = server_socket(server.local_addr(), None);
        let expected = backlog.unwrap_or(1024).min(somaxconn);
        assert_eq!(accept_queue(&listener).1, expected, "backlog {backlog:?}");
        assert!(listener.reuse_address().unwrap(), "SO_REUSEADDR");
        drop(listener);
        server.shutdown(TIMEOUT).unwrap();
    }
}

/// A listener bound to `[::1]:0` serves IPv6 clients, who are seen with
/// their IPv6 address. A machine without an IPv6 loopback fails this test
/// with a message, unless `NETLOOM_NO_IPV6` is set to skip it. (That IPv6
/// listeners are IPv6-only shows only on a wildcard address: Linux makes
/// every socket bound to `::1` IPv6-only anyway, and a test listening on
/// `[::]` would not stay on the loopback.)
#[test]
fn an_ipv6_listener_serves_over_the_ipv6_loopback() {
    crate::common::init_logs();
    let (open_tx, opens) = unbounded();
    let builder = Server::builder()
        .event_loops(1)
        .on_open(move |session| {
            let _ = open_tx.send(session.peer_addr());
        })
        .route(1, echo);
    let server = match builder.bind("[::1]:0").and_then(|b| b.start()) {
        Ok(server) => server,
        Err(e) if std::env::var_os("NETLOOM_NO_IPV6").is_some() => {
            crate::common::peers::skip(&format!(
                "cannot listen on [::1] ({e}) and NETLOOM_NO_IPV6 is set"
            ));
            return;
        }
        Err(e) => panic!(
            "cannot listen on [::1]: {e}. Does this machine have an IPv6 loopback? \
             Set NETLOOM_NO_IPV6=1 to skip this test."
        ),
    };
    let addr = server.local_addr();
    assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    let mut client = Client::connect(addr);
    let peer = opens.recv_timeout(TIMEOUT).expect("on_open ran");
    assert_eq!(peer, local(&client));
    assert_eq!(peer.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_echoes(&mut client, b"over IPv6");
    assert_echoes(&mut client, &[0xff; 3000]);
    server.shutdown(TIMEOUT).unwrap();
}
