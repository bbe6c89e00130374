//! A peer that vanishes without FIN or RST (a host switched off, a cable
//! pulled): namespace B drops every packet, then the peer is killed, so
//! its kernel's FIN or RST never leaves B. Only a timer of ours can find
//! out: netloom's heartbeat, or the kernel's keepalive probes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Builder, CloseReason, Context, Dial, Profile, SeqPacker, Server};

use super::{addr_a, assert_between, Env, SLACK};
use crate::netns::Fault;
use crate::probe::{check_drained, wait_for, Baseline};

/// `on_close` events: (peer address, reason, when).
type Closes = Receiver<(SocketAddr, CloseReason, Instant)>;

fn track_closes(builder: Builder) -> (Builder, Closes) {
    let (tx, rx) = unbounded();
    let builder = builder.on_close(move |s, reason| {
        let _ = tx.send((s.peer_addr(), reason.clone(), Instant::now()));
    });
    (builder, rx)
}

/// Heartbeat: the accepted connection of a peer that vanished is closed
/// with `IdleTimeout`, no sooner than `IDLE` after its last byte and no
/// later than `IDLE + CHECK` (plus scheduling slack). A FIN or RST that
/// escaped B would close it as `PeerClosed` instead; a heartbeat that
/// did not run would leave it open past the bound.
pub fn heartbeat(env: &Env) {
    const CHECK: Duration = Duration::from_millis(200);
    const IDLE: Duration = Duration::from_secs(1);
    let base = Baseline::take();
    let last_byte = Arc::new(Mutex::new(None::<Instant>));
    let seen = last_byte.clone();
    let (builder, closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .packer(SeqPacker::default())
            .heartbeat(CHECK, IDLE)
            .route(1, move |ctx: &mut Context<'_>| {
                *seen.lock().unwrap() = Some(Instant::now());
                ctx.reply(1, ctx.body())
            }),
    );
    let server = builder.bind(addr_a()).unwrap().start().unwrap();
    let mut peer = env.client_peer("hold-client", server.local_addr());
    // The peer is ready once it got its echo: its last byte was the frame.
    env.fault(Fault::DropAll);
    peer.kill();
    let (addr, reason, at) = closes
        .recv_timeout(IDLE + CHECK + Duration::from_secs(5))
        .expect("on_close for the vanished peer");
    assert_eq!(addr.port(), peer.port, "closed: {addr}");
    assert!(matches!(reason, CloseReason::IdleTimeout), "{reason:?}");
    let last = last_byte.lock().unwrap().expect("the peer's frame arrived");
    assert_between(
        "heartbeat close after the peer's last byte",
        at - last,
        IDLE,
        IDLE + CHECK + SLACK,
    );
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::IdleTimeout), 1, "{stats}");
    check_drained(&stats, "after the kick");
    server.shutdown(Duration::from_secs(5)).unwrap();
    drop(peer);
    base.check_fds("after shutdown");
}

/// SO_KEEPALIVE's period in this scenario, and the probes the kernel of
/// namespace A sends before it gives up (netloom sets the idle time and
/// interval; the count is the system's, `net.ipv4.tcp_keepalive_probes`,
/// a per-namespace setting, lowered here from 9 to keep the test short).
const PERIOD: Duration = Duration::from_secs(1);
const PROBES: u32 = 2;

/// `ss -tnoH state established` lines of this namespace (netloom's side).
fn sockets() -> Vec<String> {
    let out = crate::netns::call("ss", &["-tnoH", "state", "established"]).expect("ss");
    out.lines().map(str::to_string).collect()
}

/// The `ss` line of the connection whose address in namespace B is `b`.
fn line_of(lines: &[String], b: SocketAddr) -> &str {
    let b = b.to_string();
    lines
        .iter()
        .find(|l| l.split_whitespace().any(|col| col == b))
        .unwrap_or_else(|| panic!("no established socket with {b}: {lines:#?}"))
}

