//! `Builder::busy_poll`: the loop polls without sleeping for a while
//! before it sleeps. It must spare the loop its sleeps between the round
//! trips of a busy connection, still serve, stop spinning once traffic
//! stops, and never hold back a timer.
//!
//! The idle test measures the process's CPU time, and the round-trip test
//! pins threads to CPUs and counts the loop thread's sleeps, so these
//! tests live in their own test binary and run one at a time under
//! `common::serial()`.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use netloom::{CloseReason, Error, Server};

use common::peers::{require, Peer};
use common::{cpu_time, echo, serial, start, start_tracked, Client};

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
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            // The longest spin, longer than the heartbeat's check interval.
            .busy_poll(Duration::from_millis(10))
            .heartbeat(Duration::from_millis(5), idle)
            .route(1, echo),
    );
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

/// The id of the (only) thread named `netloom-loop-0`.
fn loop_thread() -> libc::pid_t {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
        let task = task.expect("task entry");
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() == "netloom-loop-0" {
            found.push(task.file_name().to_str().unwrap().parse().unwrap());
        }
    }
    assert_eq!(found.len(), 1, "threads named netloom-loop-0: {found:?}");
    found[0]
}

/// Voluntary context switches of thread `tid` so far: how many times it
/// went to sleep.
fn sleeps_of(tid: libc::pid_t) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .expect("read the thread's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in the thread's status")
}

/// Pins a thread to one CPU; restores its old set when dropped.
struct Pinned {
    tid: libc::pid_t,
    old: libc::cpu_set_t,
}

impl Pinned {
    fn to(tid: libc::pid_t, cpu: usize) -> Pinned {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: an all-zero cpu_set_t is a valid, empty set.
        let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `old` is a writable cpu_set_t of `size` bytes.
        let rc = unsafe { libc::sched_getaffinity(tid, size, &mut old) };
        assert_eq!(
            rc,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: as above.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE (checked by the caller).
        unsafe { libc::CPU_SET(cpu, &mut one) };
        // SAFETY: `one` is a valid cpu_set_t of `size` bytes.
        let rc = unsafe { libc::sched_setaffinity(tid, size, &one) };
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
        Pinned { tid, old }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: restoring the set read before (the thread may be gone).
        unsafe { libc::sched_setaffinity(self.tid, size, &self.old) };
    }
}

/// Two CPUs this thread may run on, if it has two.
fn two_cpus() -> Option<(usize, usize)> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of `size` bytes.
    let rc = unsafe { libc::sched_getaffinity(0, size, &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: every index is below CPU_SETSIZE.
    let mut cpus = (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) });
    Some((cpus.next()?, cpus.next()?))
}

const ROUND_TRIPS: u32 = 1000;

/// Times the loop thread slept during `ROUND_TRIPS` sequential echoes on
/// one connection, with this `busy_poll`. The loop and this (client)
/// thread run on different CPUs, so that neither preempts the other: the
/// loop is never descheduled by the client's wake-up, and without busy
/// polling it reaches the poller before the next request can arrive.
fn loop_sleeps_over_round_trips(spin: Duration, (cpu_a, cpu_b): (usize, usize)) -> u64 {
    let server = start(
        Server::builder()
            .event_loops(1)
            .busy_poll(spin)
            .route(1, echo),
    );
    let mut client = Client::connect(server.local_addr());
    let mut round_trip = |i: u32| {
        let body = i.to_le_bytes();
        client.send(1, &body);
        assert_eq!(client.recv(), (1, body.to_vec()));
    };
    for i in 0..50 {
        round_trip(i); // warm-up: connection set up, buffers taken
    }
    // The loop has run (and named itself): pin it and this thread.
    let tid = loop_thread();
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let pins = (Pinned::to(tid, cpu_a), Pinned::to(me, cpu_b));
    let before = sleeps_of(tid);
    for i in 0..ROUND_TRIPS {
        round_trip(i);
    }
    let sleeps = sleeps_of(tid) - before;
    drop(pins); // while the loop thread still exists
    server.shutdown(Duration::from_secs(5)).unwrap();
    sleeps
}

/// What busy polling is for: between the round trips of a busy
/// connection the loop does not go to sleep. Without it, the loop thread
/// sleeps in the poller about once per round trip; with a 2 ms spin (the
/// next request comes back within microseconds) it hardly ever does. A
/// `busy_poll` that did nothing would sleep as often as no busy polling.
#[test]
fn busy_polling_spares_the_loop_its_sleeps_between_round_trips() {
    let _serial = serial();
    let Some(cpus) = two_cpus() else {
        common::peers::skip("this test needs two CPUs");
        return;
    };
    let without = loop_sleeps_over_round_trips(Duration::ZERO, cpus);
    let with = loop_sleeps_over_round_trips(Duration::from_millis(2), cpus);
    eprintln!(
        "loop sleeps over {ROUND_TRIPS} round trips: {without} without busy_poll, {with} with"
    );
    assert!(
        without >= u64::from(ROUND_TRIPS) / 2,
        "without busy_poll the loop slept only {without} times in {ROUND_TRIPS} round trips: the measurement does not see its sleeps"
    );
    assert!(
        with <= without / 4,
        "with busy_poll the loop slept {with} times in {ROUND_TRIPS} round trips ({without} without)"
    );
}
