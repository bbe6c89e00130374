//! Execution models where they met defects (found by the review of issue
//! 21; each failed before its fix): reconnects, closing connections,
//! `run().wait()` from a worker, the shutdown deadline, ticks under
//! `Exec::Single`, and a link closed for its backlog.

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};
use netloom::{CloseReason, Context, Dial, Exec, Reconnect, Server};

use crate::common::{frame, start, TIMEOUT};

struct Tag(&'static str);
struct Stored(u32);

fn read_frame(s: &mut std::net::TcpStream) -> std::io::Result<(u32, Vec<u8>)> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let id = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((id, body))
}

/// A dialed link (with a reconnect policy) is lost while a pool handler
/// holds its data; it reconnects, and the backend sends the next message.
/// That message must wait behind the first (one item at a time, the data
/// follows the work), and see what the first stored.
#[test]
fn reconnect_while_work_is_out_keeps_order_and_data() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let (running_tx, running) = bounded::<()>(1);
    let (gate_tx, gate) = bounded::<()>(1);
    let a_running = Arc::new(AtomicBool::new(false));
    let (disc_tx, disc) = unbounded();
    let (a_flag, b_flag) = (a_running.clone(), a_running.clone());
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(2))
            .route(1, move |ctx: &mut Context<'_>| -> netloom::Result<()> {
                match ctx.body() {
                    b"a" => {
                        a_flag.store(true, Ordering::SeqCst);
                        let _ = running_tx.send(());
                        // Bounded: a correct server runs "b" only after.
                        let _ = gate.recv_timeout(Duration::from_secs(3));
                        ctx.data_mut().insert(Stored(1));
                        a_flag.store(false, Ordering::SeqCst);
                        Ok(())
                    }
                    _ => {
                        let overlapped = b_flag.load(Ordering::SeqCst);
                        let _ = gate_tx.try_send(());
                        let seen = ctx.data().get::<Stored>().map(|s| s.0);
                        let tag = ctx.data().get::<Tag>().map(|t| t.0);
                        ctx.reply(
                            2,
                            format!("overlapped={overlapped} stored={seen:?} tag={tag:?}"),
                        )
                    }
                }
            })
            .on_open(|s| {
                s.data_mut().insert(Tag("dialed"));
            })
            .on_disconnect(move |s, _d| {
                let _ = disc_tx.send(s.data().get::<Tag>().map(|t| t.0));
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
    first.set_read_timeout(Some(TIMEOUT)).unwrap();
    std::io::Write::write_all(&mut first, &frame(1, b"a")).unwrap();
    running.recv_timeout(TIMEOUT).expect("handler a runs");
    // The backend drops the link while "a" holds the data.
    drop(first);
    let tag_at_disconnect = disc.recv_timeout(TIMEOUT).expect("on_disconnect ran");
    let (mut second, _) = backend.accept().unwrap();
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    std::io::Write::write_all(&mut second, &frame(1, b"b")).unwrap();
    let (id, body) = read_frame(&mut second).expect("reply to b");
    let reply = String::from_utf8(body).unwrap();
    println!("on_disconnect saw tag {tag_at_disconnect:?}; reply to b: {reply}");
    assert_eq!(id, 2);
    assert_eq!(
        (tag_at_disconnect, reply.as_str()),
        (
            Some("dialed"),
            "overlapped=false stored=Some(1) tag=Some(\"dialed\")"
        )
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// `ConnHandle::run` on a connection that is closing (lingering to flush
/// a reply its peer does not read) runs before `on_close`, which sees
/// what it stored (the documented contract; it held before issue 21).
#[test]
fn run_on_a_closing_connection_runs_before_on_close() {
    let (handle_tx, handles) = bounded(1);
    let (seen_tx, seen) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(1)
            .write_high_water(64 << 20)
            .route(1, move |ctx: &mut Context<'_>| -> netloom::Result<()> {
                // More than the kernel's buffers hold: the close lingers.
                for _ in 0..64 {
                    ctx.reply(1, vec![b'x'; 512 << 10])?;
                }
                ctx.close();
                let _ = handle_tx.send(ctx.handle());
                Ok(())
            })
            .on_close(move |s, _| {
                let _ = seen_tx.send(s.data().get::<Stored>().map(|v| v.0));
            }),
    );
    let mut c = crate::common::Client::connect(server.local_addr());
    c.send(1, b"");
    let handle = handles.recv_timeout(TIMEOUT).unwrap();
    let ran = handle
        .run(|s| {
            s.data_mut().insert(Stored(5));
        })
        .wait();
    assert!(
        seen.is_empty(),
        "the close did not linger: the test is blind"
    );
    drop(c);
    let stored = seen.recv_timeout(TIMEOUT).unwrap();
    println!("run on a closing connection: {ran:?}; on_close saw {stored:?}");
    assert!(ran.is_ok(), "run refused on a closing connection: {ran:?}");
    assert_eq!(stored, Some(5));
    server.shutdown(TIMEOUT).unwrap();
}

/// A pool handler that waits for `ConnHandle::run` on its own connection
/// (the GUIDE's login pattern, moved onto the pool) would wait for
/// itself (the work queues behind the handler, which holds the data):
/// `wait` panics as on the loop, and the connection closes with
/// `HandlerPanic` instead of holding a worker for good.
#[test]
fn run_wait_on_its_own_connection_from_the_pool_panics_not_hangs() {
    for exec in [Exec::Pool(1), Exec::Single] {
        let (closed_tx, closed) = unbounded();
        let server = start(
            Server::builder()
                .exec(exec)
                .route(1, move |ctx: &mut Context<'_>| {
                    let _ = ctx.handle().run(|_s| 1u32).wait();
                })
                .route(2, |ctx: &mut Context<'_>| ctx.reply(2, b"alive"))
                .on_close(move |_s, why| {
                    let _ = closed_tx.send(why.clone());
                }),
        );
        let mut c = crate::common::Client::connect(server.local_addr());
        c.send(1, b"");
        let why = closed.recv_timeout(TIMEOUT).expect("the connection closed");
        assert!(
            matches!(why, CloseReason::HandlerPanic),
            "{exec:?}: {why:?}"
        );
        // The worker is free for the next connection.
        let mut next = crate::common::Client::connect(server.local_addr());
        next.send(2, b"");
        assert_eq!(next.recv(), (2, b"alive".to_vec()), "{exec:?}");
        server.shutdown(TIMEOUT).unwrap();
    }
}

/// A handler still running on the pool at the shutdown deadline:
/// `shutdown(deadline)` returns by its deadline (plus the idle workers'
/// grace) and says the connection was not closed cleanly; its `on_close`
/// has run, without the data the stuck handler holds.
#[test]
fn shutdown_keeps_its_deadline_with_a_stuck_pool_handler() {
    let (running_tx, running) = bounded(1);
    let (release_tx, release) = bounded::<()>(1);
    let (seen_tx, seen) = unbounded();
    let server = start(
        Server::builder()
            .exec(Exec::Pool(1))
            .on_open(|s| {
                s.data_mut().insert(Tag("opened"));
            })
            .route(1, move |_ctx: &mut Context<'_>| {
                let _ = running_tx.send(());
                let _ = release.recv_timeout(TIMEOUT); // a stuck call
            })
            .on_close(move |s, why| {
                let _ = seen_tx.send((s.data().get::<Tag>().map(|t| t.0), why.clone()));
            }),
    );
    let mut c = crate::common::Client::connect(server.local_addr());
    c.send(1, b"");
    running.recv_timeout(TIMEOUT).unwrap();
    let t = std::time::Instant::now();
    let result = server.shutdown(Duration::from_millis(100));
    let took = t.elapsed();
    release_tx.send(()).unwrap();
    assert!(
        took < Duration::from_secs(1),
        "shutdown overran its deadline: {took:?}"
    );
    assert!(
        matches!(result, Err(netloom::Error::ShutdownTimeout(1))),
        "{result:?}"
    );
    let (tag, why) = seen.try_recv().expect("on_close ran");
    assert!(
        tag.is_none() && matches!(why, CloseReason::Shutdown),
        "{tag:?} {why:?}"
    );
}

