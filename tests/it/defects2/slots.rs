//! Work that user code leaves at the end of a loop's turn (`on_close` of a
//! connection closed there, a reply callback failed by that close): a
//! dial starts connecting and a request's timer is set on the next turn,
//! not when something next wakes the loop (on an idle loop, never). And a
//! dial waiting to connect names its connection by its whole id, so a
//! slot freed and taken again meanwhile never connects twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{ConnHandle, Context, Dial, Error, SeqPacker, Server};

use crate::common::{echo, start, Client, TIMEOUT};

/// `on_close` of an accepted connection dials a link and closes it at
/// once (its slot is freed before the loop starts connecting it: it never
/// connects); the link's own `on_close` dials again, into the same slot.
/// That second link connects once: the backend accepts one connection,
/// not two.
#[test]
fn a_dial_into_a_slot_freed_before_it_connected_connects_once() {
    let backend = start(Server::builder().event_loops(1).route(1, echo));
    let addr = backend.local_addr();
    let step = Arc::new(AtomicUsize::new(0));
    let (echoed_tx, echoed) = unbounded();
    let (opened_tx, opened) = unbounded();
    let client = start(
        Server::builder()
            .event_loops(1)
            .on_open(move |s| {
                let _ = opened_tx.send(s.handle());
            })
            .route(1, move |ctx: &mut Context<'_>| {
                let _ = echoed_tx.send(ctx.body().to_vec());
            })
            .on_close(move |s, _| match step.fetch_add(1, Ordering::SeqCst) {
                0 => s.hub().dial(Dial::new(addr)).unwrap().close(),
                1 => {
                    let link = s.hub().dial(Dial::new(addr)).unwrap();
                    link.send(1, b"hello").unwrap();
                }
                _ => {}
            }),
    );
    // Closed from another thread: its close (and `on_close`) comes at the
    // end of a turn, after the loop started this turn's dials.
    let _x = Client::connect(client.local_addr());
    let x = opened
        .recv_timeout(TIMEOUT)
        .expect("the client is accepted");
    x.close();
    let body = echoed.recv_timeout(TIMEOUT).expect("the link's echo");
    assert_eq!(body, b"hello");
    let stats = backend.stats();
    assert_eq!(
        stats.accepted, 1,
        "the backend accepted {} connections for one link",
        stats.accepted
    );
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// A request made at the end of a turn (in `on_close` of a connection
/// closed from another thread) gets its timer at once: it times out on
/// time on an idle loop, not whenever something next wakes the loop.
#[test]
fn a_request_made_in_on_close_times_out_on_an_idle_loop() {
    // Answers 1, never 3.
    let backend = start(
        Server::builder()
            .event_loops(1)
            .packer(SeqPacker::default())
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body()))
            .route(3, |_ctx: &mut Context<'_>| {}),
    );
    let link: Arc<OnceLock<ConnHandle>> = Arc::new(OnceLock::new());
    let (outcome_tx, outcome) = unbounded();
    let (opened_tx, opened) = unbounded();
    let client = start({
        let link = link.clone();
        Server::builder()
            .event_loops(1)
            .packer(SeqPacker::default())
            .on_open(move |s| {
                let _ = opened_tx.send(s.handle());
            })
            .on_close(move |_, _| {
                if let Some(link) = link.get() {
                    let tx = outcome_tx.clone();
                    let sent = link.request_with(3, b"anyone?", Duration::from_millis(100), {
                        let tx = tx.clone();
                        move |r| {
                            let _ = tx.send(r.map(|m| m.body));
                        }
                    });
                    if let Err(e) = sent {
                        let _ = tx.send(Err(e));
                    }
                }
            })
    });
    let up = client.hub().dial(Dial::new(backend.local_addr())).unwrap();
    // The link is up (and no timer of its requests is left).
    let probe = up.request(1, b"probe", TIMEOUT).unwrap();
    assert_eq!(&probe.wait().unwrap().body[..], b"probe");
    let link_id = up.id();
    link.set(up).unwrap();
    let _x = Client::connect(client.local_addr());
    // `on_open` runs for the link too.
    let x = loop {
        let h = opened
            .recv_timeout(TIMEOUT)
            .expect("the client is accepted");
        if h.id() != link_id {
            break h;
        }
    };
    let closed = Instant::now();
    x.close();
    let r = outcome
        .recv_timeout(TIMEOUT)
        .expect("the request's outcome");
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    // Its 100 ms, a wheel tick late at most, and a margin for a busy
    // machine.
    let late = closed.elapsed();
    assert!(late < Duration::from_secs(2), "timed out after {late:?}");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}
