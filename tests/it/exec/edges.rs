//! Execution models at their edges (found by the review of the fixes for
//! issues 21 and 22; each failed before its fix): `ConnHandle::run`
//! waited for from the logic thread, `run` on a closing connection under
//! `Exec::Single` and with its handler out, a lost session's task after a
//! reconnect, and shutdown with a stuck worker (counts, handlers after
//! `on_close`, idle workers joined).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};
use netloom::{ConnHandle, Context, Dial, Exec, Reconnect, Server};

use crate::common::{frame, start, Client, TIMEOUT};

fn read_frame(s: &mut std::net::TcpStream) -> std::io::Result<(u32, Vec<u8>)> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let id = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((id, body))
}

struct Stored(u32);

// ---------------------------------------------------------------------
// Receipt::wait from the logic thread (src/runtime/receipt.rs, local.rs)
// ---------------------------------------------------------------------

/// Under `Exec::Single` every `ConnHandle::run` runs on the logic thread
/// (GUIDE). A handler there that waits for `run` on ANOTHER connection
/// waits for its own thread: `wait` never returns (the new `holds`
/// check only knows the handler's own connection), so the logic thread,
/// and with it every handler of the server, is stuck. `wait` documents
/// a panic for "wait for itself forever"; here it hangs.
#[test]
fn logic_thread_waiting_for_another_connections_run_does_not_hang() {
    let slot: Arc<Mutex<Option<ConnHandle>>> = Arc::default();
    let (stored, taken) = (slot.clone(), slot.clone());
    let server = start(
        Server::builder()
            .exec(Exec::Single)
            .route(1, move |ctx: &mut Context<'_>| {
                *stored.lock().unwrap() = Some(ctx.handle());
                ctx.reply(1, b"registered")
            })
            .route(2, move |ctx: &mut Context<'_>| {
                let other = taken.lock().unwrap().clone().expect("B registered");
                let r = other.run(|_s| 7u32).wait();
                ctx.reply(2, format!("{r:?}"))
            }),
    );
    let mut b = Client::connect(server.local_addr());
    b.send(1, b"");
    assert_eq!(b.recv(), (1, b"registered".to_vec()));
    let mut a = Client::connect(server.local_addr());
    a.stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    a.send(2, b"");
    let got = a.try_recv();
    println!("handler waiting for another connection's run: {got:?}");
    // A reply (`Ok(7)`), or the documented panic (the connection closes):
    // anything but silence.
    let silent = matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        || e.kind() == std::io::ErrorKind::TimedOut);
    // Shutdown drops the queued `run`: the receipt answers and the logic
    // thread is free again.
    let _ = server.shutdown(Duration::from_millis(200));
    assert!(
        !silent,
        "the logic thread waits for itself: no reply and no close in 3 s"
    );
}

// ---------------------------------------------------------------------
// submit(.., while_closing) (src/dispatch/exec/lane.rs)
// ---------------------------------------------------------------------

