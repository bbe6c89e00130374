//! Issue 14, what a newcomer porting the seeds' servers had to work
//! around: sends to a set of connections (`Hub::send_to`), shared
//! application state (`Builder::state`), code run on a connection's own
//! loop from another thread (`ConnHandle::run`) and sends whose fate the
//! caller learns (`ConnHandle::send_confirmed`). Real loopback sockets,
//! frames from literal bytes, every wait bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::{
    Builder, CloseReason, ConnHandle, Context, Error, HandlerResult, LengthPacker, Next, PackError,
    Packer, Peek, Server,
};

use crate::common::{echo, start, start_tracked, Client, TIMEOUT};

/// Report every opened connection's handle, by peer address.
fn report_opens(builder: Builder) -> (Builder, Receiver<(SocketAddr, ConnHandle)>) {
    let (tx, rx) = unbounded();
    let builder = builder.on_open(move |session| {
        let _ = tx.send((session.peer_addr(), session.handle()));
    });
    (builder, rx)
}

/// Connect a client and return it with its connection's handle.
fn connect(addr: SocketAddr, opens: &Receiver<(SocketAddr, ConnHandle)>) -> (Client, ConnHandle) {
    let c = Client::connect(addr);
    let (peer, handle) = opens.recv_timeout(TIMEOUT).expect("on_open ran");
    assert_eq!(peer, c.stream.local_addr().unwrap());
    (c, handle)
}

// ---------------------------------------------------------------------------
// Shared application state.
// ---------------------------------------------------------------------------

/// Where the state's users report that they saw it.
struct Seen(Sender<&'static str>);
struct Greeting(&'static str);

/// `Builder::state` values reach `on_open`, global and group middleware,
/// handlers on both loops and `on_close` through their session, with no
/// `Arc` captured by any closure. Without the state every lookup gives
/// `None` and nothing is reported.
#[test]
fn state_reaches_hooks_middleware_and_handlers_on_every_loop() {
    fn guard(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
        if let Some(seen) = ctx.state::<Seen>() {
            let _ = seen.0.send("group middleware");
        }
        next.run(ctx)
    }
    let (tx, seen) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(2)
            .state(Seen(tx))
            .state(Greeting("first"))
            .state(Greeting("hello")) // replaces the first
            .on_open(|s| {
                let _ = s.state::<Seen>().map(|t| t.0.send("on_open"));
            })
            .on_close(|s, _reason: &CloseReason| {
                let _ = s.state::<Seen>().map(|t| t.0.send("on_close"));
            })
            .middleware(|ctx, next| {
                let _ = ctx.state::<Seen>().map(|t| t.0.send("middleware"));
                next.run(ctx)
            })
            .group([guard], |g| {
                g.route(1, |ctx| {
                    let greeting = ctx.state::<Greeting>().map_or("none", |g| g.0);
                    // Held across a change to the connection's data.
                    ctx.data_mut().insert(7u32);
                    let _ = ctx.state::<Seen>().map(|t| t.0.send("handler"));
                    ctx.reply(1, greeting)
                })
            }),
    );
    let next = || seen.recv_timeout(TIMEOUT).expect("a report");
    for _ in 0..2 {
        let mut c = Client::connect(server.local_addr());
        assert_eq!(next(), "on_open");
        c.send(1, b"");
        assert_eq!(c.recv(), (1, b"hello".to_vec()));
        assert_eq!(
            [next(), next(), next()],
            ["middleware", "group middleware", "handler"]
        );
        drop(c);
        assert_eq!(next(), "on_close");
    }
    server.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------------
// Sending to a set of connections.
// ---------------------------------------------------------------------------

/// The default wire format, counting the messages it encodes.
struct CountingPacker(Arc<AtomicUsize>);

impl Packer for CountingPacker {
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        LengthPacker::default().peek(buf)
    }

    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        LengthPacker::default().encode(id, seq, body, out)
    }
}

