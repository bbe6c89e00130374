//! One test (at least) per documented feature that had none: each would fail
//! if the feature were missing or broken (the doc comment of every test
//! says how). Real loopback sockets, frames written from literal bytes
//! (`crate::common::frame`), every wait bounded.
//!
//! This file: panic isolation (middleware, `on_open`, `on_close`,
//! `Packer::encode`), handlers that return `Err`, and
//! `Balance::LeastConnections`. `features/flow.rs`: the inbox limit,
//! broadcast and the high-water mark, connects during shutdown, the
//! blocking client. `features/sockets.rs`: socket options and IPv6.
//! `features/hub.rs`: listing connections from any loop, sends of `Bytes`,
//! `broadcast_except`, the shutdown handle, user data that is not `Send`.

mod flow;
mod hub;
mod sockets;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use crossbeam_channel::unbounded;
use netloom::{
    Balance, CloseReason, ConnId, Context, HandlerResult, LengthPacker, Next, PackError, Packer,
    Peek, Server,
};

use crate::common::{echo, frame, start, start_tracked, Client, TIMEOUT};

fn local(c: &Client) -> SocketAddr {
    c.stream.local_addr().expect("local addr")
}

/// One round trip on echo id 1.
fn assert_echoes(c: &mut Client, body: &[u8]) {
    c.send(1, body);
    assert_eq!(c.recv(), (1, body.to_vec()));
}

/// Everything the server sends until it closes the connection (EOF or
/// reset). Panics if it is still open after `TIMEOUT`.
fn read_to_eof(c: &mut Client) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "the server did not close");
        match c.stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server did not close within {TIMEOUT:?} (got {got:?})")
            }
            Err(_) => return got, // a reset counts as closed
        }
    }
}

// ---------------------------------------------------------------------------
// Panic isolation.
// ---------------------------------------------------------------------------

fn group_guard(_ctx: &mut Context<'_>, _next: Next<'_>) -> HandlerResult {
    panic!("group middleware bug (expected by this test)")
}

/// A panic in global middleware (before or after `next.run`) or in group
/// middleware closes only that connection, with `HandlerPanic`, and drops
/// the messages behind it. Without the isolation the loop thread dies and
/// the bystander on the same (only) loop gets no more echoes; without the
/// close the victim's next message would be echoed.
#[test]
fn a_panicking_middleware_closes_only_its_connection() {
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .middleware(|ctx: &mut Context<'_>, next: Next<'_>| -> HandlerResult {
                if ctx.body() == b"panic before" {
                    panic!("middleware bug before the handler (expected by this test)");
                }
                let result = next.run(ctx);
                if ctx.body() == b"panic after" {
                    panic!("middleware bug after the handler (expected by this test)");
                }
                result
            })
            .route(1, echo)
            .group([group_guard], |g| g.route(20, echo)),
    );
    let mut bystander = Client::connect(server.local_addr());
    assert_echoes(&mut bystander, b"before");

    for (id, body) in [
        (1, &b"panic before"[..]),
        (1, b"panic after"),
        (20, b"guarded"),
    ] {
        let mut victim = Client::connect(server.local_addr());
        let mut wire = frame(id, body);
        wire.extend_from_slice(&frame(1, b"not handled after the panic"));
        victim.send_raw(&wire);
        let got = read_to_eof(&mut victim);
        // After the handler, its reply may already be queued (and is then
        // flushed before the close); nothing else may arrive.
        let allowed = if body == b"panic after" {
            frame(1, body)
        } else {
            Vec::new()
        };
        assert!(
            got.is_empty() || got == allowed,
            "{body:?}: the victim got {got:?}"
        );
        let reason = closes.reason_for(local(&victim));
        assert!(
            matches!(reason, CloseReason::HandlerPanic),
            "{body:?}: {reason:?}"
        );
        assert_echoes(&mut bystander, b"bystander still served");
    }
    let mut later = Client::connect(server.local_addr());
    assert_echoes(&mut later, b"the loop still accepts");
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::HandlerPanic), 3, "{stats}");
    assert_eq!(stats.closed_total(), 3, "{stats}");
    assert_eq!(stats.handler_errors, 0, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}

