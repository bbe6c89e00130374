//! A WebSocket dial at its edges, continued (found by the review of issue
//! 20; each failed before its fix): the old session's close frame on the
//! next connection, a server closing and resetting, URLs with a port out
//! of range, refused upgrades counted as failed attempts, and subprotocols
//! HTTP cannot carry.

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use netloom::ws;
use netloom::{Dial, Profile, Server};

use super::raw::*;
use crate::common::TIMEOUT;

// 5. The old session's close frame is replayed on the next connection
// ---------------------------------------------------------------------------

/// A server that stops reading: the dial's heartbeat kicks it (a close
/// frame 1000 "idle timeout" queued behind what the server never read),
/// the linger expires, and the dial reconnects. The next connection must
/// not start with the old session's close frame (nor its pings): they
/// belong to a WebSocket session that is gone.
#[test]
fn the_old_sessions_close_frame_is_not_sent_on_the_next_connection() {
    crate::common::init_logs();
    let raw = Raw::new();
    let url = raw.url("/");
    let (b, seen) = events(
        Server::builder()
            .event_loops(1)
            .write_high_water(64 << 20)
            .send_buffer_size(64 << 10)
            .close_linger(Duration::from_millis(200))
            .profile(
                "hb",
                Profile::new()
                    .heartbeat(Duration::from_millis(50), Duration::from_millis(400))
                    .send_buffer_size(64 << 10),
            ),
    );
    let server = b.start().unwrap();
    let (verdict_tx, verdicts) = report::<String>();
    let (stop_tx, stop) = report::<()>();
    let peer = thread::spawn(move || {
        // First connection: upgrade, then read nothing, write nothing.
        let mut s1 = raw.next().expect("first connection");
        handshake(&mut s1).unwrap();
        // The second (after the kick): read frames until "fresh" or a close.
        let Some(mut s2) = raw.next() else {
            let _ = verdict_tx.send("no reconnect".into());
            return;
        };
        handshake(&mut s2).unwrap();
        let mut verdict = String::from("nothing");
        for _ in 0..1000 {
            match read_frame(&mut s2) {
                Ok((1, _, p)) if p == b"fresh" => {
                    verdict = "fresh first".into();
                    break;
                }
                Ok((8, _, p)) => {
                    let code = p.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    let why = String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).into_owned();
                    verdict = format!("a close frame {code:?} {why:?} before \"fresh\"");
                    break;
                }
                Ok(_) => continue,
                Err(e) => {
                    verdict = format!("read failed: {e}");
                    break;
                }
            }
        }
        let _ = verdict_tx.send(verdict);
        let _ = stop.recv_timeout(TIMEOUT);
        drop(s1);
    });
    let conn = server
        .hub()
        .dial(
            Dial::ws(&url)
                .unwrap()
                .profile("hb")
                .reconnect(quick_reconnect()),
        )
        .unwrap();
    assert!(matches!(
        seen.recv_timeout(TIMEOUT),
        Ok(Ev::Open { response: true })
    ));
    // More than the socket buffers hold: the queue stays non-empty.
    for i in 0..64u8 {
        conn.send(ws::BINARY, vec![i; 256 << 10]).unwrap();
    }
    // Kicked (idle timeout), then back.
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    loop {
        let ev = seen
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no reconnect: {got:?}"));
        if ev == Ev::Reconnect {
            break;
        }
        got.push(ev);
    }
    conn.send(ws::TEXT, "fresh").unwrap();
    let verdict = verdicts.recv_timeout(TIMEOUT).expect("the peer's verdict");
    let _ = stop_tx.send(());
    let _ = peer.join();
    server.shutdown(TIMEOUT).unwrap();
    assert!(
        !verdict.starts_with("a close frame"),
        "the next connection got {verdict} (events: {got:?})"
    );
}

// ---------------------------------------------------------------------------
// 6. A server that sends its close frame and drops the connection
// ---------------------------------------------------------------------------

