//! UDP sessions in rooms (found by mutation testing: nothing sent a
//! room's message to a UDP session). A publication reaches a session as
//! a datagram of its own, one message each, like a reply, and one too
//! large for a datagram skips it (counted), as a broadcast does.

use netloom::{DatagramDrop, Server, UdpConfig};

use super::{peer, recv_frames, start_udp};
use crate::common::{frame, TIMEOUT};

#[test]
fn a_udp_session_in_a_room_gets_each_publication_as_a_datagram_of_its_own() {
    let (tx, rx) = crossbeam_channel::unbounded();
    // The handler queues nothing of its own: the first thing queued for
    // the session is the room's message.
    let (server, addr) = start_udp(Server::builder().event_loops(2).route(1, move |ctx| {
        ctx.validate_udp_peer();
        ctx.join("r")?;
        let _ = tx.send(());
        Ok::<_, netloom::Error>(())
    }));
    let peers = [peer(), peer(), peer()];
    for p in &peers {
        p.send_to(&frame(1, b""), addr).unwrap();
        rx.recv_timeout(TIMEOUT).expect("joined");
    }
    let hub = server.hub();
    for body in [&b"first"[..], b"second", b"third"] {
        hub.publish("r", 5, body).unwrap();
    }
    for (i, p) in peers.iter().enumerate() {
        for body in [&b"first"[..], b"second", b"third"] {
            assert_eq!(recv_frames(p), vec![(5, body.to_vec())], "peer {i}");
        }
    }
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_publication_too_large_for_a_datagram_skips_the_udp_session_counted() {
    // Found by mutation testing: the size check on a room's message to a
    // UDP session could be flipped, or made `>=`, with every test passing.
    let mut udp = UdpConfig::default();
    udp.max_datagram = 1_000;
    let (tx, rx) = crossbeam_channel::unbounded();
    let (server, addr) = start_udp(Server::builder().udp(udp).route(1, move |ctx| {
        ctx.validate_udp_peer();
        ctx.join("r")?;
        let _ = tx.send(());
        Ok::<_, netloom::Error>(())
    }));
    let s = peer();
    s.send_to(&frame(1, b""), addr).unwrap();
    rx.recv_timeout(TIMEOUT).expect("joined");
    let hub = server.hub();
    // A frame of 1001 bytes, one of exactly the limit, one small one.
    for body in [vec![1u8; 993], vec![2; 992], vec![3; 1]] {
        hub.publish("r", 5, body).unwrap();
    }
    assert_eq!(recv_frames(&s), vec![(5, vec![2; 992])], "the limit goes");
    assert_eq!(recv_frames(&s), vec![(5, vec![3])]);
    let stats = server.stats();
    assert_eq!(
        stats.datagrams_dropped(DatagramDrop::TooLarge),
        1,
        "{stats}"
    );
    // Skipped before it was queued: a failed send, not a queued frame the
    // socket then drops.
    assert_eq!(stats.send_errors, 1, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}
