//! Room messages cross nodes exactly once and never come back to their
//! sender; a node subscribes to a room only while it has a member there;
//! sends reach a connection on another node; broadcasts reach every
//! connection of every node.

use netloom::cluster::NodeConnId;

use super::{join, node, settle, Redis};
use crate::common::Client;

/// Each client's next message is `(id, body)`.
fn all_get(clients: &mut [&mut Client], id: u32, body: &[u8]) {
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.recv(), (id, body.to_vec()), "client {i}");
    }
}

/// Three nodes, two members of `r` on each: a message from one member
/// reaches the five others once (the marker published next is each one's
/// next message), not the sender; the sender's node drops its own echo.
#[test]
fn room_messages_cross_three_nodes_exactly_once() {
    let Some(redis) = Redis::start() else { return };
    let nodes: Vec<_> = ["a", "b", "c"].iter().map(|n| node(&redis, n)).collect();
    let mut members: Vec<Client> = Vec::new();
    for n in &nodes {
        for _ in 0..2 {
            let mut c = n.connect();
            join(&mut c, "r");
            members.push(c);
        }
    }
    for n in &nodes {
        settle("subscribed to r", || n.cluster.is_subscribed("r"));
    }
    settle("every node's presence", || {
        nodes[0].cluster.room_len("r") == 6
    });

    members[0].send(3, b"r\nhello");
    let mut others: Vec<&mut Client> = members.iter_mut().skip(1).collect();
    all_get(&mut others, 3, b"r\nhello");
    nodes[1].cluster.publish("r", 9, b"marker").unwrap();
    let mut all: Vec<&mut Client> = members.iter_mut().collect();
    all_get(&mut all, 9, b"marker");

    let a = nodes[0].cluster.stats();
    assert!(a.echoes >= 1, "{a:?}");
    assert_eq!(a.dropped, 0, "{a:?}");
    for n in &nodes {
        assert_eq!(n.server.stats().send_errors, 0);
    }
}

/// A node whose last member left unsubscribes, and gets nothing of the
/// room after; a send to a connection on another node comes after what
/// was published before it, and one to an id of an earlier run of that
/// node reaches nobody.
#[test]
fn leaving_unsubscribes_and_sends_cross_nodes() {
    let Some(redis) = Redis::start() else { return };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut on_a = a.connect();
    let mut on_b = b.connect();
    join(&mut on_a, "r");
    join(&mut on_b, "r");
    settle("b subscribed", || b.cluster.is_subscribed("r"));
    settle("a subscribed", || a.cluster.is_subscribed("r"));
    on_b.send(2, b"r");
    assert_eq!(on_b.recv(), (2, b"ok".to_vec()));
    settle("b unsubscribed", || !b.cluster.is_subscribed("r"));
    assert!(a.cluster.is_subscribed("r"));

    on_a.send(3, b"r\nonly a's members, and a's sender is skipped");
    let b_conn = b.server.hub().connection_ids()[0];
    let to = b.cluster.id_of(b_conn);
    assert_eq!((&*to.node, to.conn), ("b", b_conn));
    // The same connection id of an earlier run of node b (a restart
    // under the same name counts ids from the same numbers): nobody.
    let stale = NodeConnId {
        incarnation: to.incarnation ^ 1,
        ..to.clone()
    };
    a.cluster.send(&stale, 8, b"stale").unwrap();
    assert!(matches!(
        b.cluster.send(&stale, 8, b"stale"),
        Err(netloom::Error::Closed)
    ));
    a.cluster.send(&to, 8, b"direct").unwrap();
    assert_eq!(on_b.recv(), (8, b"direct".to_vec()));
    assert_eq!(b.cluster.stats().received, 1, "{:?}", b.cluster.stats());
}

/// A broadcast from a handler reaches every connection of every node,
/// once (the second broadcast is each one's next message).
#[test]
fn broadcast_reaches_every_connection_of_every_node() {
    let Some(redis) = Redis::start() else { return };
    let nodes: Vec<_> = ["a", "b", "c"].iter().map(|n| node(&redis, n)).collect();
    let mut clients: Vec<Client> = Vec::new();
    for n in &nodes {
        for _ in 0..2 {
            clients.push(n.connect());
        }
    }
    for n in &nodes {
        settle("connected", || n.cluster.is_connected());
    }
    clients[0].send(6, b"first");
    let mut all: Vec<&mut Client> = clients.iter_mut().collect();
    all_get(&mut all, 6, b"first");
    clients[5].send(6, b"second");
    let mut all: Vec<&mut Client> = clients.iter_mut().collect();
    all_get(&mut all, 6, b"second");
}

/// Whatever else publishes on the cluster's channels (garbage, cut
/// envelopes, a send to an id no connection has) is dropped and counted,
/// never a panic or a lost link; real messages go on.
#[test]
fn garbage_on_the_channels_is_counted_and_dropped() {
    use std::io::{Read, Write};

    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "a");
    let mut c = a.connect();
    join(&mut c, "r");
    settle("subscribed", || a.cluster.is_subscribed("r"));
    let mut raw = std::net::TcpStream::connect(
        redis
            .url()
            .trim_start_matches("redis://")
            .trim_end_matches('/'),
    )
    .unwrap();
    raw.set_read_timeout(Some(crate::common::TIMEOUT)).unwrap();
    let payloads: [&[u8]; 4] = [b"", b"\x01\x05ab", b"\x09\x00\x00\x00\x00\x00", b"\x02\xff"];
    for payload in payloads {
        for channel in ["netloom:all", "netloom:room:r"] {
            let mut cmd = format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
                channel.len(),
                payload.len()
            )
            .into_bytes();
            cmd.extend_from_slice(payload);
            cmd.extend_from_slice(b"\r\n");
            raw.write_all(&cmd).unwrap();
            let mut reply = [0u8; 4]; // ":1\r\n"
            raw.read_exact(&mut reply).unwrap();
        }
    }
    settle("all counted", || a.cluster.stats().malformed == 8);
    assert!(a.cluster.is_connected());
    let b = node(&redis, "b");
    settle("b connected", || b.cluster.is_connected());
    b.cluster.broadcast(5, b"still fine").unwrap();
    assert_eq!(c.recv(), (5, b"still fine".to_vec()));
}
