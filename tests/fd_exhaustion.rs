//! Process-wide descriptor behaviour (Linux): accept under EMFILE backs off
//! instead of spinning and recovers by itself once descriptors are free,
//! and a server gives back every descriptor it opened.
//!
//! These tests change process-wide state (`RLIMIT_NOFILE`) and count
//! process-wide resources (`/proc/self/fd`, CPU time), so they live in their
//! own test binary and run one at a time under `common::serial()`.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Builder, CloseReason, ConnId, Context, Server};
use socket2::{Domain, Protocol, Socket, Type};

use common::{cpu_time, echo, serial, wait_until, Client, TIMEOUT};

/// Open descriptors of this process, with what they point to.
fn open_fds() -> Vec<(RawFd, String)> {
    let mut fds: Vec<(RawFd, String)> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            Some((fd, target))
        })
        .collect();
    fds.sort();
    fds
}

fn nofile_limit() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    lim
}

/// Lowers the soft descriptor limit; restores the old one when dropped
/// (also when the test fails).
struct LimitGuard {
    old: libc::rlimit,
}

impl LimitGuard {
    fn lower_to(soft: u64) -> LimitGuard {
        let old = nofile_limit();
        let new = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: old.rlim_max,
        };
        // SAFETY: `new` is a valid rlimit; lowering the soft limit is allowed.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) };
        assert_eq!(rc, 0, "setrlimit: {}", io::Error::last_os_error());
        LimitGuard { old }
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        // SAFETY: restoring the limit read before; it is within the hard limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.old) };
    }
}

/// An unconnected TCP socket whose descriptor number is at least `at`, so
/// that it does not take one of the low numbers a lowered limit leaves.
fn socket_at_or_above(at: RawFd) -> Socket {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    // SAFETY: duplicating a descriptor we own; the result is checked.
    let high = unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_DUPFD_CLOEXEC, at) };
    assert!(high >= at, "F_DUPFD: {}", io::Error::last_os_error());
    drop(sock);
    // SAFETY: `high` is a fresh descriptor nothing else owns.
    unsafe { Socket::from_raw_fd(high) }
}

fn hooked(builder: Builder) -> (Builder, Receiver<(ConnId, SocketAddr)>, Receiver<ConnId>) {
    let (open_tx, opens) = unbounded();
    let (close_tx, closes) = unbounded();
    let builder = builder
        .on_open(move |s| {
            let _ = open_tx.send((s.id(), s.peer_addr()));
        })
        .on_close(move |s, _| {
            let _ = close_tx.send(s.id());
        });
    (builder, opens, closes)
}

/// Receive `n` events or fail after `TIMEOUT`.
fn recv_n<T>(rx: &Receiver<T>, n: usize, what: &str) -> Vec<T> {
    let deadline = Instant::now() + TIMEOUT;
    (0..n)
        .map(|i| {
            rx.recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("only {i} of {n} {what} within {TIMEOUT:?}"))
        })
        .collect()
}

