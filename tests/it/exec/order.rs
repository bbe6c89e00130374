//! A connection's order across execution models (found by mutation
//! testing: removing the check that a batch goes behind the work already
//! out at an executor left every test passing).

use netloom::{Exec, Server};

use crate::common::{start, Client, TIMEOUT};

/// Message 1 runs on the pool and is held there; message 2, routed
/// inline and read in a later batch, waits behind it: it runs only once
/// message 1's handler returned, and the replies leave in that order.
/// Another connection's message 2 meanwhile runs at once.
#[test]
fn an_inline_route_waits_behind_the_connections_work_on_the_pool() {
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let (release, release_rx) = crossbeam_channel::bounded::<()>(1);
    let (ran_tx, ran) = crossbeam_channel::unbounded();
    let ran_1 = ran_tx.clone();
    let server = start(
        Server::builder()
            .exec(Exec::Pool(2))
            .route(1, move |ctx| {
                let _ = started_tx.send(());
                release_rx.recv_timeout(TIMEOUT).expect("released");
                let _ = ran_1.send(1);
                ctx.reply(1, b"one")
            })
            .route_on(2, Exec::Inline, move |ctx| {
                let _ = ran_tx.send(2);
                ctx.reply(2, b"two")
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    started
        .recv_timeout(TIMEOUT)
        .expect("message 1 at the pool");
    c.send(2, b"");
    // Message 2 is read while message 1 is held (both frames are in);
    // had it run, it would have said so at once. The wait bounds that
    // assertion, it synchronises nothing.
    crate::common::wait_until("message 2 read", || server.stats().bytes_in == 16);
    assert!(
        ran.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "message 2 ran while message 1 was still at the pool"
    );
    // Another connection's inline message is not held behind it.
    let mut other = Client::connect(server.local_addr());
    other.send(2, b"");
    assert_eq!(other.recv(), (2, b"two".to_vec()), "another connection");
    assert_eq!(ran.recv_timeout(TIMEOUT), Ok(2));
    release.send(()).unwrap();
    assert_eq!(ran.recv_timeout(TIMEOUT), Ok(1));
    assert_eq!(ran.recv_timeout(TIMEOUT), Ok(2));
    assert_eq!(c.recv(), (1, b"one".to_vec()));
    assert_eq!(c.recv(), (2, b"two".to_vec()));
}
