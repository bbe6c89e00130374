//! A UDP echo server: every frame of every datagram goes back to its
//! sender, same id and body, one datagram per frame.
//!
//! ```text
//! cargo run --release --example udp_echo            # 127.0.0.1:6566
//! cargo run --release --example udp_echo -- 10.0.0.5:7000   # a specific address, not 0.0.0.0
//! ```
//!
//! Datagrams carry the default packer's frames (8-byte header: body length
//! u32 LE, message id u32 LE; then the body), one or more per datagram. A
//! peer's session closes after 120 s without a datagram (`RUST_LOG=debug`
//! shows every open and close). A reply to a peer that sent one datagram
//! only is bounded to three times its size (the amplification bound; see
//! SECURITY.md): an echo never passes it.

use netloom::Server;

fn main() -> Result<(), netloom::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6566".into());
    let server = Server::builder()
        .on_open(|s| log::debug!("open {} from {}", s.id(), s.peer_addr()))
        .on_close(|s, reason| log::debug!("close {}: {reason}", s.id()))
        .fallback(|ctx| ctx.reply(ctx.msg_id(), ctx.body()))
        .config_from_env()?
        .bind_udp(addr.as_str())?
        .start()?;
    let addr = server.udp_addrs()[0];
    println!("netloom UDP echo server on {addr}");
    println!("try it (sends len=5, id=1, body=hello in one datagram; prints the echo):");
    println!(
        r#"  python3 -c 'import socket, struct; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.sendto(struct.pack("<II", 5, 1) + b"hello", ("{}", {})); d = s.recv(65535); n, i = struct.unpack("<II", d[:8]); print("id", i, "body", d[8:8 + n])'"#,
        addr.ip(),
        addr.port()
    );
    println!("press Ctrl-C to stop");
    server.join()
}
