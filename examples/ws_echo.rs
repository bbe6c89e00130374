//! A WebSocket echo server: text and binary messages come back as they
//! were sent.
//!
//! ```text
//! cargo run --example ws_echo                 # ws://127.0.0.1:6568
//! cargo run --example ws_echo -- 0.0.0.0:7000
//! ```
//!
//! Try it with Python's `websockets` (`pip install websockets`):
//!
//! ```text
//! python3 -m websockets ws://127.0.0.1:6568/echo
//! ```
//!
//! or from a browser's developer console:
//!
//! ```text
//! const ws = new WebSocket("ws://127.0.0.1:6568/echo");
//! ws.onmessage = (e) => console.log(e.data);
//! ws.onopen = () => ws.send("hello");
//! ```
//!
//! Set `RUST_LOG=debug` to see every open and close.

use std::time::Duration;

use netloom::{ws, Server};

fn main() -> Result<(), netloom::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6568".into());
    let server = Server::builder()
        // Ping after 20 s of silence, close after 60 s.
        .heartbeat(Duration::from_secs(5), Duration::from_secs(60))
        .ping_before_kick(Duration::from_secs(20), 0)
        .ws_on_upgrade(|session, req| {
            log::debug!("{} upgrades to {}", session.peer_addr(), req.path());
            Ok(())
        })
        .on_close(|conn, reason| log::debug!("close {}: {reason}", conn.id()))
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
        .bind_ws(addr.as_str())?
        .start()?;
    let addr = server.local_addr();
    println!("netloom WebSocket echo server on ws://{addr}/");
    println!("try it:  python3 -m websockets ws://{addr}/echo");
    println!("press Ctrl-C to stop");
    server.join()
}