/// GUIDE: "It runs before `on_close` if the connection is closing, so
/// `on_close` sees what it stored; once `on_close` has run, the receipt
/// says `Closed`." Under `Exec::Single` as the server's model, `run` on
/// a closing connection is queued for the logic thread, and the lane of
/// a closing connection drops what it holds when it moves: `f` never
/// runs and the receipt says `Closed` while `on_close` has not run yet.
#[test]
fn run_on_a_closing_connection_under_exec_single() {
    let (handle_tx, handles) = bounded(1);
    let (seen_tx, seen) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Single)
            .write_high_water(64 << 20)
            // On the loop: the replies are queued without a copy.
            .route_on(
                1,
                Exec::Inline,
                move |ctx: &mut Context<'_>| -> netloom::Result<()> {
                    // More than the kernel's buffers hold: the close lingers.
                    for _ in 0..64 {
                        ctx.reply(1, vec![b'x'; 512 << 10])?;
                    }
                    ctx.close();
                    let _ = handle_tx.send(ctx.handle());
                    Ok(())
                },
            )
            .on_close(move |s, _| {
                let _ = seen_tx.send(s.data().get::<Stored>().map(|v| v.0));
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    let handle = handles.recv_timeout(TIMEOUT).unwrap();
    let ran = handle
        .run(|s| {
            s.data_mut().insert(Stored(5));
        })
        .wait();
    let lingering = seen.is_empty();
    drop(c);
    let stored = seen.recv_timeout(TIMEOUT).unwrap();
    println!("Exec::Single, run on a closing connection: {ran:?}; on_close saw {stored:?} (it had not run yet: {lingering})");
    assert!(lingering, "the close did not linger: the test is blind");
    assert!(
        ran.is_ok(),
        "run said {ran:?} before on_close ran (the connection was still closing)"
    );
    assert_eq!(stored, Some(5));
    server.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------
// Lanes::new_session (src/runtime/exec.rs, reactor/event_loop/dial.rs)
// ---------------------------------------------------------------------

/// "A dialed link that reconnects drops the lost session's messages not
/// yet handled (as a close does)" (GUIDE). `new_session` drops those in
/// the lane, but not those already in the task out at a worker (a task
/// carries up to 64): after the reconnect they are still handled, and
/// their replies go out on the NEW link, to a backend that never sent
/// them (a stale session's reply, with the old session's sequence
/// number, ahead of the new session's own).
#[test]
fn old_session_messages_in_the_task_out_are_not_answered_on_the_new_link() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let (running_tx, running) = bounded::<()>(1);
    let (gate_tx, gate) = bounded::<()>(1);
    let (disc_tx, disc) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(1))
            .route(1, move |ctx: &mut Context<'_>| -> netloom::Result<()> {
                match ctx.body() {
                    b"a" => {
                        let _ = running_tx.send(());
                        let _ = gate.recv_timeout(TIMEOUT);
                        Ok(())
                    }
                    b"c" => ctx.reply(3, b"reply to the OLD session's c"),
                    _ => ctx.reply(2, b"reply to the new session's b"),
                }
            })
            .on_disconnect(move |_s, d| {
                let _ = disc_tx.send(d.reason.clone());
            }),
    );
    let hub = server.hub();
    hub.dial(Dial::new(backend_addr).reconnect(Reconnect {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(10),
        ..Reconnect::default()
    }))
    .unwrap();
    let (mut first, _) = backend.accept().unwrap();
    // "a" and "c" in one write: one read, one task for the worker.
    let mut both = frame(1, b"a");
    both.extend(frame(1, b"c"));
    first.write_all(&both).unwrap();
    running.recv_timeout(TIMEOUT).expect("handler a runs");
    drop(first);
    let (mut second, _) = backend.accept().unwrap();
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    second.write_all(&frame(1, b"b")).unwrap();
    gate_tx.send(()).unwrap();
    let got = read_frame(&mut second).expect("a reply on the new link");
    let got = (got.0, String::from_utf8_lossy(&got.1).into_owned());
    println!("first frame on the new link: {got:?}");
    let _ = disc.try_recv();
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(got, (2, "reply to the new session's b".to_string()));
}

// ---------------------------------------------------------------------
// Shutdown with a stuck worker (lifecycle.rs close_all_now, worker.rs)
// ---------------------------------------------------------------------

/// `Error::ShutdownTimeout(n)`: "{n} connection(s) unflushed". One
/// connection whose queue was not flushed AND whose handler still runs on
/// a worker at the deadline counts twice: once in `close_all_now`'s
/// unflushed keys, once more in `abandon_lanes`.
#[test]
fn shutdown_timeout_counts_a_connection_once() {
    let (running_tx, running) = bounded(1);
    let (release_tx, release) = bounded::<()>(1);
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(1))
            .write_high_water(64 << 20)
            .route_on(
                1,
                Exec::Inline,
                |ctx: &mut Context<'_>| -> netloom::Result<()> {
                    // More than the kernel's buffers: the queue stays unflushed
                    // (the client never reads).
                    for _ in 0..64 {
                        ctx.reply(1, vec![b'x'; 512 << 10])?;
                    }
                    Ok(())
                },
            )
            .route(2, move |_ctx: &mut Context<'_>| {
                let _ = running_tx.send(());
                let _ = release.recv_timeout(TIMEOUT);
            }),
    );
    let mut c = Client::connect(server.local_addr());
    let mut both = frame(1, b"");
    both.extend(frame(2, b""));
    c.send_raw(&both);
    running.recv_timeout(TIMEOUT).unwrap();
    let result = server.shutdown(Duration::from_millis(100));
    release_tx.send(()).unwrap();
    println!("one connection, unflushed and with its handler out: {result:?}");
    assert!(
        matches!(result, Err(netloom::Error::ShutdownTimeout(1))),
        "{result:?}"
    );
    drop(c);
}