/// `Hub::send_to` from another thread, and from a handler (its own loop
/// written directly), reaches exactly the connections named, on both
/// loops, with the message encoded once per call; a closed connection's id
/// is counted as a failed send. Sending to each handle instead would encode
/// once per recipient (the counter would read 3, then 2).
#[test]
fn send_to_reaches_exactly_the_set_and_encodes_once() {
    let encodes = Arc::new(AtomicUsize::new(0));
    let (builder, opens) = report_opens(
        Server::builder()
            .event_loops(2)
            .packer(CountingPacker(encodes.clone()))
            .route(1, echo)
            // Relays its body to the connections whose ids follow it.
            .route(5, |ctx: &mut Context<'_>| {
                let ids = ctx.body()[1..].chunks(16).map(|c| {
                    let n = u128::from_le_bytes(c.try_into().expect("16 bytes"));
                    netloom::ConnId::from_u128(n).expect("an id")
                });
                ctx.hub().send_to(ids, 6, &ctx.body()[..1])
            }),
    );
    let (server, mut closes) = start_tracked(builder);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (c, h) = connect(server.local_addr(), &opens);
        clients.push(c);
        ids.push(h.id());
    }
    let loops: Vec<usize> = ids.iter().map(|i| i.loop_index()).collect();
    assert_eq!(loops, [0, 1, 0, 1, 0], "round-robin over two loops");
    // A closed connection's id: counted, not delivered.
    let gone = ids[4];
    let fifth = clients.pop().expect("five clients");
    let addr = fifth.stream.local_addr().unwrap();
    drop(fifth);
    closes.reason_for(addr);
    let hub = server.hub();
    let before = hub.stats();

    encodes.store(0, Ordering::SeqCst);
    hub.send_to([ids[0], ids[1], ids[3], gone], 7, b"to three")
        .unwrap();
    for i in [0, 1, 3] {
        assert_eq!(clients[i].recv(), (7, b"to three".to_vec()), "client {i}");
    }
    assert_eq!(encodes.load(Ordering::SeqCst), 1, "encoded once");
    let after = hub.stats();
    assert_eq!(after.messages_out - before.messages_out, 3);
    assert_eq!(after.send_errors - before.send_errors, 1, "the closed id");

    // From a handler on loop 0, to connections on loop 0 and loop 1.
    let mut relay = vec![b'R'];
    for i in [1, 2] {
        relay.extend_from_slice(&ids[i].to_u128().to_le_bytes());
    }
    encodes.store(0, Ordering::SeqCst);
    clients[0].send(5, &relay);
    assert_eq!(clients[1].recv(), (6, b"R".to_vec()));
    assert_eq!(clients[2].recv(), (6, b"R".to_vec()));
    assert_eq!(encodes.load(Ordering::SeqCst), 1, "encoded once");

    // Those left out got nothing: their next frame is this echo.
    for i in [0, 2, 3] {
        clients[i].send(1, b"next");
        assert_eq!(clients[i].recv(), (1, b"next".to_vec()), "client {i}");
    }
    server.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------------
// Running code on a connection's loop; sends with a receipt.
// ---------------------------------------------------------------------------

struct User(String);

/// A login finished on a worker thread: `ConnHandle::run` stores the user
/// in the session, and the connection's next message sees it. The
/// closure's value comes back through the receipt. On a closed connection
/// the closure does not run and the receipt says `Closed`. Waiting for a
/// receipt on the very loop that must answer it panics (it would hang)
/// instead of stalling the loop.
#[test]
fn run_stores_data_a_later_handler_sees_and_reports_a_closed_connection() {
    let (done_tx, done) = unbounded();
    let (builder, opens) = report_opens(
        Server::builder()
            .event_loops(2)
            .route(1, move |ctx: &mut Context<'_>| {
                let (handle, body, done) = (ctx.handle(), ctx.body_bytes(), done_tx.clone());
                std::thread::spawn(move || {
                    let name = String::from_utf8_lossy(&body).into_owned();
                    let stored = handle.run(move |s| {
                        let had = s.data().contains::<User>();
                        s.data_mut().insert(User(name));
                        had
                    });
                    let _ = done.send(stored.wait());
                });
            })
            .route(2, |ctx: &mut Context<'_>| {
                let name = ctx.data().get::<User>().map_or("nobody", |u| &u.0);
                ctx.reply(2, name)
            })
            .route(3, |ctx: &mut Context<'_>| {
                let _ = ctx.handle().run(|_| ()).wait();
            }),
    );
    let (server, mut closes) = start_tracked(builder);
    let (mut c, handle) = connect(server.local_addr(), &opens);
    c.send(2, b"");
    assert_eq!(c.recv(), (2, b"nobody".to_vec()));
    c.send(1, b"ann");
    let had_user = done.recv_timeout(TIMEOUT).expect("the worker finished");
    assert!(!had_user.expect("the closure ran"));
    c.send(2, b"");
    assert_eq!(c.recv(), (2, b"ann".to_vec()), "the next message sees it");

    // From this thread: the value comes back.
    let mut receipt = handle.run(|s| s.data().get::<User>().map(|u| u.0.len()));
    let got = receipt.wait_timeout(TIMEOUT).expect("the loop answered");
    assert_eq!(got.unwrap(), Some(3));
    assert!(receipt.wait_timeout(TIMEOUT).is_none(), "given once");

    // Waiting on the answering loop itself: a panic, not a hang.
    c.send(3, b"");
    c.expect_closed();
    let reason = closes.reason_for(c.stream.local_addr().unwrap());
    assert!(matches!(reason, CloseReason::HandlerPanic), "{reason:?}");

    // A closed connection: the closure never runs.
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    let mut gone = handle.run(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let outcome = gone.wait_timeout(TIMEOUT).expect("the loop answered");
    assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    server.shutdown(TIMEOUT).unwrap();

    // Once the loops have stopped, the receipt says so at once.
    // (`wait_timeout`, not `wait`: a receipt nobody answers fails the test
    // instead of hanging it.)
    let stopped = handle.run(|_| ()).wait_timeout(TIMEOUT);
    let stopped = stopped.expect("the receipt answered");
    assert!(matches!(stopped, Err(Error::ShutDown)), "{stopped:?}");
    let stopped = handle.send_confirmed(1, b"").wait_timeout(TIMEOUT);
    let stopped = stopped.expect("the receipt answered");
    assert!(matches!(stopped, Err(Error::ShutDown)), "{stopped:?}");
}

