//! The connection limit, handles that outlive their connection, and
//! `on_close` running exactly once when close reasons race.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use netloom::{CloseReason, ConnHandle, ConnId, Context, Error, Server};

use super::{is_timeout, ms, with_hooks};
use crate::common::{echo, frame, wait_until, Client, TIMEOUT};

/// 6. `max_connections`: over the limit a connection is accepted and closed
///    at once; after one closes, new connections are accepted again.
#[test]
fn max_connections_rejects_then_recovers() {
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(2)
            .max_connections(3)
            .route(1, echo),
    );
    let server = crate::common::start(builder);
    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let ids: Vec<ConnId> = clients.iter().map(|c| hooks.opened(c)).collect();
    assert_eq!(server.connection_count(), 3);

    let mut fourth = Client::connect(server.local_addr());
    fourth.expect_closed();
    wait_until("the rejection to be counted", || {
        server.stats().rejected >= 1
    });
    assert_eq!(server.stats().rejected, 1, "{}", server.stats());
    for c in &mut clients {
        c.send(1, b"ok");
        assert_eq!(c.recv(), (1, b"ok".to_vec()));
    }

    drop(clients.remove(0));
    let closed = hooks.close_of(ids[0]);
    assert!(
        matches!(closed.reason, CloseReason::PeerClosed),
        "{}",
        closed.reason
    );
    let mut fifth = Client::connect(server.local_addr());
    let fifth_id = hooks.opened(&fifth);
    assert!(!ids.contains(&fifth_id));
    fifth.send(1, b"in");
    assert_eq!(fifth.recv(), (1, b"in".to_vec()));
    assert_eq!(server.connection_count(), 3);
    let stats = server.stats();
    assert_eq!((stats.rejected, stats.accepted), (1, 4), "{stats}");
    // The rejected connection never reached the hooks.
    let closes = hooks.closes_so_far();
    assert!(
        closes.iter().all(|c| c.id == ids[0]),
        "unexpected close: {closes:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// 8. A handle of a closed connection fails (or counts the failure), never
///    reaches the connection that reuses its slot, and after shutdown every
///    handle returns `ShutDown`.
#[test]
fn handles_outlive_their_connection() {
    let stale_slot: Arc<Mutex<Option<ConnHandle>>> = Arc::default();
    let stale_in_handler = stale_slot.clone();
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(1)
            .route(1, echo)
            // On the loop thread: send through the stale handle, reply with
            // what happened (0: Closed, 1: Ok, 2: other error).
            .route(7, move |ctx| {
                let stale = stale_in_handler.lock().unwrap().clone().unwrap();
                let code = match stale.send(5, b"from the loop") {
                    Err(Error::Closed) => 0u8,
                    Ok(()) => 1,
                    Err(_) => 2,
                };
                ctx.reply(7, [code])
            }),
    );
    let server = crate::common::start(builder);
    let hub = server.hub();

    let mut a = Client::connect(server.local_addr());
    let a_handle = hub.conn(hooks.opened(&a));
    a_handle.send(5, b"hello").unwrap();
    assert_eq!(a.recv(), (5, b"hello".to_vec()));
    drop(a);
    let closed = hooks.close_of(a_handle.id());
    assert!(
        matches!(closed.reason, CloseReason::PeerClosed),
        "{}",
        closed.reason
    );

    // From another thread: an error now, or a counted drop later.
    let before = hub.stats().send_errors;
    match a_handle.send(5, b"too late") {
        Err(Error::Closed) => {}
        Ok(()) => wait_until("the dropped send to be counted", || {
            hub.stats().send_errors > before
        }),
        Err(e) => panic!("send to a closed connection: {e}"),
    }
    a_handle.close();

    // The slot is reused (one loop): the stale handle must not reach B.
    let mut b = Client::connect(server.local_addr());
    let b_handle = hub.conn(hooks.opened(&b));
    assert_ne!(b_handle.id(), a_handle.id());
    let _ = a_handle.send(5, b"stale");
    b_handle.send(6, b"marker").unwrap();
    assert_eq!(
        b.recv(),
        (6, b"marker".to_vec()),
        "B received a stale handle's message"
    );
    *stale_slot.lock().unwrap() = Some(a_handle.clone());
    b.send(7, b"");
    assert_eq!(b.recv(), (7, vec![0]), "stale send on the loop thread");

    server.shutdown(TIMEOUT).unwrap();
    b.expect_closed();
    for h in [&a_handle, &b_handle] {
        assert!(matches!(h.send(5, b"x"), Err(Error::ShutDown)));
        assert!(matches!(h.send_seq(5, 1, b"x"), Err(Error::ShutDown)));
        // Closing once the server is down is a no-op (it is closed).
        h.close();
    }
    assert!(matches!(hub.broadcast(5, b"x"), Err(Error::ShutDown)));
    assert_eq!(hub.connection_count(), 0);
    assert!(hub.connections().is_empty());
}