/// A panic in `on_open` closes that connection before any of its messages
/// is handled, with `HandlerPanic`, and `on_close` runs for it exactly
/// once; the loop goes on. Without the isolation the loop thread dies (the
/// bystander's echo times out); without the close the victim is echoed.
#[test]
fn a_panicking_on_open_closes_only_its_connection() {
    let panic_next = Arc::new(AtomicBool::new(false));
    let arm = panic_next.clone();
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .on_open(move |_session| {
                if arm.swap(false, Ordering::SeqCst) {
                    panic!("on_open bug (expected by this test)");
                }
            })
            .route(1, echo),
    );
    let mut bystander = Client::connect(server.local_addr());
    assert_echoes(&mut bystander, b"before");

    // Only the victim connects while the flag is set; on_open takes it.
    panic_next.store(true, Ordering::SeqCst);
    let mut victim = Client::connect(server.local_addr());
    let _ = victim.stream.write_all(&frame(1, b"never handled"));
    let got = read_to_eof(&mut victim);
    assert!(got.is_empty(), "the victim got {got:?}");
    let (addr, reason) = closes.next();
    assert_eq!(addr, local(&victim));
    assert!(matches!(reason, CloseReason::HandlerPanic), "{reason:?}");

    assert_echoes(&mut bystander, b"after");
    let mut later = Client::connect(server.local_addr());
    assert_echoes(&mut later, b"new connection");
    // One loop: on_close calls come in order, so a second one for the
    // victim would come before the bystander's.
    let bystander_addr = local(&bystander);
    drop(bystander);
    let (addr, reason) = closes.next();
    assert_eq!(addr, bystander_addr, "on_close ran again for the victim");
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    assert!(closes.rx.is_empty(), "more on_close calls than connections");
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::HandlerPanic), 1, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}

/// A panic in `on_close` is caught: the loop goes on serving, accepting and
/// closing (the hook runs again for later closes), and shutdown is clean.
/// Without the isolation the loop thread dies at the first close: the
/// bystander's echo times out and shutdown reports a panicked thread.
#[test]
fn a_panicking_on_close_breaks_nothing_else() {
    let (tx, closes) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(1)
            .on_close(move |session, reason| {
                let _ = tx.send((session.peer_addr(), reason.clone()));
                panic!("on_close bug (expected by this test)");
            })
            .route(1, echo),
    );
    let next_close = || closes.recv_timeout(TIMEOUT).expect("on_close ran");
    let first = Client::connect(server.local_addr());
    let mut second = Client::connect(server.local_addr());
    let mut third = Client::connect(server.local_addr());
    assert_echoes(&mut second, b"before");

    let first_addr = local(&first);
    drop(first);
    let (addr, reason) = next_close();
    assert_eq!(addr, first_addr);
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    assert_echoes(&mut second, b"after the panic");
    let mut fourth = Client::connect(server.local_addr());
    assert_echoes(&mut fourth, b"new connection");

    // The hook still runs (and panics) for the next close.
    let second_addr = local(&second);
    drop(second);
    let (addr, reason) = next_close();
    assert_eq!(addr, second_addr);
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    assert_echoes(&mut third, b"still served");
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::PeerClosed), 2, "{stats}");
    assert_eq!(stats.connections, 2, "{stats}");

    server.shutdown(TIMEOUT).expect("clean shutdown");
    let mut at_shutdown: Vec<SocketAddr> = (0..2)
        .map(|_| {
            let (addr, reason) = next_close();
            assert!(matches!(reason, CloseReason::Shutdown), "{reason:?}");
            addr
        })
        .collect();
    at_shutdown.sort();
    let mut expected = vec![local(&third), local(&fourth)];
    expected.sort();
    assert_eq!(at_shutdown, expected);
}

/// The default wire format, except that `encode` panics for id 66 before
/// writing anything, and for id 67 after writing a frame header (a packer
/// bug halfway through a frame).
struct FragileEncode;

