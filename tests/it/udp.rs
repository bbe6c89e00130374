//! UDP (issue 23): datagram sockets on the loops, each peer address a
//! virtual session through the same routes; Python's `socket` as the
//! independent peer (tests/it/udp_peer.py), std's `UdpSocket` where a test
//! needs each datagram in hand.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use netloom::{Builder, DatagramDrop, Server, ServerHandle, UdpConfig};

use crate::common::peers::{require, Peer};
use crate::common::{echo, frame, init_logs, run_bounded, TIMEOUT};

mod client;
mod edges;
mod edges2;
mod lifecycle;
mod limits;
mod rooms;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/udp_peer.py");

/// Start `builder` on a loopback UDP port (and no TCP listener).
pub(crate) fn start_udp(builder: Builder) -> (ServerHandle, SocketAddr) {
    init_logs();
    let server = builder
        .bind_udp("127.0.0.1:0")
        .expect("bind_udp")
        .start()
        .expect("start");
    let addr = server.udp_addrs()[0];
    (server, addr)
}

/// A std UDP socket on loopback with the tests' timeout.
pub(crate) fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// The frames of one datagram received on `s`, as (id, body).
pub(crate) fn recv_frames(s: &UdpSocket) -> Vec<(u32, Vec<u8>)> {
    let mut buf = vec![0; 65_536];
    let n = s.recv(&mut buf).expect("a datagram");
    parse(&buf[..n])
}

/// Whether a datagram comes to `s` within `wait` (for what must not come:
/// the wait is the assertion's bound, not a synchronisation).
pub(crate) fn nothing_within(s: &UdpSocket, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0; 65_536];
    let got = s.recv(&mut buf);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    got.is_err()
}

pub(crate) fn parse(mut d: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    while d.len() >= 8 {
        let n = u32::from_le_bytes(d[..4].try_into().unwrap()) as usize;
        let id = u32::from_le_bytes(d[4..8].try_into().unwrap());
        out.push((id, d[8..8 + n].to_vec()));
        d = &d[8 + n..];
    }
    out
}

fn python(args: &[&str], addr: SocketAddr) -> Option<String> {
    let py = require(Peer::Python3)?;
    let mut cmd = Command::new(py);
    cmd.arg(PEER).arg(args[0]).arg(addr.ip().to_string());
    cmd.arg(addr.port().to_string()).args(&args[1..]);
    let out = run_bounded(cmd, TIMEOUT * 4);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "udp_peer.py {args:?}: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(said)
}

#[test]
fn pythons_frames_come_back_one_datagram_each_and_bad_datagrams_are_dropped() {
    let mut udp = UdpConfig::default();
    udp.max_datagram = 1_200;
    let (server, addr) = start_udp(Server::builder().event_loops(2).udp(udp).fallback(echo));
    let Some(said) = python(&["frames"], addr) else {
        return;
    };
    assert!(said.contains("three in one ok"), "{said}");
    assert!(
        said.contains("bad datagrams dropped, session goes on"),
        "{said}"
    );
    let stats = server.stats();
    assert_eq!(
        stats.datagrams_dropped(DatagramDrop::Malformed),
        2,
        "{stats}"
    );
    assert_eq!(
        stats.datagrams_dropped(DatagramDrop::Oversized),
        1,
        "{stats}"
    );
    assert_eq!(stats.datagrams_in, 6, "{stats}");
    assert_eq!(stats.datagrams_out, 5, "{stats}");
    assert_eq!(stats.messages_in, 5, "{stats}");
    assert_eq!(stats.connections, 1, "one peer, one session: {stats}");
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_thousand_python_peers_at_once_get_their_own_replies_on_two_loops() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (server, addr) = start_udp(
        Server::builder()
            .event_loops(2)
            .on_open(move |s| {
                let _ = tx.send(s.id().loop_index());
            })
            .fallback(echo),
    );
    let Some(said) = python(&["many", "1000"], addr) else {
        return;
    };
    assert!(said.contains("many ok 1000"), "{said}");
    let loops: Vec<usize> = rx.try_iter().collect();
    assert_eq!(loops.len(), 1000, "one session per peer");
    if cfg!(target_os = "linux") {
        for l in 0..2 {
            assert!(
                loops.contains(&l),
                "no session on loop {l}: SO_REUSEPORT spreads peers"
            );
        }
    }
    assert_eq!(server.stats().connections, 1000);
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn an_honest_full_speed_echo_trips_no_limit() {
    // Tight limits that an echo must still never reach: the amplification
    // bound (an echo sends what it got), a small send queue, a datagram
    // limit just over the datagrams used.
    let mut udp = UdpConfig::default();
    udp.max_datagram = 1_400;
    udp.send_queue = 16 << 10;
    udp.validation = netloom::UdpValidation::Application;
    let (server, addr) = start_udp(Server::builder().event_loops(2).udp(udp).fallback(echo));
    let Some(said) = python(&["flood", "20000", "1400"], addr) else {
        return;
    };
    let stats = server.stats();
    let dropped: Vec<_> = stats
        .datagrams_dropped_by_cause()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(dropped.is_empty(), "{said} {stats}");
    assert_eq!(stats.send_errors, 0, "{stats}");
    assert_eq!(stats.datagrams_out, stats.datagrams_in, "{stats}");
    assert!(stats.datagrams_in > 15_000, "the flood ran: {said} {stats}");
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_std_peer_gets_replies_by_handle_from_another_thread() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (server, addr) = start_udp(Server::builder().event_loops(2).route(1, move |ctx| {
        let _ = tx.send(ctx.handle());
        Ok::<_, netloom::Error>(())
    }));
    let s = peer();
    s.send_to(&frame(1, b"hello"), addr).unwrap();
    let handle = rx.recv_timeout(TIMEOUT).unwrap();
    std::thread::spawn(move || handle.send(2, b"from a thread"))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(recv_frames(&s), vec![(2, b"from a thread".to_vec())]);
    server.shutdown(TIMEOUT).unwrap();
}
