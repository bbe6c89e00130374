//! Edges of UDP found in review: each test names a behaviour that must
//! hold (each failed on the first cut of issue 23, 2e5add3).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netloom::{CloseReason, Exec, Server, UdpConfig};

use super::{peer, start_udp};
use crate::common::{echo, frame, init_logs, track_closes, wait_until, TIMEOUT};

#[test]
fn a_udp_idle_timeout_of_duration_max_means_never() {
    // Config's docs: every duration is capped at FOREVER, "so
    // `Duration::MAX` is a valid way to say never".
    init_logs();
    let mut udp = UdpConfig::default();
    udp.idle_timeout = Duration::MAX;
    let started = Server::builder()
        .udp(udp)
        .fallback(echo)
        .bind_udp("127.0.0.1:0")
        .unwrap()
        .start();
    let server = started.expect("a server whose UDP sessions never expire");
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_udp_port_in_use_by_another_server_is_refused_as_a_tcp_port_is() {
    let (a, addr) = start_udp(Server::builder().event_loops(2).fallback(echo));
    let b = Server::builder()
        .event_loops(2)
        .fallback(echo)
        .bind_udp(addr)
        .unwrap()
        .start();
    let joined = b.is_ok();
    if let Ok(b) = b {
        b.shutdown(TIMEOUT).unwrap();
    }
    a.shutdown(TIMEOUT).unwrap();
    assert!(
        !joined,
        "a second server bound {addr} (UDP) while the first held it: peers are split between them"
    );
}

#[test]
fn the_server_handles_debug_names_each_field_once() {
    let (server, _) = start_udp(Server::builder().fallback(echo));
    let shown = format!("{server:?}");
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(shown.matches("udp_addrs").count(), 1, "{shown}");
}

#[test]
fn a_burst_of_replies_is_not_refused_while_the_socket_takes_every_datagram() {
    // UdpConfig::send_queue: "Most bytes queued for one session while its
    // socket's send buffer is full (EWOULDBLOCK); over it, sends fail".
    // Here the socket never says EWOULDBLOCK (loopback), yet a handler's
    // burst of 400 replies of 1000 bytes (to a validated peer) is refused
    // from the 262nd on: the mark counts what one turn queued, before
    // any send was tried.
    let (tx, rx) = crossbeam_channel::unbounded();
    let (server, addr) = start_udp(Server::builder().route(1, move |ctx| {
        ctx.validate_udp_peer();
        let refused = (0..400)
            .filter(|_| ctx.reply(2, [7u8; 1000]).is_err())
            .count();
        let _ = tx.send(refused);
        Ok::<_, netloom::Error>(())
    }));
    let s = peer();
    s.send_to(&frame(1, b"snapshot please"), addr).unwrap();
    let refused = rx.recv_timeout(TIMEOUT).unwrap();
    let stats = server.stats();
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(refused, 0, "sends refused with no EWOULDBLOCK: {stats}");
}

#[test]
fn a_udp_peer_whose_pool_handlers_fall_behind_keeps_its_session() {
    // An honest peer sends 40 datagrams of 1000 bytes while its first
    // handler (on a pool) is busy; a TCP connection's reads would pause
    // over exec_backlog. The UDP session is closed instead (`Backlog`),
    // and the peer's next datagram opens a new session (on_open again).
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let (started_tx, started_rx) = crossbeam_channel::unbounded::<()>();
    let opens = Arc::new(AtomicUsize::new(0));
    let o = opens.clone();
    let (builder, closes) = track_closes(
        Server::builder()
            .exec(Exec::Pool(2))
            .exec_backlog(8 << 10)
            .on_open(move |_| {
                o.fetch_add(1, Ordering::SeqCst);
            })
            .route(1, move |ctx| {
                if ctx.body() == b"wait" {
                    let _ = started_tx.send(());
                    let _ = gate_rx.recv_timeout(TIMEOUT);
                }
                Ok::<_, netloom::Error>(())
            })
            .route(2, echo),
    );
    let (server, addr) = start_udp(builder);
    let s = peer();
    s.send_to(&frame(1, b"wait"), addr).unwrap();
    started_rx.recv_timeout(TIMEOUT).unwrap();
    for _ in 0..40 {
        s.send_to(&frame(1, &[1; 992]), addr).unwrap();
    }
    wait_until("the loop read them", || server.stats().datagrams_in >= 41);
    gate_tx.send(()).unwrap();
    // Datagrams that come while the backlog is over the bound are dropped
    // (`DatagramDrop::Backlog`): as a UDP client does, ask again until
    // answered (each wait bounded, the whole by TIMEOUT).
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        assert!(std::time::Instant::now() < deadline, "never answered again");
        s.send_to(&frame(2, b"still me?"), addr).unwrap();
        if !super::nothing_within(&s, Duration::from_millis(100)) {
            break;
        }
    }
    assert!(
        server
            .stats()
            .datagrams_dropped(netloom::DatagramDrop::Backlog)
            > 0
    );
    let closed: Vec<_> = closes.rx.try_iter().collect();
    let stats = server.stats();
    server.shutdown(TIMEOUT).unwrap();
    assert!(
        closed
            .iter()
            .all(|(_, r)| !matches!(r, CloseReason::Backlog)),
        "an honest UDP peer's session closed for its handlers' backlog: {closed:?} {stats}"
    );
    assert_eq!(
        opens.load(Ordering::SeqCst),
        1,
        "one peer, one session: {stats}"
    );
}

#[test]
fn a_wildcard_udp_address_is_refused_since_replies_could_leave_from_another() {
    // On a wildcard socket a reply leaves from the address the kernel's
    // routes pick, not the one the peer sent to (seen in review: sent to
    // 127.0.0.2, answered from 127.0.0.1, which a connected client drops).
    for wild in ["0.0.0.0:0", "[::]:0"] {
        let refused = Server::builder().fallback(echo).bind_udp(wild);
        assert!(matches!(refused, Err(netloom::Error::Config(_))), "{wild}");
    }
}

#[test]
fn local_addr_of_a_udp_only_server_does_not_panic() {
    // Its docs: it panics "when the server listens on nothing (it only
    // dials)"; a UDP-only server listens.
    let (server, addr) = start_udp(Server::builder().fallback(echo));
    let hub = server.hub();
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.local_addr()));
    drop(hub);
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(got.ok(), Some(addr));
}
