//! netloom's WebSocket client (`Dial::ws`, issue 20) against servers
//! nobody on the team wrote (tests/it/ws_server.py): Python's
//! `websockets` (echo in both message kinds, the upgrade's headers, path,
//! query and subprotocol, a refused upgrade, the server's close code, a
//! reconnect, message limits hostile and honest, packer mode with
//! requests, `wss://`), and a raw socket server that checks every frame's
//! mask and refuses nothing but a masked server frame.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use netloom::ws::{self, WsMode, WsResponse};
use netloom::{CloseReason, ConnHandle, Dial, Profile, Reconnect, SeqPacker, Server, ServerHandle};

use crate::common::peers::{require, Peer};

mod raw;
mod reconnect;
mod upgrade;
use crate::common::TIMEOUT;

const SERVER_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/ws_server.py");

/// A Python server of tests/it/ws_server.py, killed when dropped.
struct PyServer {
    child: Child,
    out: BufReader<ChildStdout>,
    port: u16,
}

impl PyServer {
    fn start(py: &str, scenario: &str, tls: &[&str]) -> PyServer {
        let mut child = Command::new(py)
            .arg(SERVER_PY)
            .arg(scenario)
            .args(tls)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ws_server.py");
        let mut out = BufReader::new(child.stdout.take().expect("its stdout"));
        // Bounded: the script prints its port at once, or exits.
        let mut line = String::new();
        out.read_line(&mut line).expect("its port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("ws_server.py {scenario} printed {line:?}, not a port")
        });
        PyServer { child, out, port }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Its next line of output (the scenario's verdict).
    fn line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        line.trim().to_owned()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a dialing server saw: messages (id, body), opens (the upgrade's
/// answer), closes.
struct Seen {
    messages: Receiver<(u32, Vec<u8>)>,
    opens: Receiver<Option<WsResponse>>,
    closes: Receiver<CloseReason>,
    reconnects: Receiver<()>,
}

fn dialer() -> (ServerHandle, Seen) {
    crate::common::init_logs();
    let (msg_tx, messages) = unbounded();
    let (open_tx, opens) = unbounded();
    let (close_tx, closes) = unbounded();
    let (again_tx, reconnects) = unbounded();
    let (t, b) = (msg_tx.clone(), msg_tx);
    let server = Server::builder()
        .event_loops(2)
        .route(ws::TEXT, move |ctx| {
            let _ = t.send((ws::TEXT, ctx.body().to_vec()));
        })
        .route(ws::BINARY, move |ctx| {
            let _ = b.send((ws::BINARY, ctx.body().to_vec()));
        })
        .on_open(move |s| {
            let _ = open_tx.send(s.data().get::<WsResponse>().cloned());
        })
        .on_reconnect(move |_s, _attempt| {
            let _ = again_tx.send(());
        })
        .on_close(move |_s, why| {
            let _ = close_tx.send(why.clone());
        })
        .start()
        .expect("start the dialing server");
    (
        server,
        Seen {
            messages,
            opens,
            closes,
            reconnects,
        },
    )
}

fn next<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("no {what} within {TIMEOUT:?}"))
}

fn dial(server: &ServerHandle, dial: Dial) -> ConnHandle {
    server.hub().dial(dial).expect("dial")
}

#[test]
fn echo_both_kinds_with_headers_path_query_and_subprotocol() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let peer = PyServer::start(&py, "echo", &[]);
    let (server, seen) = dialer();
    let conn = dial(
        &server,
        Dial::ws(&peer.url("/feed?room=7"))
            .unwrap()
            .ws_header("Authorization", "Bearer 0xfeed")
            .unwrap()
            .ws_protocols(["feed.v3", "feed.v2"]),
    );
    // Queued before the upgrade completes: sent after it.
    conn.send(ws::TEXT, "early").unwrap();
    let response = next(&seen.opens, "open").expect("the upgrade's answer");
    assert_eq!(response.status(), 101);
    assert_eq!(response.protocol(), Some("feed.v2"));
    assert_eq!(
        response.header("x-seen-authorization"),
        Some("Bearer 0xfeed")
    );
    assert_eq!(response.header("X-Seen-Path"), Some("/feed?room=7"));
    assert_eq!(next(&seen.messages, "echo"), (ws::TEXT, b"early".to_vec()));
    conn.send(ws::TEXT, "héllo").unwrap();
    assert_eq!(
        next(&seen.messages, "echo"),
        (ws::TEXT, "héllo".as_bytes().to_vec())
    );
    let binary: Vec<u8> = (0..=255).collect();
    conn.send(ws::BINARY, &binary).unwrap();
    assert_eq!(next(&seen.messages, "echo"), (ws::BINARY, binary));
    // A large message: masked in 64-bit length frames, echoed whole.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    conn.send(ws::BINARY, &big).unwrap();
    assert_eq!(next(&seen.messages, "echo"), (ws::BINARY, big));
    conn.close();
    assert!(matches!(next(&seen.closes, "close"), CloseReason::Local));
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_refused_upgrade_is_a_typed_close_with_its_status() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let peer = PyServer::start(&py, "reject", &[]);
    let (server, seen) = dialer();
    let _conn = dial(&server, Dial::ws(&peer.url("/")).unwrap());
    match next(&seen.closes, "close") {
        CloseReason::UpgradeRejected(403) => {}
        other => panic!("closed with {other:?}"),
    }
    assert!(seen.opens.is_empty(), "opened although refused");
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn the_servers_close_code_is_the_close_reason_and_a_reconnect_follows() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let peer = PyServer::start(&py, "echo", &[]);
    let (server, seen) = dialer();
    let conn = dial(
        &server,
        Dial::ws(&peer.url("/")).unwrap().reconnect(Reconnect {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            ..Reconnect::default()
        }),
    );
    next(&seen.opens, "open");
    conn.send(ws::TEXT, "close 4000").unwrap();
    next(&seen.reconnects, "reconnect");
    conn.send(ws::TEXT, "after").unwrap();
    assert_eq!(next(&seen.messages, "echo"), (ws::TEXT, b"after".to_vec()));
    conn.close();
    assert!(matches!(next(&seen.closes, "close"), CloseReason::Local));
    // Without a reconnect policy the close code is the reason.
    let once = dial(&server, Dial::ws(&peer.url("/")).unwrap());
    next(&seen.opens, "open");
    once.send(ws::TEXT, "close 4000").unwrap();
    match next(&seen.closes, "close") {
        CloseReason::WsClosed { code: 4000, .. } => {}
        other => panic!("closed with {other:?}"),
    }
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn every_frame_is_masked_with_a_fresh_key() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let mut peer = PyServer::start(&py, "masks", &[]);
    let (server, seen) = dialer();
    let conn = dial(&server, Dial::ws(&peer.url("/")).unwrap());
    for i in 0..50 {
        conn.send(ws::TEXT, format!("frame {i}")).unwrap();
    }
    assert_eq!(
        next(&seen.messages, "verdict"),
        (ws::TEXT, b"masks ok".to_vec())
    );
    conn.close();
    next(&seen.closes, "close");
    drop(peer.line());
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_masked_frame_from_the_server_fails_the_connection_with_1002() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let mut peer = PyServer::start(&py, "unmasked", &[]);
    let (server, seen) = dialer();
    let _conn = dial(&server, Dial::ws(&peer.url("/")).unwrap());
    // (Whether it opened first depends on whether the frame came in the
    // read of the upgrade's answer.)
    match next(&seen.closes, "close") {
        CloseReason::WsProtocol { code: 1002, .. } => {}
        other => panic!("closed with {other:?}"),
    }
    assert_eq!(peer.line(), "client closed with 1002");
    assert!(
        seen.messages.is_empty(),
        "a masked server frame was delivered"
    );
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn the_message_limit_trips_on_a_hostile_message_not_on_an_honest_flood() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let peer = PyServer::start(&py, "echo", &[]);
    let (server, seen) = dialer();
    let limited = || Dial::ws(&peer.url("/")).unwrap().ws_max_message(64 << 10);
    // Honest: 200 messages of 32 KiB at full speed, under the limit.
    let honest = dial(&server, limited());
    next(&seen.opens, "open");
    honest.send(ws::TEXT, "flood 200 32768").unwrap();
    for i in 0..200u32 {
        let (id, body) = next(&seen.messages, "a flood message");
        assert_eq!(
            (id, body.len(), body[0]),
            (ws::BINARY, 32768, (i % 256) as u8)
        );
    }
    assert!(seen.closes.is_empty(), "{:?}", seen.closes.try_recv());
    // Hostile: one message over it.
    honest.send(ws::TEXT, "big 100000").unwrap();
    match next(&seen.closes, "close") {
        CloseReason::WsProtocol { code: 1009, .. } => {}
        other => panic!("closed with {other:?}"),
    }
    assert!(
        seen.messages.is_empty(),
        "the oversized message was delivered"
    );
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn packer_mode_carries_requests_matched_by_sequence_number() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let peer = PyServer::start(&py, "echo", &[]);
    // A dial profile with a packer that carries sequence numbers.
    let server = Server::builder()
        .profile("seq", Profile::new().packer(SeqPacker::default()))
        .start()
        .unwrap();
    let conn = dial(
        &server,
        Dial::ws(&peer.url("/"))
            .unwrap()
            .ws_mode(WsMode::Packer)
            .profile("seq"),
    );
    // The echo returns each packer frame as it came: the reply of each
    // request (ids and sequence numbers intact).
    let pending: Vec<_> = (0..20u32)
        .map(|i| (i, conn.request(7, i.to_le_bytes(), TIMEOUT).unwrap()))
        .collect();
    for (i, reply) in pending {
        let reply = reply.wait().expect("the echoed reply");
        assert_eq!((reply.id, &reply.body[..]), (7, &i.to_le_bytes()[..]));
    }
    server.shutdown(TIMEOUT).unwrap();
}

