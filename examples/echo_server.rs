//! A real echo server with sensible defaults.
//!
//! ```text
//! cargo run --release --example echo_server            # 127.0.0.1:6565
//! cargo run --release --example echo_server -- 0.0.0.0:7000
//! ```
//!
//! Every message is echoed back with the same id and body (8-byte header:
//! body length u32 LE, message id u32 LE). Idle connections are closed after
//! 180 s. Set `RUST_LOG=debug` to see every open and close.
//!
//! Its limits and idle timeout come from `NETLOOM_*` environment variables
//! where set (`NETLOOM_IDLE_TIMEOUT=60`, `NETLOOM_MAX_BODY_LENGTH=65536`,
//! `NETLOOM_FRAME_TIMEOUT=10`, …: see `Builder::config_from_env`).

use std::time::Duration;

use netloom::Server;

fn main() -> Result<(), netloom::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6565".into());
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
