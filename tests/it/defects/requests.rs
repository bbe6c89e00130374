//! Reply callbacks are user code: the loop holds no borrow of its tables
//! while one runs, so a callback may call back into the loop (retry on
//! the same handle, the natural pattern) and runs to its end.

use crossbeam_channel::unbounded;
use netloom::{Context, Dial, Error, Reconnect, SeqPacker, Server, ServerHandle};

use crate::common::{start, TIMEOUT};

/// A backend that answers id 1 and never answers id 3.
fn backend() -> ServerHandle {
    start(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body()))
            .route(3, |_ctx: &mut Context<'_>| {}),
    )
}

/// A request whose callback retries on `Disconnected`: the retry's result
/// and the retry's own outcome are reported, and so is the line after the
/// retry (which a panic inside the retry would skip).
fn retry_on_disconnect(dial: impl FnOnce(std::net::SocketAddr) -> Dial, retry_ok: bool) {
    let backend = backend();
    crate::common::init_logs();
    let client = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .start()
        .unwrap();
    let conn = client.hub().dial(dial(backend.local_addr())).unwrap();
    conn.request(1, b"up", TIMEOUT).unwrap().wait().unwrap();
    let (after_tx, after) = unbounded();
    let (second_tx, second) = unbounded();
    let handle = conn.clone();
    conn.request_with(3, b"never", TIMEOUT, move |first| {
        let retried = match first {
            Err(Error::Disconnected) => handle.request_with(3, b"again", TIMEOUT, move |r| {
                let _ = second_tx.send(r.map(|m| m.body));
            }),
            other => panic!("the first request: {other:?}"),
        };
        let _ = after_tx.send(retried);
    })
    .unwrap();
    backend.shutdown(TIMEOUT).unwrap();
    let retried = after
        .recv_timeout(TIMEOUT)
        .expect("the callback ran past its retry");
    match (retry_ok, &retried) {
        (true, Ok(())) | (false, Err(Error::Closed)) => {}
        _ => panic!("the retry returned {retried:?}"),
    }
    client.shutdown(TIMEOUT).unwrap();
    if retry_ok {
        // The retry waited on the connection, down; it fails with it.
        let outcome = second.recv_timeout(TIMEOUT).expect("the retry's outcome");
        assert!(matches!(outcome, Err(Error::Disconnected)), "{outcome:?}");
    }
}

#[test]
fn a_callback_that_retries_on_a_closed_connection_runs_to_its_end() {
    retry_on_disconnect(Dial::new, false);
}

#[test]
fn a_callback_that_retries_on_a_reconnecting_connection_runs_to_its_end() {
    retry_on_disconnect(|addr| Dial::new(addr).reconnect(Reconnect::default()), true);
}
