//! A WebSocket echo server: text and binary messages come back as they
//! were sent.
//!
//! ```text
//! cargo run --example ws_echo -- [ADDR] [--max-message BYTES] [--tls]
//! cargo run --example ws_echo                         # ws://127.0.0.1:6568
//! cargo run --example ws_echo -- 0.0.0.0:7000
//! cargo run --example ws_echo -- 127.0.0.1:9001 --max-message 16777216 --tls
//! ```
//!
//! - `ADDR` (first, default 127.0.0.1:6568): where to listen.
//! - `--max-message BYTES`: the largest message (and frame) accepted;
//!   larger ones close the connection with 1009. Default: the library's
//!   default, 1 MiB. The Autobahn|Testsuite (`scripts/autobahn`) sends
//!   messages of up to 16 MiB in its 9.* cases, so run it with at least
//!   `--max-message 16777216`.
//! - `--tls`: serve `wss://` with a self-signed certificate for
//!   "localhost" and 127.0.0.1 made at start (the key stays in memory; the
//!   certificate is written to `target/ws_echo-cert.pem` for clients to
//!   trust). Needs the `tls` feature (on by default).
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
//!
//! Its limits and idle timeout come from `NETLOOM_*` environment variables
//! where set (`NETLOOM_IDLE_TIMEOUT=60`, `NETLOOM_MAX_BODY_LENGTH=65536`,
//! `NETLOOM_FRAME_TIMEOUT=10`, …: see `Builder::config_from_env`).

use std::time::Duration;

use netloom::{ws, Builder, Server};

const USAGE: &str = "usage: ws_echo [ADDR] [--max-message BYTES] [--tls]";

struct Args {
    addr: String,
    max_message: Option<usize>,
    tls: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:6568".into(),
        max_message: None,
        tls: false,
    };
    let mut rest = std::env::args().skip(1).peekable();
    if let Some(addr) = rest.next_if(|a| !a.starts_with('-')) {
        args.addr = addr;
    }
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--max-message" => {
                let n = rest.next().ok_or("--max-message needs a number of bytes")?;
                let n = n
                    .parse()
                    .map_err(|_| format!("--max-message: not a number of bytes: {n}"))?;
                args.max_message = Some(n);
            }
            "--tls" => args.tls = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = parse_args().unwrap_or_else(|why| {
        eprintln!("ws_echo: {why}");
        std::process::exit(2);
    });
    let mut builder = Server::builder()
        // Ping after 20 s of silence, close after 60 s.
        .heartbeat(Duration::from_secs(5), Duration::from_secs(60))
        .ping_before_kick(Duration::from_secs(20), 0)
        .ws_on_upgrade(|session, req| {
            log::debug!("{} upgrades to {}", session.peer_addr(), req.path());
            Ok(())
        })
        .on_close(|conn, reason| log::debug!("close {}: {reason}", conn.id()))
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()));
    if let Some(max) = args.max_message {
        builder = builder.ws_max_message(max);
    }
    let scheme = if args.tls {
        builder = with_tls(builder)?;
        "wss"
    } else {
        "ws"
    };
    let server = builder
        .config_from_env()?
        .bind_ws(args.addr.as_str())?
        .start()?;
    let addr = server.local_addr();
    println!("netloom WebSocket echo server on {scheme}://{addr}/");
    if let Some(max) = args.max_message {
        println!("messages of up to {max} bytes");
    }
    if args.tls {
        println!(
            "try it:  SSL_CERT_FILE=target/ws_echo-cert.pem python3 -m websockets wss://localhost:{}/echo",
            addr.port()
        );
    } else {
        println!("try it:  python3 -m websockets ws://{addr}/echo");
    }
    println!("press Ctrl-C to stop");
    Ok(server.join()?)
}

/// Serve TLS with a fresh self-signed certificate for "localhost" and
/// 127.0.0.1, written (as PEM) to `target/ws_echo-cert.pem`.
#[cfg(feature = "tls")]
fn with_tls(builder: Builder) -> Result<Builder, Box<dyn std::error::Error>> {
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("ws_echo-cert.pem");
    std::fs::write(&path, ck.cert.pem())?;
    println!(
        "self-signed certificate for \"localhost\": {}",
        path.display()
    );
    Ok(builder.tls(Arc::new(config)))
}

#[cfg(not(feature = "tls"))]
fn with_tls(_: Builder) -> Result<Builder, Box<dyn std::error::Error>> {
    Err("--tls needs the `tls` feature (on by default)".into())
}