/// A server going away sends a close frame (1001) and resets the
/// connection at once (a load balancer, a process exiting): the dial's echo
/// of the close frame cannot be written. The dial (with a reconnect
/// policy) must come back, and its next connection must not begin with
/// the old session's close echo.
#[test]
fn a_server_closing_and_resetting_is_reconnected_cleanly() {
    crate::common::init_logs();
    let raw = Raw::new();
    let url = raw.url("/");
    let (b, seen) = events(Server::builder().event_loops(1));
    let server = b.start().unwrap();
    let (verdict_tx, verdicts) = report::<String>();
    let peer = thread::spawn(move || {
        let mut s = raw.next().expect("first connection");
        handshake(&mut s).unwrap();
        // The dial is open (it sent its first message): go away.
        let _ = read_frame(&mut s);
        s.write_all(&close_frame(1001, "restarting")).unwrap();
        reset(s);
        let Some(mut s) = raw.next() else {
            let _ = verdict_tx.send("no reconnect".into());
            return;
        };
        handshake(&mut s).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let verdict = match read_frame(&mut s) {
            Ok((1, true, p)) => String::from_utf8_lossy(&p).into_owned(),
            Ok((8, masked, p)) => format!(
                "a close frame (masked {masked}) {:?}",
                p.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))
            ),
            Ok(other) => format!("another frame {other:?}"),
            Err(e) => format!("no frame: {e}"),
        };
        let _ = verdict_tx.send(verdict);
    });
    let conn = server
        .hub()
        .dial(Dial::ws(&url).unwrap().reconnect(quick_reconnect()))
        .unwrap();
    conn.send(ws::TEXT, "first").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut reconnected = false;
    while let Ok(ev) = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if ev == Ev::Reconnect {
            reconnected = true;
            break;
        }
        got.push(ev);
    }
    if reconnected {
        conn.send(ws::TEXT, "fresh").unwrap();
    }
    let verdict = verdicts.recv_timeout(TIMEOUT);
    let _ = peer.join();
    let shutdown = server.shutdown(TIMEOUT);
    assert!(
        reconnected,
        "no reconnect (events {got:?}; the peer: {verdict:?}; shutdown: {shutdown:?})"
    );
    assert_eq!(verdict.as_deref(), Ok("fresh"), "events {got:?}");
}

// ---------------------------------------------------------------------------
// 7. A port out of range is taken as the default port
// ---------------------------------------------------------------------------

/// `ws://127.0.0.1:99999/` names no port a socket can have: `Dial::ws`
/// must refuse it (`Error::Config`), not dial port 80.
#[test]
fn a_ws_url_with_a_port_out_of_range_is_refused() {
    for url in [
        "ws://127.0.0.1:99999/",
        "ws://127.0.0.1:65536/",
        "ws://backend.internal:70000/feed",
    ] {
        match Dial::ws(url) {
            Err(netloom::Error::Config(_)) => {}
            Ok(dial) => panic!(
                "{url} accepted: dials {} {:?}",
                dial.addr(),
                dial.host_name()
            ),
            Err(e) => panic!("{url}: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 8. A refused upgrade is not counted as a failed connect attempt
// ---------------------------------------------------------------------------

/// `Stats::connect_failures`: "Connect attempts of dialed connections that
/// failed or timed out (over TLS, also in the handshake)". An upgrade that
/// times out is counted; one refused (403) or broken (`BadUpgrade`) must
/// be too: the attempt failed, and it is not counted in `connects`.
#[test]
fn a_refused_upgrade_counts_as_a_failed_connect_attempt() {
    crate::common::init_logs();
    let raw = Raw::new();
    let url = raw.url("/");
    let (b, seen) = events(Server::builder().event_loops(1));
    let server = b.start().unwrap();
    let peer = thread::spawn(move || {
        let mut s = raw.next().expect("a connection");
        read_request(&mut s).unwrap();
        s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let _ = s.read(&mut [0u8; 64]);
    });
    let _conn = server.hub().dial(Dial::ws(&url).unwrap()).unwrap();
    let ev = seen.recv_timeout(TIMEOUT).expect("the close");
    assert_eq!(ev, Ev::Close("UpgradeRejected(403)".into()));
    let stats = server.stats();
    let _ = peer.join();
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(
        (stats.connects, stats.connect_failures),
        (0, 1),
        "(connects, connect_failures) after a refused upgrade"
    );
}

// ---------------------------------------------------------------------------
// 9. A subprotocol HTTP cannot carry is found at every connect, not at dial
// ---------------------------------------------------------------------------

/// `ws_header` refuses a value HTTP does not allow (`Error::Config`), and
/// `WsDial::parse` builds a request up front so that "a URL tungstenite
/// refuses fails here, not on every connect". A subprotocol with a line
/// break cannot be sent either: `Hub::dial` must refuse it, rather than
/// every attempt failing with `BadUpgrade` (forever, with a reconnect
/// policy).
#[test]
fn a_subprotocol_http_cannot_carry_is_refused_at_dial() {
    crate::common::init_logs();
    let raw = Raw::new();
    let (b, seen) = events(Server::builder().event_loops(1));
    let server = b.start().unwrap();
    let dialed = server.hub().dial(
        Dial::ws(&raw.url("/"))
            .unwrap()
            .ws_protocols(["chat\r\nX-Injected: 1"]),
    );
    let outcome = match &dialed {
        Err(e) => format!("refused: {e:?}"),
        Ok(_) => format!(
            "accepted, then {:?}",
            seen.recv_timeout(TIMEOUT).expect("its close")
        ),
    };
    server.shutdown(TIMEOUT).unwrap();
    assert!(
        matches!(dialed, Err(netloom::Error::Config(_))),
        "{outcome}"
    );
}