#[cfg(feature = "tls")]
#[test]
fn wss_through_python_websockets_with_tls() {
    use crate::tls_support::{client_config, test_cert, TempFile};
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let cert = test_cert();
    let (cert_file, key_file) = (
        TempFile::new("ws-dial-cert.pem", &cert.cert_pem),
        TempFile::new("ws-dial-key.pem", &cert.key_pem),
    );
    let peer = PyServer::start(&py, "echo", &[cert_file.arg(), key_file.arg()]);
    let (server, seen) = dialer();
    let url = format!("wss://localhost:{}/secure", peer.port);
    // Without TLS a wss:// dial is refused at once.
    assert!(matches!(
        server.hub().dial(Dial::ws(&url).unwrap()),
        Err(netloom::Error::Config(_))
    ));
    let conn = dial(&server, Dial::wss(&url, client_config(&cert)).unwrap());
    let response = next(&seen.opens, "open").expect("the upgrade's answer");
    assert_eq!(response.header("x-seen-path"), Some("/secure"));
    conn.send(ws::TEXT, "over tls").unwrap();
    assert_eq!(
        next(&seen.messages, "echo"),
        (ws::TEXT, b"over tls".to_vec())
    );
    let big = vec![7u8; 200_000];
    conn.send(ws::BINARY, &big).unwrap();
    assert_eq!(next(&seen.messages, "echo"), (ws::BINARY, big));
    server.shutdown(TIMEOUT).unwrap();
}

