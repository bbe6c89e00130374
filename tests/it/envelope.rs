//! hotpot's JSON envelope over WebSocket (issue 22): the echo exchange
//! (and a client's Ping answered with a Pong), bad input answered by the
//! policy while other connections go on, and `Keepalived(check,
//! timeout)` (Ping after `check` of silence, a Pong is life, closed after
//! `timeout`), against Python's `websockets` and headless Chromium.

use std::process::Command;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::{BadBody, CloseReason, Server, ServerHandle};
use serde::{Deserialize, Serialize};

use crate::common::peers::{require, Peer};
use crate::common::{run_bounded, Closes, TIMEOUT};
use crate::ws::browser::{dump_dom, page_server};

#[derive(Debug, Serialize, Deserialize)]
#[allow(non_snake_case)]
struct Echo {
    Message: String,
}

fn hotpot_server(check: Duration, timeout: Duration) -> (ServerHandle, Closes) {
    let (builder, closes) = crate::common::track_closes(
        Server::builder()
            .event_loops(2)
            .route_envelope("Echo", |_ctx, e: Echo| Ok::<_, netloom::BoxError>(e))
            .keepalived(check, timeout)
            .bad_body(BadBody::Reply(netloom::ws::TEXT)),
    );
    crate::common::init_logs();
    let server = builder
        .bind_ws("127.0.0.1:0")
        .expect("bind")
        .start()
        .expect("start");
    (server, closes)
}

