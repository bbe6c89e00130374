//! `GET /metrics` in the Prometheus text format, on a plain std
//! `TcpListener` thread (no async runtime): the exporter renders what the
//! facade holds (`PrometheusHandle::render`) after `netloom::metrics::export`
//! brought the server's figures up to date. Shared by
//! `examples/echo_server.rs` and the metrics tests (included with
//! `#[path = ".../common/metrics_http.rs"]`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latency buckets in seconds (100 µs to 10 s).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Install the Prometheus recorder as the process's `metrics` recorder
/// (once per process: a second call fails).
pub fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("netloom_request_seconds".into()), BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// At most this many scrapes answered at once (each on a thread of its
/// own): a client that trickles or never sends holds one slot, not the
/// endpoint.
const MAX_AT_ONCE: usize = 16;

/// A request's head (request line and headers) must come within this, in
/// at most `MAX_HEAD` bytes.
const HEAD_DEADLINE: Duration = Duration::from_secs(2);
const MAX_HEAD: u64 = 8 << 10;

/// Serve `GET /metrics` on `addr` from a thread of its own, exporting
/// `hub`'s figures at each scrape; returns the address bound (port 0
/// allowed).
pub fn serve(addr: &str, handle: PrometheusHandle, hub: netloom::Hub) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: do not spin on it.
                    log::debug!("metrics endpoint: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if busy.fetch_add(1, Ordering::AcqRel) >= MAX_AT_ONCE {
                busy.fetch_sub(1, Ordering::AcqRel);
                continue; // dropped: closed at once
            }
            let (handle, hub, done) = (handle.clone(), hub.clone(), busy.clone());
            let spawned = std::thread::Builder::new()
                .name("metrics-scrape".into())
                .spawn(move || {
                    if let Err(e) = answer(stream, &handle, &hub) {
                        log::debug!("metrics scrape: {e}");
                    }
                    done.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::AcqRel);
            }
        })?;
    Ok(bound)
}

/// One request, one answer, then close (HTTP/1.1 with `Connection: close`).
/// The head must come within `HEAD_DEADLINE` and `MAX_HEAD` bytes.
fn answer(stream: TcpStream, handle: &PrometheusHandle, hub: &netloom::Hub) -> io::Result<()> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_HEAD));
    let line = |reader: &mut BufReader<io::Take<TcpStream>>| -> io::Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        reader.get_ref().get_ref().set_read_timeout(Some(left))?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if !line.ends_with('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "head too long or cut",
            ));
        }
        Ok(line)
    };
    let request_line = line(&mut reader)?;
    // The headers, up to the blank line (bounded by MAX_HEAD and the deadline).
    loop {
        if line(&mut reader)?.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?"))
    {
        netloom::metrics::export(hub);
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "try GET /metrics\n".to_string())
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
