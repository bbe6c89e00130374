//! A real echo server with sensible defaults.
//!
//! ```text
//! cargo run --release --example echo_server            # 127.0.0.1:6565
//! cargo run --release --example echo_server -- 0.0.0.0:7000
//! cargo run --release --example echo_server --features metrics -- 127.0.0.1:6565 --metrics 127.0.0.1:9100
//! ```
//!
//! Every message is echoed back with the same id and body (8-byte header:
//! body length u32 LE, message id u32 LE). Idle connections are closed after
//! 180 s. Set `RUST_LOG=debug` to see every open and close.
//!
//! Its limits and idle timeout come from `NETLOOM_*` environment variables
//! where set (`NETLOOM_IDLE_TIMEOUT=60`, `NETLOOM_MAX_BODY_LENGTH=65536`,
//! `NETLOOM_FRAME_TIMEOUT=10`, …: see `Builder::config_from_env`).
//!
//! With the `metrics` feature, `--metrics METRICS_ADDR` serves `GET
//! /metrics` in the Prometheus text format on that address (port 0 picks
//! one) and prints `metrics on http://HOST:PORT/metrics`.

use std::time::Duration;

use netloom::Server;

#[cfg(feature = "metrics")]
#[path = "common/metrics_http.rs"]
mod metrics_http;

const USAGE: &str = "usage: echo_server [ADDR] [--metrics METRICS_ADDR]";

fn main() -> Result<(), netloom::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (mut addr, mut metrics) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--metrics" => match args.next() {
                Some(a) => metrics = Some(a),
                None => exit(USAGE),
            },
            "-h" | "--help" => exit(USAGE),
            _ if addr.is_none() && !arg.starts_with('-') => addr = Some(arg),
            _ => exit(USAGE),
        }
    }
    if metrics.is_some() && !cfg!(feature = "metrics") {
        exit("--metrics needs the `metrics` feature: cargo run --example echo_server --features metrics -- ... --metrics ADDR");
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:6565".into());
    #[cfg(feature = "metrics")]
    let recorder = metrics
        .as_ref()
        .map(|_| metrics_http::install().unwrap_or_else(|e| exit(&e)));
    let server = Server::builder()
        .heartbeat(Duration::from_secs(30), Duration::from_secs(180))
        .on_open(|conn| log::debug!("open {} from {}", conn.id(), conn.peer_addr()))
        .on_close(|conn, reason| log::debug!("close {}: {reason}", conn.id()))
        .fallback(|ctx| ctx.reply(ctx.msg_id(), ctx.body()))
        .config_from_env()?
        .bind(addr.as_str())?
        .start()?;
    let addr = server.local_addr();
    println!("netloom echo server listening on {addr}");
    #[cfg(feature = "metrics")]
    if let (Some(at), Some(recorder)) = (&metrics, recorder) {
        let bound = metrics_http::serve(at, recorder, server.hub())
            .unwrap_or_else(|e| exit(&format!("--metrics {at}: {e}")));
        println!("metrics on http://{bound}/metrics");
    }
    // Python's standard library only: send one frame (len=5, id=1,
    // body=hello) and print the echo.
    println!("try it (sends len=5, id=1, body=hello; prints the echo):");
    println!(
        r#"  python3 -c 'import socket, struct; s = socket.create_connection(("{}", {}), timeout=5); s.sendall(struct.pack("<II", 5, 1) + b"hello"); f = s.makefile("rb"); n, i = struct.unpack("<II", f.read(8)); print("id", i, "body", f.read(n))'"#,
        addr.ip(),
        addr.port()
    );
    println!("press Ctrl-C to stop");
    server.join()
}

fn exit(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}
