//! A `ConnId` is loop + slot + generation: every comparison and lookup
//! uses all three. Twins (the first connection of each loop: same slot,
//! same generation, another loop) and a stale id (a slot's earlier
//! occupant) never stand for each other.

use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{ConnId, Context, Error, SeqPacker, Server, ServerHandle};

use crate::common::{start, track_closes, Client, TIMEOUT};

/// The slot and generation of an id, without its loop.
fn slot_and_generation(id: ConnId) -> u64 {
    id.to_u128() as u64
}

/// The slot of an id.
fn slot(id: ConnId) -> u32 {
    (id.to_u128() >> 32) as u32
}

/// A chat relay on `loops` loops: id 1 goes to everyone but its sender
/// (as id 2). `on_open` reports each connection's id.
fn relay(loops: usize) -> (ServerHandle, Receiver<ConnId>) {
    let (opened_tx, opened) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(loops)
            .on_open(move |s| {
                let _ = opened_tx.send(s.id());
            })
            .route(1, |ctx: &mut Context<'_>| {
                ctx.hub().broadcast_except(ctx.id(), 2, ctx.body())
            }),
    );
    (server, opened)
}

/// Every client relays once; all the others get it, the sender does not.
fn broadcast_except_reaches_every_twin(loops: usize) {
    let (server, opened) = relay(loops);
    // Two connections per loop, opened one after the other, so that each
    // loop's first one is a twin of the others' first ones.
    let mut clients = Vec::new();
    for _ in 0..2 * loops {
        let client = Client::connect(server.local_addr());
        let id = opened.recv_timeout(TIMEOUT).expect("on_open");
        clients.push((id, client));
    }
    let firsts: Vec<ConnId> = (0..loops)
        .filter_map(|l| clients.iter().map(|c| c.0).find(|id| id.loop_index() == l))
        .collect();
    assert_eq!(firsts.len(), loops, "a connection on every loop");
    assert!(
        firsts
            .iter()
            .all(|id| slot_and_generation(*id) == slot_and_generation(firsts[0])),
        "each loop's first connection has the same slot and generation: {firsts:?}"
    );
    for sender in 0..clients.len() {
        let body = format!("from {}", clients[sender].0);
        clients[sender].1.send(1, body.as_bytes());
        for (i, (id, client)) in clients.iter_mut().enumerate() {
            if i == sender {
                continue;
            }
            let got = client
                .try_recv()
                .unwrap_or_else(|e| panic!("{id} missed the relay from {}: {e}", firsts[0]));
            assert_eq!(got, (2, body.clone().into_bytes()), "{id}");
        }
    }
    // No sender got its own message: the next frame each client reads is
    // this broadcast.
    server.hub().broadcast(3, b"end").unwrap();
    for (id, client) in &mut clients {
        assert_eq!(client.recv(), (3, b"end".to_vec()), "{id}");
    }
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn broadcast_except_skips_only_its_sender_not_the_twins_on_two_loops() {
    broadcast_except_reaches_every_twin(2);
}

#[test]
fn broadcast_except_skips_only_its_sender_not_the_twins_on_four_loops() {
    broadcast_except_reaches_every_twin(4);
}

/// A request through a stale handle (its slot now holds another
/// connection of the same loop, and its twin lives on the other loop)
/// fails with `Closed` at once and leaves the live connections' pending
/// requests alone.
#[test]
fn a_request_through_a_stale_id_fails_and_leaves_the_slots_new_owner_alone() {
    let (held_tx, held) = unbounded();
    let backend = start(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body()))
            .route(2, move |ctx: &mut Context<'_>| {
                let _ = held_tx.send(ctx.responder());
            }),
    );
    let (routed_tx, routed) = unbounded();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .packer(SeqPacker::default())
            .fallback(move |ctx: &mut Context<'_>| {
                let _ = routed_tx.send((ctx.msg_id(), ctx.body().to_vec()));
            }),
    );
    crate::common::init_logs();
    let dialer = builder.start().unwrap();
    let hub = dialer.hub();
    let addr = backend.local_addr();
    let stale = hub.connect(addr).unwrap();
    let twin = hub.connect(addr).unwrap();
    stale.request(1, b"x", TIMEOUT).unwrap().wait().unwrap();
    twin.request(1, b"x", TIMEOUT).unwrap().wait().unwrap();
    stale.close();
    closes.next();
    let live = hub.connect(addr).unwrap();
    live.request(1, b"x", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(live.id().loop_index(), stale.id().loop_index());
    assert_eq!(slot(live.id()), slot(stale.id()), "the slot was reused");
    assert_ne!(live.id(), stale.id());
    assert_ne!(twin.id().loop_index(), stale.id().loop_index());
    assert_eq!(
        slot_and_generation(twin.id()),
        slot_and_generation(stale.id())
    );

    // One request waits on each live connection.
    let waiting: Vec<_> = [&live, &twin]
        .iter()
        .map(|c| c.request(2, c.id().to_string(), TIMEOUT).unwrap())
        .collect();
    let responders: Vec<_> = (0..2)
        .map(|_| held.recv_timeout(TIMEOUT).expect("backend got it"))
        .collect();

    let asked = Instant::now();
    let outcome = stale.request(1, b"stale", TIMEOUT).unwrap().wait();
    assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    let (tx, rx) = unbounded();
    let returned = stale.request_with(1, b"stale", TIMEOUT, move |r| {
        let _ = tx.send(r.map(|m| m.body));
    });
    let outcome = returned.and_then(|()| rx.recv_timeout(TIMEOUT).unwrap());
    assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );

    for (p, _) in waiting.iter().zip(&responders) {
        assert!(p.try_get().is_none(), "a live request was failed");
    }
    for r in &responders {
        r.respond(2, b"answer").unwrap();
    }
    for (p, who) in waiting.into_iter().zip(["live", "twin"]) {
        let reply = p.wait().unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(&reply.body[..], b"answer", "{who}");
    }
    assert!(routed.try_recv().is_err(), "a reply went to the routes");
    dialer.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// Two servers in one process: the first connection of each has the same
/// loop, slot and generation. An id of server A used through server B's
/// `Hub` reaches nothing there (it reached B's client: ids did not name
/// their server).
#[test]
fn an_id_of_one_server_names_no_connection_of_another() {
    let (a, opened_a) = relay(1);
    let (b, opened_b) = relay(1);
    let mut client_a = Client::connect(a.local_addr());
    let mut client_b = Client::connect(b.local_addr());
    let id_a = opened_a.recv_timeout(TIMEOUT).expect("A's on_open");
    let id_b = opened_b.recv_timeout(TIMEOUT).expect("B's on_open");
    assert_eq!(
        slot_and_generation(id_a),
        slot_and_generation(id_b),
        "look-alike ids"
    );
    assert_ne!(id_a, id_b);
    let before = b.stats().send_errors;
    b.hub().conn(id_a).send(2, b"meant for A's client").unwrap();
    b.hub().send_to([id_a], 2, b"meant for A's client").unwrap();
    // B's own client, through its own id, is reached: the marker comes
    // first unless the foreign-id sends got through.
    b.hub().conn(id_b).send(3, b"marker").unwrap();
    assert_eq!(client_b.recv(), (3, b"marker".to_vec()));
    let deadline = Instant::now() + TIMEOUT;
    while b.stats().send_errors < before + 2 {
        assert!(Instant::now() < deadline, "{}", b.stats());
        std::thread::yield_now();
    }
    // A's client got nothing from B either.
    a.hub().conn(id_a).send(4, b"from A").unwrap();
    assert_eq!(client_a.recv(), (4, b"from A".to_vec()));
}
