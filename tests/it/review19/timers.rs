//! User timers: what a cancelled timer or a closed connection keeps, and
//! a dialed connection's repeating timers across a reconnect.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use netloom::{CloseReason, Context, Dial, Reconnect, SeqPacker, Server};

use crate::common::{init_logs, start, Client, TIMEOUT};

/// Counts the live values captured by timer callbacks.
struct Guard(Arc<AtomicUsize>);

impl Guard {
    fn new(live: &Arc<AtomicUsize>) -> Guard {
        live.fetch_add(1, Ordering::SeqCst);
        Guard(live.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The "reset a deadline on every message" pattern: cancel the last timer,
/// set a new one. A cancelled timer should not keep its callback (and what
/// it captured) until its due time.
#[test]
fn cancelled_timers_do_not_keep_their_callbacks_until_due() {
    const N: usize = 10_000;
    let live = Arc::new(AtomicUsize::new(0));
    let l = live.clone();
    let server = start(
        Server::builder()
            .event_loops(1)
            .route(1, move |ctx: &mut Context<'_>| {
                for _ in 0..N {
                    let g = Guard::new(&l);
                    ctx.after(Duration::from_secs(3600), move |_| drop(g))
                        .cancel();
                }
                ctx.reply(1, l.load(Ordering::SeqCst).to_string())
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    let _ = c.recv();
    // A second message: the cancelled timers had a whole turn (and more)
    // to go.
    c.send(1, b"");
    let (_, body) = c.recv();
    let held = String::from_utf8(body).unwrap();
    assert_eq!(
        live.load(Ordering::SeqCst) - N,
        0,
        "callbacks of cancelled timers still held (the handler saw {held} live after adding {N} more)"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// "A closed connection's timers never fire and are freed at once": a
/// timer set in `on_close` (with the closing connection's Session) is
/// kept until it comes due.
#[test]
fn a_timer_set_in_on_close_is_freed_with_the_connection() {
    let live = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = unbounded();
    let l = live.clone();
    let server = start(
        Server::builder()
            .event_loops(1)
            .route(1, crate::common::echo)
            .on_close(move |s, _| {
                let g = Guard::new(&l);
                s.after(Duration::from_secs(3600), move |_| drop(g));
                let _ = closed_tx.send(());
            }),
    );
    {
        let mut c = Client::connect(server.local_addr());
        c.send(1, b"x");
        let _ = c.recv();
    }
    closed.recv_timeout(TIMEOUT).expect("on_close");
    // One more connection through the same loop: a turn after the close.
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"x");
    let _ = c.recv();
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "the closed connection's timer (set in on_close) is still held"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// A backend that accepts, reports each accept, and never reads.
fn never_reading_backend() -> (std::net::SocketAddr, Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { return };
            held.push(stream);
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    (addr, rx)
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

/// A dialed connection with a reconnect policy keeps its id, data and
/// timers across a loss (control: a plain loss, the cron goes on). But
/// when the link is closed by our side with data still queued (here: a
/// request timed out, `reconnect_after_timeouts(1)`, against a backend
/// that does not read), it lingers CLOSING for `close_linger`; a
/// repeating timer that comes due in that window is dropped for good,
/// and the reconnected link has no cron any more.
#[test]
fn a_dials_cron_survives_a_reconnect_after_a_lingering_close() {
    init_logs();
    let (addr, accepts) = never_reading_backend();
    let (tick_tx, ticks) = unbounded();
    let (re_tx, reconnects) = unbounded();
    let (down_tx, downs) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .write_high_water(256 << 20)
        .close_linger(Duration::from_millis(600))
        .cron(Duration::from_millis(20), move |_s| {
            let _ = tick_tx.send(());
        })
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.reason.clone());
        })
        .on_reconnect(move |_s, _| {
            let _ = re_tx.send(());
        })
        .start()
        .expect("start");
    let conn = server
        .hub()
        .dial(
            Dial::new(addr)
                .reconnect(quick())
                .reconnect_after_timeouts(1),
        )
        .unwrap();
    accepts.recv_timeout(TIMEOUT).expect("connected");
    ticks.recv_timeout(TIMEOUT).expect("the cron runs");
    // Fill the socket buffers of a backend that never reads.
    let chunk = vec![0u8; 64 << 10];
    for _ in 0..256 {
        conn.send(2, &chunk).unwrap();
    }
    // Queued behind 16 MiB: times out, the link is closed (lingering).
    let r = conn.request(5, b"x", Duration::from_millis(100)).unwrap();
    assert!(r.wait().is_err());
    let reason = downs.recv_timeout(TIMEOUT).expect("lost");
    assert!(
        matches!(reason, CloseReason::RequestTimeouts(1)),
        "{reason:?}"
    );
    reconnects.recv_timeout(TIMEOUT).expect("reconnected");
    accepts.recv_timeout(TIMEOUT).expect("accepted again");
    while ticks.try_recv().is_ok() {}
    assert!(
        ticks.recv_timeout(Duration::from_secs(2)).is_ok(),
        "the cron of the reconnected link never runs again"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// The control: a loss by the backend's close (no linger) keeps the cron.
#[test]
fn control_a_dials_cron_survives_a_plain_reconnect() {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (conn_tx, conns) = unbounded::<TcpStream>();
    thread::spawn(move || {
        for s in listener.incoming().take(4) {
            let Ok(s) = s else { return };
            if conn_tx.send(s).is_err() {
                return;
            }
        }
    });
    let (tick_tx, ticks) = unbounded();
    let (re_tx, reconnects) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .cron(Duration::from_millis(20), move |_s| {
            let _ = tick_tx.send(());
        })
        .on_reconnect(move |_s, _| {
            let _ = re_tx.send(());
        })
        .start()
        .expect("start");
    let _conn = server
        .hub()
        .dial(Dial::new(addr).reconnect(quick()))
        .unwrap();
    let first = conns.recv_timeout(TIMEOUT).expect("connected");
    ticks.recv_timeout(TIMEOUT).expect("the cron runs");
    drop(first);
    reconnects.recv_timeout(TIMEOUT).expect("reconnected");
    let _second = conns.recv_timeout(TIMEOUT).expect("accepted again");
    while ticks.try_recv().is_ok() {}
    assert!(
        ticks.recv_timeout(Duration::from_secs(2)).is_ok(),
        "the cron of the reconnected link never runs again"
    );
    server.shutdown(TIMEOUT).unwrap();
}
