//! Reconnect with backoff: a backend that goes away and comes back on the
//! same port, a port nobody listens on, and a listener that never answers
//! a connect. The schedule is observed through `on_disconnect`, never
//! assumed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{
    Builder, CloseReason, ConnHandle, Context, Dial, Disconnect, Error, Reconnect, SeqPacker,
    Server, ServerHandle, WhileDown,
};

use super::{dialer_tracking_closes, free_port};
use crate::common::{init_logs, track_closes, Closes, TIMEOUT};

/// A quick schedule: 40 ms, 80 ms, 160 ms, then 160 ms.
fn quick() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(40),
        factor: 2.0,
        max: Duration::from_millis(160),
        jitter: 0.0,
        max_attempts: None,
    }
}

/// A backend on `addr` that answers id 1 with its body and forwards id 5's
/// bodies (and each connection it accepts) to the returned channels.
fn backend_on(addr: SocketAddr) -> (ServerHandle, Receiver<Vec<u8>>, Receiver<()>) {
    init_logs();
    let (got_tx, got) = unbounded();
    let (open_tx, opened) = unbounded();
    let server = Server::builder()
        .packer(SeqPacker::default())
        .on_open(move |_s| {
            let _ = open_tx.send(());
        })
        .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body_bytes()))
        .route(5, move |ctx: &mut Context<'_>| {
            let _ = got_tx.send(ctx.body().to_vec());
        })
        .bind(addr)
        .expect("bind")
        .start()
        .expect("start the backend");
    (server, got, opened)
}

/// A dialing server reporting every `on_disconnect` (with when it ran) and
/// every `on_reconnect`.
struct Dialer {
    server: ServerHandle,
    downs: Receiver<(Instant, Disconnect)>,
    ups: Receiver<u32>,
}

fn dialer(builder: Builder) -> Dialer {
    init_logs();
    let (down_tx, downs) = unbounded();
    let (up_tx, ups) = unbounded();
    let server = builder
        .packer(SeqPacker::default())
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send((Instant::now(), d.clone()));
        })
        .on_reconnect(move |_s, attempts| {
            let _ = up_tx.send(attempts);
        })
        .start()
        .expect("start the dialer");
    Dialer { server, downs, ups }
}

impl Dialer {
    fn next_down(&self) -> (Instant, Disconnect) {
        self.downs.recv_timeout(TIMEOUT).expect("on_disconnect")
    }

    /// Dial `addr`, reconnecting by `policy`.
    fn dial(&self, addr: SocketAddr, policy: Reconnect) -> ConnHandle {
        self.server
            .hub()
            .dial(Dial::new(addr).reconnect(policy))
            .unwrap()
    }
}

/// A [`dialer`] with its closes tracked, and a free port for it to dial
/// (nothing listens there).
fn dialer_to_nobody() -> (SocketAddr, Dialer, Closes) {
    let addr = free_port();
    let (builder, closes) = track_closes(Server::builder());
    (addr, dialer(builder), closes)
}

