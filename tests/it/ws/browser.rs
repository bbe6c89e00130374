//! Headless Chromium: a page served from here opens a WebSocket to the
//! server and talks to it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use netloom::ws;
use netloom::{CloseReason, Server};

use super::start_ws;
use crate::common::peers::{require, Peer};
use crate::common::{run_bounded, TIMEOUT};

const PAGE: &str = r#"<!doctype html>
<html><head><title>netloom ws test</title></head><body>
<div id="result">pending</div>
<script>
function done(r) { document.getElementById("result").textContent = r; }
let step = 0;
const ws = new WebSocket("ws://127.0.0.1:WSPORT/browser?name=chromium");
ws.binaryType = "arraybuffer";
ws.onopen = () => ws.send("hello from chromium");
ws.onmessage = (e) => {
  if (step === 0) {
    if (e.data !== "echo: hello from chromium") { done("bad text: " + e.data); return; }
    step = 1;
    ws.send(new Uint8Array([1, 2, 3, 250]).buffer);
  } else if (step === 1) {
    const got = Array.from(new Uint8Array(e.data)).join(",");
    if (got !== "1,2,3,250") { done("bad binary: " + got); return; }
    step = 2;
    ws.send("close me");
  }
};
ws.onclose = (e) => {
  const ok = step === 2 && e.code === 4002 && e.reason === "server bye" && e.wasClean;
  done(ok ? "ok" : "closed code=" + e.code + " reason=" + e.reason + " clean=" + e.wasClean + " step=" + step);
};
</script>
<script src="/done.js"></script>
</body></html>
"#;

/// A one-page HTTP server: `/page.html`, and `/done.js`, which it answers
/// only once `release` fires (or after the timeout): the script blocks the
/// page's load event, and so Chromium's `--dump-dom`, until the WebSocket
/// exchange is over.
pub(crate) fn page_server(page: String, release: Receiver<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let page = page.clone();
            let release = release.clone();
            std::thread::spawn(move || serve_one(stream, &page, &release));
        }
    });
    addr
}

fn serve_one(mut stream: TcpStream, page: &str, release: &Receiver<()>) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match path {
        "/page.html" => ("200 OK", "text/html", page.to_string()),
        "/done.js" => {
            let _ = release.recv_timeout(Duration::from_secs(30));
            ("200 OK", "application/javascript", "// done\n".to_string())
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Headless Chromium loads `http://{http}/page.html` and prints its DOM
/// once the page's load event fired (bounded in time).
pub(crate) fn dump_dom(browser: &str, http: SocketAddr) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!(
        "netloom-chromium-{}-{}",
        std::process::id(),
        http.port()
    ));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--dump-dom")
    .arg(format!("http://{http}/page.html"));
    let out = run_bounded(cmd, Duration::from_secs(90));
    let _ = std::fs::remove_dir_all(&profile);
    out
}

#[test]
fn chromium_page_talks_to_the_server() {
    let Some(browser) = require(Peer::Chromium) else {
        return;
    };
    let (release_tx, release_rx) = unbounded::<()>();
    let (info_tx, info_rx) = unbounded::<(String, String)>();
    let (closed_tx, closed) = unbounded();
    let release = release_tx.clone();
    let server = start_ws(
        Server::builder()
            // The page's load event (and so the DOM dump) waits for this.
            .on_close(move |_, reason| {
                let _ = closed_tx.send(reason.clone());
                let _ = release.send(());
            })
            .ws_on_upgrade(move |_, req| {
                let name = req.query("name").unwrap_or("").to_string();
                let origin = req.header("origin").unwrap_or("").to_string();
                let _ = info_tx.send((name, origin));
                Ok(())
            })
            .route(ws::TEXT, |ctx| {
                if ctx.body() == b"close me" {
                    ctx.close_with(4002, "server bye");
                    return Ok(());
                }
                let text = format!("echo: {}", String::from_utf8_lossy(ctx.body()));
                ctx.send_text(&text)
            })
            .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body())),
    );
    let page = PAGE.replace("WSPORT", &server.local_addr().port().to_string());
    let http = page_server(page, release_rx);
    let out = dump_dom(&browser, http);
    let _ = release_tx.send(());
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"<div id="result">ok</div>"#),
        "page result not ok:\n{dom}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (name, origin) = info_rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(name, "chromium");
    assert_eq!(origin, format!("http://{http}"));
    // on_close ran (and released the page) once the close handshake was done.
    let reason = closed.try_recv().expect("on_close ran");
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");
    server.shutdown(Duration::from_secs(5)).unwrap();
}
