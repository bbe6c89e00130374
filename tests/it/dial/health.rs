//! A dialed link found dead while it looks up (issue 19): requests timing
//! out in a row (`Dial::reconnect_after_timeouts`) and a failed health
//! check (`Dial::health_check`) drop it with a typed reason, and it
//! reconnects by its policy. Backends are real loopback sockets; their
//! accepts are counted.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{
    CloseReason, Context, Dial, Disconnect, Error, HealthCheck, Reconnect, SeqPacker, Server,
    ServerHandle,
};

use crate::common::{init_logs, start, TIMEOUT};

/// A netloom backend with the sequence packer: id 1 and id 9 answered
/// with their body, id 3 never; every connection it opens and every id-9
/// request it gets reported.
fn backend() -> (ServerHandle, Receiver<()>, Receiver<()>) {
    let (open_tx, opens) = unbounded();
    let (ping_tx, pings) = unbounded();
    let server = start(
        Server::builder()
            .packer(SeqPacker::default())
            .on_open(move |_s| {
                let _ = open_tx.send(());
            })
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body_bytes()))
            .route(9, move |ctx: &mut Context<'_>| {
                let _ = ping_tx.send(());
                ctx.reply(9, ctx.body_bytes())
            })
            .route(3, |_ctx: &mut Context<'_>| {}),
    );
    (server, opens, pings)
}

/// A backend that reads everything and never answers: each accept (and
/// when it happened) goes to the channel.
fn silent_backend() -> (SocketAddr, Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accepts) = unbounded();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            if tx.send(Instant::now()).is_err() {
                return;
            }
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (addr, accepts)
}

/// A dialing server on two loops reporting every `on_disconnect`.
fn dialer() -> (ServerHandle, Receiver<(Instant, Disconnect)>) {
    init_logs();
    let (down_tx, downs) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send((Instant::now(), d.clone()));
        })
        .start()
        .expect("start the dialer");
    (server, downs)
}

fn quick() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(50),
        factor: 1.0,
        max: Duration::from_millis(50),
        jitter: 0.0,
        max_attempts: None,
    }
}

fn times_out(conn: &netloom::ConnHandle) {
    let r = conn
        .request(3, b"never", Duration::from_millis(100))
        .unwrap();
    assert!(matches!(r.wait(), Err(Error::Timeout)));
}

