//! The inbox limit, a broadcast past a peer over its high-water mark,
//! connects while shutdown is in progress, and the blocking client.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use netloom::{Builder, CloseReason, ConnHandle, Context, Error, Server};
use socket2::{Domain, Socket, Type};

use super::{assert_echoes, local, read_to_eof};
use crate::common::{echo, frame, start, start_tracked, track_closes, wait_until, Client, TIMEOUT};

/// Route 50 blocks its loop: it says so on `entered`, then waits (bounded)
/// for the test to send on `release`.
pub(super) fn blocking_route(builder: Builder) -> (Builder, Receiver<()>, Sender<()>) {
    let (entered_tx, entered) = bounded(1);
    let (release, release_rx) = bounded::<()>(1);
    let builder = builder.route(50, move |_ctx: &mut Context<'_>| {
        let _ = entered_tx.send(());
        // Never longer than TIMEOUT, even if the test fails before it
        // releases the loop.
        let _ = release_rx.recv_timeout(TIMEOUT);
    });
    (builder, entered, release)
}

/// Report every opened connection's handle, by peer address.
pub(super) fn report_opens(builder: Builder) -> (Builder, Receiver<(SocketAddr, ConnHandle)>) {
    let (tx, rx) = unbounded();
    let builder = builder.on_open(move |session| {
        let _ = tx.send((session.peer_addr(), session.handle()));
    });
    (builder, rx)
}

pub(super) fn handle_of(opens: &Receiver<(SocketAddr, ConnHandle)>, c: &Client) -> ConnHandle {
    let (peer, handle) = opens.recv_timeout(TIMEOUT).expect("on_open ran");
    assert_eq!(peer, local(c));
    handle
}