#[test]
fn a_lost_backend_is_dialed_again_on_schedule_and_the_handle_keeps_working() {
    let addr = free_port();
    let (backend, _, opened) = backend_on(addr);
    let d = dialer(Server::builder());
    let conn = d.dial(addr, quick());
    opened.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(
        &conn.request(1, b"a", TIMEOUT).unwrap().wait().unwrap().body[..],
        b"a"
    );

    backend.shutdown(TIMEOUT).unwrap();
    // Lost, then refused: each on_disconnect names the next attempt and
    // its delay, and the attempts come no sooner than their delays.
    let (mut at, first) = d.next_down();
    assert_eq!(
        (first.attempt, first.retry_in),
        (1, Duration::from_millis(40))
    );
    let mut wait = first.retry_in;
    for (attempt, ms) in [(2, 80), (3, 160), (4, 160)] {
        let (now, down) = d.next_down();
        assert!(
            matches!(down.reason, CloseReason::ConnectFailed(_)),
            "{:?}",
            down.reason
        );
        assert_eq!(
            (down.attempt, down.retry_in),
            (attempt, Duration::from_millis(ms))
        );
        assert!(
            now - at >= wait,
            "attempt {attempt} came {:?} after the last, before its {wait:?}",
            now - at
        );
        (at, wait) = (now, down.retry_in);
    }
    assert_eq!(d.server.stats().connect_failures, 3);

    // Back on the same port: the same handle reconnects and works.
    let (backend, _, opened) = backend_on(addr);
    opened.recv_timeout(TIMEOUT).unwrap();
    let attempts = d.ups.recv_timeout(TIMEOUT).unwrap();
    assert!(attempts >= 4, "{attempts}");
    assert_eq!(
        &conn.request(1, b"b", TIMEOUT).unwrap().wait().unwrap().body[..],
        b"b"
    );
    assert_eq!(d.server.stats().connects, 2);
    d.server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn sends_while_down_are_queued_and_arrive_once_in_order_after_the_reconnect() {
    let addr = free_port();
    let (backend, got, opened) = backend_on(addr);
    let d = dialer(Server::builder());
    let conn = d.dial(addr, quick());
    opened.recv_timeout(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
    d.next_down();
    for i in 0..200u32 {
        conn.send(5, i.to_le_bytes()).expect("queued while down");
    }
    // A message to many is queued too (found by review: refusing it to a
    // down link that queues passed).
    d.server
        .hub()
        .send_to([conn.id()], 5, 200u32.to_le_bytes())
        .unwrap();
    // A request made while down fails at the next loss, or is answered
    // after the reconnect; it never hangs.
    let (backend, got2, opened) = backend_on(addr);
    drop(got);
    opened.recv_timeout(TIMEOUT).unwrap();
    for i in 0..=200u32 {
        assert_eq!(got2.recv_timeout(TIMEOUT).unwrap(), i.to_le_bytes());
    }
    // Nothing twice: a round trip after them finds nothing else queued.
    conn.request(1, b"end", TIMEOUT).unwrap().wait().unwrap();
    assert!(got2.try_recv().is_err());
    d.server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn while_down_refuse_refuses_sends_and_requests() {
    let addr = free_port();
    let (backend, _, opened) = backend_on(addr);
    let d = dialer(Server::builder());
    let dial = Dial::new(addr)
        .reconnect(quick())
        .while_down(WhileDown::Refuse);
    let conn = d.server.hub().dial(dial).unwrap();
    opened.recv_timeout(TIMEOUT).unwrap();
    conn.send(5, b"up").unwrap();
    backend.shutdown(TIMEOUT).unwrap();
    d.next_down();
    // From another thread a send's failure is counted (the loop refuses
    // it); a request's reaches its waiter.
    let errors = d.server.stats().send_errors;
    conn.send(5, b"down").unwrap();
    crate::common::wait_until("the refused send to be counted", || {
        d.server.stats().send_errors == errors + 1
    });
    // So is a message to many (not queued for after the reconnect).
    d.server.hub().send_to([conn.id()], 5, b"down").unwrap();
    crate::common::wait_until("the refused message to many to be counted", || {
        d.server.stats().send_errors == errors + 2
    });
    let refused = conn.request(1, b"down", TIMEOUT).and_then(|p| p.wait());
    assert!(matches!(refused, Err(Error::Disconnected)), "{refused:?}");
    let (backend, got, opened) = backend_on(addr);
    opened.recv_timeout(TIMEOUT).unwrap();
    d.ups.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(
        &conn
            .request(1, b"up", TIMEOUT)
            .unwrap()
            .wait()
            .unwrap()
            .body[..],
        b"up"
    );
    conn.send(5, b"again").unwrap();
    assert_eq!(
        got.recv_timeout(TIMEOUT).unwrap(),
        b"again",
        "a refused send went out"
    );
    // A message to many goes to it while it is up (found by mutation
    // testing: refusing a message to many to a connected link passed).
    d.server.hub().send_to([conn.id()], 5, b"to many").unwrap();
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), b"to many");
    d.server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn closing_a_connection_during_its_backoff_stops_the_attempts() {
    let (addr, d, mut closes) = dialer_to_nobody();
    let slow = Reconnect {
        initial: Duration::from_millis(300),
        ..quick()
    };
    let conn = d.dial(addr, slow);
    let (_, down) = d.next_down();
    assert_eq!(down.attempt, 1);
    conn.close();
    let reason = closes.reason_for(addr);
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");
    // The backoff's timer finds the connection gone: no attempt follows.
    assert!(d.downs.recv_timeout(Duration::from_secs(1)).is_err());
    assert_eq!(d.server.stats().connect_failures, 1);
    let closed = conn.request(1, b"x", TIMEOUT).and_then(|p| p.wait());
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
    d.server.shutdown(TIMEOUT).unwrap();
}

/// The backoff is slept through: the dialing loop's own CPU time (read
/// by its hooks, on its thread) from the first loss to the final close,
/// 100 + 200 + 400 ms of backoff, stays a small fraction of that time. A
/// loop that re-dialed or polled without sleeping would use most of it.
#[cfg(target_os = "linux")]
#[test]
fn a_refused_port_is_tried_max_attempts_times_then_closed_without_spinning() {
    use crate::common::thread_cpu_time;
    init_logs();
    let addr = free_port();
    let (down_tx, downs) = unbounded();
    let (close_tx, closed) = unbounded();
    let server = Server::builder()
        .packer(SeqPacker::default())
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send((d.attempt, Instant::now(), thread_cpu_time()));
        })
        .on_close(move |_s, reason| {
            let _ = close_tx.send((reason.clone(), Instant::now(), thread_cpu_time()));
        })
        .start()
        .unwrap();
    let policy = Reconnect {
        initial: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_millis(400),
        jitter: 0.0,
        max_attempts: Some(3),
    };
    server
        .hub()
        .dial(Dial::new(addr).reconnect(policy))
        .unwrap();
    let downs: Vec<_> = (0..3)
        .map(|_| downs.recv_timeout(TIMEOUT).expect("on_disconnect"))
        .collect();
    let attempts: Vec<u32> = downs.iter().map(|d| d.0).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let (reason, end, end_cpu) = closed.recv_timeout(TIMEOUT).expect("on_close");
    assert!(
        matches!(reason, CloseReason::ConnectFailed(_)),
        "{reason:?}"
    );
    assert_eq!(server.stats().connect_failures, 4);
    let (_, start, start_cpu) = downs[0];
    let (wall, cpu) = (end - start, end_cpu - start_cpu);
    assert!(wall >= Duration::from_millis(700), "{wall:?}");
    assert!(
        cpu < wall / 10,
        "the dialing loop used {cpu:?} of CPU over {wall:?} of backoff"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// A listener whose accept queue is full never answers a connect: the
/// attempt ends at `connect_timeout`.
#[test]
fn a_connect_nobody_answers_ends_at_its_timeout() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (never accepted) until a connect hangs.
    let mut fillers = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue: {e}"),
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    let (client, mut closes) = dialer_tracking_closes();
    let started = Instant::now();
    let dial = Dial::new(addr).connect_timeout(Duration::from_millis(200));
    client.hub().dial(dial).unwrap();
    let reason = closes.reason_for(addr);
    assert!(matches!(reason, CloseReason::ConnectTimeout), "{reason:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(client.stats().connect_failures, 1);
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_shutdown_ends_a_connection_waiting_out_its_backoff_at_once() {
    let (addr, d, mut closes) = dialer_to_nobody();
    let slow = Reconnect {
        initial: Duration::from_secs(30),
        ..quick()
    };
    let conn = d.dial(addr, slow);
    assert_eq!(d.next_down().1.attempt, 1);
    let started = Instant::now();
    d.server.shutdown(TIMEOUT).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let reason = closes.reason_for(addr);
    assert!(matches!(reason, CloseReason::Shutdown), "{reason:?}");
    assert!(matches!(conn.send(5, b"x"), Err(Error::ShutDown)));
}
