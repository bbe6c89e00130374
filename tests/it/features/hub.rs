//! Reaching connections: `Hub::connections` never waits for a loop (also a
//! stuck one, also from handlers on two loops at once), `send_bytes` /
//! `broadcast_bytes` / `broadcast_except`, stopping a joined server from
//! another thread, and per-connection data that is not `Send`.

use std::cell::Cell;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use netloom::{ConnId, Context, Server};

use super::assert_echoes;
use super::flow::{blocking_route, handle_of, report_opens};
use crate::common::{echo, start, Client, TIMEOUT};

/// `Hub::connections` lists the connections of a loop stuck in a handler,
/// at once: it reads each loop's roster and never asks the loop. (The old
/// snapshot asked every loop and left one out after a one-second wait.)
#[test]
fn connections_include_a_stuck_loop_and_return_at_once() {
    let (builder, entered, release) = blocking_route(
        Server::builder()
            .event_loops(2)
            .route(1, echo)
            // Lists from a handler: the other loop is stuck meanwhile.
            .route(9, |ctx: &mut Context<'_>| {
                let start = Instant::now();
                let n = ctx.hub().connections().len();
                let ms = start.elapsed().as_millis() as u32;
                ctx.reply(9, [n.to_le_bytes()[0], (ms.min(255)) as u8])
            }),
    );
    let (builder, opens) = report_opens(builder);
    let server = start(builder);
    let mut stuck = Client::connect(server.local_addr());
    let stuck_id = handle_of(&opens, &stuck).id();
    let mut other = Client::connect(server.local_addr());
    let other_id = handle_of(&opens, &other).id();
    assert_ne!(stuck_id.loop_index(), other_id.loop_index());

    stuck.send(50, b"");
    entered
        .recv_timeout(TIMEOUT)
        .expect("the loop entered route 50");
    let started = Instant::now();
    let mut ids: Vec<ConnId> = server.hub().connection_ids();
    let took = started.elapsed();
    ids.sort();
    let mut want = vec![stuck_id, other_id];
    want.sort();
    assert_eq!(ids, want, "a stuck loop's connection is listed");
    assert!(took < Duration::from_millis(500), "listing took {took:?}");
    other.send(9, b"");
    let (id, reply) = other.recv();
    assert_eq!((id, reply[0]), (9, 2), "a handler lists both connections");
    assert!(
        reply[1] < 200,
        "listing from a handler took {} ms",
        reply[1]
    );
    release.send(()).unwrap();
    assert_echoes(&mut stuck, b"released");
    server.shutdown(TIMEOUT).unwrap();
}

