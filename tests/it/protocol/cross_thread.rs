//! Cross-thread sends and broadcast: handles used from other threads (and
//! after their connection closed), broadcast to every client, and handlers
//! and `on_close` sending to connections on other loops.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crossbeam_channel::unbounded;
use netloom::{CloseReason, ConnHandle, ConnId, Error, Server};

use super::{assert_echoes, assert_eof, echo_builder, local_addr};
use crate::common::{echo, start, start_tracked, wait_until, Client, TIMEOUT};

#[test]
fn handle_sends_from_another_thread_and_fails_or_counts_after_close() {
    let (handles_tx, handles) = unbounded::<ConnHandle>();
    let (server, mut closes) = start_tracked(echo_builder(2).route(5, move |ctx| {
        let _ = handles_tx.send(ctx.handle());
        ctx.reply(5, b"registered")
    }));

    let mut a = Client::connect(server.local_addr());
    a.send(5, b"");
    assert_eq!(a.recv(), (5, b"registered".to_vec()));
    let handle = handles
        .recv_timeout(TIMEOUT)
        .expect("handler sent its handle");

    // From the test thread (no loop here).
    handle.send(42, b"pushed from the test thread").unwrap();
    assert_eq!(a.recv(), (42, b"pushed from the test thread".to_vec()));

    // From yet another thread, many in a row: they arrive in send order.
    let h = handle.clone();
    std::thread::spawn(move || {
        for i in 0..100u32 {
            h.send(43, i.to_le_bytes()).unwrap();
        }
    })
    .join()
    .unwrap();
    for i in 0..100u32 {
        assert_eq!(a.recv(), (43, i.to_le_bytes().to_vec()));
    }

    // The client goes away; once on_close has run, a send through the old
    // handle either fails with Closed or is counted in send_errors (the
    // documented contract for sends from a non-loop thread).
    let a_addr = local_addr(&a);
    drop(a);
    assert!(matches!(closes.reason_for(a_addr), CloseReason::PeerClosed));
    for attempt in 0..2 {
        let before = server.stats().send_errors;
        let result = if attempt == 0 {
            handle.send(42, b"too late")
        } else {
            server.hub().conn(handle.id()).send(42, b"too late")
        };
        match result {
            Err(Error::Closed) => {}
            Ok(()) => wait_until("send to a closed connection counted", || {
                server.stats().send_errors > before
            }),
            Err(e) => panic!("unexpected error sending to a closed connection: {e}"),
        }
    }

    // New connections may reuse the closed one's slot; the stale handle
    // must never reach them.
    let mut b = Client::connect(server.local_addr());
    let mut c = Client::connect(server.local_addr());
    for client in [&mut b, &mut c] {
        client.send(5, b"");
        assert_eq!(client.recv(), (5, b"registered".to_vec()));
    }
    // b registered (and got its answer) before c did: handles arrive in order.
    let fresh: Vec<ConnHandle> = (0..2)
        .map(|_| handles.recv_timeout(TIMEOUT).unwrap())
        .collect();
    assert!(
        fresh.iter().all(|h| h.id() != handle.id()),
        "a ConnId was handed out twice"
    );
    let before = server.stats().send_errors;
    match handle.send(44, b"stale") {
        Err(Error::Closed) => {}
        Ok(()) => wait_until("stale send counted", || server.stats().send_errors > before),
        Err(e) => panic!("unexpected error sending through a stale handle: {e}"),
    }
    for client in [&mut b, &mut c] {
        // The first frame they see must be their own echo, not "stale".
        assert_echoes(client, b"still mine");
    }

    // Closing through a handle from this thread: the client sees EOF and
    // on_close gets Local.
    fresh[0].close();
    assert_eof(&mut b);
    assert!(matches!(
        closes.reason_for(local_addr(&b)),
        CloseReason::Local
    ));
    assert_echoes(&mut c, b"unaffected");
}

