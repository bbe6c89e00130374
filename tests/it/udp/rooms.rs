//! UDP sessions in rooms (found by mutation testing: nothing sent a
//! room's message to a UDP session). A publication reaches a session as
//! a datagram of its own, one message each, like a reply.

use netloom::Server;

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