/// Under `Exec::Single`, `Builder::every` ticks are sent to the logic
/// thread each interval whether or not the last one ran: while a handler
/// holds the logic thread they pile up (unbounded), then run back to back.
#[test]
fn ticks_do_not_pile_up_behind_a_busy_logic_thread() {
    let (running_tx, running) = bounded(1);
    let (done_tx, done) = bounded(1);
    let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = ticks.clone();
    let server = start(
        Server::builder()
            .exec(Exec::Single)
            .every(Duration::from_millis(1), move |_hub| {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .route(1, move |_ctx: &mut Context<'_>| {
                let _ = running_tx.send(());
                thread::sleep(Duration::from_millis(500)); // the logic thread busy
                let _ = done_tx.send(());
            }),
    );
    let mut c = crate::common::Client::connect(server.local_addr());
    c.send(1, b"");
    running.recv_timeout(TIMEOUT).unwrap();
    let before = ticks.load(Ordering::SeqCst);
    done.recv_timeout(TIMEOUT).unwrap();
    // The ticks queued meanwhile run now, back to back.
    let t = std::time::Instant::now();
    let burst = loop {
        let n = ticks.load(Ordering::SeqCst) - before;
        if t.elapsed() >= Duration::from_millis(20) {
            break n;
        }
        std::hint::spin_loop();
    };
    println!(
        "ticks of a 1 ms `every` within 20 ms after a 500 ms handler on the logic thread: {burst}"
    );
    assert!(burst < 100, "{burst} ticks piled up and ran back to back");
    server.shutdown(TIMEOUT).unwrap();
}

/// A dialed link with a reconnect policy closed for its backlog: the
/// link reconnects, but its lane (the old session's queued work, counted
/// over the bound) is kept, so the new link is closed for `Backlog` again
/// at its first message, while the handler of the old one still runs.
#[test]
fn a_link_closed_for_backlog_reconnects_without_its_old_backlog() {
    use std::io::Write;
    const BACKLOG: usize = 16 << 10;
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let (open, gate) = bounded::<()>(1);
    let gate = Arc::new(gate);
    let (disc_tx, disc) = unbounded();
    let (server, mut _closes) = crate::common::start_tracked(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(1))
            .exec_backlog(BACKLOG)
            .on_disconnect(move |_s, d| {
                let _ = disc_tx.send(d.reason.clone());
            })
            .route(1, move |ctx: &mut Context<'_>| {
                if ctx.body().first() == Some(&b'g') {
                    let _ = gate.recv_timeout(TIMEOUT);
                }
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
    first.set_write_timeout(Some(TIMEOUT)).unwrap();
    let _ = first.write_all(&frame(1, b"g"));
    for _ in 0..(BACKLOG * 4 / 1024) {
        if first.write_all(&frame(1, &[b'm'; 1024])).is_err() {
            break;
        }
    }
    // The link is lost for its backlog (its `on_disconnect` waits for the
    // data the gated handler holds) and reconnects.
    let (mut second, _) = backend.accept().unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    second.write_all(&frame(1, b"hello")).unwrap();
    let mut buf = [0u8; 16];
    let read = second.read(&mut buf);
    open.send(()).unwrap();
    let why = disc.recv_timeout(TIMEOUT).expect("the link lost");
    assert!(matches!(why, CloseReason::Backlog), "{why:?}");
    assert!(
        read.is_err(),
        "the new link was closed at once (read {read:?}): it reconnected into its old backlog"
    );
    let again = disc.recv_timeout(Duration::from_millis(200));
    assert!(again.is_err(), "lost again: {again:?}");
    server.shutdown(TIMEOUT).unwrap();
}

/// Inline and pool routes mixed on one connection, on two loops: replies
/// in arrival order (a check of the contract; passes).
#[test]
fn mixed_inline_and_pool_routes_keep_order() {
    use std::io::Write;
    let server = start(
        Server::builder()
            .event_loops(2)
            .exec(Exec::Pool(2))
            .exec_backlog(4 << 10)
            .route(1, |ctx: &mut Context<'_>| {
                if ctx.body().first() == Some(&b's') {
                    thread::sleep(Duration::from_micros(300));
                }
                ctx.reply(1, ctx.body())
            })
            .route_on(2, Exec::Inline, |ctx: &mut Context<'_>| {
                ctx.reply(2, ctx.body())
            }),
    );
    let addr = server.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            thread::spawn(move || {
                let mut client = crate::common::Client::connect(addr);
                let mut burst = Vec::new();
                let want: Vec<(u32, Vec<u8>)> = (0..600)
                    .map(|i| {
                        let id = if (i / 3) % 2 == 0 { 1 } else { 2 };
                        let body = format!("{}{c}:{i}", if i % 5 == 0 { 's' } else { 'f' });
                        (id, body.into_bytes())
                    })
                    .collect();
                for (id, b) in &want {
                    burst.extend(frame(*id, b));
                }
                let mut w = client.stream.try_clone().unwrap();
                let t = thread::spawn(move || w.write_all(&burst));
                for (i, expect) in want.iter().enumerate() {
                    assert_eq!(&client.recv(), expect, "client {c} reply {i}");
                }
                t.join().unwrap().unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    server.shutdown(TIMEOUT).unwrap();
}
