//! A port of hotpot's echo example: WebSocket text messages in hotpot's
//! JSON envelope, `{"type": "Echo", "data": {"Message": "你好，火锅！"}}`,
//! answered with the same envelope, and hotpot's default keepalive,
//! `Keepalived(5, 12)`: a client silent for 5 s is sent
//! `{"type":"Ping","data":{}}`, one silent for 12 s is closed. A browser
//! client written for hotpot talks to it unchanged.
//!
//! ```text
//! cargo run --example ws_json_echo                  # ws://127.0.0.1:8848
//! cargo run --example ws_json_echo -- 0.0.0.0:9000
//! ```
//!
//! Try it from a browser's developer console:
//!
//! ```text
//! const ws = new WebSocket("ws://127.0.0.1:8848/");
//! ws.onmessage = (e) => console.log(e.data);
//! ws.onopen = () => ws.send(JSON.stringify({type: "Echo", data: {Message: "你好，火锅！"}}));
//! ```
//!
//! A message that is not an envelope, or of a type nobody routes, is
//! answered with an `Error` envelope's text (see `BadBody::Reply`), and the
//! connection goes on.

use std::time::Duration;

use netloom::{BadBody, Server};
use serde::{Deserialize, Serialize};

/// hotpot's Echo message.
#[derive(Debug, Serialize, Deserialize)]
#[allow(non_snake_case)]
struct Echo {
    Message: String,
}

fn main() -> netloom::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8848".into());
    let server = Server::builder()
        .route_envelope("Echo", |_ctx, echo: Echo| Ok::<_, netloom::BoxError>(echo))
        .keepalived(Duration::from_secs(5), Duration::from_secs(12))
        // Not an envelope, or an unknown type: say so (as text) and go on.
        .bad_body(BadBody::Reply(netloom::ws::TEXT))
        .bind_ws(addr.as_str())?
        .start()?;
    println!(
        "netloom ws_json_echo listening on ws://{}",
        server.local_addr()
    );
    println!("press Ctrl-C to stop");
    server.join()
}
