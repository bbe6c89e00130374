//! `GET /metrics` in the Prometheus text format, on a plain std
//! `TcpListener` thread (no async runtime): the exporter renders what the
//! facade holds (`PrometheusHandle::render`) after `netloom::metrics::export`
//! brought the server's figures up to date. Shared by
//! `examples/echo_server.rs` and the metrics tests (included with
//! `#[path = ".../common/metrics_http.rs"]`).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

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

/// Serve `GET /metrics` on `addr` from a thread of its own, exporting
/// `hub`'s figures at each scrape; returns the address bound (port 0
/// allowed).
pub fn serve(addr: &str, handle: PrometheusHandle, hub: netloom::Hub) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &handle, &hub) {
                    log::debug!("metrics scrape: {e}");
                }
            }
        })?;
    Ok(bound)
}

/// One request, one answer, then close (HTTP/1.1 with `Connection: close`).
fn answer(stream: TcpStream, handle: &PrometheusHandle, hub: &netloom::Hub) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers, up to the blank line (bounded: 100 lines).
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
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
