//! Identity: a stale handle (its connection closed, its slot taken by the
//! next) and a twin id (equal slot and generation on the other loop)
//! never join, leave or remove another connection's memberships. Names
//! and the per-connection bound are checked with typed errors.

use netloom::{ConnId, Error, MAX_ROOMS_PER_CONN, MAX_ROOM_NAME};

use super::{count, handle_of, join, rooms_builder};
use crate::common::{start_tracked, Client, TIMEOUT};

#[test]
fn a_stale_handle_cannot_join_or_leave_for_the_slots_next_occupant() {
    let (builder, opens) = rooms_builder(1);
    let (server, mut closes) = start_tracked(builder);
    let hub = server.hub();
    let first = Client::connect(server.local_addr());
    let stale = handle_of(&opens, &first);
    let first_addr = first.stream.local_addr().unwrap();
    drop(first);
    closes.reason_for(first_addr);
    let mut next = Client::connect(server.local_addr());
    let fresh = handle_of(&opens, &next);
    // The same slot of the same loop, a new generation.
    assert_eq!(stale.id().loop_index(), fresh.id().loop_index());
    assert_eq!(stale.id().to_u128() >> 32, fresh.id().to_u128() >> 32);
    assert_ne!(stale.id(), fresh.id());
    join(&mut next, "r");

    assert!(!stale.leave("r").wait().unwrap(), "stale leave");
    assert!(matches!(stale.join("s").wait(), Err(Error::Closed)));
    assert_eq!((hub.room_len("r"), hub.room_len("s")), (1, 0));
    hub.publish("r", 3, b"still in").unwrap();
    assert_eq!(next.recv(), (3, b"still in".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn twin_ids_on_two_loops_are_two_members() {
    let (builder, opens) = rooms_builder(2);
    let (server, _closes) = start_tracked(builder);
    let hub = server.hub();
    let mut a = Client::connect(server.local_addr());
    let ha = handle_of(&opens, &a);
    let mut b = Client::connect(server.local_addr());
    let hb = handle_of(&opens, &b);
    // Each loop's first connection: slot 0, generation 1 on both.
    assert_ne!(ha.id().loop_index(), hb.id().loop_index());
    let low = |id: ConnId| id.to_u128() & u128::from(u64::MAX);
    assert_eq!(low(ha.id()), low(hb.id()), "twins");

    join(&mut a, "r");
    assert!(!hb.leave("r").wait().unwrap(), "b is not a member");
    assert!(hb.join("s").wait().unwrap());
    assert_eq!((hub.room_len("r"), hub.room_len("s")), (1, 1));
    hub.publish_except("r", hb.id(), 3, b"to a").unwrap();
    hub.publish_except("s", ha.id(), 3, b"to b").unwrap();
    assert_eq!(a.recv(), (3, b"to a".to_vec()));
    assert_eq!(b.recv(), (3, b"to b".to_vec()));
    assert_eq!(count(&mut a, "r"), 1);
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn names_and_the_rooms_per_connection_are_bounded() {
    let (builder, opens) = rooms_builder(1);
    let (server, _closes) = start_tracked(builder);
    let hub = server.hub();
    let mut c = Client::connect(server.local_addr());
    let h = handle_of(&opens, &c);
    let long = "x".repeat(MAX_ROOM_NAME + 1);
    c.send(1, long.as_bytes());
    let (id, said) = c.recv();
    assert_eq!(id, 1);
    assert!(String::from_utf8(said)
        .unwrap()
        .starts_with("err: room name of 257"));
    join(&mut c, &"y".repeat(MAX_ROOM_NAME));
    assert!(matches!(hub.publish("", 1, b""), Err(Error::RoomName(0))));
    assert!(matches!(h.join(&long).wait(), Err(Error::RoomName(257))));
    for i in 1..MAX_ROOMS_PER_CONN {
        assert!(h.join(&format!("r{i}")).wait().unwrap());
    }
    let refused = h.join("one too many").wait();
    assert!(matches!(refused, Err(Error::TooManyRooms(n)) if n == MAX_ROOMS_PER_CONN));
    assert!(h.leave("r1").wait().unwrap());
    assert!(h.join("one too many").wait().unwrap());
    assert_eq!(hub.room_len("one too many"), 1);
    server.shutdown(TIMEOUT).unwrap();
}