/// `send_confirmed` from another thread says what the loop did: queued
/// (and then delivered), refused over the high-water mark, or closed.
/// The loop is held in a handler while two sends reach its inbox, so both
/// are applied in one turn: the first (bigger than the mark) into an empty
/// queue, the second onto it, over the mark. A plain `send` returns `Ok`
/// for all three.
#[test]
fn send_confirmed_reports_queued_buffer_full_and_closed() {
    let (entered_tx, entered) = unbounded();
    let (release, release_rx) = unbounded::<()>();
    let (builder, opens) = report_opens(
        Server::builder()
            .event_loops(1)
            .write_high_water(1024)
            .route(1, echo)
            .route(50, move |_ctx: &mut Context<'_>| {
                let _ = entered_tx.send(());
                let _ = release_rx.recv_timeout(TIMEOUT);
            }),
    );
    let (server, mut closes) = start_tracked(builder);
    let (mut blocker, _) = connect(server.local_addr(), &opens);
    let (mut peer, handle) = connect(server.local_addr(), &opens);
    let (gone, gone_handle) = connect(server.local_addr(), &opens);
    let gone_addr = gone.stream.local_addr().unwrap();
    drop(gone);
    closes.reason_for(gone_addr);

    blocker.send(50, b"");
    entered.recv_timeout(TIMEOUT).expect("the loop is held");
    let big = vec![7u8; 2048];
    let mut first = handle.send_confirmed(10, &big);
    let mut second = handle.send_confirmed(11, b"over the mark");
    assert!(
        first.wait_timeout(Duration::ZERO).is_none(),
        "the held loop has not acted yet"
    );
    release.send(()).unwrap();
    assert!(matches!(first.wait_timeout(TIMEOUT), Some(Ok(()))));
    let refused = second.wait_timeout(TIMEOUT).expect("the loop answered");
    assert!(matches!(refused, Err(Error::BufferFull)), "{refused:?}");
    let closed = gone_handle
        .send_confirmed(12, b"x")
        .wait_timeout(TIMEOUT)
        .expect("the loop answered");
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");

    assert_eq!(peer.recv(), (10, big));
    peer.send(1, b"only the first arrived");
    assert_eq!(peer.recv(), (1, b"only the first arrived".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------------
// Closure forms (each compiles as written; see also the doc tests of
// `Builder::route` and `Builder::group`).
// ---------------------------------------------------------------------------

/// The forms that needed annotations before run as written: a one-closure
/// group array (its middleware before the group's `Group::middleware`), an
/// empty group array, a middleware closure ending in `Ok(())`.
#[test]
fn closure_forms_compile_as_written_and_run_in_order() {
    type Trail = Vec<&'static str>;
    let server = start(
        Server::builder()
            .middleware(|ctx, next| {
                ctx.values_mut().insert(Trail::from(["global"]));
                next.run(ctx)?;
                Ok(())
            })
            .group(
                [|ctx, next| {
                    if let Some(t) = ctx.values_mut().get_mut::<Trail>() {
                        t.push("array");
                    }
                    next.run(ctx)
                }],
                |g| {
                    g.middleware(|ctx, next| {
                        if let Some(t) = ctx.values_mut().get_mut::<Trail>() {
                            t.push("group");
                        }
                        next.run(ctx)
                    })
                    .route(1, |ctx| {
                        let trail = ctx.values().get::<Trail>().map(|t| t.join(","));
                        ctx.reply(1, trail.unwrap_or_default())
                    })
                },
            )
            .group([], |g| g.route(2, echo)),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    assert_eq!(c.recv(), (1, b"global,array,group".to_vec()));
    c.send(2, b"empty group");
    assert_eq!(c.recv(), (2, b"empty group".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}
