//! The core over TLS: backpressure, heartbeat, handles, broadcast, hooks,
//! middleware, a custom packer, shutdown.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::client::Client;
use netloom::{CloseReason, ConnHandle, Context, Error, HandlerResult, Next, Server};
use rustls::version::{TLS12, TLS13};

use super::tls_builder;
use crate::common::{echo, start, start_tracked, TIMEOUT};
use crate::tls_support::{
    client_config, client_config_versions, server_config, test_cert, TlsPeer, ECHO,
};

#[test]
fn backpressure_with_a_never_reading_tls_peer() {
    const CHUNK: usize = 16 << 10;
    const HIGH_WATER: usize = 64 << 10;
    const REGISTER: u32 = 7;
    const PUMP: u32 = 6;
    const FLOOD: u32 = 8;
    let cert = test_cert();
    let slow_slot: Arc<Mutex<Option<ConnHandle>>> = Arc::default();
    let (registered_tx, registered) = unbounded();
    let slot = slow_slot.clone();
    let seq = Arc::new(AtomicU32::new(0));
    // One loop: the pump handler (on the fast client's connection) sends to
    // the slow connection on the same thread, so each send reports
    // BufferFull at once.
    let server = start(
        Server::builder()
            .event_loops(1)
            .write_high_water(HIGH_WATER)
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route(ECHO, echo)
            .route(REGISTER, move |ctx| {
                *slot.lock().unwrap() = Some(ctx.handle());
                registered_tx.send(()).unwrap();
                ctx.reply(REGISTER, b"")
            })
            // Flood the slow peer until its queue is over the high-water
            // mark; answer how many messages went in.
            .route(PUMP, move |ctx| {
                let slow = slow_slot.lock().unwrap().clone().expect("registered");
                let mut sent = 0u32;
                loop {
                    let n = seq.load(Ordering::Relaxed);
                    let mut body = vec![(n % 251) as u8; CHUNK];
                    body[..4].copy_from_slice(&n.to_le_bytes());
                    match slow.send(FLOOD, &body) {
                        Ok(()) => {
                            seq.store(n + 1, Ordering::Relaxed);
                            sent += 1;
                        }
                        Err(Error::BufferFull) => break,
                        Err(e) => return Err(e),
                    }
                }
                ctx.reply(PUMP, sent.to_le_bytes())
            }),
    );
    let addr = server.local_addr();
    let mut slow = TlsPeer::connect(addr, client_config(&cert));
    slow.send(REGISTER, b"");
    registered
        .recv_timeout(TIMEOUT)
        .expect("slow peer registered");
    let mut fast = Client::connect_tls(addr, "localhost", client_config(&cert)).unwrap();
    fast.set_timeout(Some(TIMEOUT)).unwrap();

    // Pump until a pump finds the slow queue still over the mark after a
    // whole loop turn: the kernel buffers are full and rustls holds records.
    let mut total = 0u64;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let m = fast.round_trip(PUMP, b"").unwrap();
        let sent = u32::from_le_bytes(m.body[..4].try_into().unwrap());
        if sent == 0 {
            break;
        }
        total += u64::from(sent);
        assert!(
            Instant::now() < deadline && total < 100_000,
            "the slow peer never filled up ({total} messages)"
        );
    }
    assert!(total as usize * CHUNK > HIGH_WATER);
    assert!(server.stats().slow_peer_events > 0);
    // The loop still serves everyone else.
    for i in 0..10u8 {
        let m = fast.round_trip(ECHO, [i; 100]).unwrap();
        assert_eq!(&m.body[..], &[i; 100]);
    }
    // The slow peer asks for an echo; the server is not reading it now.
    slow.send(ECHO, b"after the flood");

    // The slow peer reads: everything that was accepted, in order.
    assert_eq!(slow.recv(), (REGISTER, Vec::new()));
    for n in 0..total as u32 {
        let (id, body) = slow.recv();
        assert_eq!(id, FLOOD);
        assert_eq!(body.len(), CHUNK);
        assert_eq!(u32::from_le_bytes(body[..4].try_into().unwrap()), n);
        assert!(body[4..].iter().all(|&b| b == (n % 251) as u8));
    }
    assert_eq!(slow.recv(), (ECHO, b"after the flood".to_vec()));
    slow.assert_echoes(b"served again");
    let m = fast.round_trip(PUMP, b"").unwrap();
    assert!(u32::from_le_bytes(m.body[..4].try_into().unwrap()) > 0);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn heartbeat_pings_then_kicks_an_idle_tls_peer_with_close_notify() {
    const PING: u32 = 99;
    let cert = test_cert();
    let (server, mut closes) = start_tracked(
        tls_builder(&cert)
            .heartbeat(Duration::from_millis(20), Duration::from_millis(400))
            .ping_before_kick(Duration::from_millis(150), PING),
    );
    let mut peer = TlsPeer::connect(server.local_addr(), client_config(&cert));
    let addr = peer.local_addr();
    peer.assert_echoes(b"then silence");
    assert_eq!(peer.recv(), (PING, Vec::new()));
    // No answer: kicked, and the stream ends with close_notify.
    let rest = peer.read_to_end().expect("a clean TLS end (close_notify)");
    assert!(rest.is_empty(), "{} unexpected bytes", rest.len());
    assert!(matches!(closes.reason_for(addr), CloseReason::IdleTimeout));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn handles_and_broadcast_reach_tls_peers_from_other_threads() {
    let cert = test_cert();
    let (opened_tx, opened) = unbounded();
    let server = start(tls_builder(&cert).on_open(move |conn| {
        opened_tx.send((conn.peer_addr(), conn.handle())).unwrap();
    }));
    let addr = server.local_addr();
    let mut peers: Vec<TlsPeer> = (0..4)
        .map(|_| TlsPeer::connect(addr, client_config(&cert)))
        .collect();
    let mut handles = Vec::new();
    for _ in 0..peers.len() {
        handles.push(opened.recv_timeout(TIMEOUT).expect("on_open"));
    }
    for (i, peer) in peers.iter_mut().enumerate() {
        let (_, handle) = handles
            .iter()
            .find(|(a, _)| *a == peer.local_addr())
            .expect("a handle per peer");
        handle.send(5, format!("direct {i}")).unwrap();
        assert_eq!(peer.recv(), (5, format!("direct {i}").into_bytes()));
    }
    server.hub().broadcast(6, b"to everyone").unwrap();
    for peer in &mut peers {
        assert_eq!(peer.recv(), (6, b"to everyone".to_vec()));
        // Exactly once: the next frame is the echo.
        peer.assert_echoes(b"after broadcast");
    }
    // Sent before the handshake even starts: queued, then written once it
    // completes (with or without TLS 1.3 session tickets to flush).
    for tickets in [2, 0] {
        let mut config = server_config(&cert, rustls::ALL_VERSIONS);
        config.send_tls13_tickets = tickets;
        let (opened_tx, opened) = unbounded();
        let early = start(
            Server::builder()
                .event_loops(1)
                .tls(Arc::new(config))
                .route(ECHO, echo)
                .on_open(move |conn| opened_tx.send(conn.handle()).unwrap()),
        );
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            let tcp = TcpStream::connect_timeout(&early.local_addr(), TIMEOUT).unwrap();
            let handle = opened.recv_timeout(TIMEOUT).expect("on_open");
            handle.send(5, b"early").unwrap();
            let mut peer = TlsPeer::over(tcp, client_config_versions(&cert, versions));
            assert_eq!(peer.recv(), (5, b"early".to_vec()), "tickets {tickets}");
            peer.assert_echoes(b"then as usual");
        }
        early.shutdown(Duration::from_secs(5)).unwrap();
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// Tags the request so the handler can prove the middleware ran.
fn tag(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
    ctx.values_mut().insert(String::from("tagged"));
    next.run(ctx)
}

#[test]
fn hooks_middleware_and_a_custom_packer_work_unchanged_over_tls() {
    struct Visits(u32);
    let cert = test_cert();
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .packer(netloom::TlvPacker::default())
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .on_open(|conn| {
                conn.data_mut().insert(Visits(0));
            })
            .middleware(tag)
            .route(3, |ctx| {
                let visits = {
                    let v = ctx.data_mut().get_mut::<Visits>().expect("set in on_open");
                    v.0 += 1;
                    v.0
                };
                let body = format!(
                    "{} {} {}",
                    ctx.values()
                        .get::<String>()
                        .map_or("untagged", String::as_str),
                    visits,
                    String::from_utf8_lossy(ctx.body())
                );
                ctx.reply(3, body)
            }),
    );
    let mut client = Client::connect_tls(server.local_addr(), "localhost", client_config(&cert))
        .unwrap()
        .with_packer(netloom::TlvPacker::default());
    client.set_timeout(Some(TIMEOUT)).unwrap();
    for seq in [7u32, 8, 1000] {
        client.send_seq(3, seq, format!("seq {seq}")).unwrap();
    }
    for (visit, seq) in [7u32, 8, 1000].into_iter().enumerate() {
        let m = client.recv().unwrap();
        assert_eq!(m.seq, seq);
        assert_eq!(
            String::from_utf8_lossy(&m.body),
            format!("tagged {} seq {seq}", visit + 1)
        );
    }
    client.close();
    assert!(matches!(closes.next().1, CloseReason::PeerClosed));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn shutdown_sends_close_notify() {
    let cert = test_cert();
    let (opened_tx, opened) = unbounded();
    let (server, mut closes) = start_tracked(tls_builder(&cert).on_open(move |conn| {
        opened_tx.send((conn.peer_addr(), conn.handle())).unwrap();
    }));
    let addr = server.local_addr();
    let mut ours = Client::connect_tls(addr, "localhost", client_config(&cert)).unwrap();
    ours.set_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(&ours.round_trip(ECHO, b"hi").unwrap().body[..], b"hi");
    let mut raw: Vec<TlsPeer> = [&[&TLS12][..], &[&TLS13][..]]
        .into_iter()
        .map(|versions| {
            let mut peer = TlsPeer::connect(addr, client_config_versions(&cert, versions));
            peer.assert_echoes(b"hi");
            peer
        })
        .collect();
    let handles: Vec<(SocketAddr, ConnHandle)> = (0..3)
        .map(|_| opened.recv_timeout(TIMEOUT).expect("on_open"))
        .collect();
    // Queued just before shutdown (the loop's inbox is FIFO): written in
    // full before close_notify.
    let big = vec![0x3c; 600 << 10];
    for peer in &raw {
        let (_, handle) = handles
            .iter()
            .find(|(a, _)| *a == peer.local_addr())
            .unwrap();
        handle.send(5, b"last words").unwrap();
        handle.send(5, &big).unwrap();
    }

    server.shutdown(Duration::from_secs(5)).unwrap();
    match ours.recv() {
        Err(Error::Closed) => {}
        other => panic!("expected Error::Closed, got {other:?}"),
    }
    for peer in &mut raw {
        assert_eq!(peer.recv(), (5, b"last words".to_vec()));
        assert!(peer.recv() == (5, big.clone()), "600 kB message differs");
        // rustls reports a TCP end without close_notify as UnexpectedEof.
        let rest = peer.read_to_end().expect("a clean TLS end (close_notify)");
        assert!(rest.is_empty());
    }
    for _ in 0..3 {
        assert!(matches!(closes.next().1, CloseReason::Shutdown));
    }
}
