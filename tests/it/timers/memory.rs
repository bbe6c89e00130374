//! What timers keep: a closed connection's timers, a cancelled timer and
//! a timer set as its connection closes are freed at once (their
//! callbacks, and what those captured, dropped), however far off they
//! were due.

use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::{Context, Server, TimerHandle};

use crate::common::{init_logs, start, Client, TIMEOUT};

/// An hour: a timer that must be freed long before it is due.
const HOUR: Duration = Duration::from_secs(3600);

/// Says when it is dropped.
struct Dropped(Sender<()>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Wait for `n` drops, each within `TIMEOUT`.
fn expect_drops(dropped: &Receiver<()>, n: usize, what: &str) {
    for i in 0..n {
        assert!(
            dropped.recv_timeout(TIMEOUT).is_ok(),
            "{what}: {i} of {n} callbacks freed"
        );
    }
}

#[test]
fn a_closed_connections_timers_are_freed_at_once_not_when_due() {
    init_logs();
    let (tx, dropped) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(2)
            .route(1, move |ctx: &mut Context<'_>| {
                let guard = Dropped(tx.clone());
                ctx.every(HOUR, move |_| {
                    let _ = &guard;
                });
                ctx.reply(1, b"set")
            }),
    );
    let mut client = Client::connect(server.local_addr());
    client.send(1, b"");
    assert_eq!(client.recv(), (1, b"set".to_vec()));
    assert!(dropped.try_recv().is_err(), "freed while open");
    drop(client);
    expect_drops(&dropped, 1, "the hour-long timer of a closed connection");
    server.shutdown(TIMEOUT).unwrap();
}

/// The "reset a deadline on every message" pattern: cancel the last
/// timer, set a new one. A cancelled timer's callback is dropped on its
/// loop's next turn, not when it would have been due: what the timers
/// hold is bounded by the live ones. Cancelled in the handler that set
/// them, and from another thread while the loop sleeps (the cancel wakes
/// it).
#[test]
fn cancelled_timers_free_their_callbacks_at_once_not_when_due() {
    const N: usize = 1000;
    init_logs();
    let (tx, dropped) = unbounded();
    let (handle_tx, handles) = unbounded::<TimerHandle>();
    let server = start(
        Server::builder()
            .event_loops(1)
            .route(1, move |ctx: &mut Context<'_>| {
                for _ in 0..N {
                    let guard = Dropped(tx.clone());
                    ctx.after(HOUR, move |_| drop(guard)).cancel();
                }
                let guard = Dropped(tx.clone());
                let kept = ctx.every(HOUR, move |_| {
                    let _ = &guard;
                });
                let _ = handle_tx.send(kept);
                ctx.reply(1, b"set")
            }),
    );
    let mut client = Client::connect(server.local_addr());
    client.send(1, b"");
    assert_eq!(client.recv(), (1, b"set".to_vec()));
    expect_drops(&dropped, N, "cancelled in the handler");
    assert!(dropped.try_recv().is_err(), "a live timer was freed");
    // The loop has nothing to do for an hour: the cancel must wake it.
    let kept = handles.recv_timeout(TIMEOUT).expect("the live timer");
    kept.cancel();
    expect_drops(&dropped, 1, "cancelled from another thread");
    server.shutdown(TIMEOUT).unwrap();
}

/// A timer set in `on_close` (with the closing connection's `Session`)
/// can never run: it comes back cancelled and its callback is dropped at
/// once, not kept until it is due.
#[test]
fn a_timer_set_in_on_close_comes_back_cancelled_and_is_freed() {
    init_logs();
    let (tx, dropped) = unbounded();
    let (closed_tx, closed) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(1)
            .route(1, crate::common::echo)
            .on_close(move |s, _| {
                let guard = Dropped(tx.clone());
                let once = s.after(HOUR, move |_| drop(guard));
                let guard = Dropped(tx.clone());
                let every = s.every(HOUR, move |_| {
                    let _ = &guard;
                });
                let _ = closed_tx.send((once.is_cancelled(), every.is_cancelled()));
            }),
    );
    let mut client = Client::connect(server.local_addr());
    client.send(1, b"x");
    let _ = client.recv();
    drop(client);
    let cancelled = closed.recv_timeout(TIMEOUT).expect("on_close ran");
    assert_eq!(cancelled, (true, true), "(after, every) came back live");
    expect_drops(&dropped, 2, "timers set in on_close");
    server.shutdown(TIMEOUT).unwrap();
}
