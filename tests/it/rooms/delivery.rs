//! A publish reaches each member once, on both loops; `publish_except`
//! skips the sender; leaving stops delivery; a closed member is no longer
//! counted (before its `on_close` runs); a join handed over from another
//! thread is in place for that thread's next publish.

use std::time::Duration;

use netloom::Error;

use super::{count, handle_of, join, leave, rooms_builder};
use crate::common::{start, start_tracked, Client, TIMEOUT};

/// Every client's next message is `(id, body)`.
fn all_get(clients: &mut [Client], id: u32, body: &[u8]) {
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.recv(), (id, body.to_vec()), "client {i}");
    }
}

/// Four members, two on each loop: a publish from a handler reaches each
/// once (the marker published next is each one's next message), and
/// `room_len` sums both loops.
#[test]
fn a_publish_reaches_each_member_on_both_loops_once() {
    let (builder, opens) = rooms_builder(2);
    let server = start(builder);
    let mut clients = Vec::new();
    let mut loops = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(server.local_addr());
        loops.push(handle_of(&opens, &c).id().loop_index());
        join(&mut c, "lobby");
        clients.push(c);
    }
    loops.sort();
    assert_eq!(loops, [0, 0, 1, 1], "members on both loops");
    assert_eq!(server.hub().room_len("lobby"), 4);
    assert_eq!(count(&mut clients[3], "lobby"), 4);

    clients[0].send(5, b"lobby\nhello");
    all_get(&mut clients, 3, b"lobby\nhello");
    server.hub().publish("lobby", 9, b"marker").unwrap();
    all_get(&mut clients, 9, b"marker");
    let stats = server.stats();
    assert_eq!(stats.send_errors, 0);
    server.shutdown(TIMEOUT).unwrap();
}

/// `publish_except` from the sender's handler: the others get it, the
/// sender does not (its next message is the marker), on either loop.
#[test]
fn publish_except_skips_the_sender() {
    let (builder, opens) = rooms_builder(2);
    let server = start(builder);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(server.local_addr());
        handle_of(&opens, &c);
        join(&mut c, "chat");
        clients.push(c);
    }
    for sender in 0..3 {
        let text = format!("chat\nfrom {sender}");
        clients[sender].send(3, text.as_bytes());
        for (i, c) in clients.iter_mut().enumerate() {
            if i != sender {
                assert_eq!(c.recv(), (3, text.clone().into_bytes()), "client {i}");
            }
        }
        server.hub().publish("chat", 9, b"marker").unwrap();
        all_get(&mut clients, 9, b"marker");
    }
    server.shutdown(TIMEOUT).unwrap();
}