#[test]
fn timeouts_in_a_row_drop_the_link_and_a_reply_starts_the_count_over() {
    let (backend, opens, _pings) = backend();
    let (client, downs) = dialer();
    let dial = Dial::new(backend.local_addr())
        .reconnect(quick())
        .reconnect_after_timeouts(3);
    let conn = client.hub().dial(dial).unwrap();
    opens.recv_timeout(TIMEOUT).expect("the first connect");
    // Two timeouts, a reply, two more: never three in a row.
    times_out(&conn);
    times_out(&conn);
    conn.request(1, b"alive", TIMEOUT).unwrap().wait().unwrap();
    times_out(&conn);
    times_out(&conn);
    conn.request(1, b"still", TIMEOUT).unwrap().wait().unwrap();
    assert!(downs.try_recv().is_err(), "dropped before three in a row");
    assert!(
        opens.try_recv().is_err(),
        "reconnected before three in a row"
    );
    // Three in a row: dropped with the typed reason, and back.
    times_out(&conn);
    times_out(&conn);
    times_out(&conn);
    let (_, down) = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
    assert!(
        matches!(down.reason, CloseReason::RequestTimeouts(3)),
        "{down:?}"
    );
    opens.recv_timeout(TIMEOUT).expect("reconnected");
    let r = conn.request(1, b"back", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(r.body, "back");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_silent_backend_fails_its_health_check_within_the_bound_and_the_link_reconnects() {
    let (addr, accepts) = silent_backend();
    let (client, downs) = dialer();
    let (interval, timeout) = (Duration::from_millis(300), Duration::from_millis(300));
    let check = HealthCheck {
        id: 9,
        body: "ping".into(),
        interval,
        timeout,
    };
    let dial = Dial::new(addr).reconnect(quick()).health_check(check);
    let _conn = client.hub().dial(dial).unwrap();
    let connected = accepts.recv_timeout(TIMEOUT).expect("the first connect");
    let (down_at, down) = downs.recv_timeout(TIMEOUT).expect("declared dead");
    assert!(
        matches!(down.reason, CloseReason::HealthCheckFailed(_)),
        "{down:?}"
    );
    // interval + timeout, each timer up to one 100 ms tick late, and
    // some room for a loaded machine.
    let took = down_at.duration_since(connected);
    let bound = interval + timeout + Duration::from_millis(2 * 100 + 300);
    assert!(
        took < bound,
        "declared dead after {took:?} (bound {bound:?})"
    );
    assert!(took >= interval, "declared dead too early: {took:?}");
    accepts.recv_timeout(TIMEOUT).expect("reconnected");
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_backend_that_answers_its_health_checks_stays_connected() {
    let (backend, opens, pings) = backend();
    let (client, downs) = dialer();
    let check = HealthCheck {
        id: 9,
        body: "ping".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
    };
    let dial = Dial::new(backend.local_addr())
        .reconnect(quick())
        .health_check(check);
    let _conn = client.hub().dial(dial).unwrap();
    opens.recv_timeout(TIMEOUT).expect("connected");
    for _ in 0..5 {
        pings.recv_timeout(TIMEOUT).expect("a health check");
    }
    assert!(downs.try_recv().is_err(), "a healthy link was dropped");
    assert!(opens.try_recv().is_err(), "a healthy link reconnected");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn the_link_policies_need_sequence_numbers_and_sane_numbers() {
    init_logs();
    let plain = Server::builder().start().unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let check = HealthCheck {
        id: 9,
        body: "ping".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    };
    let dial = Dial::new(addr).health_check(check.clone());
    assert!(matches!(plain.hub().dial(dial), Err(Error::NoSeq)));
    let dial = Dial::new(addr).reconnect_after_timeouts(2);
    assert!(matches!(plain.hub().dial(dial), Err(Error::NoSeq)));
    plain.shutdown(TIMEOUT).unwrap();
    let (client, _downs) = dialer();
    let dial = Dial::new(addr).reconnect_after_timeouts(0);
    assert!(matches!(client.hub().dial(dial), Err(Error::Config(_))));
    let zero = HealthCheck {
        interval: Duration::ZERO,
        ..check
    };
    let dial = Dial::new(addr).health_check(zero);
    assert!(matches!(client.hub().dial(dial), Err(Error::Config(_))));
    client.shutdown(TIMEOUT).unwrap();
}

/// `Duration::MAX` means never (capped at `FOREVER`; an overflow would
/// panic the loop in a debug build): a check every `MAX` never comes (one
/// that did would time out in 1 ms and drop its link), and checks every
/// 20 ms that wait `MAX` for their reply never time out.
#[test]
fn health_check_durations_of_duration_max_mean_never() {
    let (addr, accepts) = silent_backend();
    let (client, downs) = dialer();
    let never_sent = HealthCheck {
        id: 9,
        body: "ping".into(),
        interval: Duration::MAX,
        timeout: Duration::from_millis(1),
    };
    let never_late = HealthCheck {
        interval: Duration::from_millis(20),
        timeout: Duration::MAX,
        ..never_sent.clone()
    };
    for check in [never_sent, never_late] {
        let dial = Dial::new(addr).reconnect(quick()).health_check(check);
        client.hub().dial(dial).unwrap();
        accepts.recv_timeout(TIMEOUT).expect("connected");
    }
    let quiet = Duration::from_millis(500);
    assert!(downs.recv_timeout(quiet).is_err(), "a link was dropped");
    client.shutdown(TIMEOUT).expect("no loop thread panicked");
}
