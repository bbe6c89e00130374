//! The logic thread (`Exec::Single`): one thread runs every handler of the
//! server, never two at once, and under it the connections' timers,
//! `ConnHandle::run` and `Builder::every` run there too. Under the pool, a
//! timer set by a handler runs on the connection's loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{Context, Exec, Server};

use crate::common::{start, Client, TIMEOUT};

fn thread_name() -> String {
    thread::current().name().unwrap_or("?").to_owned()
}

#[test]
fn the_logic_thread_never_runs_two_handlers_at_once() {
    const CLIENTS: usize = 12;
    const PER: usize = 200;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (names_tx, names) = unbounded();
    let (r, m) = (running.clone(), most.clone());
    let server = start(Server::builder().event_loops(2).exec(Exec::Single).route(
        1,
        move |ctx: &mut Context<'_>| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            // Long enough for a second handler to overlap, were one
            // allowed to.
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            }
            let _ = names_tx.send(thread_name());
            r.fetch_sub(1, Ordering::SeqCst);
            ctx.reply(1, ctx.body())
        },
    ));
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..PER {
                    client.send(1, format!("{c}:{i}").as_bytes());
                }
                for i in 0..PER {
                    assert_eq!(client.recv().1, format!("{c}:{i}").as_bytes());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "two handlers overlapped");
    let names: Vec<String> = names.try_iter().collect();
    assert_eq!(names.len(), CLIENTS * PER);
    assert!(
        names.iter().all(|n| n == "netloom-logic"),
        "ran off the logic thread"
    );
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn under_single_timers_runs_and_ticks_happen_on_the_logic_thread() {
    let (tx, rx) = unbounded::<(&'static str, String)>();
    let (t1, t2, t3) = (tx.clone(), tx.clone(), tx.clone());
    let server = start(
        Server::builder()
            .event_loops(2)
            .exec(Exec::Single)
            .every(Duration::from_millis(20), move |_hub| {
                let _ = t3.send(("tick", thread_name()));
            })
            .route(1, move |ctx: &mut Context<'_>| {
                let _ = t1.send(("handler", thread_name()));
                let t = t2.clone();
                let set = Instant::now();
                ctx.after(Duration::from_millis(30), move |s| {
                    let _ = t.send(("timer", thread_name()));
                    let _ = s.send(2, set.elapsed().as_millis().to_string());
                });
                ctx.reply(1, b"")
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    assert_eq!(c.recv().0, 1);
    let (id, waited) = c.recv();
    assert_eq!(id, 2);
    let waited: u64 = String::from_utf8(waited).unwrap().parse().unwrap();
    // Within one tick (the wheel's tick is at most the finest timer the
    // builder asked for, 20 ms here) plus scheduling on a loaded machine.
    assert!(
        (30..30 + 20 + 200).contains(&waited),
        "fired after {waited} ms"
    );
    let handle = server.hub().connections().into_iter().next().unwrap();
    let on = handle.run(|_s| thread_name()).wait().unwrap();
    assert_eq!(on, "netloom-logic");
    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + TIMEOUT;
    while seen.len() < 3 && Instant::now() < deadline {
        if let Ok((what, name)) = rx.recv_timeout(TIMEOUT) {
            seen.insert(what, name);
        }
    }
    for what in ["handler", "timer", "tick"] {
        assert_eq!(
            seen.get(what).map(String::as_str),
            Some("netloom-logic"),
            "{what}"
        );
    }
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn under_the_pool_a_handlers_timer_runs_on_the_connections_loop() {
    let (tx, rx) = unbounded::<(&'static str, String)>();
    let server = start(Server::builder().event_loops(2).exec(Exec::Pool(2)).route(
        1,
        move |ctx: &mut Context<'_>| {
            let _ = tx.send(("handler", thread_name()));
            let t = tx.clone();
            let cancelled = ctx.after(Duration::from_millis(10), |s| {
                let _ = s.send(3, b"cancelled, yet fired");
            });
            cancelled.cancel();
            ctx.after(Duration::from_millis(20), move |s| {
                let _ = t.send(("timer", thread_name()));
                let _ = s.send(2, b"fired");
            });
        },
    ));
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    assert_eq!(c.recv(), (2, b"fired".to_vec()));
    let (_, handler) = rx.recv_timeout(TIMEOUT).unwrap();
    let (_, timer) = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(
        handler.starts_with("netloom-worker-"),
        "handler on {handler}"
    );
    assert!(timer.starts_with("netloom-loop-"), "timer on {timer}");
    server.shutdown(TIMEOUT).unwrap();
}

/// A repeating timer of a connection whose handler blocks on the pool
/// does not pile up runs behind it: one run waits, and it goes on at its
/// interval after the handler.
#[test]
fn a_repeating_timer_does_not_pile_up_behind_a_blocked_handler() {
    use crossbeam_channel::bounded;
    let (runs_tx, runs) = unbounded::<Instant>();
    let (blocked_tx, blocked) = bounded(1);
    let (go_tx, go) = bounded::<()>(1);
    let server = start(
        Server::builder()
            .exec(Exec::Pool(1))
            .timer_resolution(Duration::from_millis(1))
            .on_open(move |s| {
                let tx = runs_tx.clone();
                s.every(Duration::from_millis(2), move |_s| {
                    let _ = tx.send(Instant::now());
                });
            })
            .route(1, move |_ctx: &mut Context<'_>| {
                let _ = blocked_tx.send(());
                let _ = go.recv_timeout(TIMEOUT);
            }),
    );
    let mut c = Client::connect(server.local_addr());
    runs.recv_timeout(TIMEOUT).expect("the timer runs");
    c.send(1, b"");
    blocked.recv_timeout(TIMEOUT).unwrap();
    // Runs before the handler took the data.
    let _ = runs.try_iter().count();
    // The handler holds the data for 100 intervals of the timer.
    std::thread::sleep(Duration::from_millis(200));
    let before: Vec<Instant> = runs.try_iter().collect();
    let released = Instant::now();
    go_tx.send(()).unwrap();
    // Then: at most the one waiting run at once, the next ones at the
    // interval (a pile-up would run ~100 at once).
    let mut burst = 0;
    let deadline = released + Duration::from_millis(20);
    while let Ok(t) = runs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if t < released + Duration::from_millis(1) {
            burst += 1;
        }
    }
    assert!(before.is_empty(), "{} runs while blocked", before.len());
    assert!(burst <= 2, "{burst} runs at once after the handler");
    server.shutdown(TIMEOUT).unwrap();
}
