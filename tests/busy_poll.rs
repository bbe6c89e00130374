//! `Builder::busy_poll`: the loop polls without sleeping for a while
//! before it sleeps. It must still serve, stop spinning once traffic
//! stops, and never hold back a timer.
//!
//! The idle test measures the process's CPU time, so these tests live in
//! their own test binary and run one at a time under `common::serial()`.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use netloom::{CloseReason, Error, Server};

use common::peers::{require, Peer};
use common::{cpu_time, echo, serial, start, track_closes, Client};

#[test]
fn a_busy_polling_loop_serves_then_sleeps_once_traffic_stops() {
    let _serial = serial();
    let server = start(
        Server::builder()
            .event_loops(1)
            .busy_poll(Duration::from_millis(2))
            .route(1, echo),
    );
    let mut client = Client::connect(server.local_addr());
    for i in 0..200u32 {
        let body = i.to_le_bytes();
        client.send(1, &body);
        assert_eq!(client.recv(), (1, body.to_vec()));
    }

    // Traffic has stopped: after at most one spin of 2 ms the loop sleeps
    // (no timers are set), so the process is almost idle. A loop that kept
    // spinning would use the whole window.
    let cpu_before = cpu_time();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_time() - cpu_before;
    let wall = started.elapsed();
    assert!(
        cpu < wall / 5,
        "process used {cpu:?} of CPU in {wall:?} with no traffic"
    );

    // And it wakes up for the next message.
    client.send(1, b"again");
    assert_eq!(client.recv(), (1, b"again".to_vec()));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// CPython's `socket` as the peer: 500 round trips of the default framing
/// (u32 LE body length, u32 LE id, body), each echo checked byte for byte.
/// Every socket call times out after 10 s, so the script ends by itself.
const PY_ROUND_TRIPS: &str = r#"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            sys.exit("server closed")
        buf += chunk
    return buf
for i in range(500):
    body = struct.pack("<I", i) * (1 + i % 64)
    s.sendall(struct.pack("<II", len(body), 1) + body)
    length, mid = struct.unpack("<II", read_exact(8))
    assert (length, mid) == (len(body), 1), (i, length, mid)
    assert read_exact(length) == body, i
print("ok", i + 1)
"#;

#[test]
fn python_round_trips_through_a_busy_polling_loop() {
    let _serial = serial();
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let server = start(
        Server::builder()
            .event_loops(1)
            .busy_poll(Duration::from_micros(50))
            .route(1, echo),
    );
    let out = std::process::Command::new(py)
        .args(["-c", PY_ROUND_TRIPS])
        .arg(server.local_addr().port().to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 500");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn busy_polling_does_not_hold_back_the_heartbeat() {
    let _serial = serial();
    let idle = Duration::from_millis(300);
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(1)
            // The longest spin, longer than the heartbeat's check interval.
            .busy_poll(Duration::from_millis(10))
            .heartbeat(Duration::from_millis(5), idle)
            .route(1, echo),
    );
    let server = start(builder);
    let mut client = Client::connect(server.local_addr());
    client.send(1, b"hi");
    assert_eq!(client.recv(), (1, b"hi".to_vec()));
    let quiet_since = Instant::now();
    client.expect_closed();
    let after = quiet_since.elapsed();
    assert!(
        matches!(closes.next().1, CloseReason::IdleTimeout),
        "closed for another reason"
    );
    // Kicked once idle, and not held back by the spins (a loop that slept
    // without its timer's deadline would never kick it).
    assert!(
        after >= idle - Duration::from_millis(20),
        "kicked early: {after:?}"
    );
    assert!(after < idle * 5, "kicked late: {after:?}");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_busy_poll_over_ten_milliseconds_is_a_config_error() {
    let _serial = serial();
    let result = Server::builder()
        .busy_poll(Duration::from_millis(11))
        .route(1, echo)
        .bind("127.0.0.1:0")
        .and_then(|b| b.start());
    match result {
        Err(Error::Config(why)) => assert!(why.contains("busy_poll"), "{why}"),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("busy_poll of 11 ms accepted"),
    }
}