impl Packer for FragileEncode {
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        LengthPacker::default().peek(buf)
    }

    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        match id {
            66 => panic!("encode bug (expected by this test)"),
            67 => {
                out.extend_from_slice(&frame(67, body)[..8]);
                panic!("encode bug halfway through a frame (expected by this test)")
            }
            _ => LengthPacker::default().encode(id, seq, body, out),
        }
    }
}

/// A server whose route 6 replies with id 66 and route 7 with id 67 (see
/// [`FragileEncode`]): a victim that calls one of them gets the reply
/// queued before the panic, then is closed with `HandlerPanic`, while a
/// bystander on the same loop is still served.
fn encode_panic_closes_only_its_connection(route: u32) {
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .packer(FragileEncode)
            .route(1, echo)
            .route(6, |ctx: &mut Context<'_>| ctx.reply(66, ctx.body()))
            .route(7, |ctx: &mut Context<'_>| ctx.reply(67, ctx.body())),
    );
    let mut bystander = Client::connect(server.local_addr());
    assert_echoes(&mut bystander, b"before");

    let mut victim = Client::connect(server.local_addr());
    let mut wire = frame(1, b"first");
    wire.extend_from_slice(&frame(route, b"boom"));
    wire.extend_from_slice(&frame(1, b"not handled after the panic"));
    victim.send_raw(&wire);
    let got = read_to_eof(&mut victim);
    assert_eq!(got, frame(1, b"first"), "the victim got {got:?}");
    let reason = closes.reason_for(local(&victim));
    assert!(matches!(reason, CloseReason::HandlerPanic), "{reason:?}");
    assert_echoes(&mut bystander, b"after");
    let mut later = Client::connect(server.local_addr());
    assert_echoes(&mut later, b"the loop still accepts");
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::HandlerPanic), 1, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}

/// A panic in `Packer::encode` inside a handler counts as the handler's
/// panic: only that connection closes, with `HandlerPanic`. Without the
/// isolation the loop dies (the bystander's echo times out).
#[test]
fn a_panicking_encode_closes_only_its_connection() {
    encode_panic_closes_only_its_connection(6);
}

/// The same, for an `encode` that panics after appending part of a frame:
/// the peer must get whole frames only (those queued before), and the loop
/// must survive.
#[test]
fn a_panicking_encode_after_a_partial_frame_closes_only_its_connection() {
    encode_panic_closes_only_its_connection(7);
}

/// A message sent from another thread is encoded by the connection's loop:
/// a packer panicking there closes only that connection (`HandlerPanic`),
/// and the loop goes on serving the others. Without the isolation the loop
/// thread dies and the bystander's echo times out.
#[test]
fn a_packer_panicking_on_a_cross_thread_send_closes_only_its_connection() {
    let (opened_tx, opened) = unbounded();
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .packer(FragileEncode)
            .on_open(move |s| {
                let _ = opened_tx.send((s.peer_addr(), s.handle()));
            })
            .route(1, echo),
    );
    let mut bystander = Client::connect(server.local_addr());
    let _ = opened.recv_timeout(TIMEOUT).expect("on_open ran");
    let mut victim = Client::connect(server.local_addr());
    let (peer, handle) = opened.recv_timeout(TIMEOUT).expect("on_open ran");
    assert_eq!(peer, local(&victim));
    // From this (test) thread, not the loop's.
    handle.send(66, b"boom").expect("handed to the loop");
    assert!(read_to_eof(&mut victim).is_empty());
    let reason = closes.reason_for(local(&victim));
    assert!(matches!(reason, CloseReason::HandlerPanic), "{reason:?}");
    assert_echoes(&mut bystander, b"the loop goes on");
    server.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------------
// Handlers that fail.
// ---------------------------------------------------------------------------