#[test]
fn broadcast_reaches_every_client_exactly_once() {
    const CLIENTS: usize = 50;
    let (opened_tx, opened) = unbounded::<ConnId>();
    let server = start(
        echo_builder(3)
            .on_open(move |session| {
                let _ = opened_tx.send(session.id());
            })
            .route(71, |ctx| ctx.hub().broadcast(72, ctx.body())),
    );
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let ids: HashSet<ConnId> = (0..CLIENTS)
        .map(|_| opened.recv_timeout(TIMEOUT).expect("on_open ran"))
        .collect();
    assert_eq!(ids.len(), CLIENTS, "ConnIds must be distinct");
    let loops: HashSet<usize> = ids.iter().map(ConnId::loop_index).collect();
    assert_eq!(loops.len(), 3, "connections should span every loop");

    let hub = server.hub();
    assert_eq!(hub.connection_count(), CLIENTS);
    let listed: HashSet<ConnId> = hub.connections().iter().map(ConnHandle::id).collect();
    assert_eq!(
        listed, ids,
        "hub.connections() must list every open connection"
    );

    // From the test thread.
    hub.broadcast(70, b"news").unwrap();
    for c in clients.iter_mut() {
        assert_eq!(c.recv(), (70, b"news".to_vec()));
    }

    // From inside a handler (its own loop directly, the others through
    // their inboxes).
    clients[7].send(71, b"relayed by a handler");
    for c in clients.iter_mut() {
        assert_eq!(c.recv(), (72, b"relayed by a handler".to_vec()));
    }

    // Exactly one copy each: the next frame every client sees is its echo.
    for (i, c) in clients.iter_mut().enumerate() {
        assert_echoes(c, format!("sync {i}").as_bytes());
    }
}

/// A connection's name in the relay test (user data).
struct Name(String);

type Registry = Arc<Mutex<HashMap<String, ConnHandle>>>;

#[test]
fn handlers_and_on_close_send_to_connections_on_other_loops() {
    let registry: Registry = Arc::default();
    let (joined, say, left) = (registry.clone(), registry.clone(), registry.clone());
    let server = start(
        Server::builder()
            .event_loops(2)
            .route(1, echo)
            // 60 "name": join under that name; answers with the loop index.
            .route(60, move |ctx| {
                let name = String::from_utf8_lossy(ctx.body()).into_owned();
                joined.lock().unwrap().insert(name.clone(), ctx.handle());
                ctx.data_mut().insert(Name(name));
                let index = ctx.id().loop_index() as u32;
                ctx.reply(60, index.to_le_bytes())
            })
            // 61 "to:text": relay as 62 "from: text" through the target's handle.
            .route(61, move |ctx| -> netloom::HandlerResult {
                let body = ctx.body();
                let text = String::from_utf8_lossy(body);
                let (to, text) = text.split_once(':').ok_or("no target")?;
                let from = ctx.data().get::<Name>().map_or("?", |n| n.0.as_str());
                let target = say.lock().unwrap().get(to).cloned().ok_or("no such peer")?;
                target.send(62, format!("{from}: {text}"))?;
                ctx.reply(61, b"sent")?;
                Ok(())
            })
            // Tell everyone else who left, from the leaver's loop.
            .on_close(move |session, _| {
                let Some(name) = session.data().get::<Name>().map(|n| n.0.clone()) else {
                    return;
                };
                let others: Vec<ConnHandle> = {
                    let mut map = left.lock().unwrap();
                    map.remove(&name);
                    map.values().cloned().collect()
                };
                for other in others {
                    let _ = other.send(63, format!("{name} left"));
                }
            }),
    );
    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let mut loops = Vec::new();
    for (c, name) in clients.iter_mut().zip(["a", "b", "c"]) {
        c.send(60, name.as_bytes());
        let (id, body) = c.recv();
        assert_eq!(id, 60);
        loops.push(u32::from_le_bytes(body[..].try_into().unwrap()));
    }
    // Round-robin over two loops: a and c share one, b is on the other.
    assert_eq!(loops[0], loops[2]);
    assert_ne!(loops[0], loops[1]);
    let [a, b, c] = &mut clients[..] else {
        unreachable!()
    };

    a.send(61, b"b:across loops");
    assert_eq!(a.recv(), (61, b"sent".to_vec()));
    assert_eq!(b.recv(), (62, b"a: across loops".to_vec()));

    a.send(61, b"c:same loop, other connection");
    assert_eq!(a.recv(), (61, b"sent".to_vec()));
    assert_eq!(c.recv(), (62, b"a: same loop, other connection".to_vec()));

    b.send(61, b"a:and back");
    assert_eq!(b.recv(), (61, b"sent".to_vec()));
    assert_eq!(a.recv(), (62, b"b: and back".to_vec()));

    // a leaves: its on_close reaches c on its own loop and b on the other.
    clients.remove(0);
    let [b, c] = &mut clients[..] else {
        unreachable!()
    };
    assert_eq!(b.recv(), (63, b"a left".to_vec()));
    assert_eq!(c.recv(), (63, b"a left".to_vec()));
    // Exactly one notice each.
    assert_echoes(b, b"nothing else queued");
    assert_echoes(c, b"nothing else queued");
}
