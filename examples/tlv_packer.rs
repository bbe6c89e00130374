//! A server speaking a custom TLV wire format with a sequence number.
//!
//! ```text
//! cargo run --release --example tlv_packer            # 127.0.0.1:6566
//! cargo run --release --example tlv_packer -- 0.0.0.0:7000
//! ```
//!
//! Frames are `seq u32 LE | kind u32 LE | len u32 LE | data | "\r\n"` (drawn
//! in the docs of `netloom::TlvPacker`). `kind` routes the
//! request; every reply carries the `seq` of its request, so a client may
//! pipeline requests and match the answers:
//!
//! * kind 1: echo the data;
//! * kind 2: the data in ASCII upper case.
//!
//! Data longer than 64 KiB, or a frame not ending in `"\r\n"`, closes the
//! connection (a protocol error). Set `RUST_LOG=debug` to see every open
//! and close.
//!
//! Its limits and idle timeout come from `NETLOOM_*` environment variables
//! where set (`NETLOOM_IDLE_TIMEOUT=60`, `NETLOOM_MAX_BODY_LENGTH=65536`,
//! `NETLOOM_FRAME_TIMEOUT=10`, …: see `Builder::config_from_env`).

use std::time::Duration;

use netloom::{Server, TlvPacker};

/// Route ids (the frame's `kind`).
const ECHO: u32 = 1;
const UPPERCASE: u32 = 2;

fn main() -> Result<(), netloom::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6566".into());
    let packer = TlvPacker::default();
    let max = packer.max_data_len();
    let server = Server::builder()
        .packer(packer)
        // Silent peers leave after 180 s (NETLOOM_IDLE_TIMEOUT overrides).
        .heartbeat(Duration::from_secs(30), Duration::from_secs(180))
        .on_close(|conn, reason| log::debug!("close {}: {reason}", conn.id()))
        // `reply` answers with the request's seq.
        .route(ECHO, |ctx| ctx.reply(ECHO, ctx.body()))
        .route(UPPERCASE, |ctx| {
            ctx.reply(UPPERCASE, ctx.body().to_ascii_uppercase())
        })
        .config_from_env()?
        .bind(addr.as_str())?
        .start()?;

    let addr = server.local_addr();
    let (ip, port) = (addr.ip(), addr.port());
    println!("netloom TLV server listening on {addr} (data up to {max} bytes)");
    println!("frame: seq u32 LE | kind u32 LE | len u32 LE | data | \\r\\n");
    println!("kind 1 echoes, kind 2 upper-cases; replies carry the request's seq.");
    println!("try it (seq=7, kind=2, len=2, data=hi; expect seq=7 and HI back):");
    // Python's standard library only (a fresh machine has no nc or xxd).
    println!(
        r#"  python3 -c 'import socket, struct; s = socket.create_connection(("{ip}", {port}), timeout=5); s.sendall(struct.pack("<III", 7, 2, 2) + b"hi\r\n"); f = s.makefile("rb"); q, k, n = struct.unpack("<III", f.read(12)); print("seq", q, "kind", k, "data", f.read(n), "trailer", f.read(2))'"#
    );
    println!("press Ctrl-C to stop");
    server.join()
}