/// A member that left gets nothing more of the room: a direct message
/// sent after the publish (through the same loop's inbox) comes first.
/// Leaving twice, or a room never joined, is no error.
#[test]
fn leaving_stops_delivery() {
    let (builder, opens) = rooms_builder(2);
    let server = start(builder);
    let hub = server.hub();
    let mut stay = Client::connect(server.local_addr());
    handle_of(&opens, &stay);
    let mut gone = Client::connect(server.local_addr());
    let gone_handle = handle_of(&opens, &gone);
    join(&mut stay, "r");
    join(&mut gone, "r");
    leave(&mut gone, "r");
    leave(&mut gone, "r");
    leave(&mut gone, "never joined");
    assert_eq!(hub.room_len("r"), 1);
    hub.publish("r", 3, b"after leave").unwrap();
    gone_handle.send(8, b"direct").unwrap();
    assert_eq!(stay.recv(), (3, b"after leave".to_vec()));
    assert_eq!(gone.recv(), (8, b"direct".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

/// A member that closes leaves its rooms before `on_close` runs; the
/// last one gone takes the room with it (count 0), and a publish to it
/// is no error and reaches nobody.
#[test]
fn a_closed_member_is_uncounted_before_on_close() {
    let (builder, opens) = rooms_builder(2);
    let (server, mut closes) = start_tracked(builder);
    let hub = server.hub();
    let mut a = Client::connect(server.local_addr());
    handle_of(&opens, &a);
    let b = Client::connect(server.local_addr());
    handle_of(&opens, &b);
    let mut b = b;
    join(&mut a, "room");
    join(&mut a, "other");
    join(&mut b, "room");
    assert_eq!((hub.room_len("room"), hub.room_len("other")), (2, 1));
    let a_addr = a.stream.local_addr().unwrap();
    drop(a);
    closes.reason_for(a_addr);
    assert_eq!((hub.room_len("room"), hub.room_len("other")), (1, 0));
    hub.publish("other", 3, b"nobody").unwrap();
    let b_addr = b.stream.local_addr().unwrap();
    drop(b);
    closes.reason_for(b_addr);
    assert_eq!(hub.room_len("room"), 0);
    assert_eq!(server.stats().send_errors, 0);
    server.shutdown(TIMEOUT).unwrap();
}

/// From the test thread (no loop's): a join through a handle is in place
/// for the next publish from the same thread; receipts say what changed.
#[test]
fn handle_joins_from_another_thread_precede_its_publishes() {
    let (builder, opens) = rooms_builder(2);
    let server = start(builder);
    let hub = server.hub();
    let mut members = Vec::new();
    for _ in 0..2 {
        let c = Client::connect(server.local_addr());
        let h = handle_of(&opens, &c);
        members.push((c, h));
    }
    for (_, h) in &members {
        let _ = h.join("tv"); // not waited for
    }
    hub.publish("tv", 6, b"news").unwrap();
    for (c, h) in &mut members {
        assert_eq!(c.recv(), (6, b"news".to_vec()));
        assert!(!h.join("tv").wait().unwrap(), "a member already");
        assert!(h.leave("tv").wait().unwrap());
        assert!(!h.leave("tv").wait().unwrap());
    }
    assert_eq!(hub.room_len("tv"), 0);
    let mut pending = members[0].1.join("tv");
    let done = pending.wait_timeout(Duration::from_secs(10));
    assert!(matches!(done, Some(Ok(true))), "{done:?}");
    server.shutdown(TIMEOUT).unwrap();
    assert!(matches!(
        members[0].1.join("x").wait(),
        Err(Error::ShutDown)
    ));
}

/// Handlers on a worker pool join and leave through the loop's inbox:
/// the answer (which leaves with the handler's outcome, after the join
/// was handed over) comes once the membership is in place.
#[test]
fn handlers_on_a_worker_pool_join_and_leave() {
    let (builder, opens) = rooms_builder(2);
    let server = start(builder.exec(netloom::Exec::Pool(2)));
    let hub = server.hub();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(server.local_addr());
        handle_of(&opens, &c);
        join(&mut c, "w");
        clients.push(c);
    }
    assert_eq!(hub.room_len("w"), 3);
    clients[0].send(3, b"w\nfrom a worker");
    for c in &mut clients[1..] {
        assert_eq!(c.recv(), (3, b"w\nfrom a worker".to_vec()));
    }
    leave(&mut clients[2], "w");
    assert_eq!(count(&mut clients[1], "w"), 2);
    server.shutdown(TIMEOUT).unwrap();
}

/// A member that never reads is bounded like any slow peer: past its
/// high-water mark it misses publishes (counted in `send_errors`), while
/// an honest member that reads each one gets every one, in order. (The
/// publisher waits for the honest member's read of each: a burst handed
/// to a loop in one turn is queued before that turn's flush, and would
/// take an honest reader over a mark as small as one message, as a
/// broadcast burst would.)
#[test]
fn a_member_that_never_reads_misses_publishes_and_an_honest_one_gets_all() {
    const N: usize = 400; // 25 MiB: more than the kernel buffers hold
    const SIZE: usize = 64 << 10;
    let (builder, opens) = rooms_builder(1);
    let server = start(builder.write_high_water(SIZE));
    let hub = server.hub();
    let mut honest = Client::connect(server.local_addr());
    handle_of(&opens, &honest);
    let mut stuck = Client::connect(server.local_addr());
    handle_of(&opens, &stuck);
    join(&mut honest, "big");
    join(&mut stuck, "big");
    for i in 0..N {
        hub.publish("big", 7, vec![i as u8; SIZE]).unwrap();
        let (id, body) = honest.recv();
        assert_eq!((id, body.len(), body[0]), (7, SIZE, i as u8), "message {i}");
    }
    assert!(
        server.stats().send_errors > 0,
        "the stuck member missed some"
    );
    assert_eq!(hub.room_len("big"), 2, "a slow member stays a member");
    drop(stuck);
    server.shutdown(TIMEOUT).unwrap();
}
