//! UDP's limits, each tripped by a hostile peer: the datagram size (in and
//! out), the session cap, and the amplification bound on replies to a
//! peer that has not shown it receives at its address.

use std::time::Duration;

use netloom::{DatagramDrop, Error, Server, UdpConfig, UdpValidation};

use super::{nothing_within, peer, recv_frames, start_udp};
use crate::common::{echo, frame, wait_until, TIMEOUT};

#[test]
fn a_reply_too_large_for_a_datagram_is_a_typed_error() {
    let mut udp = UdpConfig::default();
    udp.max_datagram = 1_000;
    let (server, addr) = start_udp(Server::builder().udp(udp).route(1, |ctx| {
        let big = vec![7u8; 993];
        match ctx.reply(1, &big) {
            Err(Error::DatagramTooLarge {
                len: 1_001,
                max: 1_000,
            }) => ctx.reply(2, b"refused"),
            other => ctx.reply(3, format!("{other:?}")),
        }?;
        ctx.reply(1, &big[..992])
    }));
    let s = peer();
    // Enough bytes that the 1000-byte reply stays within 3x.
    s.send_to(&frame(1, &[0; 400]), addr).unwrap();
    assert_eq!(recv_frames(&s), vec![(2, b"refused".to_vec())]);
    assert_eq!(
        recv_frames(&s)[0].1.len(),
        992,
        "a datagram of exactly the limit goes"
    );
    let stats = server.stats();
    assert_eq!(
        stats.datagrams_dropped(DatagramDrop::TooLarge),
        1,
        "{stats}"
    );
    assert_eq!(stats.send_errors, 1, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn new_peers_over_the_session_cap_are_dropped_and_counted() {
    let mut udp = UdpConfig::default();
    udp.max_sessions = 2;
    let (server, addr) = start_udp(
        Server::builder()
            .event_loops(2)
            .udp(udp)
            .route(1, echo)
            .route(9, |ctx| {
                ctx.close();
                Ok::<_, netloom::Error>(())
            }),
    );
    let peers: Vec<_> = (0..3).map(|_| peer()).collect();
    for p in &peers[..2] {
        p.send_to(&frame(1, b"in"), addr).unwrap();
        assert_eq!(recv_frames(p).len(), 1);
    }
    peers[2].send_to(&frame(1, b"over"), addr).unwrap();
    assert!(nothing_within(&peers[2], Duration::from_millis(200)));
    assert_eq!(
        server.stats().datagrams_dropped(DatagramDrop::SessionLimit),
        1
    );
    // One leaves: room for the third.
    peers[0].send_to(&frame(9, b""), addr).unwrap();
    wait_until("a session closed", || server.stats().connections == 1);
    peers[2].send_to(&frame(1, b"now"), addr).unwrap();
    assert_eq!(recv_frames(&peers[2]), vec![(1, b"now".to_vec())]);
    server.shutdown(TIMEOUT).unwrap();
}

/// A server that answers every datagram with ten times its body: a
/// reflector, were it not for the bound.
fn amplifier(validation: UdpValidation) -> (netloom::ServerHandle, std::net::SocketAddr) {
    let mut udp = UdpConfig::default();
    udp.validation = validation;
    start_udp(
        Server::builder()
            .udp(udp)
            .route(1, |ctx| ctx.reply(1, ctx.body().repeat(10)))
            .route(7, |ctx| {
                ctx.validate_udp_peer();
                ctx.reply(7, b"welcome")
            }),
    )
}

#[test]
fn an_unvalidated_peer_gets_at_most_three_times_what_it_sent() {
    let (server, addr) = amplifier(UdpValidation::SecondDatagram);
    let s = peer();
    // 8 + 100 bytes in; the 1008-byte answer would be over 324.
    s.send_to(&frame(1, &[1; 100]), addr).unwrap();
    wait_until("the reply dropped", || {
        server.stats().datagrams_dropped(DatagramDrop::Unvalidated) == 1
    });
    // The second datagram validates the peer: its answer goes.
    s.send_to(&frame(1, &[2; 100]), addr).unwrap();
    assert_eq!(recv_frames(&s), vec![(1, vec![2; 1000])]);
    wait_until("one datagram out", || server.stats().datagrams_out == 1);
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn under_application_validation_only_the_handshake_lifts_the_bound() {
    let (server, addr) = amplifier(UdpValidation::Application);
    let s = peer();
    for round in 0..3u8 {
        s.send_to(&frame(1, &[round; 100]), addr).unwrap();
    }
    wait_until("three replies dropped", || {
        server.stats().datagrams_dropped(DatagramDrop::Unvalidated) == 3
    });
    s.send_to(&frame(7, b"token"), addr).unwrap();
    assert_eq!(recv_frames(&s), vec![(7, b"welcome".to_vec())]);
    s.send_to(&frame(1, &[9; 100]), addr).unwrap();
    assert_eq!(recv_frames(&s), vec![(1, vec![9; 1000])]);
    server.shutdown(TIMEOUT).unwrap();
}
