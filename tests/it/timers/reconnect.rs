//! A dialed connection with a reconnect policy keeps its id, data and
//! timers across a loss: its cron goes on after it is back, whether the
//! loss came from the backend (closed at once) or from our side with
//! data still queued (the link lingers, closing, for `close_linger`
//! before it reconnects, and a timer that comes due meanwhile waits for
//! it instead of being dropped).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::{Builder, CloseReason, Dial, Error, Reconnect, SeqPacker, Server};

use crate::common::{init_logs, TIMEOUT};

/// A backend that hands every accepted socket to the returned channel
/// (open while it is held there) and never reads.
fn backend() -> (SocketAddr, Receiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accepted) = unbounded();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            if tx.send(stream).is_err() {
                return;
            }
        }
    });
    (addr, accepted)
}

fn quick() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(20),
        factor: 1.0,
        max: Duration::from_millis(20),
        jitter: 0.0,
        max_attempts: None,
    }
}

/// A dialing server (one loop, sequence packer) with a 20 ms cron that
/// reports its runs, reporting every reconnect.
fn dialer(builder: Builder) -> (Builder, Receiver<()>, Receiver<()>) {
    init_logs();
    let (tick_tx, ticks) = unbounded();
    let (back_tx, backs): (Sender<()>, _) = unbounded();
    let builder = builder
        .event_loops(1)
        .packer(SeqPacker::default())
        .cron(Duration::from_millis(20), move |_s| {
            let _ = tick_tx.send(());
        })
        .on_reconnect(move |_s, _| {
            let _ = back_tx.send(());
        });
    (builder, ticks, backs)
}

/// After the reconnect, the cron runs again (the runs before it drained).
fn assert_cron_runs(ticks: &Receiver<()>) {
    while ticks.try_recv().is_ok() {}
    assert!(
        ticks.recv_timeout(TIMEOUT).is_ok(),
        "the cron of the reconnected link never ran again"
    );
}

#[test]
fn a_dials_cron_goes_on_after_the_backend_closed_it() {
    let (addr, accepted) = backend();
    let (builder, ticks, backs) = dialer(Server::builder());
    let server = builder.start().expect("start");
    let _conn = server
        .hub()
        .dial(Dial::new(addr).reconnect(quick()))
        .unwrap();
    let first = accepted.recv_timeout(TIMEOUT).expect("connected");
    ticks.recv_timeout(TIMEOUT).expect("the cron runs");
    drop(first);
    backs.recv_timeout(TIMEOUT).expect("reconnected");
    let _second = accepted.recv_timeout(TIMEOUT).expect("accepted again");
    assert_cron_runs(&ticks);
    server.shutdown(TIMEOUT).unwrap();
}

/// Closed by our side with 16 MiB queued for a backend that does not
/// read (a request timed out, `reconnect_after_timeouts(1)`): the link
/// lingers 600 ms, in which the 20 ms cron comes due many times.
#[test]
fn a_dials_cron_goes_on_after_a_close_that_lingered() {
    let (addr, accepted) = backend();
    let (down_tx, downs) = unbounded();
    let (builder, ticks, backs) = dialer(
        Server::builder()
            .write_high_water(256 << 20)
            .close_linger(Duration::from_millis(600))
            .on_disconnect(move |_s, d| {
                let _ = down_tx.send(d.reason.clone());
            }),
    );
    let server = builder.start().expect("start");
    let dial = Dial::new(addr)
        .reconnect(quick())
        .reconnect_after_timeouts(1);
    let conn = server.hub().dial(dial).unwrap();
    let _first = accepted.recv_timeout(TIMEOUT).expect("connected");
    ticks.recv_timeout(TIMEOUT).expect("the cron runs");
    let chunk = vec![0u8; 64 << 10];
    for _ in 0..256 {
        conn.send(2, &chunk).unwrap();
    }
    // Queued behind 16 MiB the backend never reads: it times out.
    let r = conn.request(5, b"x", Duration::from_millis(100)).unwrap();
    assert!(r.wait().is_err());
    let reason = downs.recv_timeout(TIMEOUT).expect("lost");
    assert!(
        matches!(reason, CloseReason::RequestTimeouts(1)),
        "{reason:?}"
    );
    backs.recv_timeout(TIMEOUT).expect("reconnected");
    let _second = accepted.recv_timeout(TIMEOUT).expect("accepted again");
    assert_cron_runs(&ticks);
    // What was queued went on to the new link, which nobody reads either.
    let stopped = server.shutdown(TIMEOUT);
    assert!(
        matches!(stopped, Ok(()) | Err(Error::ShutdownTimeout(1))),
        "{stopped:?}"
    );
}
