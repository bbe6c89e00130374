//! A connection's life with its work off the loop: a panic closes only
//! that connection, `on_close` sees what a pool handler stored even when
//! the peer left while it ran, `ConnHandle::run` waits behind the
//! connection's work, and shutdown waits for a running handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};
use netloom::{CloseReason, Context, Exec, Server};

use crate::common::{start_tracked, Client, TIMEOUT};

struct Stored(u32);

#[test]
fn a_panic_on_the_pool_closes_only_its_connection() {
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .exec(Exec::Pool(2))
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body()))
            .route(9, |_ctx: &mut Context<'_>| -> netloom::Result<()> {
                panic!("a bug in a blocking handler")
            }),
    );
    let mut bad = Client::connect(server.local_addr());
    let mut good = Client::connect(server.local_addr());
    bad.send(1, b"before");
    assert_eq!(bad.recv(), (1, b"before".to_vec()));
    bad.send(9, b"");
    bad.send(1, b"never handled");
    bad.expect_closed();
    let reason = closes.reason_for(bad.stream.local_addr().unwrap());
    assert!(matches!(reason, CloseReason::HandlerPanic), "{reason:?}");
    for i in 0..10u8 {
        good.send(1, &[i]);
        assert_eq!(good.recv(), (1, vec![i]));
    }
    server.shutdown(TIMEOUT).unwrap();
}

/// The peer leaves while its handler runs on the pool: `on_close` runs
/// once, after the handler, and sees what the handler stored.
#[test]
fn on_close_sees_what_a_pool_handler_stored_after_the_peer_left() {
    let (running_tx, running) = bounded(1);
    let (left_tx, left) = bounded::<()>(1);
    let (seen_tx, seen) = unbounded();
    let closes = Arc::new(AtomicUsize::new(0));
    let counted = closes.clone();
    let server = crate::common::start(
        Server::builder()
            .event_loops(2)
            .exec(Exec::Pool(1))
            .route(1, move |ctx: &mut Context<'_>| {
                let _ = running_tx.send(());
                // Until the peer has gone (its close is seen by the loop
                // meanwhile).
                let _ = left.recv_timeout(TIMEOUT);
                ctx.data_mut().insert(Stored(7));
            })
            .on_close(move |s, reason| {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = seen_tx.send((s.data().get::<Stored>().map(|v| v.0), reason.clone()));
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    running.recv_timeout(TIMEOUT).unwrap();
    drop(c);
    let hub = server.hub();
    crate::common::wait_until("the close seen by the loop", || {
        hub.stats().closed_by(&CloseReason::PeerClosed) == 1
    });
    assert!(
        seen.is_empty(),
        "on_close ran while the handler still held the data"
    );
    left_tx.send(()).unwrap();
    let (stored, reason) = seen.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(stored, Some(7));
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(closes.load(Ordering::SeqCst), 1);
}

/// `ConnHandle::run` from another thread waits behind the connection's
/// work on the pool, and sees what it stored.
#[test]
fn run_waits_behind_the_connections_work_and_sees_its_data() {
    let (handle_tx, handles) = unbounded();
    let server = crate::common::start(Server::builder().exec(Exec::Pool(2)).route(
        1,
        move |ctx: &mut Context<'_>| {
            let _ = handle_tx.send(ctx.handle());
            thread::sleep(Duration::from_millis(100));
            ctx.data_mut().insert(Stored(42));
            ctx.reply(1, b"done")
        },
    ));
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    let handle = handles.recv_timeout(TIMEOUT).unwrap();
    // Sent while the handler sleeps: runs after it.
    let got = handle
        .run(|s| s.data().get::<Stored>().map(|v| v.0))
        .wait()
        .unwrap();
    assert_eq!(got, Some(42));
    assert_eq!(c.recv(), (1, b"done".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

/// Shutdown while a handler blocks on the pool: the server waits for it
/// (within the deadline), `on_close` runs with its data, join returns.
#[test]
fn shutdown_waits_for_a_running_handler_and_runs_on_close() {
    let (running_tx, running) = bounded(1);
    let (seen_tx, seen) = unbounded();
    let server = crate::common::start(
        Server::builder()
            .exec(Exec::Pool(1))
            .route(1, move |ctx: &mut Context<'_>| {
                let _ = running_tx.send(());
                thread::sleep(Duration::from_millis(200));
                ctx.data_mut().insert(Stored(1));
            })
            .on_close(move |s, reason| {
                let _ = seen_tx.send((s.data().get::<Stored>().map(|v| v.0), reason.clone()));
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    running.recv_timeout(TIMEOUT).unwrap();
    server.shutdown(TIMEOUT).unwrap();
    let (stored, reason) = seen.try_recv().expect("on_close ran before join returned");
    assert_eq!(stored, Some(1));
    assert!(matches!(reason, CloseReason::Shutdown), "{reason:?}");
    c.expect_closed();
}

/// A dialed link with reconnect loses its socket while a worker holds its
/// data: the data stays lent (its next message waits for it, and sees what
/// the first one stored), and `on_reconnect` runs once the data is back.
#[test]
fn a_link_lost_while_a_worker_holds_its_data_gets_it_back() {
    use std::io::Write;
    use std::net::TcpListener;

    use netloom::{Dial, Reconnect};

    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = backend.local_addr().unwrap();
    let (running_tx, running) = bounded(1);
    let (go_tx, go) = bounded::<()>(1);
    let (seen_tx, seen) = unbounded();
    let reconnected_tx = seen_tx.clone();
    let server = crate::common::start(
        Server::builder()
            .event_loops(2)
            .exec(Exec::Pool(2))
            .route(1, move |ctx: &mut Context<'_>| {
                let _ = running_tx.send(());
                let _ = go.recv_timeout(TIMEOUT);
                ctx.data_mut().insert(Stored(1));
            })
            .route(2, move |ctx: &mut Context<'_>| {
                let _ = seen_tx.send(("message", ctx.data().get::<Stored>().map(|v| v.0)));
            })
            .on_reconnect(move |s, _| {
                let _ = reconnected_tx.send(("reconnect", s.data().get::<Stored>().map(|v| v.0)));
            }),
    );
    let policy = Reconnect {
        initial: Duration::from_millis(10),
        ..Reconnect::default()
    };
    server
        .hub()
        .dial(Dial::new(addr).reconnect(policy))
        .unwrap();
    backend.set_nonblocking(false).unwrap();
    let (mut first, _) = backend.accept().unwrap();
    first.write_all(&crate::common::frame(1, b"")).unwrap();
    running.recv_timeout(TIMEOUT).unwrap();
    // Lost while the handler runs; the server dials again.
    drop(first);
    let (mut second, _) = backend.accept().unwrap();
    second.write_all(&crate::common::frame(2, b"")).unwrap();
    // Neither the hook nor the next message may run without the data.
    assert!(
        seen.recv_timeout(Duration::from_millis(200)).is_err(),
        "ran while a worker held the data"
    );
    go_tx.send(()).unwrap();
    let mut got = vec![
        seen.recv_timeout(TIMEOUT).unwrap(),
        seen.recv_timeout(TIMEOUT).unwrap(),
    ];
    got.sort();
    assert_eq!(got, vec![("message", Some(1)), ("reconnect", Some(1))]);
    server.shutdown(TIMEOUT).unwrap();
}