/// `inbox_capacity`: while a loop is stuck in a handler, sends from other
/// threads to its connections fill its inbox until `InboxFull` (counted in
/// `send_errors`), and a broadcast then reports `InboxFull` while the other
/// loop still delivers it. Once the loop runs again, every accepted frame
/// arrives in order (the refused broadcast does not), and sends succeed
/// again. With the capacity ignored (default 64 MiB) the 10,000 sends all
/// succeed and the test fails.
#[test]
fn a_full_inbox_refuses_sends_until_the_loop_catches_up() {
    const CAPACITY: usize = 4096;
    const BODY: usize = 100;
    const MAX_SENDS: usize = 10_000;
    let body = |n: usize| -> Vec<u8> { (0..BODY).map(|j| (n * 3 + j) as u8).collect() };
    let (builder, entered, release) = blocking_route(
        Server::builder()
            .event_loops(2)
            .inbox_capacity(CAPACITY)
            .route(1, echo),
    );
    let (builder, opens) = report_opens(builder);
    let server = start(builder);
    let hub = server.hub();
    let mut stuck = Client::connect(server.local_addr());
    let stuck_handle = handle_of(&opens, &stuck);
    let mut other = Client::connect(server.local_addr());
    let other_handle = handle_of(&opens, &other);
    assert_ne!(
        stuck_handle.id().loop_index(),
        other_handle.id().loop_index(),
        "round-robin should put the two clients on different loops"
    );

    stuck.send(50, b"");
    entered
        .recv_timeout(TIMEOUT)
        .expect("the loop entered route 50");
    let errors_before = server.stats().send_errors;
    let mut sent = 0;
    let full = loop {
        assert!(
            sent < MAX_SENDS,
            "{sent} sends of {BODY} bytes to a stuck loop without InboxFull (capacity {CAPACITY})"
        );
        match stuck_handle.send(2, body(sent)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(full, Error::InboxFull),
        "after {sent} sends: {full}"
    );
    // The inbox is charged the bodies' bytes (the loop encodes them).
    assert!(
        (CAPACITY / BODY / 2..=CAPACITY / BODY).contains(&sent),
        "{sent} bodies of {BODY} bytes accepted under an inbox of {CAPACITY} bytes"
    );
    let frame_len = BODY + 8;
    assert_eq!(server.stats().send_errors, errors_before + 1);

    // A broadcast bigger than the room left: refused by the stuck loop,
    // delivered by the other one.
    let news = vec![b'n'; 2 * frame_len];
    match hub.broadcast(3, &news) {
        Err(Error::InboxFull) => {}
        other => panic!("broadcast with one inbox full: {other:?}"),
    }
    assert_eq!(other.recv(), (3, news.clone()));

    release.send(()).unwrap();
    for n in 0..sent {
        assert_eq!(stuck.recv(), (2, body(n)), "frame {n}");
    }
    // Next comes the echo, not the refused broadcast.
    assert_echoes(&mut stuck, b"after");
    // The inbox has room again.
    stuck_handle.send(2, b"room again").unwrap();
    assert_eq!(stuck.recv(), (2, b"room again".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

/// Bytes the kernel may buffer for a loopback connection whose receiver
/// never reads: the sender's largest send buffer plus the receiver's
/// (`rcvbuf`, fixed by the receiver).
fn kernel_buffering(rcvbuf: usize) -> usize {
    #[cfg(target_os = "linux")]
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(16 << 20);
    #[cfg(not(target_os = "linux"))]
    let wmem_max = 16 << 20;
    wmem_max + 2 * rcvbuf
}

/// `Hub::broadcast` reaches the peers that keep up and skips one whose
/// write queue is over the high-water mark, counting the miss in
/// `send_errors` (and `slow_peer_events`). The slow peer never reads while
/// the server queues it one reply bigger than everything the kernel can
/// buffer, so its queue stays over the mark. When it finally reads, the
/// reply is followed directly by a later broadcast: the first one was
/// never queued. A broadcast that ignored the mark would show up there.
#[test]
fn a_broadcast_skips_a_peer_over_its_high_water_mark() {
    // The slow peer: a small receive buffer, set before connecting.
    let slow_socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    slow_socket.set_recv_buffer_size(4096).unwrap();
    let big = kernel_buffering(slow_socket.recv_buffer_size().unwrap()) + (4 << 20);
    let (queued_tx, queued) = bounded(1);
    let server = start(
        Server::builder()
            .event_loops(2)
            .write_high_water(64 << 10)
            .max_body_length(big)
            .route(1, echo)
            .route(9, move |ctx: &mut Context<'_>| -> netloom::Result<()> {
                ctx.reply(9, vec![0x5a; big])?;
                let _ = queued_tx.send(());
                Ok(())
            }),
    );
    slow_socket
        .connect_timeout(&server.local_addr().into(), TIMEOUT)
        .expect("connect");
    let slow_stream = TcpStream::from(slow_socket);
    slow_stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut slow = Client {
        stream: slow_stream,
    };
    let mut fast: Vec<Client> = (0..3)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    for c in &mut fast {
        assert_echoes(c, b"connected");
    }

    slow.send(9, b"");
    queued
        .recv_timeout(TIMEOUT)
        .expect("the big reply was queued");
    let before = server.stats();
    server.hub().broadcast(70, b"news").unwrap();
    for c in &mut fast {
        assert_eq!(c.recv(), (70, b"news".to_vec()));
    }
    wait_until("the slow peer's miss to be counted", || {
        server.stats().send_errors > before.send_errors
    });
    let after = server.stats();
    assert_eq!(after.send_errors, before.send_errors + 1, "{after}");
    assert_eq!(
        after.slow_peer_events,
        before.slow_peer_events + 1,
        "{after}"
    );

    // The slow peer reads everything queued for it, then gets the marker.
    let (id, body) = slow.recv();
    assert_eq!((id, body.len()), (9, big));
    assert!(
        body.iter().all(|&b| b == 0x5a),
        "the big reply is corrupted"
    );
    server.hub().broadcast(71, b"marker").unwrap();
    assert_eq!(
        slow.recv(),
        (71, b"marker".to_vec()),
        "the slow peer got the broadcast it should have missed"
    );
    for c in &mut fast {
        assert_eq!(c.recv(), (71, b"marker".to_vec()));
    }
    server.shutdown(TIMEOUT).unwrap();
}

/// Once shutdown has begun, the server no longer accepts: a new connect is
/// refused (on Linux strictly: the listener is closed once the acceptor
/// stops; elsewhere a platform might complete it from a backlog, and it
/// must then be closed unserved), and `on_open` never runs for it.
/// Shutdown is held in progress by a loop stuck in a handler; the other
/// loop's `Shutdown` close proves the acceptor has already stopped (loops
/// are told only after it is joined). A server still accepting would
/// complete the connect, and hand the socket to a loop.
#[test]
fn connects_are_refused_once_shutdown_has_begun() {
    let (builder, entered, release) =
        blocking_route(Server::builder().event_loops(2).route(1, echo));
    let (builder, opens) = report_opens(builder);
    let (server, mut closes) = start_tracked(builder);
    let addr = server.local_addr();
    let mut stuck = Client::connect(addr);
    let stuck_loop = handle_of(&opens, &stuck).id().loop_index();
    let mut bystander = Client::connect(addr);
    assert_ne!(handle_of(&opens, &bystander).id().loop_index(), stuck_loop);
    assert_echoes(&mut bystander, b"before");

    stuck.send(50, b"");
    entered
        .recv_timeout(TIMEOUT)
        .expect("the loop entered route 50");
    let shutdown = thread::spawn(move || server.shutdown(TIMEOUT));
    let reason = closes.reason_for(local(&bystander));
    assert!(matches!(reason, CloseReason::Shutdown), "{reason:?}");

    match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(stream) if cfg!(target_os = "linux") => panic!(
            "a connect during shutdown was accepted (from {:?})",
            stream.local_addr()
        ),
        Ok(stream) => {
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut late = Client { stream };
            let _ = io::Write::write_all(&mut late.stream, &frame(1, b"hi"));
            let got = read_to_eof(&mut late);
            assert!(
                got.is_empty(),
                "a connect during shutdown was served: {got:?}"
            );
        }
    }
    assert!(!shutdown.is_finished(), "shutdown ended before the check");
    release.send(()).unwrap();
    shutdown.join().unwrap().expect("graceful shutdown");
    let reason = closes.reason_for(local(&stuck));
    assert!(matches!(reason, CloseReason::Shutdown), "{reason:?}");
    assert!(
        opens.is_empty(),
        "on_open ran for a connect during shutdown"
    );
}

/// `netloom::client::Client`: `connect` and `connect_timeout` reach a
/// server; against a port nobody listens on they fail at once with the
/// OS's refusal; and (Linux) `connect_timeout` gives up after its timeout
/// when the server never answers (its accept queue is full, so the kernel
/// drops our SYN). A `connect_timeout` that ignored its timeout would
/// block until the SYN retries end, far past the bound checked here.
#[test]
fn the_blocking_client_connects_and_times_out() {
    use netloom::client::Client as NetloomClient;
    let server = start(Server::builder().event_loops(1).route(1, echo));
    let addr = server.local_addr();
    let check = |mut c: NetloomClient, body: &[u8]| {
        assert_eq!(c.peer_addr(), addr);
        c.set_timeout(Some(TIMEOUT)).unwrap();
        let reply = c.round_trip(1, body).expect("echo");
        assert_eq!((reply.id, &reply.body[..]), (1, body));
        c.close();
    };
    check(NetloomClient::connect(addr).expect("connect"), b"connect");
    check(
        NetloomClient::connect(format!("127.0.0.1:{}", addr.port())).expect("connect by name"),
        b"by name",
    );
    check(
        NetloomClient::connect_timeout(addr, TIMEOUT).expect("connect_timeout"),
        b"connect_timeout",
    );

    // A port bound (so nobody else takes it) but not listening: refused.
    let closed_port = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    closed_port
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let refused_addr = closed_port.local_addr().unwrap().as_socket().unwrap();
    let started = Instant::now();
    match NetloomClient::connect_timeout(refused_addr, TIMEOUT) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        other => panic!("connect_timeout to a closed port: {other:?}"),
    }
    match NetloomClient::connect(refused_addr) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        other => panic!("connect to a closed port: {other:?}"),
    }
    assert!(
        started.elapsed() < TIMEOUT / 2,
        "refusals took {:?}",
        started.elapsed()
    );

    #[cfg(target_os = "linux")]
    {
        // A listener with a backlog of 0 that never accepts: once one
        // connection waits in its accept queue, the kernel drops new SYNs.
        let full = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        full.listen(0).unwrap();
        let full_addr = full.local_addr().unwrap().as_socket().unwrap();
        let _waiting = TcpStream::connect_timeout(&full_addr, TIMEOUT).expect("first connect");
        wait_until("the first connection to wait in the accept queue", || {
            super::sockets::accept_queue(&full).0 >= 1
        });
        // In a thread, so that a call that ignored its timeout (and waited
        // for the kernel's SYN retries, about two minutes) fails the test
        // within `TIMEOUT`.
        let timeout = Duration::from_millis(300);
        let (tx, rx) = bounded(1);
        thread::spawn(move || {
            let started = Instant::now();
            let result = NetloomClient::connect_timeout(full_addr, timeout);
            let _ = tx.send((result.map(drop), started.elapsed()));
        });
        let (result, took) = rx
            .recv_timeout(TIMEOUT)
            .expect("connect_timeout returned within TIMEOUT");
        match result {
            Err(Error::Timeout) => {}
            other => panic!("connect_timeout to a full accept queue: {other:?}"),
        }
        assert!(
            took >= timeout && took < TIMEOUT / 2,
            "connect_timeout({timeout:?}) gave up after {took:?}"
        );
    }
    server.shutdown(TIMEOUT).unwrap();
}

/// Issue 14: with the largest body limit, a header declaring 4 GiB costs
/// nothing until its bytes arrive. Three peers declare 4 GiB − 1 and send
/// a little of it; the loop's partial-frame budget is 4 MiB, so reserving
/// for what they declared would close them with `MemoryLimit`. None is
/// closed, and the loop keeps echoing.
#[test]
fn a_declared_four_gib_reserves_nothing_until_it_arrives() {
    let (builder, _closes) = track_closes(
        Server::builder()
            .max_body_length(u32::MAX as usize)
            .max_partial_bytes(4 << 20)
            .route(1, echo),
    );
    let server = start(builder);
    let mut peers: Vec<Client> = (0..3)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let mut sent = 0;
    for p in &mut peers {
        let mut wire = vec![0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0];
        wire.extend_from_slice(&[7u8; 1000]);
        p.send_raw(&wire);
        sent += wire.len() as u64;
    }
    wait_until("the declared frames' first bytes to be read", || {
        server.stats().bytes_in == sent
    });
    let mut good = Client::connect(server.local_addr());
    assert_echoes(&mut good, b"still here");
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::MemoryLimit), 0, "{stats}");
    assert_eq!(stats.connections, 4, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}
