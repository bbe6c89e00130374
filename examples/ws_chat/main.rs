//! A browser chat room: every text message goes to everyone connected.
//!
//! ```text
//! cargo run --example ws_chat
//! ```
//!
//! Then open <http://127.0.0.1:6570/> in two browser windows (or
//! `http://127.0.0.1:6570/?name=alice`). The page (`index.html`, served by
//! a tiny HTTP responder in this example on port 6570) opens a WebSocket to
//! `ws://127.0.0.1:6569/chat?name=…`, the netloom server, which broadcasts
//! each message as `name: text` and announces joins and leaves.
//!
//! Optional arguments: `ws_chat [WS_ADDR] [HTTP_ADDR]`.
//!
//! Its limits and idle timeout come from `NETLOOM_*` environment variables
//! where set (`NETLOOM_IDLE_TIMEOUT=60`, `NETLOOM_MAX_BODY_LENGTH=65536`,
//! `NETLOOM_FRAME_TIMEOUT=10`, …: see `Builder::config_from_env`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use netloom::{ws, Server};

const PAGE: &str = include_str!("index.html");

/// A chatter's name, kept as connection data.
struct Name(String);

fn main() -> Result<(), netloom::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let ws_addr = args.next().unwrap_or_else(|| "127.0.0.1:6569".into());
    let http_addr = args.next().unwrap_or_else(|| "127.0.0.1:6570".into());

    let server = Server::builder()
        .heartbeat(Duration::from_secs(5), Duration::from_secs(60))
        .ping_before_kick(Duration::from_secs(20), 0)
        .ws_max_message(4096)
        .ws_on_upgrade(|session, req| {
            if req.path() != "/chat" {
                return Err(404);
            }
            let name: String = req
                .query("name")
                .unwrap_or("guest")
                .chars()
                .filter(|c| !c.is_control())
                .take(24)
                .collect();
            // Queued now, delivered right after the upgrade response.
            let joined = format!("* {name} joined");
            session.hub().broadcast_text(&joined).map_err(|_| 503u16)?;
            session.data_mut().insert(Name(name));
            Ok(())
        })
        .on_close(|session, reason| {
            if let Some(Name(name)) = session.data().get::<Name>() {
                log::info!("{name} left: {reason}");
                let _ = session.hub().broadcast_text(&format!("* {name} left"));
            }
        })
        .route(ws::TEXT, |ctx| {
            let name = ctx.data().get::<Name>().map_or("?", |n| n.0.as_str());
            let line = format!("{name}: {}", String::from_utf8_lossy(ctx.body()));
            ctx.hub().broadcast_text(&line)
        })
        .config_from_env()?
        .bind_ws(ws_addr.as_str())?
        .start()?;
    let ws_port = server.local_addr().port();

    let listener = TcpListener::bind(http_addr.as_str())?;
    let page = PAGE.replace("WS_PORT", &ws_port.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            serve_page(stream, &page);
        }
    });
    println!("chat server on ws://{}/chat", server.local_addr());
    println!("open http://{http_addr}/ in a few browser windows");
    println!("press Ctrl-C to stop");
    server.join()
}

/// Answer any GET with the page (one request per connection).
fn serve_page(mut stream: TcpStream, page: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // Skip the request line and headers.
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
}