/// netman's `GetConnects` port: a handler on either of two loops pushes to
/// every other connection through `Hub::connections`. 300 pushes, each
/// delivered; 99 % of round trips within 50 ms and none over a second.
/// (Each loop used to wait for the other's snapshot: 634 ms on average,
/// and pushes left out.)
#[test]
fn handlers_on_two_loops_push_to_each_other_without_waiting() {
    let (builder, opens) = report_opens(Server::builder().event_loops(2).route(
        1,
        |ctx: &mut Context<'_>| -> netloom::Result<()> {
            let me = ctx.id();
            for peer in ctx.hub().connections() {
                if peer.id() != me {
                    peer.send(2, ctx.body())?;
                }
            }
            ctx.reply(3, b"pushed")
        },
    ));
    let server = start(builder);
    let mut a = Client::connect(server.local_addr());
    let a_loop = handle_of(&opens, &a).id().loop_index();
    let mut b = Client::connect(server.local_addr());
    assert_ne!(handle_of(&opens, &b).id().loop_index(), a_loop);
    let mut times = Vec::new();
    for i in 0..300u32 {
        let (from, to) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let started = Instant::now();
        from.send(1, &i.to_le_bytes());
        assert_eq!(to.recv(), (2, i.to_le_bytes().to_vec()), "push {i}");
        times.push(started.elapsed());
        assert_eq!(from.recv(), (3, b"pushed".to_vec()));
    }
    times.sort();
    let p99 = times[times.len() * 99 / 100];
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    assert!(
        times[times.len() - 1] < Duration::from_secs(1),
        "max {:?}",
        times.last()
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// `send_bytes` and `broadcast_bytes` with bodies large enough to be queued
/// by reference, from a handler and from another thread, arrive byte-exact
/// and in order; `broadcast_except` reaches everyone but the one named.
#[test]
fn bytes_sends_and_broadcast_except_arrive_where_they_should() {
    let big = Bytes::from((0..100_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    let for_handler = big.clone();
    let (builder, opens) = report_opens(
        Server::builder()
            .event_loops(2)
            .route(4, move |ctx: &mut Context<'_>| {
                ctx.reply_bytes(4, for_handler.clone())
            }),
    );
    let server = start(builder);
    let hub = server.hub();
    let mut clients: Vec<Client> = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let c = Client::connect(server.local_addr());
        handles.push(handle_of(&opens, &c));
        clients.push(c);
    }
    clients[0].send(4, b"");
    assert_eq!(clients[0].recv(), (4, big.to_vec()));
    let h = handles[1].clone();
    let body = big.slice(1..);
    thread::spawn(move || h.send_bytes(5, body).unwrap())
        .join()
        .unwrap();
    assert_eq!(clients[1].recv(), (5, big[1..].to_vec()));
    hub.broadcast_bytes(6, big.clone()).unwrap();
    hub.broadcast_except(handles[2].id(), 7, b"not for 2")
        .unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.recv(), (6, big.to_vec()), "client {i}");
        if i != 2 {
            assert_eq!(c.recv(), (7, b"not for 2".to_vec()), "client {i}");
        }
    }
    // Client 2 got nothing after the broadcast: its next message is this.
    handles[2].send(8, b"next").unwrap();
    assert_eq!(clients[2].recv(), (8, b"next".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

/// A `ShutdownHandle` used on another thread stops a server whose owner
/// waits in `join()`, which then returns the shutdown's result.
#[test]
fn a_shutdown_handle_stops_a_server_joined_elsewhere() {
    let server = start(Server::builder().route(1, echo));
    let mut c = Client::connect(server.local_addr());
    assert_echoes(&mut c, b"up");
    let stop = server.shutdown_handle();
    assert!(!stop.is_shut_down());
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let joiner = thread::spawn(move || {
        let _ = done_tx.send(server.join());
    });
    // The joiner waits: nothing stopped the server yet.
    assert_echoes(&mut c, b"still up");
    assert!(done.is_empty(), "join() returned before any shutdown");
    stop.shutdown(TIMEOUT);
    assert!(stop.is_shut_down());
    let joined = done.recv_timeout(TIMEOUT).expect("join() returned");
    joined.expect("a clean shutdown");
    joiner.join().unwrap();
    c.expect_closed();
}

/// Per-connection data goes with the connection's work to a worker and
/// back: a `Cell` (Send, not Sync) set in `on_open` counts the
/// connection's messages in a handler on the pool, and an inline route
/// reads the same count on the loop.
#[test]
fn connection_data_follows_its_work_to_a_worker() {
    let server = start(
        Server::builder()
            .exec(netloom::Exec::Pool(2))
            .on_open(|s| {
                s.data_mut().insert(Cell::new(0u32));
            })
            .route(1, |ctx: &mut Context<'_>| {
                let n = ctx.data().get::<Cell<u32>>().map_or(0, |c| {
                    c.set(c.get() + 1);
                    c.get()
                });
                ctx.reply(1, n.to_le_bytes())
            })
            .route_on(2, netloom::Exec::Inline, |ctx: &mut Context<'_>| {
                let n = ctx.data().get::<Cell<u32>>().map_or(0, Cell::get);
                ctx.reply(2, n.to_le_bytes())
            }),
    );
    let mut c = Client::connect(server.local_addr());
    for i in 1..=3u32 {
        c.send(1, b"");
        c.send(2, b"");
        assert_eq!(c.recv(), (1, i.to_le_bytes().to_vec()));
        assert_eq!(c.recv(), (2, i.to_le_bytes().to_vec()));
    }
    server.shutdown(TIMEOUT).unwrap();
}
