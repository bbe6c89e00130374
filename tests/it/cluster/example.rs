//! `examples/cluster_chat` as a user runs it: two processes on one Redis,
//! a room with members on both, a message from one member reaching the
//! others once (not the sender), counts across nodes.

use super::{settle, Redis};
use crate::common::Client;
use crate::dial::examples::run_example;

fn count(c: &mut Client, room: &str) -> usize {
    c.send(4, room.as_bytes());
    let (id, body) = c.recv();
    assert_eq!(id, 4);
    String::from_utf8(body).unwrap().parse().unwrap()
}

fn connect(addr: &str) -> Client {
    Client::connect(addr.parse().expect("an address"))
}

#[test]
fn two_cluster_chat_processes_share_a_room() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let args =
        |node: &'static str| ["127.0.0.1:0", "--redis", &url, "--node", node].map(String::from);
    let a_args = args("a");
    let b_args = args("b");
    let (_a, a_addr) = run_example(
        "cluster_chat",
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (_b, b_addr) = run_example(
        "cluster_chat",
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (mut a1, mut a2, mut b1) = (connect(&a_addr), connect(&a_addr), connect(&b_addr));
    for c in [&mut a1, &mut a2, &mut b1] {
        c.send(1, b"r");
    }
    // Presence: each node counts the other's members once it is
    // subscribed (a heartbeat, one second by default).
    settle("a counts 3", || count(&mut a1, "r") == 3);
    settle("b counts 3", || count(&mut b1, "r") == 3);

    a1.send(3, b"r\nhello from a");
    assert_eq!(a2.recv(), (3, b"r\nhello from a".to_vec()));
    assert_eq!(b1.recv(), (3, b"r\nhello from a".to_vec()));
    b1.send(3, b"r\nmarker");
    // The sender's next message is the marker: no echo of its own.
    assert_eq!(a1.recv(), (3, b"r\nmarker".to_vec()));
    assert_eq!(a2.recv(), (3, b"r\nmarker".to_vec()));

    b1.send(2, b"r");
    settle("a counts 2", || count(&mut a1, "r") == 2);
}

/// Without `--redis` the example is one node alone: rooms still work.
#[test]
fn cluster_chat_alone_without_redis() {
    let (_node, addr) = run_example("cluster_chat", &["127.0.0.1:0"]);
    let (mut a, mut b) = (connect(&addr), connect(&addr));
    a.send(1, b"solo");
    b.send(1, b"solo");
    // Each count comes after its own connection's join.
    let _ = count(&mut a, "solo");
    assert_eq!(count(&mut b, "solo"), 2);
    assert_eq!(count(&mut a, "solo"), 2);
    a.send(3, b"solo\nhi");
    assert_eq!(b.recv(), (3, b"solo\nhi".to_vec()));
    b.send(3, b"solo\nback");
    assert_eq!(
        a.recv(),
        (3, b"solo\nback".to_vec()),
        "a got no echo of its own"
    );
    b.send(2, b"solo");
    assert_eq!(count(&mut b, "solo"), 1, "after b's own leave");
    assert_eq!(count(&mut a, "solo"), 1);
}