/// 10. With the descriptor limit reached, accept fails with EMFILE: the
///     error is counted, the acceptor backs off instead of spinning, and
///     once descriptors are free it accepts the waiting connections by
///     itself.
#[test]
fn accept_backs_off_under_emfile_and_recovers() {
    const CLIENTS: usize = 64;
    /// Descriptors left under the lowered limit for the server: its own
    /// (listener, polls, wakers) and about 30 accepted connections.
    const HEADROOM: RawFd = 40;
    let _serial = serial();
    common::init_logs();

    let old = nofile_limit();
    // Keep the high numbers modest: the kernel sizes the table to them.
    let soft = old.rlim_cur.min(8192) as RawFd;
    let high_base = soft - 2 * CLIENTS as RawFd;
    let low: Vec<RawFd> = open_fds().iter().map(|(fd, _)| *fd).collect();
    // The limit goes just above the highest open descriptor, but never so
    // low that fewer than `HEADROOM` numbers stay free under it (a process
    // whose descriptors are packed from 0 has no free number below its
    // highest one).
    let highest = low.iter().copied().max().unwrap_or(2);
    let limit_to = (highest + 1).max(low.len() as RawFd + HEADROOM);
    assert!(
        high_base > limit_to + HEADROOM + 16,
        "descriptor limit {soft} too low for this test"
    );
    // Client sockets first, above the limit-to-be: connecting them needs no
    // new descriptor, so only the server runs out.
    let sockets: Vec<Socket> = (0..CLIENTS)
        .map(|i| socket_at_or_above(high_base + i as RawFd))
        .collect();
    // The process may hold a high-numbered descriptor of its own (a pipe
    // of the caller, as under some shells): plug the free numbers under the
    // limit-to-be but `HEADROOM` of them.
    let holes = limit_to as usize - low.len();
    let plugs: Vec<File> = (0..holes.saturating_sub(HEADROOM as usize))
        .map(|_| File::open("/dev/null").unwrap())
        .collect();
    let limit = LimitGuard::lower_to(limit_to as u64);

    let (builder, opens, closes) = hooked(Server::builder().event_loops(1).route(1, echo));
    let server = builder
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .expect("start under the lowered limit");
    let addr = server.local_addr();
    let mut clients: Vec<Client> = sockets
        .into_iter()
        .map(|s| {
            // The kernel completes the handshake from the backlog even when
            // the server cannot accept.
            s.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
            let stream = TcpStream::from(s);
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(TIMEOUT)).unwrap();
            Client { stream }
        })
        .collect();

    wait_until("accept to fail with EMFILE", || {
        server.stats().accept_errors > 0
    });
    let mut opened: HashMap<SocketAddr, ConnId> = HashMap::new();
    wait_until("accepted connections to open", || {
        opened.extend(opens.try_iter().map(|(id, peer)| (peer, id)));
        opened.len() == server.connection_count()
    });
    let accepted = opened.len();
    assert!(
        accepted > 0 && accepted < CLIENTS,
        "{accepted} of {CLIENTS} accepted under a limit of {HEADROOM} spare descriptors"
    );

    // Stuck at the limit: measure what the acceptor costs meanwhile. The
    // sleep is the measurement window, not a synchronisation.
    let errors_before = server.stats().accept_errors;
    let cpu_before = cpu_time();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_time() - cpu_before;
    let wall = started.elapsed();
    let retries = server.stats().accept_errors - errors_before;
    assert!(
        cpu < wall / 2,
        "process used {cpu:?} of CPU in {wall:?} while accept failed ({retries} retries)"
    );
    assert!(
        retries <= 30,
        "{retries} accept attempts in {wall:?}: no back-off"
    );
    assert_eq!(
        server.connection_count(),
        accepted,
        "accepted while no descriptor was free"
    );

    // Free descriptors: the accepted peers leave; the server closes them.
    let (gone, mut waiting): (Vec<Client>, Vec<Client>) = clients
        .drain(..)
        .partition(|c| opened.contains_key(&c.stream.local_addr().unwrap()));
    drop(gone);
    recv_n(&closes, accepted, "closes of the accepted peers");

    // The waiting connections are accepted without any new event, and work.
    wait_until("the waiting connections to be accepted", || {
        opened.extend(opens.try_iter().map(|(id, peer)| (peer, id)));
        opened.len() == CLIENTS
    });
    for (i, c) in waiting.iter_mut().enumerate() {
        let body = (i as u32).to_le_bytes();
        c.send(1, &body);
        assert_eq!(c.recv(), (1, body.to_vec()), "waiting client {i}");
    }
    let stats = server.stats();
    assert_eq!(stats.accepted, CLIENTS as u64, "{stats}");
    assert!(stats.accept_errors > 0, "{stats}");

    drop(limit);
    drop(plugs);
    let hub = server.hub();
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(
        hub.stats().closed_by(&CloseReason::PeerClosed),
        accepted as u64
    );
    assert_eq!(
        hub.stats().closed_by(&CloseReason::Shutdown),
        (CLIENTS - accepted) as u64
    );
    for c in &mut waiting {
        c.expect_closed();
    }
}

/// Run one server through every way a connection can end; returns with
/// the server shut down and every client and handle dropped.
fn exercise_server() {
    let (builder, opens, closes) = hooked(
        Server::builder()
            .event_loops(2)
            .max_connections(30)
            .route(1, echo)
            .route(2, |ctx: &mut Context<'_>| ctx.close()),
    );
    let server = builder.bind("127.0.0.1:0").unwrap().start().unwrap();
    let hub = server.hub();
    let mut clients: Vec<Client> = (0..30)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    recv_n(&opens, 30, "on_open calls");
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(1, &[i as u8]);
        assert_eq!(c.recv(), (1, vec![i as u8]));
    }
    // Over the limit: rejected.
    let mut rejected = Client::connect(server.local_addr());
    rejected.expect_closed();
    // Ten closed by their peer, ten by the server, ten left for shutdown.
    clients.drain(..10);
    for c in clients.iter_mut().take(10) {
        c.send(2, b"");
        c.expect_closed();
    }
    recv_n(&closes, 20, "on_close calls");
    server.shutdown(TIMEOUT).unwrap();
    for c in clients.iter_mut().skip(10) {
        c.expect_closed();
    }
    let stats = hub.stats();
    assert_eq!(stats.rejected, 1, "{stats}");
    assert_eq!(stats.closed_total(), 30, "{stats}");
    assert_eq!(closes.try_iter().count(), 10);
}

/// 7 (descriptors). After shutdown, with its clients and handles dropped,
/// the process holds exactly the descriptors it held before the server.
#[test]
fn server_gives_back_every_descriptor() {
    let _serial = serial();
    common::init_logs();
    // A first run pays for anything created once per process.
    exercise_server();
    let before = open_fds();
    exercise_server();
    let after = open_fds();
    assert_eq!(
        before.len(),
        after.len(),
        "descriptors before: {before:?}\nafter: {after:?}"
    );
}
