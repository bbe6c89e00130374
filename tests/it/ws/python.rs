//! Python `websockets` against the server: echo, fragments, pings and
//! close codes, the upgrade request (query, path, headers, rejection),
//! size limits, shutdown, packer mode, heartbeat pings, and `wss://`; and
//! the runner of the scenarios in tests/it/ws_client.py.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::ws::{self, WsMode};
use netloom::{CloseReason, Server, ServerHandle};

use super::{closes, echo_builder, next_close, start_tcp_and_ws, start_ws};
use crate::common::peers::{require, Peer};
use crate::common::{run_bounded, TIMEOUT};

const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/ws_client.py");

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

fn url(server: &ServerHandle, path: &str) -> String {
    format!("ws://{}{path}", server.local_addr())
}

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
    let server = start_tcp_and_ws(builder);
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
        rustls::crypto::aws_lc_rs::default_provider(),
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