/// A connection's data lives in a task queued for the pool when the
/// shutdown deadline passes (every worker busy with a stuck handler):
/// `shutdown` returns, the connection's `on_close` has run (without its
/// data), yet once a stuck handler ends its worker takes the queued task
/// and runs the handler, with the data, after `on_close` and after the
/// server "is fully stopped" (the stuck worker holds the application,
/// so the channel stays open and the task is not dropped).
#[test]
fn no_handler_runs_after_shutdown_returned_and_its_on_close_ran() {
    struct Who(&'static str);
    let (running_tx, running) = unbounded();
    let (release_tx, release) = unbounded::<()>();
    let (read_tx, read) = bounded(1);
    let (events_tx, events) = unbounded();
    let ev_close = events_tx.clone();
    let release = Arc::new(Mutex::new(release));
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(2))
            .route(1, move |ctx: &mut Context<'_>| {
                if ctx.body() == b"stuck" {
                    let _ = running_tx.send(());
                    let rx = release.lock().unwrap().clone();
                    let _ = rx.recv_timeout(TIMEOUT);
                } else {
                    let who = ctx.data().get::<Who>().map(|w| w.0);
                    let _ = events_tx.send(format!("handler ran for {who:?}"));
                }
            })
            .route_on(5, Exec::Inline, move |_ctx: &mut Context<'_>| {
                let _ = read_tx.send(());
            })
            .on_open(|s| {
                s.data_mut().insert(Who("b"));
            })
            .on_close(move |s, why| {
                if s.data().get::<Who>().is_none() {
                    let _ = ev_close.send(format!("on_close without data: {why:?}"));
                }
            }),
    );
    let mut a = Client::connect(server.local_addr());
    let mut c = Client::connect(server.local_addr());
    a.send(1, b"stuck");
    c.send(1, b"stuck");
    running.recv_timeout(TIMEOUT).unwrap();
    running.recv_timeout(TIMEOUT).unwrap();
    // Both workers are stuck; b's message goes to the pool's queue in the
    // loop turn that runs its inline message 5.
    let mut b = Client::connect(server.local_addr());
    let mut msgs = frame(5, b"");
    msgs.extend(frame(1, b"b"));
    b.send_raw(&msgs);
    read.recv_timeout(TIMEOUT).unwrap();
    let result = server.shutdown(Duration::from_millis(100));
    println!("shutdown: {result:?}");
    let mut log = Vec::new();
    while let Ok(e) = events.try_recv() {
        log.push(e);
    }
    // One stuck handler ends; the other still runs.
    release_tx.send(()).unwrap();
    let after = events.recv_timeout(Duration::from_secs(3));
    println!("before the release: {log:?}; after: {after:?}");
    release_tx.send(()).unwrap();
    drop((a, b, c));
    assert!(
        after.is_err(),
        "a handler ran after shutdown returned (and after its on_close): {after:?}"
    );
}

/// The same under `Exec::Pool`: a connection closing (lingering to flush)
/// while its handler is out at a worker. `run` is queued behind the
/// handler (`submit` with `while_closing`), but when the data comes back
/// the lane of a closing connection is dropped before `on_close` runs:
/// the receipt says `Closed`, `f` never ran, and `on_close` (which runs
/// later) does not see what `f` would have stored.
#[test]
fn run_on_a_closing_connection_whose_handler_is_out() {
    let (handle_tx, handles) = bounded(1);
    let (gate_tx, gate) = bounded::<()>(1);
    let (seen_tx, seen) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(1))
            .write_high_water(64 << 20)
            .route_on(
                1,
                Exec::Inline,
                |ctx: &mut Context<'_>| -> netloom::Result<()> {
                    // More than the kernel's buffers hold: a close lingers.
                    for _ in 0..64 {
                        ctx.reply(1, vec![b'x'; 512 << 10])?;
                    }
                    Ok(())
                },
            )
            .route(2, move |ctx: &mut Context<'_>| {
                let _ = handle_tx.send(ctx.handle());
                let _ = gate.recv_timeout(TIMEOUT);
            })
            .on_close(move |s, _| {
                let _ = seen_tx.send(s.data().get::<Stored>().map(|v| v.0));
            }),
    );
    let mut c = Client::connect(server.local_addr());
    let mut both = frame(1, b"");
    both.extend(frame(2, b""));
    c.send_raw(&both);
    let handle = handles.recv_timeout(TIMEOUT).unwrap();
    handle.close();
    let receipt = handle.run(|s| {
        s.data_mut().insert(Stored(5));
    });
    gate_tx.send(()).unwrap();
    let ran = receipt.wait();
    let lingering = seen.is_empty();
    drop(c);
    let stored = seen.recv_timeout(TIMEOUT).unwrap();
    println!("Exec::Pool, run on a closing connection with its handler out: {ran:?}; on_close saw {stored:?} (it had not run yet: {lingering})");
    assert!(lingering, "the close did not linger: the test is blind");
    assert!(
        ran.is_ok(),
        "run said {ran:?} before on_close ran (the connection was still closing)"
    );
    assert_eq!(stored, Some(5));
    server.shutdown(TIMEOUT).unwrap();
}