fn peer(python: &str, server: &ServerHandle, mode: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/envelope_peer.py");
    let url = format!("ws://{}/", server.local_addr());
    let mut cmd = Command::new(python);
    cmd.args([script, &url, mode]);
    let out = run_bounded(cmd, TIMEOUT * 3);
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && said.starts_with("ok"),
        "{mode}: {said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// `examples/ws_json_echo` as a user runs it: hotpot's echo exchange
/// and bad input against Python's `websockets`.
#[test]
fn the_example_answers_a_hotpot_client() {
    let Some(python) = require(Peer::PyWebsockets) else {
        return;
    };
    let (_server, addr) = crate::dial::examples::run_example("ws_json_echo", &["127.0.0.1:0"]);
    let url = format!("{}/", addr.trim_end_matches('/'));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/envelope_peer.py");
    for mode in ["echo", "bad"] {
        let mut cmd = Command::new(&python);
        cmd.args([script, &url, mode]);
        let out = run_bounded(cmd, TIMEOUT * 3);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.starts_with("ok"),
            "{mode}: {said}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn python_echo_and_bad_input() {
    let Some(python) = require(Peer::PyWebsockets) else {
        return;
    };
    let (server, _closes) = hotpot_server(Duration::from_secs(5), Duration::from_secs(12));
    peer(&python, &server, "echo");
    let said = peer(&python, &server, "bad");
    // The answers to the garbage and to the unknown type, in order: each
    // names the envelope, not plain JSON, as the format it wanted.
    let answers: Vec<String> = said
        .strip_prefix("ok bad ")
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_else(|| panic!("not `ok bad [first, second]`: {said}"));
    assert!(answers[0].contains("not json envelope"), "{said}");
    assert!(answers[1].contains("json envelope"), "{said}");
    assert!(answers[1].contains("Nobody"), "{said}");
    assert_eq!(server.stats().bad_bodies, 2);
    server.shutdown(TIMEOUT).unwrap();
}

/// A push outside any handler: `on_open` sends the envelope, and
/// Python's `websockets` reads it first (found by mutation testing:
/// `Session::send_envelope` sending nothing passed).
#[test]
fn an_envelope_pushed_on_open_reaches_python() {
    let Some(python) = require(Peer::PyWebsockets) else {
        return;
    };
    crate::common::init_logs();
    let server = Server::builder()
        .on_open(|s| {
            s.send_envelope("Welcome", &serde_json::json!({"n": 1}))
                .is_ok()
        })
        .route_envelope("Echo", |_ctx, e: Echo| Ok::<_, netloom::BoxError>(e))
        .bind_ws("127.0.0.1:0")
        .expect("bind")
        .start()
        .expect("start");
    peer(&python, &server, "welcome");
    server.shutdown(TIMEOUT).unwrap();
}

/// `Keepalived(300 ms, 900 ms)`: Pings after 300 ms of silence (give or
/// take a tick), answered Pongs keep the client, silence closes it.
#[test]
fn python_keepalive_pings_and_kicks() {
    let Some(python) = require(Peer::PyWebsockets) else {
        return;
    };
    let (server, mut closes) =
        hotpot_server(Duration::from_millis(300), Duration::from_millis(900));
    let said = peer(&python, &server, "keepalive");
    let times: Vec<f64> = said
        .split_whitespace()
        .skip(2)
        .map(|t| t.parse().unwrap())
        .collect();
    let (first, second, closed) = (times[0], times[1], times[2]);
    // A tick is the check interval: a Ping between one and two checks of
    // silence, plus scheduling.
    assert!(
        (0.25..1.0).contains(&first),
        "first Ping at {first}: {said}"
    );
    assert!(second - first >= 0.25, "{said}");
    // Closed between `timeout` and `timeout` + a check after the last Pong.
    assert!(closed - second >= 0.85 && closed - second < 3.0, "{said}");
    let (_, reason) = closes.next();
    assert!(matches!(reason, CloseReason::IdleTimeout), "{reason:?}");
    server.shutdown(TIMEOUT).unwrap();
}

const PAGE: &str = r#"<!doctype html>
<html><head><title>hotpot</title></head><body>
<div id="result">pending</div>
<script>
function done(r) { document.getElementById("result").textContent = r; }
const ws = new WebSocket("ws://127.0.0.1:WSPORT/");
ws.onopen = () => ws.send(JSON.stringify({type: "Echo", data: {Message: "你好，火锅！"}}));
let step = 0;
ws.onmessage = (e) => {
  if (step === 0) {
    const m = JSON.parse(e.data);
    if (m.type !== "Echo" || m.data.Message !== "你好，火锅！") { done("bad: " + e.data); return; }
    step = 1;
    ws.send("not an envelope");
  } else {
    // The bad-body policy's answer, then the connection goes on.
    done(e.data.includes("json envelope") ? "ok" : "bad answer: " + e.data);
    ws.close(1000);
  }
};
ws.onerror = () => done("error");
</script>
<script src="/done.js"></script>
</body></html>
"#;

#[test]
fn chromium_speaks_the_envelope() {
    let Some(browser) = require(Peer::Chromium) else {
        return;
    };
    let (release_tx, release_rx) = unbounded::<()>();
    let (server, mut closes) = hotpot_server(Duration::from_secs(5), Duration::from_secs(12));
    let page = PAGE.replace("WSPORT", &server.local_addr().port().to_string());
    let http = page_server(page, release_rx);
    let releaser = std::thread::spawn(move || {
        // The page's load waits for `/done.js`: release it once the
        // browser's connection has closed.
        let got = closes.next();
        let _ = release_tx.send(());
        got
    });
    let out = dump_dom(&browser, http);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"<div id="result">ok</div>"#),
        "page result not ok:\n{dom}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, reason) = releaser.join().unwrap();
    assert!(
        matches!(reason, CloseReason::WsClosed { code: 1000, .. }),
        "{reason:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// `keepalived`'s envelope ping is the server's own protocol's: a dial
/// profile's heartbeat pings with its own id and an empty body.
#[test]
fn a_dial_profiles_ping_is_its_own() {
    use std::io::Read;
    use std::net::TcpListener;

    use netloom::{Dial, Profile};

    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = crate::common::start(
        Server::builder()
            .route_envelope("Echo", |_ctx, e: Echo| Ok::<_, netloom::BoxError>(e))
            .keepalived(Duration::from_millis(100), Duration::from_secs(5))
            .profile(
                "backend",
                Profile::new()
                    .heartbeat(Duration::from_millis(100), Duration::from_secs(5))
                    .ping_before_kick(Duration::from_millis(100), 77),
            ),
    );
    let dial = Dial::new(backend.local_addr().unwrap()).profile("backend");
    server.hub().dial(dial).unwrap();
    let (mut link, _) = backend.accept().unwrap();
    link.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut head = [0u8; 8];
    link.read_exact(&mut head).unwrap();
    let len = u32::from_le_bytes(head[..4].try_into().unwrap());
    let id = u32::from_le_bytes(head[4..].try_into().unwrap());
    assert_eq!((id, len), (77, 0), "the profile's ping");
    server.shutdown(TIMEOUT).unwrap();
}