/// 9. `on_close` runs exactly once when close reasons race: handler close
///    vs. peer close vs. cross-thread close vs. idle kick.
#[test]
fn on_close_runs_once_when_reasons_race() {
    const ROUNDS: usize = 20;
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(2)
            .heartbeat(ms(5), ms(25))
            .route(1, |ctx: &mut Context<'_>| ctx.close()),
    );
    let server = crate::common::start(builder);
    let addr = server.local_addr();
    let hub = server.hub();
    let close_request = frame(1, b"");
    let connect = || {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    };
    let mut peers = Vec::new();

    // Handler close racing the peer's close.
    for i in 0..ROUNDS {
        let mut s = connect();
        peers.push(s.local_addr().unwrap());
        let _ = s.write_all(&close_request);
        if i % 2 == 0 {
            drop(s);
        } else {
            // Half-close, then wait for the server's close.
            let _ = s.shutdown(Shutdown::Write);
            let mut buf = [0u8; 16];
            match s.read(&mut buf) {
                Ok(0) => {}
                Err(e) if !is_timeout(&e) => {}
                other => panic!("expected the server to close, got {other:?}"),
            }
        }
    }
    // Handler close, cross-thread close and peer close at once.
    for i in 0..ROUNDS {
        let mut s = connect();
        let local = s.local_addr().unwrap();
        peers.push(local);
        let handle = hub.conn(hooks.id_of(local));
        match i % 3 {
            0 => {
                let _ = s.write_all(&close_request);
                handle.close();
                drop(s);
            }
            1 => {
                handle.close();
                let _ = s.write_all(&close_request);
                drop(s);
            }
            _ => {
                let _ = s.write_all(&close_request);
                drop(s);
                handle.close();
            }
        }
    }
    // Idle kick racing the handler close and the peer close: each peer
    // speaks up around the idle timeout. The sleeps spread the race; they
    // synchronise nothing.
    let idlers: Vec<_> = (0..ROUNDS)
        .map(|i| {
            let s = connect();
            peers.push(s.local_addr().unwrap());
            let close_request = close_request.clone();
            thread::spawn(move || {
                let mut s = s;
                thread::sleep(ms(15 + i as u64));
                let _ = s.write_all(&close_request);
            })
        })
        .collect();
    for t in idlers {
        t.join().unwrap();
    }

    let total = peers.len();
    let ids: Vec<ConnId> = peers.iter().map(|p| hooks.id_of(*p)).collect();
    let mut closes = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while closes.len() < total {
        match hooks.closes.recv_deadline(deadline) {
            Ok(c) => closes.push(c),
            Err(_) => panic!("{} of {total} on_close calls: {closes:?}", closes.len()),
        }
    }
    server.shutdown(TIMEOUT).unwrap();
    // Nothing more after shutdown joined every loop: no second call.
    closes.extend(hooks.closes.try_iter());
    assert_eq!(closes.len(), total, "on_close calls: {closes:?}");
    let mut per_id: HashMap<ConnId, usize> = HashMap::new();
    for c in &closes {
        *per_id.entry(c.id).or_default() += 1;
        assert!(
            matches!(
                c.reason,
                CloseReason::Local | CloseReason::PeerClosed | CloseReason::IdleTimeout
            ),
            "conn {} closed for {}",
            c.id,
            c.reason
        );
    }
    for id in &ids {
        assert_eq!(per_id.get(id), Some(&1), "on_close calls for {id}");
    }
    assert_eq!(per_id.len(), total);
    let stats = hub.stats();
    assert_eq!(stats.closed_total(), total as u64, "{stats}");
    assert_eq!(stats.connections, 0, "{stats}");
}