/// Keepalive: with no heartbeat, the kernel's probes close connections
/// whose peer vanished, on an accepted socket (the server's
/// `keepalive`), a dialed one (the server's) and one dialed with a
/// profile (the profile's). `ss -o` shows their keepalive timers before
/// the fault; a fourth dialed socket without keepalive shows none and is
/// still open after the others closed. The close reason is an I/O error
/// whose kind is `TimedOut` (ETIMEDOUT from the kernel), within
/// `PROBES × PERIOD` to `(1 + PROBES) × PERIOD` of the fault (the last
/// probe the peer answered came at most one period before it). Without
/// the interval set (the system default is 75 s) or without keepalive,
/// nothing would close within the bound.
pub fn keepalive(env: &Env) {
    std::fs::write(
        "/proc/sys/net/ipv4/tcp_keepalive_probes",
        PROBES.to_string(),
    )
    .expect("set tcp_keepalive_probes in namespace A");
    let base = Baseline::take();
    let (builder, closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .packer(SeqPacker::default())
            .keepalive(PERIOD)
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body()))
            .profile("ka", Profile::new().keepalive(PERIOD))
            .profile("plain", Profile::new()),
    );
    let server = builder.bind(addr_a()).unwrap().start().unwrap();
    let hub = server.hub();
    let listeners: Vec<_> = (0..3)
        .map(|_| env.server_peer("hold-listen", &[]))
        .collect();
    let dialed = hub.dial(Dial::new(listeners[0].addr())).unwrap();
    let profiled = hub
        .dial(Dial::new(listeners[1].addr()).profile("ka"))
        .unwrap();
    let plain = hub
        .dial(Dial::new(listeners[2].addr()).profile("plain"))
        .unwrap();
    let mut client = env.client_peer("hold-client", server.local_addr());
    let client_addr = SocketAddr::new(crate::netns::ADDR_B.parse().unwrap(), client.port);
    wait_for("4 connections open", Duration::from_secs(10), || {
        hub.stats().connections == 4
    });

    let lines = sockets();
    let with_keepalive = [
        ("accepted", client_addr),
        ("dialed", listeners[0].addr()),
        ("dialed with a profile", listeners[1].addr()),
    ];
    for (what, b) in with_keepalive {
        let line = line_of(&lines, b);
        assert!(
            line.contains("timer:(keepalive,"),
            "{what} socket has no keepalive timer: {line}"
        );
        println!("  ss, {what}: {}", line.split_whitespace().last().unwrap());
    }
    let line = line_of(&lines, listeners[2].addr());
    assert!(
        !line.contains("keepalive"),
        "the socket without keepalive has its timer: {line}"
    );
    println!("  ss, dialed without keepalive: no keepalive timer");

    let cut = env.fault(Fault::DropAll);
    client.kill();
    drop(listeners);
    let mut expected = vec![client_addr];
    expected.extend(with_keepalive[1..].iter().map(|(_, b)| *b));
    let hi = PERIOD * (1 + PROBES) + Duration::from_secs(1);
    for _ in 0..3 {
        let (addr, reason, at) = closes
            .recv_timeout(hi + Duration::from_secs(5))
            .expect("on_close for a vanished peer");
        let i = expected
            .iter()
            .position(|b| *b == addr)
            .unwrap_or_else(|| panic!("closed {addr} ({reason:?}), expected one of {expected:?}"));
        expected.remove(i);
        match &reason {
            CloseReason::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{addr}: {e}"),
            other => panic!("{addr} closed with {other:?}, not the kernel's I/O error"),
        }
        cut.assert_after(
            &format!("keepalive close of {addr} ({reason})"),
            at,
            PERIOD * PROBES - Duration::from_millis(100),
            hi,
        );
    }
    // The socket without keepalive is still there: nothing probes it.
    assert!(
        closes.try_recv().is_err(),
        "the socket without keepalive closed too"
    );
    assert_eq!(hub.stats().connections, 1);
    plain.close();
    let (_, reason, _) = closes.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");
    check_drained(&hub.stats(), "after the closes");
    server.shutdown(Duration::from_secs(5)).unwrap();
    // Handles keep the server's shared state (its wakers) alive.
    drop((hub, dialed, profiled, plain));
    base.check_fds("after shutdown");
}