/// A dial profile's heartbeat over WebSocket: ping frames before the kick.
/// Python's `websockets` answers them (its pongs are life: the link
/// outlives many idle timeouts); a server that answers nothing is kicked
/// with `IdleTimeout` within its bound.
#[test]
fn the_heartbeat_pings_and_only_a_silent_server_is_kicked() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (close_tx, closes) = unbounded();
    let server = Server::builder()
        // The kicked link waits this long for the silent server's close
        // frame.
        .close_linger(Duration::from_millis(200))
        .profile(
            "hb",
            Profile::new()
                .heartbeat(Duration::from_millis(50), Duration::from_millis(300))
                .ping_before_kick(Duration::from_millis(100), 0),
        )
        .on_close(move |_s, why| {
            let _ = close_tx.send(why.clone());
        })
        .start()
        .unwrap();
    let answering = PyServer::start(&py, "echo", &[]);
    let silent = PyServer::start(&py, "silent", &[]);
    let started = std::time::Instant::now();
    let _alive = dial(
        &server,
        Dial::ws(&answering.url("/")).unwrap().profile("hb"),
    );
    let _quiet = dial(&server, Dial::ws(&silent.url("/")).unwrap().profile("hb"));
    match closes.recv_timeout(TIMEOUT) {
        Ok(CloseReason::IdleTimeout) => {}
        other => panic!("the silent server's link: {other:?}"),
    }
    let kicked_after = started.elapsed();
    // Five idle timeouts more: the answering one stays.
    let later = closes.recv_timeout(Duration::from_millis(1500));
    assert!(later.is_err(), "the answered link closed: {later:?}");
    assert!(
        kicked_after < Duration::from_secs(3),
        "kicked after {kicked_after:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// The frame deadline on a dial: a server that starts a large message and
/// stalls is closed with `FrameTimeout` (the honest streams of the echo and
/// limit tests above run under the default deadline and never trip it).
#[test]
fn a_server_stalling_inside_a_frame_is_closed_at_the_frame_deadline() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let (close_tx, closes) = unbounded();
    let server = Server::builder()
        .frame_timeout(Duration::from_millis(300), 1000)
        .close_linger(Duration::from_millis(100))
        .on_close(move |_s, why| {
            let _ = close_tx.send(why.clone());
        })
        .start()
        .unwrap();
    let stalling = PyServer::start(&py, "stall", &[]);
    let _conn = dial(&server, Dial::ws(&stalling.url("/")).unwrap());
    match closes.recv_timeout(TIMEOUT) {
        Ok(CloseReason::FrameTimeout) => {}
        other => panic!("the stalling server's link: {other:?}"),
    }
    server.shutdown(TIMEOUT).unwrap();
}