/// A handler (or middleware) that returns `Err` is counted in
/// `Stats::handler_errors`, once per message, and its connection stays open
/// and keeps being served, in order. Fails if an error closed the
/// connection (the next echo would not come), or were not counted, or were
/// counted once per layer it passed through.
#[test]
fn a_handler_error_is_counted_and_the_connection_stays_open() {
    let (server, closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .middleware(|ctx: &mut Context<'_>, next: Next<'_>| -> HandlerResult {
                if ctx.body() == b"deny" {
                    return Err("denied by middleware (expected by this test)".into());
                }
                next.run(ctx)
            })
            .route(1, echo)
            .route(8, |ctx: &mut Context<'_>| -> HandlerResult {
                ctx.reply(8, b"partial")?;
                Err("handler failed (expected by this test)".into())
            }),
    );
    let mut c = Client::connect(server.local_addr());

    // The reply queued before the error goes out; the next message is
    // handled as usual.
    let mut wire = frame(8, b"");
    wire.extend_from_slice(&frame(1, b"after the error"));
    c.send_raw(&wire);
    assert_eq!(c.recv(), (8, b"partial".to_vec()));
    assert_eq!(c.recv(), (1, b"after the error".to_vec()));
    assert_eq!(server.stats().handler_errors, 1, "{}", server.stats());

    // A middleware error: the handler does not run, nothing is sent.
    let mut wire = frame(1, b"deny");
    wire.extend_from_slice(&frame(1, b"after the denial"));
    c.send_raw(&wire);
    assert_eq!(c.recv(), (1, b"after the denial".to_vec()));
    assert_eq!(server.stats().handler_errors, 2, "{}", server.stats());

    // Many in a row: still open.
    let mut wire = Vec::new();
    for _ in 0..10 {
        wire.extend_from_slice(&frame(8, b""));
    }
    c.send_raw(&wire);
    for _ in 0..10 {
        assert_eq!(c.recv(), (8, b"partial".to_vec()));
    }
    assert_echoes(&mut c, b"still open");
    let stats = server.stats();
    assert_eq!(stats.handler_errors, 12, "{stats}");
    assert_eq!(stats.closed_total(), 0, "{stats}");
    assert_eq!(stats.connections, 1, "{stats}");
    assert!(closes.rx.is_empty(), "a connection was closed");
    server.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------------
// Balancing.
// ---------------------------------------------------------------------------

/// `Balance::LeastConnections` sends each new connection to a loop with
/// the fewest open: after the connections of loop 1 close, the next two
/// both go to loop 1. Round-robin would put one of them on loop 0.
#[test]
fn least_connections_fills_the_emptier_loop() {
    let (open_tx, opens) = unbounded();
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .balance(Balance::LeastConnections)
            .on_open(move |session| {
                let _ = open_tx.send((session.peer_addr(), session.id()));
            })
            .route(1, echo),
    );
    // Connect one client and wait until its loop has it.
    let connect = || -> (Client, ConnId) {
        let c = Client::connect(server.local_addr());
        let (peer, id) = opens.recv_timeout(TIMEOUT).expect("on_open ran");
        assert_eq!(peer, local(&c));
        (c, id)
    };
    let count = |clients: &[(Client, ConnId)], l: usize| {
        clients
            .iter()
            .filter(|(_, id)| id.loop_index() == l)
            .count()
    };

    let mut clients: Vec<(Client, ConnId)> = (0..4).map(|_| connect()).collect();
    assert_eq!((count(&clients, 0), count(&clients, 1)), (2, 2));

    for emptied in [1, 0] {
        // Close every connection of one loop and wait for the closes.
        let (leaving, staying): (Vec<_>, Vec<_>) = clients
            .into_iter()
            .partition(|(_, id)| id.loop_index() == emptied);
        clients = staying;
        let addrs: Vec<SocketAddr> = leaving.iter().map(|(c, _)| local(c)).collect();
        drop(leaving);
        for addr in addrs {
            let reason = closes.reason_for(addr);
            assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
        }
        // 2 against 0: both new connections go to the emptied loop.
        for n in 0..2 {
            let (c, id) = connect();
            assert_eq!(
                id.loop_index(),
                emptied,
                "new connection {n} went to loop {} while loop {emptied} had fewer",
                id.loop_index()
            );
            clients.push((c, id));
        }
        assert_eq!((count(&clients, 0), count(&clients, 1)), (2, 2));
    }
    for (c, _) in &mut clients {
        assert_echoes(c, b"served");
    }
    server.shutdown(TIMEOUT).unwrap();
}
