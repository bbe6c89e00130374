//! Hostile peers against a running netloom server, measuring what they
//! make it hold: the server's RSS before, while they hold on, and after
//! they are gone. The figures in `docs/SECURITY.md` come from this tool.
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1:6565 &   # or ws_echo
//! cargo run --release --example hostile -- slow-body 127.0.0.1:6565 --pid <server pid> --conns 500
//! ```
//!
//! Attacks (each bounded: `--conns` connections, held `--hold` seconds):
//!
//! * `slowloris`: 4 bytes of a frame header each, then nothing.
//! * `slow-body`: a header for `--size` bytes (default 1 MiB) and all of
//!   its body but the last 64 bytes; then one byte every two seconds,
//!   never the last.
//! * `never-read`: echo requests of `--size` bytes (default 64 KiB) as
//!   fast as the server takes them (until a write blocks, every half
//!   second), never reading a reply.
//! * `ws-unfinished`: a WebSocket upgrade, then a text message of
//!   `--size` bytes (default 1 MiB) without its last fragment.
//! * `ws-ping-flood`: a WebSocket upgrade, then 125-byte pings as fast as
//!   the server takes them (until a write blocks), never reading.
//!
//! Loopback only; it talks to the address it is given.

#[allow(dead_code)] // fd_count is not needed here
#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/ws_frame.rs"]
mod ws_frame;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ws_frame::client_frame;

/// The server's resident set size in bytes (0 if unknown).
fn rss(pid: u32) -> u64 {
    procfs::rss(pid).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: hostile <slowloris|slow-body|never-read|ws-unfinished|ws-ping-flood> ADDR \
                 --pid PID [--conns N] [--size BYTES] [--hold SECS]";
    let (Some(attack), Some(addr)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}: not a number"))
            })
    };
    let pid = opt("--pid").unwrap_or_else(|| {
        eprintln!("{usage}");
        std::process::exit(2)
    }) as u32;
    let conns = opt("--conns").unwrap_or(100) as usize;
    let hold = Duration::from_secs(opt("--hold").unwrap_or(10));
    let size = opt("--size").map(|s| s as usize);

    let before = rss(pid);
    let started = Instant::now();
    let mut peers: Vec<TcpStream> = Vec::new();
    let mut refused = 0;
    for _ in 0..conns {
        let Ok(s) =
            TcpStream::connect_timeout(&addr.parse().expect("ADDR"), Duration::from_secs(5))
        else {
            refused += 1;
            continue;
        };
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.set_nodelay(true).unwrap();
        let mut s = s;
        let ok = match attack.as_str() {
            "slowloris" => s.write_all(&[0, 0, 1, 0]).is_ok(),
            "slow-body" => {
                let n = size.unwrap_or(1 << 20);
                let mut frame = header(n, 1);
                frame.resize(8 + n - 64, b'x');
                s.write_all(&frame).is_ok()
            }
            "never-read" => true,
            "ws-unfinished" | "ws-ping-flood" => upgrade(&mut s),
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        };
        if ok {
            peers.push(s);
        } else {
            refused += 1;
        }
    }
    // Hold on, doing the attack's part, until `hold` has passed.
    let big = vec![b'y'; size.unwrap_or(64 << 10)];
    let ping: Vec<u8> = (0..256).flat_map(|_| ping_frame()).collect();
    let mut sent_first_fragment = false;
    let mut peak = 0;
    let mut round = 0u32;
    while started.elapsed() < hold {
        round += 1;
        for s in &mut peers {
            let _ = match attack.as_str() {
                "slow-body" if round % 4 == 0 && round < 4 * 63 => s.write(b"x"),
                // As much as the server takes, until a write blocks.
                "never-read" => flood(s, &[header(big.len(), 1), big.clone()].concat()),
                "ws-ping-flood" => flood(s, &ping),
                "ws-unfinished" if !sent_first_fragment => {
                    let n = size.unwrap_or(1 << 20);
                    s.write(&client_frame(0x01, &vec![b'z'; n]))
                }
                _ => Ok(0),
            };
        }
        sent_first_fragment = true;
        peak = peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(500)); // pacing the attack
    }
    let alive = peers
        .iter_mut()
        .filter_map(|s| {
            s.set_nonblocking(true).ok()?;
            (!matches!(s.read(&mut [0u8; 1]), Ok(0))).then_some(())
        })
        .count();
    let during = rss(pid);
    drop(peers);
    std::thread::sleep(Duration::from_secs(2)); // let the server close them
    let after = rss(pid);
    let per = |rss: u64| (rss.saturating_sub(before) as f64) / conns.max(1) as f64;
    println!(
        "{attack}: {conns} peers ({refused} refused, {alive} still open at the end) for {hold:?}; \
         server RSS before {} KiB, peak {} KiB (+{:.0} B/peer), at the end {} KiB (+{:.0} B/peer), \
         after they left {} KiB",
        before / 1024,
        peak / 1024,
        per(peak),
        during / 1024,
        per(during),
        after / 1024
    );
}

/// Write `chunk` again and again until a write blocks (at most 64 MiB).
fn flood(s: &mut TcpStream, chunk: &[u8]) -> std::io::Result<usize> {
    let mut sent = 0;
    while sent < 64 << 20 {
        match s.write_all(chunk) {
            Ok(()) => sent += chunk.len(),
            Err(_) => break,
        }
    }
    Ok(sent)
}

/// The default packer's header: body length and message id, little-endian.
fn header(len: usize, id: u32) -> Vec<u8> {
    let mut h = (len as u32).to_le_bytes().to_vec();
    h.extend_from_slice(&id.to_le_bytes());
    h
}

fn upgrade(s: &mut TcpStream) -> bool {
    let req = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    head.starts_with(b"HTTP/1.1 101")
}

fn ping_frame() -> Vec<u8> {
    client_frame(0x89, &[7u8; 125])
}
