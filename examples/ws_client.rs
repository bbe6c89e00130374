//! A WebSocket client on netloom's loops (`Dial::ws`): each line of stdin
//! goes out as a text message, and what comes back is printed.
//!
//! ```text
//! cargo run --example ws_echo &                          # a server to try
//! cargo run --example ws_client -- ws://127.0.0.1:6568/echo
//! ```
//!
//! Binary messages print as their length. The connection reconnects if it
//! is lost (`RUST_LOG=debug` shows it); end of input closes it and exits.

use std::io::BufRead;
use std::time::Duration;

use netloom::ws::{self, WsResponse};
use netloom::{Dial, Reconnect, Server};

const USAGE: &str = "usage: ws_client URL   (ws://host:port/path)";

fn main() {
    env_logger::init();
    let url = match std::env::args().nth(1) {
        Some(url) if url != "-h" && url != "--help" => url,
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&url) {
        eprintln!("ws_client: {e}");
        std::process::exit(1);
    }
}

fn run(url: &str) -> netloom::Result<()> {
    let server = Server::builder()
        .event_loops(1)
        .route(ws::TEXT, |ctx| {
            println!("< {}", String::from_utf8_lossy(ctx.body()));
        })
        .route(ws::BINARY, |ctx| {
            println!("< ({} bytes of binary)", ctx.body().len());
        })
        .on_open(|s| {
            let protocol = s.data().get::<WsResponse>().and_then(|r| r.protocol());
            eprintln!("connected (subprotocol: {protocol:?})");
        })
        .on_close(|_s, why| eprintln!("closed: {why}"))
        .start()?;
    let conn = server
        .hub()
        .dial(Dial::ws(url)?.reconnect(Reconnect::default()))?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if let Err(e) = conn.send(ws::TEXT, line) {
            eprintln!("not sent: {e}");
        }
    }
    conn.close();
    server.shutdown(Duration::from_secs(2))
}
