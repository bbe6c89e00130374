//! WebSocket listeners over real loopback sockets, against clients nobody
//! on the team wrote: Python's `websockets` (tests/it/ws_client.py), headless
//! Chromium, curl; plus a raw client for the protocol's corner cases.
//!
//! The peers are found by `crate::common::peers` (Python: `NETLOOM_PY`,
//! else the venv `scripts/test` makes, else `python3`): a test whose peer
//! is missing fails with how to install it, or is skipped and listed under
//! `NETLOOM_SKIP_MISSING_PEERS=1`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::ws::{self, WsMode, WsRequest};
use netloom::{Builder, CloseReason, Server, ServerHandle};

use crate::common::peers::{require, Peer};
use crate::common::TIMEOUT;
use crate::ws_raw::{upgrade_request, RawWs};

const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/ws_client.py");

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Run a command, killing it (by pid) if it outlives `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// Run one scenario of tests/it/ws_client.py with `py` (a Python with
/// `websockets`, from `require(Peer::PyWebsockets)`); panics unless it
/// prints "ok".
fn py_scenario(py: &str, scenario: &str, url: &str, extra: &[&str]) {
    py_scenario_explained(py, scenario, url, extra, String::new)
}

/// As [`py_scenario`]; on failure the panic message also carries
/// `explain()` (e.g. the server's close reasons so far).
fn py_scenario_explained(
    py: &str,
    scenario: &str,
    url: &str,
    extra: &[&str],
    explain: impl FnOnce() -> String,
) {
    let mut cmd = Command::new(py);
    cmd.arg(CLIENT_PY).arg(scenario).arg(url).args(extra);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !(out.status.success() && stdout.trim() == "ok") {
        panic!(
            "python scenario {scenario} failed ({}):\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            explain()
        );
    }
}

fn start_ws(builder: Builder) -> ServerHandle {
    crate::common::init_logs();
    builder
        .event_loops(2)
        .bind_ws("127.0.0.1:0")
        .expect("bind_ws")
        .start()
        .expect("start")
}

fn url(server: &ServerHandle, path: &str) -> String {
    format!("ws://{}{path}", server.local_addr())
}

/// Close reasons, as `on_close` reports them.
fn closes(builder: Builder) -> (Builder, Receiver<CloseReason>) {
    let (tx, rx) = unbounded();
    let builder = builder.on_close(move |_, reason| {
        let _ = tx.send(reason.clone());
    });
    (builder, rx)
}

fn next_close(rx: &Receiver<CloseReason>) -> CloseReason {
    rx.recv_timeout(TIMEOUT)
        .expect("on_close within the timeout")
}

/// The echo server most tests use: text and binary come back as they were;
/// `on_open` queues a "welcome" before the upgrade is even read.
fn echo_builder() -> Builder {
    Server::builder()
        .on_open(|s| {
            let _ = s.send_text("welcome");
        })
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
}

// ---------------------------------------------------------------------------
// Python `websockets`
// ---------------------------------------------------------------------------

#[test]
fn python_echo_text_binary_fragments_ping_and_close() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    py_scenario(&py, "echo", &url(&server, "/echo"), &[]);
    match next_close(&closed) {
        CloseReason::WsClosed { code: 1000, .. } => {}
        other => panic!("unexpected close reason {other:?}"),
    }
    let stats = server.stats();
    assert!(stats.messages_in >= 100, "{stats}");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_query_parameters_path_and_headers() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (tx, rx) = unbounded::<String>();
    let server = start_ws(
        Server::builder()
            .ws_on_upgrade(move |session, req| {
                let _ = tx.send(req.path().to_string());
                session
                    .data_mut()
                    .insert(req.query("name").unwrap_or("").to_string());
                Ok(())
            })
            .route(ws::TEXT, |ctx| {
                let req = ctx
                    .ws_request()
                    .expect("WsRequest stored as connection data");
                let numbers: Vec<&str> = req
                    .query_pairs()
                    .filter(|(k, _)| *k == "n")
                    .map(|(_, v)| v)
                    .collect();
                let answer = format!(
                    "{}|{}|{}|{}",
                    req.path(),
                    ctx.data().get::<String>().map_or("", String::as_str),
                    numbers.join(","),
                    req.header("x-token").unwrap_or("")
                );
                ctx.send_text(&answer)
            }),
    );
    let url = url(&server, "/room/7?name=J%C3%B6rg+%26+co&n=1&n=2");
    py_scenario(&py, "query", &url, &[]);
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), "/room/7");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_upgrade_rejected_with_status() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (builder, closed) = closes(echo_builder().ws_on_upgrade(|_, req| {
        if req.path() == "/private" {
            Err(403)
        } else {
            Ok(())
        }
    }));
    let server = start_ws(builder);
    py_scenario(&py, "reject", &url(&server, "/private"), &[]);
    match next_close(&closed) {
        CloseReason::UpgradeRejected(403) => {}
        other => panic!("unexpected close reason {other:?}"),
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_invalid_utf8_closes_with_1007() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    py_scenario(&py, "invalid_utf8", &url(&server, "/"), &[]);
    for _ in 0..2 {
        match next_close(&closed) {
            CloseReason::WsProtocol { code: 1007, .. } => {}
            other => panic!("unexpected close reason {other:?}"),
        }
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_oversized_message_or_frame_closes_with_1009() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (builder, closed) = closes(echo_builder().ws_max_message(4096).ws_max_frame(2048));
    let server = start_ws(builder);
    py_scenario(&py, "oversize", &url(&server, "/"), &[]);
    for _ in 0..3 {
        match next_close(&closed) {
            CloseReason::WsProtocol { code: 1009, .. } => {}
            other => panic!("unexpected close reason {other:?}"),
        }
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_sees_server_close_codes() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (builder, closed) = closes(echo_builder().route(ws::TEXT, |ctx| match ctx.body() {
        b"close" => ctx.close(),
        b"close_with" => ctx.close_with(4001, "bye now"),
        _ => {}
    }));
    let server = start_ws(builder);
    py_scenario(&py, "server_close", &url(&server, "/"), &[]);
    for _ in 0..2 {
        assert!(matches!(next_close(&closed), CloseReason::Local));
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_sees_going_away_on_shutdown() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (ready_tx, ready_rx) = unbounded();
    let (builder, closed) = closes(Server::builder().route(ws::TEXT, move |ctx| {
        let _ = ready_tx.send(());
        ctx.reply(ws::TEXT, ctx.body())
    }));
    let server = start_ws(builder);
    let url = url(&server, "/");
    let client = std::thread::spawn(move || py_scenario(&py, "shutdown", &url, &[]));
    ready_rx.recv_timeout(TIMEOUT).expect("client ready");
    server
        .shutdown(Duration::from_secs(5))
        .expect("clean shutdown");
    assert!(matches!(next_close(&closed), CloseReason::Shutdown));
    client.join().expect("client thread");
}

#[test]
fn python_packer_mode_serves_the_same_routes_as_tcp() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (builder, closed) = closes(
        Server::builder()
            .ws_mode(WsMode::Packer)
            .route(7, |ctx| ctx.reply(7, ctx.body())),
    );
    crate::common::init_logs();
    let server = builder
        .event_loops(2)
        .bind("127.0.0.1:0")
        .unwrap()
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    // The same route over raw TCP.
    let mut tcp = crate::common::Client::connect(server.local_addrs()[0]);
    tcp.send(7, b"tcp");
    assert_eq!(tcp.recv(), (7, b"tcp".to_vec()));
    let url = format!("ws://{}/", server.local_addrs()[1]);
    py_scenario(&py, "packer", &url, &[]);
    match next_close(&closed) {
        CloseReason::WsProtocol { code: 1003, .. } => {}
        other => panic!("unexpected close reason {other:?}"),
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_answers_heartbeat_pings_and_stays() {
    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };
    let (builder, closed) = closes(
        echo_builder()
            .heartbeat(Duration::from_millis(50), Duration::from_millis(600))
            .ping_before_kick(Duration::from_millis(200), 0),
    );
    let server = start_ws(builder);
    py_scenario(&py, "heartbeat", &url(&server, "/"), &[]);
    match next_close(&closed) {
        CloseReason::WsClosed { code: 1000, .. } => {}
        other => panic!("unexpected close reason {other:?}"),
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[cfg(feature = "tls")]
#[test]
fn python_over_wss_with_our_tls() {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let Some(py) = require(Peer::PyWebsockets) else {
        return;
    };

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let dir = std::env::temp_dir().join(format!("netloom-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let (info_tx, info_rx) = unbounded();
    let (builder, closed) = closes(echo_builder().tls(Arc::new(config)).ws_on_upgrade(
        move |session, req| {
            let sni = session
                .data()
                .get::<netloom::TlsInfo>()
                .and_then(|i| i.sni.clone());
            let _ = info_tx.send((sni, req.path().to_string()));
            Ok(())
        },
    ));
    let server = start_ws(builder);
    let url = format!("wss://localhost:{}/secure", server.local_addr().port());
    py_scenario_explained(&py, "wss", &url, &[ca.to_str().unwrap()], || {
        let reasons: Vec<String> = closed.try_iter().map(|r| format!("{r:?}")).collect();
        format!(
            "server close reasons so far: {reasons:?}; {}",
            server.stats()
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (sni, path) = info_rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(sni.as_deref(), Some("localhost"));
    assert_eq!(path, "/secure");
    match next_close(&closed) {
        CloseReason::WsClosed { code: 1000, .. } => {}
        other => panic!("unexpected close reason {other:?}"),
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

// ---------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------

const PAGE: &str = r#"<!doctype html>
<html><head><title>netloom ws test</title></head><body>
<div id="result">pending</div>
<script>
function done(r) { document.getElementById("result").textContent = r; }
let step = 0;
const ws = new WebSocket("ws://127.0.0.1:WSPORT/browser?name=chromium");
ws.binaryType = "arraybuffer";
ws.onopen = () => ws.send("hello from chromium");
ws.onmessage = (e) => {
  if (step === 0) {
    if (e.data !== "echo: hello from chromium") { done("bad text: " + e.data); return; }
    step = 1;
    ws.send(new Uint8Array([1, 2, 3, 250]).buffer);
  } else if (step === 1) {
    const got = Array.from(new Uint8Array(e.data)).join(",");
    if (got !== "1,2,3,250") { done("bad binary: " + got); return; }
    step = 2;
    ws.send("close me");
  }
};
ws.onclose = (e) => {
  const ok = step === 2 && e.code === 4002 && e.reason === "server bye" && e.wasClean;
  done(ok ? "ok" : "closed code=" + e.code + " reason=" + e.reason + " clean=" + e.wasClean + " step=" + step);
};
</script>
<script src="/done.js"></script>
</body></html>
"#;

/// A one-page HTTP server: `/page.html`, and `/done.js`, which it answers
/// only once `release` fires (or after the timeout): the script blocks the
/// page's load event, and so Chromium's `--dump-dom`, until the WebSocket
/// exchange is over.
fn page_server(page: String, release: Receiver<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let page = page.clone();
            let release = release.clone();
            std::thread::spawn(move || serve_one(stream, &page, &release));
        }
    });
    addr
}

fn serve_one(mut stream: TcpStream, page: &str, release: &Receiver<()>) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match path {
        "/page.html" => ("200 OK", "text/html", page.to_string()),
        "/done.js" => {
            let _ = release.recv_timeout(Duration::from_secs(30));
            ("200 OK", "application/javascript", "// done\n".to_string())
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn chromium_page_talks_to_the_server() {
    let Some(browser) = require(Peer::Chromium) else {
        return;
    };
    let (release_tx, release_rx) = unbounded::<()>();
    let (info_tx, info_rx) = unbounded::<(String, String)>();
    let (closed_tx, closed) = unbounded();
    let release = release_tx.clone();
    let server = start_ws(
        Server::builder()
            // The page's load event (and so the DOM dump) waits for this.
            .on_close(move |_, reason| {
                let _ = closed_tx.send(reason.clone());
                let _ = release.send(());
            })
            .ws_on_upgrade(move |_, req| {
                let name = req.query("name").unwrap_or("").to_string();
                let origin = req.header("origin").unwrap_or("").to_string();
                let _ = info_tx.send((name, origin));
                Ok(())
            })
            .route(ws::TEXT, |ctx| {
                if ctx.body() == b"close me" {
                    ctx.close_with(4002, "server bye");
                    return Ok(());
                }
                let text = format!("echo: {}", String::from_utf8_lossy(ctx.body()));
                ctx.send_text(&text)
            })
            .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body())),
    );
    let page = PAGE.replace("WSPORT", &server.local_addr().port().to_string());
    let http = page_server(page, release_rx);
    let profile = std::env::temp_dir().join(format!("netloom-chromium-{}", std::process::id()));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--dump-dom")
    .arg(format!("http://{http}/page.html"));
    let out = run_bounded(cmd, Duration::from_secs(90));
    let _ = release_tx.send(());
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"<div id="result">ok</div>"#),
        "page result not ok:\n{dom}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (name, origin) = info_rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(name, "chromium");
    assert_eq!(origin, format!("http://{http}"));
    // on_close ran (and released the page) once the close handshake was done.
    let reason = closed.try_recv().expect("on_close ran");
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

// ---------------------------------------------------------------------------
// curl and raw TCP: requests that are not WebSocket upgrades
// ---------------------------------------------------------------------------

#[test]
fn curl_plain_http_request_gets_400() {
    let Some(curl) = require(Peer::Curl) else {
        return;
    };
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    let url = format!("http://{}/", server.local_addr());
    let mut cmd = Command::new(curl);
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
        &url,
    ]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    assert!(matches!(next_close(&closed), CloseReason::BadUpgrade(_)));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn bad_upgrade_requests_get_400_or_431_and_are_closed() {
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    let addr = server.local_addr();
    let long = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), "400"),
        (
            upgrade_request("/").replace("GET", "POST").into_bytes(),
            "400",
        ),
        (
            upgrade_request("/")
                .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8")
                .into_bytes(),
            "400",
        ),
        (
            b"\x08\x00\x00\x00\x01\x00\x00\x00a packer frame".to_vec(),
            "400",
        ),
        (long.into_bytes(), "431"),
    ];
    for (request, status) in cases {
        let mut raw = RawWs::tcp(addr);
        raw.write(&request);
        let answer = raw.read_to_end();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "expected {status}, got {answer:?}"
        );
        assert!(
            !answer.contains("welcome"),
            "frames queued by on_open leaked"
        );
        match next_close(&closed) {
            CloseReason::BadUpgrade(_) => {}
            other => panic!("unexpected close reason {other:?}"),
        }
    }
    assert_eq!(
        server
            .stats()
            .closed_by(&CloseReason::BadUpgrade(String::new())),
        5
    );
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn upgrade_must_finish_within_the_handshake_timeout() {
    let (builder, closed) = closes(echo_builder().handshake_timeout(Duration::from_millis(200)));
    let server = start_ws(builder);
    let mut raw = RawWs::tcp(server.local_addr());
    raw.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n");
    let started = Instant::now();
    raw.read_to_end();
    assert!(started.elapsed() < TIMEOUT);
    assert!(matches!(next_close(&closed), CloseReason::HandshakeTimeout));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn upgrade_hook_panic_answers_500() {
    let (builder, closed) = closes(echo_builder().ws_on_upgrade(|_, _| panic!("hook bug")));
    let server = start_ws(builder);
    let mut raw = RawWs::tcp(server.local_addr());
    raw.write(upgrade_request("/").as_bytes());
    let answer = raw.read_to_end();
    assert!(answer.starts_with("HTTP/1.1 500 "), "{answer:?}");
    assert!(matches!(next_close(&closed), CloseReason::HandlerPanic));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

// ---------------------------------------------------------------------------
// Raw frames: protocol duties
// ---------------------------------------------------------------------------

#[test]
fn request_and_first_frame_in_one_packet() {
    let server = start_ws(echo_builder());
    let mut raw = RawWs::tcp(server.local_addr());
    let mut bytes = upgrade_request("/").into_bytes();
    // A masked text frame "hi" right behind the request.
    bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    raw.write(&bytes);
    assert!(raw.response_head().starts_with("HTTP/1.1 101"));
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    assert_eq!(raw.recv(), Some((0x81, b"hi".to_vec())));
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn frames_fed_one_byte_at_a_time() {
    let server = start_ws(echo_builder());
    let mut raw = RawWs::tcp(server.local_addr());
    for b in upgrade_request("/").bytes() {
        raw.write(&[b]);
    }
    assert!(raw.response_head().starts_with("HTTP/1.1 101"));
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    let payload = vec![b'q'; 300];
    let mut frame = vec![0x82, 0x80 | 126, 1, 44, 9, 8, 7, 6];
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [9, 8, 7, 6][i % 4]),
    );
    for b in frame {
        raw.write(&[b]);
    }
    assert_eq!(raw.recv(), Some((0x82, payload)));
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn protocol_violations_close_with_1002() {
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    let cases: Vec<(&str, u8, Vec<u8>, bool)> = vec![
        ("unmasked client frame", 0x81, b"hi".to_vec(), false),
        ("reserved bit set", 0xc1, b"hi".to_vec(), true),
        ("continuation without a start", 0x80, b"hi".to_vec(), true),
        ("unknown opcode", 0x83, b"hi".to_vec(), true),
        ("control frame over 125 bytes", 0x89, vec![0; 126], true),
        ("fragmented control frame", 0x09, b"p".to_vec(), true),
    ];
    for (what, first, payload, masked) in cases {
        let mut raw = RawWs::connect(server.local_addr(), "/");
        assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
        raw.send_frame(first, &payload, masked);
        let (code, _) = raw.expect_close();
        assert_eq!(code, 1002, "{what}");
        raw.expect_eof();
        match next_close(&closed) {
            CloseReason::WsProtocol { code: 1002, .. } => {}
            other => panic!("{what}: unexpected close reason {other:?}"),
        }
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn ping_gets_pong_and_peer_close_is_answered() {
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x89, b"ping!", true);
    assert_eq!(raw.recv(), Some((0x8a, b"ping!".to_vec())));
    // A ping between the fragments of a message.
    raw.send_frame(0x01, b"frag", true);
    raw.send_frame(0x89, b"", true);
    raw.send_frame(0x80, b"ment", true);
    assert_eq!(raw.recv(), Some((0x8a, Vec::new())));
    assert_eq!(raw.recv(), Some((0x81, b"fragment".to_vec())));
    let mut close = 4321u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"client bye");
    raw.send_frame(0x88, &close, true);
    assert_eq!(raw.expect_close(), (4321, "client bye".to_string()));
    raw.expect_eof();
    match next_close(&closed) {
        CloseReason::WsClosed { code: 4321, reason } => assert_eq!(reason, "client bye"),
        other => panic!("unexpected close reason {other:?}"),
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn server_close_waits_for_the_peer_close_frame() {
    let (builder, closed) = closes(
        echo_builder()
            .close_linger(Duration::from_secs(5))
            .route(ws::TEXT, |ctx| ctx.close_with(4000, "done")),
    );
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x81, b"bye", true);
    assert_eq!(raw.expect_close(), (4000, "done".to_string()));
    // The server keeps the TCP connection until our close frame comes.
    assert!(closed.recv_timeout(Duration::from_millis(200)).is_err());
    // Data after the server's close frame is ignored.
    raw.send_frame(0x81, b"ignored", true);
    raw.send_frame(0x88, &4000u16.to_be_bytes(), true);
    raw.expect_eof();
    assert!(matches!(next_close(&closed), CloseReason::Local));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn server_close_gives_up_waiting_after_the_linger() {
    let (builder, closed) = closes(
        echo_builder()
            .close_linger(Duration::from_millis(300))
            .route(ws::TEXT, |ctx| ctx.close()),
    );
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x81, b"x", true);
    assert_eq!(raw.expect_close().0, 1000);
    raw.expect_eof();
    assert!(matches!(next_close(&closed), CloseReason::Local));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn idle_peer_gets_a_ping_then_is_closed() {
    let (builder, closed) = closes(
        echo_builder()
            .heartbeat(Duration::from_millis(50), Duration::from_millis(400))
            .ping_before_kick(Duration::from_millis(150), 99)
            .close_linger(Duration::from_millis(200)),
    );
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    // A WebSocket ping, not a packer message with id 99.
    assert_eq!(raw.recv(), Some((0x89, Vec::new())));
    assert_eq!(raw.expect_close(), (1000, "idle timeout".to_string()));
    raw.expect_eof();
    assert!(matches!(next_close(&closed), CloseReason::IdleTimeout));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn handler_panic_closes_with_1011() {
    let (builder, closed) = closes(echo_builder().route(ws::TEXT, |_| -> netloom::Result<()> {
        panic!("handler bug")
    }));
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x81, b"boom", true);
    assert_eq!(raw.expect_close().0, 1011);
    raw.send_frame(0x88, &1011u16.to_be_bytes(), true);
    raw.expect_eof();
    assert!(matches!(next_close(&closed), CloseReason::HandlerPanic));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn text_send_must_be_utf8() {
    let (tx, rx) = unbounded();
    let server = start_ws(echo_builder().route(ws::TEXT, move |ctx| {
        let _ = tx.send(ctx.send(ws::TEXT, b"\xff\xfe").is_err());
        ctx.send_binary(b"\xff\xfe")
    }));
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x81, b"go", true);
    assert_eq!(raw.recv(), Some((0x82, b"\xff\xfe".to_vec())));
    assert!(
        rx.recv_timeout(TIMEOUT).unwrap(),
        "invalid UTF-8 text was sent"
    );
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

// ---------------------------------------------------------------------------
// Cross-thread sends, broadcast, mixed listeners, backpressure
// ---------------------------------------------------------------------------

#[test]
fn handles_and_broadcast_reach_ws_and_tcp_clients() {
    let (handle_tx, handle_rx) = unbounded();
    let builder = Server::builder()
        .event_loops(2)
        .ws_on_upgrade(move |session, _| {
            let _ = handle_tx.send(session.handle());
            Ok(())
        })
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()));
    crate::common::init_logs();
    let server = builder
        .bind("127.0.0.1:0")
        .unwrap()
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let ws_addr = server.local_addrs()[1];
    let mut a = RawWs::connect(ws_addr, "/a");
    let mut b = RawWs::connect(ws_addr, "/b");
    let mut tcp = crate::common::Client::connect(server.local_addrs()[0]);
    // Make sure the TCP client is registered before broadcasting.
    tcp.send(ws::TEXT, b"sync");
    assert_eq!(tcp.recv(), (ws::TEXT, b"sync".to_vec()));
    let ha = handle_rx.recv_timeout(TIMEOUT).unwrap();
    let hb = handle_rx.recv_timeout(TIMEOUT).unwrap();
    // From this (non-loop) thread.
    ha.send_text("to a").unwrap();
    hb.send_binary([1u8, 2, 3]).unwrap();
    assert_eq!(a.recv(), Some((0x81, b"to a".to_vec())));
    assert_eq!(b.recv(), Some((0x82, vec![1, 2, 3])));
    let hub = server.hub();
    hub.broadcast_text("to all").unwrap();
    hub.broadcast_binary(b"bin all").unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv(), Some((0x81, b"to all".to_vec())));
        assert_eq!(c.recv(), Some((0x82, b"bin all".to_vec())));
    }
    assert_eq!(tcp.recv(), (ws::TEXT, b"to all".to_vec()));
    assert_eq!(tcp.recv(), (ws::BINARY, b"bin all".to_vec()));
    ha.close_with(4100, "from afar");
    assert_eq!(a.expect_close(), (4100, "from afar".to_string()));
    drop((a, b));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn slow_ws_reader_gets_backpressure() {
    let (tx, rx) = unbounded();
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let server = start_ws(Server::builder().write_high_water(64 << 10).route(
        ws::TEXT,
        move |ctx| {
            // Flood a client that does not read until the queue is full.
            let chunk = vec![b'x'; 16 << 10];
            for _ in 0..10_000 {
                if let Err(e) = ctx.send_binary(&chunk) {
                    let _ = tx.send(e.to_string());
                    return;
                }
                counted.fetch_add(1, Ordering::Relaxed);
            }
        },
    ));
    let mut raw = RawWs::connect(server.local_addr(), "/");
    raw.send_frame(0x81, b"flood", true);
    let err = rx.recv_timeout(TIMEOUT).expect("a send failed");
    assert!(err.contains("full"), "{err}");
    assert!(server.stats().slow_peer_events >= 1);
    // Everything accepted arrives, framed.
    let n = sent.load(Ordering::Relaxed);
    for _ in 0..n {
        let (first, payload) = raw.recv().expect("frame");
        assert_eq!((first, payload.len()), (0x82, 16 << 10));
    }
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn ws_request_is_connection_data() {
    let (tx, rx) = unbounded::<Option<String>>();
    let server = start_ws(Server::builder().route(ws::TEXT, move |ctx| {
        let path = ctx.data().get::<WsRequest>().map(|r| r.path().to_string());
        let _ = tx.send(path);
    }));
    let mut raw = RawWs::connect(server.local_addr(), "/where?x=1");
    raw.send_frame(0x81, b"?", true);
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap().as_deref(), Some("/where"));
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn packer_mode_handles_and_broadcast_send_packer_frames_in_binary_messages() {
    let (handle_tx, handle_rx) = unbounded();
    crate::common::init_logs();
    let server = Server::builder()
        .event_loops(2)
        .ws_mode(WsMode::Packer)
        .ws_on_upgrade(move |session, _| {
            let _ = handle_tx.send(session.handle());
            Ok(())
        })
        .route(7, |ctx| ctx.reply(7, ctx.body()))
        .bind("127.0.0.1:0")
        .unwrap()
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut ws = RawWs::connect(server.local_addrs()[1], "/");
    let mut tcp = crate::common::Client::connect(server.local_addrs()[0]);
    // A packer frame split over two binary messages, then echoed whole.
    let frame = crate::common::frame(7, b"over ws");
    ws.send_frame(0x82, &frame[..3], true);
    ws.send_frame(0x82, &frame[3..], true);
    assert_eq!(ws.recv(), Some((0x82, frame)));
    tcp.send(7, b"sync");
    assert_eq!(tcp.recv(), (7, b"sync".to_vec()));
    let handle = handle_rx.recv_timeout(TIMEOUT).unwrap();
    handle.send(9, b"from a thread").unwrap();
    assert_eq!(
        ws.recv(),
        Some((0x82, crate::common::frame(9, b"from a thread")))
    );
    let big = vec![5u8; 70_000];
    server.hub().broadcast(11, &big).unwrap();
    assert_eq!(ws.recv(), Some((0x82, crate::common::frame(11, &big))));
    assert_eq!(tcp.recv(), (11, big));
    drop(ws);
    server.shutdown(Duration::from_secs(5)).unwrap();
}