/// Honest full-speed floods over wss://, on two dials (on the dialer's two
/// loops), under every limit a dial has, set tight: the message limit, the
/// frame deadline and the loop's partial-frame budget. None may trip.
#[cfg(feature = "tls")]
#[test]
fn honest_floods_over_wss_on_two_loops_trip_no_limit() {
    use crate::tls_support::{client_config, test_cert, TempFile};
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let cert = test_cert();
    let (cert_file, key_file) = (
        TempFile::new("ws-dial-flood-cert.pem", &cert.cert_pem),
        TempFile::new("ws-dial-flood-key.pem", &cert.key_pem),
    );
    let peer = PyServer::start(&py, "echo", &[cert_file.arg(), key_file.arg()]);
    let (msg_tx, messages) = unbounded();
    let (close_tx, closes) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .frame_timeout(Duration::from_millis(500), 64 << 10)
        .max_partial_bytes(256 << 10)
        .route(ws::BINARY, move |ctx| {
            let _ = msg_tx.send(ctx.body().len());
        })
        .on_close(move |_s, why| {
            let _ = close_tx.send(why.clone());
        })
        .start()
        .unwrap();
    let url = format!("wss://localhost:{}/", peer.port);
    let conns: Vec<_> = (0..2)
        .map(|_| {
            let d = Dial::wss(&url, client_config(&cert)).unwrap();
            dial(&server, d.ws_max_message(64 << 10))
        })
        .collect();
    let loops: std::collections::HashSet<_> = conns.iter().map(|c| c.id().loop_index()).collect();
    assert_eq!(loops.len(), 2, "the two dials share a loop");
    for c in &conns {
        c.send(ws::TEXT, "flood 200 65536").unwrap();
    }
    for _ in 0..400 {
        assert_eq!(next(&messages, "a flood message"), 65536);
    }
    assert!(closes.is_empty(), "{:?}", closes.try_recv());
    server.shutdown(TIMEOUT).unwrap();
}
