//! The dialer: messages sent while connect attempts fail are kept (issue
//! 25, item 3), and reconnect policies whose delays overflow are refused
//! or saturate instead of killing the loop (item 6).

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use netloom::{
    CloseReason, ConnHandle, Context, Dial, Disconnect, Error, Reconnect, SeqPacker, Server,
    ServerHandle,
};

use super::free_port;
use crate::common::{init_logs, TIMEOUT};

/// A quick schedule: 40 ms, then 80 ms.
fn quick() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(40),
        factor: 2.0,
        max: Duration::from_millis(80),
        jitter: 0.0,
        max_attempts: None,
    }
}

/// A backend on `addr` with the sequence packer: id 1 answered with its
/// body, id 5's bodies forwarded to the returned channel.
fn backend_on(addr: SocketAddr) -> (ServerHandle, Receiver<Vec<u8>>) {
    init_logs();
    let (got_tx, got) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body_bytes()))
        .route(5, move |ctx: &mut Context<'_>| {
            let _ = got_tx.send(ctx.body().to_vec());
        })
        .bind(addr)
        .expect("bind the backend")
        .start()
        .expect("start the backend");
    (server, got)
}

/// A dialing server (on `loops` loops) reporting every `on_disconnect`.
fn dialer(loops: usize) -> (ServerHandle, Receiver<Disconnect>) {
    init_logs();
    let (down_tx, downs) = unbounded();
    let server = Server::builder()
        .event_loops(loops)
        .packer(SeqPacker::default())
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.clone());
        })
        .start()
        .expect("start the dialer");
    (server, downs)
}

#[test]
fn a_message_queued_while_connects_fail_arrives_once_the_backend_is_up() {
    let addr = free_port();
    let (client, downs) = dialer(2);
    let conn = client
        .hub()
        .dial(Dial::new(addr).reconnect(quick()))
        .unwrap();
    let first = downs
        .recv_timeout(TIMEOUT)
        .expect("the first connect fails");
    assert!(
        matches!(first.reason, CloseReason::ConnectFailed(_)),
        "{:?}",
        first.reason
    );
    // Queued while down (the loop confirms it), then at least one more
    // connect fails with it queued.
    // A request made while down fails at the next loss, and its frame is
    // never sent (its caller was told it failed). The loop applies it
    // before the message after it, whose receipt says it is queued.
    let request = conn.request(5, b"request", TIMEOUT).unwrap();
    conn.send_confirmed(5, b"hello")
        .wait()
        .expect("queued while down");
    while downs.try_recv().is_ok() {}
    let again = downs.recv_timeout(TIMEOUT).expect("another connect fails");
    assert!(
        matches!(again.reason, CloseReason::ConnectFailed(_)),
        "{:?}",
        again.reason
    );
    let failed = request.wait();
    assert!(matches!(failed, Err(Error::Disconnected)), "{failed:?}");
    let (backend, got) = backend_on(addr);
    conn.send(5, b"world").unwrap();
    assert_eq!(
        got.recv_timeout(TIMEOUT).expect("hello arrives"),
        b"hello",
        "the message sent while down was lost"
    );
    assert_eq!(
        got.recv_timeout(TIMEOUT).unwrap(),
        b"world",
        "a failed request was sent after all"
    );
    // Nothing twice: a round trip after them finds nothing else.
    let echo = conn.request(1, b"end", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&echo.body[..], b"end");
    assert!(got.try_recv().is_err(), "a message arrived twice");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// Policies whose numbers make no sense are refused where the dial is
/// made, with a typed error, and nothing is dialed.
#[test]
fn a_reconnect_policy_that_makes_no_sense_is_an_error_from_dial() {
    let (client, _downs) = dialer(1);
    let bad = [
        Reconnect {
            factor: f64::NAN,
            ..quick()
        },
        Reconnect {
            factor: f64::INFINITY,
            ..quick()
        },
        Reconnect {
            factor: 0.5,
            ..quick()
        },
        Reconnect {
            jitter: f64::NAN,
            ..quick()
        },
        Reconnect {
            jitter: 1.5,
            ..quick()
        },
        Reconnect {
            jitter: -0.1,
            ..quick()
        },
    ];
    for policy in bad {
        match client.hub().dial(Dial::new(free_port()).reconnect(policy)) {
            Err(Error::Config(msg)) => assert!(msg.contains("Reconnect"), "{msg}"),
            other => panic!("{policy:?}: expected Error::Config, got {other:?}"),
        }
    }
    assert_eq!(client.hub().connection_count(), 0);
    client.shutdown(TIMEOUT).unwrap();
}

/// `max: Duration::MAX` with a huge factor: the second delay overflows
/// any `Duration`. It saturates at the documented "forever" (the loop
/// survives, and serves its other connections); closing the connection
/// ends the wait.
#[test]
fn a_reconnect_delay_beyond_any_duration_does_not_kill_the_loop() {
    let (backend, got) = backend_on(free_port());
    let (client, downs) = dialer(1);
    let nobody = free_port();
    let policy = Reconnect {
        initial: Duration::from_millis(20),
        factor: 1e300,
        max: Duration::MAX,
        jitter: 0.5,
        max_attempts: None,
    };
    let conn = client
        .hub()
        .dial(Dial::new(nobody).reconnect(policy))
        .unwrap();
    let first = downs.recv_timeout(TIMEOUT).expect("first loss");
    assert_eq!(first.attempt, 1);
    assert!(first.retry_in <= Duration::from_millis(30), "{first:?}");
    let second = downs.recv_timeout(TIMEOUT).expect("second loss");
    assert_eq!(second.attempt, 2);
    assert!(
        second.retry_in > Duration::from_secs(50 * 365 * 86_400)
            && second.retry_in <= netloom::FOREVER,
        "{:?}",
        second.retry_in
    );
    still_serves_then_stop(client, backend, &got, conn);
}

/// `initial: Duration::MAX`: the first delay is `FOREVER`, shown as such
/// in `on_disconnect`, and the loop survives to serve another dial.
#[test]
fn a_reconnect_policy_of_duration_max_waits_forever_and_says_so() {
    let (backend, got) = backend_on(free_port());
    let (client, downs) = dialer(1);
    let policy = Reconnect {
        initial: Duration::MAX,
        factor: 2.0,
        max: Duration::MAX,
        jitter: 0.0,
        max_attempts: None,
    };
    let conn = client
        .hub()
        .dial(Dial::new(free_port()).reconnect(policy))
        .unwrap();
    let first = downs.recv_timeout(TIMEOUT).expect("first loss");
    assert_eq!((first.attempt, first.retry_in), (1, netloom::FOREVER));
    still_serves_then_stop(client, backend, &got, conn);
}

/// The dialer's one loop still works (another dial on it is served);
/// then `conn` is closed and both servers stop, no loop thread panicked.
fn still_serves_then_stop(
    client: ServerHandle,
    backend: ServerHandle,
    got: &Receiver<Vec<u8>>,
    conn: ConnHandle,
) {
    let other = client.hub().connect(backend.local_addr()).unwrap();
    other.send(5, b"alive").unwrap();
    assert_eq!(got.recv_timeout(TIMEOUT).expect("loop alive"), b"alive");
    conn.close();
    client.shutdown(TIMEOUT).expect("no loop thread panicked");
    backend.shutdown(TIMEOUT).unwrap();
}
