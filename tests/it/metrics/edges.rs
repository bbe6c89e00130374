//! Edges of the `metrics` feature found in review (issue 26, item 6):
//! each test names a behaviour that must hold (each failed on the first
//! cut, merged at fb65423's parent), over the public API and real
//! loopback sockets.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded};
use metrics_exporter_prometheus::PrometheusBuilder;
use netloom::{Hub, Server};

use super::samples;
use crate::common::peers::{require, target_dir, Peer};
use crate::common::{echo, run_bounded, wait_until, Client, TIMEOUT};

// ---------------------------------------------------------------------
// ConnHandle::traffic
// ---------------------------------------------------------------------

/// `ConnHandle::traffic` documents: "its counts went with it: read them in
/// `on_close` from the handle if you need the totals". `on_close` runs
/// after the connection left the table, so the handle answers `Closed`
/// there and the totals are lost.
#[test]
fn traffic_totals_are_readable_in_on_close() {
    let (tx, rx) = unbounded();
    let server = Server::builder()
        .fallback(echo)
        .on_close(move |s, _reason| {
            let got = s.handle().traffic().wait_timeout(TIMEOUT);
            let _ = tx.send(got.map(|r| r.map_err(|e| e.to_string())));
        })
        .bind("127.0.0.1:0")
        .and_then(|b| b.start())
        .expect("start");
    let mut client = Client::connect(server.local_addr());
    client.send(1, b"hello");
    assert_eq!(client.recv(), (1, b"hello".to_vec()));
    drop(client);
    let got = rx.recv_timeout(TIMEOUT).expect("on_close ran");
    server.shutdown(TIMEOUT).unwrap();
    match got {
        Some(Ok(t)) => {
            assert_eq!(t.messages_in, 1, "{t:?}");
            assert_eq!(t.bytes_in, 13, "{t:?}");
        }
        other => panic!("traffic() in on_close: {other:?} (the totals the docs promise)"),
    }
}

// ---------------------------------------------------------------------
// Counters set with Counter::absolute
// ---------------------------------------------------------------------

/// One export of `hub` into a recorder of this thread only; the value of
/// `series` rendered.
fn exported(
    local: &metrics_exporter_prometheus::PrometheusRecorder,
    hub: &Hub,
    series: &str,
) -> f64 {
    metrics::with_local_recorder(local, || netloom::metrics::export(hub));
    let page = local.handle().render();
    *samples(&page)
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
}

/// A server shut down and another started in the same process (a reload,
/// a test suite, a front server plus a dial-out server): the second
/// server's accepts must show. Counters are set with `absolute`, which
/// the `metrics` atomics (and so every exporter built on them) implement
/// as `fetch_max`: the counter stays at the first server's total until
/// the second one's passes it.
#[test]
fn a_second_server_in_the_process_is_counted() {
    let local = PrometheusBuilder::new().build_recorder();
    let start = || {
        Server::builder()
            .fallback(echo)
            .bind("127.0.0.1:0")
            .and_then(|b| b.start())
            .expect("start")
    };
    let first = start();
    let clients: Vec<_> = (0..3)
        .map(|_| Client::connect(first.local_addr()))
        .collect();
    wait_until("3 accepted", || first.stats().accepted == 3);
    let before = exported(&local, &first.hub(), "netloom_accepted_total");
    assert_eq!(before, 3.0);
    drop(clients);
    first.shutdown(TIMEOUT).unwrap();

    let second = start();
    let _client = Client::connect(second.local_addr());
    wait_until("1 accepted", || second.stats().accepted == 1);
    let after = exported(&local, &second.hub(), "netloom_accepted_total");
    second.shutdown(TIMEOUT).unwrap();
    assert!(
        after > before,
        "netloom_accepted_total stayed at {after} after the second server \
         accepted a connection (it was {before} after the first)"
    );
}

// ---------------------------------------------------------------------
// examples/echo_server --metrics: the HTTP endpoint against hostile clients
// ---------------------------------------------------------------------

/// `echo_server` built with every feature (once per test process), bounded.
fn echo_server_bin() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "--all-features",
                "--example",
                "echo_server",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let out = run_bounded(cargo, Duration::from_secs(600));
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    if let Err(e) = built {
        panic!("cargo build --example echo_server: {e}");
    }
    target_dir().join("debug/examples/echo_server")
}

