//! UDP echo load: netloom's `bind_udp` next to a raw mio UDP echo (the
//! floor), the same floor batching with `recvmmsg`/`sendmmsg` (what
//! batching would buy), and a tokio + tokio-util `UdpFramed` echo, each
//! server in a child process, one after the other in one run.
//!
//! ```text
//! cargo run --release --example udp_bench -- [--peers P] [--inflight K] [--secs S] [--size B] [--loops L]
//! ```
//!
//! Defaults: 64 peers (sockets of one load thread) × 8 datagrams of 64
//! bytes in flight each, 5 s measured after 1 s of warm-up, the servers on
//! 1 loop (tokio: 1 worker). Each datagram is one default-packer frame
//! whose body starts with its send time; the load checks each echo's
//! length, records the round trip and sends the next. A datagram the
//! kernel drops (a full receive buffer) is replaced after 200 ms. Printed
//! per server: datagrams/s, server CPU per datagram (user + system of the
//! child over the measured window, from /proc), p50/p99 round trip; then
//! the ratios to the floor and to tokio. Linux only (`/proc`, `recvmmsg`).

#[cfg(target_os = "linux")]
mod load;
#[cfg(target_os = "linux")]
mod servers;

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("udp_bench: Linux only (/proc, recvmmsg)");
}

#[cfg(target_os = "linux")]
use std::process::{Child, Command, Stdio};

#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct Args {
    pub peers: usize,
    pub inflight: usize,
    pub secs: u64,
    pub size: usize,
    pub loops: usize,
}

#[cfg(target_os = "linux")]
fn parse() -> Result<(Args, Option<(String, String)>), String> {
    let mut a = Args {
        peers: 64,
        inflight: 8,
        secs: 5,
        size: 64,
        loops: 1,
    };
    let mut serve = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |what: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{what} needs a number"))
        };
        match flag.as_str() {
            "--peers" => a.peers = num("--peers")?.max(1),
            "--inflight" => a.inflight = num("--inflight")?.max(1),
            "--secs" => a.secs = num("--secs")?.max(1) as u64,
            "--size" => a.size = num("--size")?.clamp(16, 1400),
            "--loops" => a.loops = num("--loops")?.max(1),
            "--serve" => {
                let kind = it.next().ok_or("--serve needs a kind")?;
                serve = Some((kind, String::new()));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((a, serve))
}

#[cfg(target_os = "linux")]
fn main() {
    let (args, serve) = match parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("udp_bench: {e}");
            std::process::exit(2);
        }
    };
    if let Some((kind, _)) = serve {
        return servers::serve(&kind, args.loops);
    }
    println!(
        "{} peers x {} in flight, {} B datagrams, {} s, server loops {}",
        args.peers, args.inflight, args.size, args.secs, args.loops
    );
    println!(
        "{:<14} {:>12} {:>14} {:>9} {:>9} {:>8}",
        "server", "datagrams/s", "CPU/dgram (us)", "p50 (us)", "p99 (us)", "lost"
    );
    let mut runs = Vec::new();
    for kind in ["floor", "floor-mmsg", "netloom", "tokio"] {
        let (child, port) = spawn(kind, args.loops);
        let child = Killed(child);
        let run = load::run(port, child.0.id(), args);
        drop(child);
        println!(
            "{:<14} {:>12.0} {:>14.2} {:>9} {:>9} {:>8}",
            kind,
            run.rate(),
            run.cpu_per_dgram_us(),
            run.p50_us,
            run.p99_us,
            run.lost
        );
        runs.push((kind, run));
    }
    let get = |k: &str| &runs.iter().find(|(n, _)| *n == k).expect("run").1;
    let (n, floor, mmsg, tokio) = (
        get("netloom"),
        get("floor"),
        get("floor-mmsg"),
        get("tokio"),
    );
    println!(
        "netloom/floor: CPU per datagram {:.2}x, datagrams/s {:.2}x",
        n.cpu_per_dgram_us() / floor.cpu_per_dgram_us(),
        n.rate() / floor.rate()
    );
    println!(
        "netloom/tokio: CPU per datagram {:.2}x, datagrams/s {:.2}x, p99 {:.2}x",
        n.cpu_per_dgram_us() / tokio.cpu_per_dgram_us(),
        n.rate() / tokio.rate(),
        n.p99_us as f64 / tokio.p99_us.max(1) as f64
    );
    println!(
        "floor-mmsg/floor: CPU per datagram {:.2}x (what recvmmsg/sendmmsg batching buys)",
        mmsg.cpu_per_dgram_us() / floor.cpu_per_dgram_us()
    );
}

/// A server child, killed (by pid) when dropped: also when the load
/// panics on a wrong echo.
#[cfg(target_os = "linux")]
struct Killed(Child);

#[cfg(target_os = "linux")]
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `udp_bench --serve KIND` and read the port it prints.
#[cfg(target_os = "linux")]
fn spawn(kind: &str, loops: usize) -> (Child, u16) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--serve", kind, "--loops", &loops.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let mut out = child.stdout.take().expect("stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while std::io::Read::read(&mut out, &mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    // Printed once the socket is bound: datagrams from now on are read.
    let port = String::from_utf8_lossy(&line)
        .trim()
        .parse()
        .expect("a port");
    (child, port)
}
