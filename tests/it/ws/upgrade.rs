//! curl and raw TCP: requests that are not WebSocket upgrades, an upgrade
//! that does not finish in time, and an upgrade hook that panics.

use std::process::Command;
use std::time::{Duration, Instant};

use netloom::CloseReason;

use super::{closes, echo_builder, next_close, start_ws};
use crate::common::peers::{require, Peer};
use crate::common::run_bounded;
use crate::ws_raw::{upgrade_request, RawWs};

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

/// An unfinished upgrade request is closed when the handshake timeout
/// passes: not before, and not at the 5 s default.
#[test]
fn upgrade_must_finish_within_the_handshake_timeout() {
    let timeout = Duration::from_millis(200);
    let (builder, closed) = closes(echo_builder().handshake_timeout(timeout));
    let server = start_ws(builder);
    // Timed from before the connect: the deadline is set when the server
    // adopts the socket, after this. The loop's clock counts whole
    // milliseconds and its timers never fire early, so at most that
    // truncation (1 ms) may be missing; the wheel's 100 ms ticks only
    // round later.
    let started = Instant::now();
    let mut raw = RawWs::tcp(server.local_addr());
    raw.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n");
    raw.read_to_end();
    let elapsed = started.elapsed();
    assert!(
        elapsed + Duration::from_millis(1) >= timeout,
        "closed after {elapsed:?}, before the {timeout:?} handshake timeout"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(1),
        "closed after {elapsed:?}: the {timeout:?} handshake timeout was not used"
    );
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