/// A child process killed (by its own pid) when the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `echo_server 127.0.0.1:0 --metrics 127.0.0.1:0`: the process and the
/// metrics address it printed.
fn echo_server_with_metrics() -> (Reaped, String) {
    let child = Command::new(echo_server_bin())
        .args(["127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn echo_server");
    let mut child = Reaped(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("echo_server printed its metrics address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            let addr = rest.trim_end_matches("/metrics").to_string();
            return (child, addr);
        }
    }
}

/// A scrape with curl, bounded by `max`: whether it got a 200 with the
/// netloom figures.
fn scrape_ok(curl: &str, addr: &str, max: Duration) -> Result<(), String> {
    let mut cmd = Command::new(curl);
    cmd.args([
        "-sS",
        "--max-time",
        &format!("{}", max.as_secs_f64()),
        &format!("http://{addr}/metrics"),
    ]);
    let out = run_bounded(cmd, max + TIMEOUT);
    let page = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && page.contains("netloom_accepted_total") {
        Ok(())
    } else {
        Err(format!(
            "curl {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// One client that trickles a request (a header byte a second, slower
/// than nobody but faster than the endpoint's 5 s read timeout) must not
/// keep the operator's scrape from being answered: the endpoint reads one
/// connection at a time on one thread, each `read_line` unbounded in time
/// while bytes keep coming.
#[test]
fn a_metrics_scrape_is_answered_while_another_client_trickles() {
    let Some(curl) = require(Peer::Curl) else {
        return;
    };
    let (_server, addr) = echo_server_with_metrics();
    // The endpoint answers a scrape at all.
    scrape_ok(&curl, &addr, TIMEOUT).expect("a scrape with nobody else");

    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_write_timeout(Some(TIMEOUT)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    let (stop, stopped) = bounded::<()>(1);
    let trickler = std::thread::spawn(move || {
        // Paced by the stop channel's timeout (at most 10 bytes, 10 s).
        for _ in 0..10 {
            if !matches!(
                stopped.recv_timeout(Duration::from_secs(1)),
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
            ) {
                return;
            }
            if slow.write_all(b"x").is_err() {
                return;
            }
        }
    });
    let got = scrape_ok(&curl, &addr, Duration::from_secs(4));
    let _ = stop.send(());
    trickler.join().unwrap();
    got.expect("a scrape within 4 s while another client trickles its request");
}

/// `VmRSS` of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A client that sends an endless request line (here 128 MiB with no
/// newline; 1 GB is as easy) must not make the server process hold it:
/// `read_line` into a `String` has no bound, so the process grows by what
/// the client sends.
#[test]
fn a_huge_request_line_to_the_metrics_endpoint_is_not_buffered() {
    let (server, addr) = echo_server_with_metrics();
    let pid = server.0.id();
    let before = rss(pid);
    let mut hostile = TcpStream::connect(&addr).unwrap();
    hostile.set_write_timeout(Some(TIMEOUT)).unwrap();
    let chunk = vec![b'A'; 1 << 20];
    let started = Instant::now();
    for _ in 0..128 {
        // A bounded endpoint closes on us: the write then fails.
        if hostile.write_all(&chunk).is_err() || started.elapsed() > TIMEOUT * 3 {
            break;
        }
    }
    let after = rss(pid);
    drop(hostile);
    let grown = after.saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "echo_server grew by {} MiB ({} -> {} MiB) reading one request line",
        grown >> 20,
        before >> 20,
        after >> 20
    );
}

// ---------------------------------------------------------------------
// The Exporter thread
// ---------------------------------------------------------------------

/// A panic in `Exporter::start_with`'s `also` (user code, as a hook is)
/// must not end the exports for good: the library catches a panic of
/// every other callback it runs (handlers, hooks, timers, resolvers,
/// packers). Here the thread dies at the first panic, silently (`stop`
/// and `Drop` ignore the join's error), and the server's figures freeze.
#[test]
fn exporter_goes_on_after_a_panic_in_also() {
    // A server with no traffic: its exports (zeros, into whatever recorder
    // the process has) change no other test's figures.
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .and_then(|b| b.start())
        .expect("start");
    let (tx, calls) = unbounded();
    let mut n = 0u32;
    let exporter = netloom::metrics::Exporter::start_with(
        &server.hub(),
        Duration::from_millis(1),
        move || {
            n += 1;
            let _ = tx.send(n);
            if n == 1 {
                panic!("also panics once");
            }
        },
    )
    .expect("start the exporter");
    assert_eq!(calls.recv_timeout(TIMEOUT), Ok(1));
    let again = calls.recv_timeout(Duration::from_secs(2));
    let debug = format!("{exporter:?}");
    drop(exporter);
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(
        again,
        Ok(2),
        "no export after `also` panicked once ({debug}): the figures froze"
    );
}
