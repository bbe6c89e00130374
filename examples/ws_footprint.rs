//! Measures heap bytes per idle connection (plain TCP and WebSocket, after
//! one echo each) and echo throughput over both, in one run.
//!
//! ```text
//! cargo run --release --example ws_footprint            # 10,000 connections of each kind
//! cargo run --release --example ws_footprint -- 2000
//! cargo run --release --example ws_footprint -- 10000 65536   # echo 64 KiB first
//! ```
//!
//! The server counts its live heap with a counting global allocator
//! (requested bytes; the allocator's own per-block overhead comes on top
//! and is estimated from the number of live blocks). The clients run in a
//! child process (this executable with `--clients`), so their memory and
//! file descriptors are not the server's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use netloom::{ws, Server};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        LIVE_BLOCKS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (isize, isize) {
    (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed))
}

const ECHO_CONNS: usize = 16;
const BATCH: usize = 64;
const BODY: usize = 64;
const SECONDS: u64 = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--clients") {
        return clients(&args[2..]);
    }
    let n: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let first: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let server = Server::builder()
        .event_loops(1)
        .route(7, |ctx| ctx.reply(7, ctx.body()))
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
        .bind("127.0.0.1:0")?
        .bind_ws("127.0.0.1:0")?
        .start()?;
    let (tcp, wsa) = (server.local_addrs()[0], server.local_addrs()[1]);
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--clients",
            &n.to_string(),
            &tcp.to_string(),
            &wsa.to_string(),
            &first.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut go = child.stdin.take().ok_or("no stdin")?;
    // The client does one phase per line it reads, then reports.
    let mut step = move |expect: &str| -> Result<String, Box<dyn std::error::Error>> {
        writeln!(go, "go")?;
        let line = lines.next().ok_or("client exited")??;
        if !line.starts_with(expect) {
            return Err(format!("client said {line:?}, expected {expect}").into());
        }
        Ok(line)
    };
    let settle = |conns: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.connection_count() != conns && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    settle(0);
    let base = live();
    step("tcp-ready")?;
    settle(n);
    let tcp = live();
    // The TCP connections close; the slab keeps its grown capacity, so the
    // WebSocket phase measures what a WebSocket adds to a connection slot.
    step("tcp-closed")?;
    settle(0);
    let slots = live();
    step("ws-ready")?;
    settle(n);
    let ws = live();
    let per = |a: (isize, isize), b: (isize, isize)| {
        ((b.0 - a.0) as f64 / n as f64, (b.1 - a.1) as f64 / n as f64)
    };
    let (tcp_bytes, tcp_blocks) = per(base, tcp);
    let (ws_bytes, ws_blocks) = per(slots, ws);
    println!(
        "{n} idle connections of each kind (one after the other), each after one echo of {first} bytes:"
    );
    println!(
        "  plain TCP : {tcp_bytes:5.0} heap bytes/conn (the slab slot; {tcp_blocks:.2} blocks/conn)"
    );
    println!(
        "  WebSocket : {:5.0} heap bytes/conn = slot + {ws_bytes:.0} in {ws_blocks:.2} blocks (+ ~{:.0} malloc overhead at 16 B/block)",
        tcp_bytes + ws_bytes,
        ws_blocks * 16.0
    );
    let tcp_rate = step("tcp-echo")?;
    let ws_rate = step("ws-echo")?;
    println!(
        "echo throughput, {ECHO_CONNS} connections, batches of {BATCH} x {BODY}-byte messages, {SECONDS} s each, 1 event loop:"
    );
    println!("  {tcp_rate}\n  {ws_rate}");
    drop(step);
    child.wait()?;
    server.shutdown(Duration::from_secs(5))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The client process
// ---------------------------------------------------------------------------

fn clients(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = args[0].parse()?;
    let tcp: SocketAddr = args[1].parse()?;
    let wsa: SocketAddr = args[2].parse()?;
    let first: usize = args[3].parse()?;
    let mut out = std::io::stdout();
    let stdin = std::io::stdin();
    let wait = || {
        let mut line = String::new();
        stdin.read_line(&mut line).map(|n| n > 0)
    };
    let mut keep = Vec::with_capacity(n);
    wait()?;
    for _ in 0..n {
        let mut s = TcpStream::connect(tcp)?;
        let frame = packer_frame(&vec![b'h'; first]);
        s.write_all(&frame)?;
        let mut reply = vec![0u8; frame.len()];
        s.read_exact(&mut reply)?;
        keep.push(s);
    }
    writeln!(out, "tcp-ready")?;
    wait()?;
    keep.clear();
    writeln!(out, "tcp-closed")?;
    wait()?;
    for _ in 0..n {
        let mut s = ws_connect(wsa)?;
        let frame = masked(0x82, &vec![b'h'; first]);
        s.write_all(&frame)?;
        let mut reply = vec![0u8; frame.len() - 4];
        s.read_exact(&mut reply)?;
        keep.push(s);
    }
    writeln!(out, "ws-ready")?;
    wait()?;
    let tcp_rate = echo(
        ECHO_CONNS,
        || TcpStream::connect(tcp).map_err(Into::into),
        &{
            let mut batch = Vec::new();
            for _ in 0..BATCH {
                batch.extend_from_slice(&packer_frame(&[b'x'; BODY]));
            }
            batch
        },
    )?;
    writeln!(out, "tcp-echo: {tcp_rate:.0} messages/s")?;
    wait()?;
    let ws_rate = echo(ECHO_CONNS, || ws_connect(wsa), &{
        let mut batch = Vec::new();
        for _ in 0..BATCH {
            batch.extend_from_slice(&masked(0x82, &[b'x'; BODY]));
        }
        batch
    })?;
    writeln!(out, "ws-echo:  {ws_rate:.0} messages/s")?;
    // Hold the idle connections until the server is done measuring.
    while wait()? {}
    drop(keep);
    Ok(())
}

fn packer_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&7u32.to_le_bytes());
    f.extend_from_slice(body);
    f
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn ws_connect(addr: SocketAddr) -> Result<TcpStream, Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err("upgrade refused".into());
    }
    Ok(s)
}

/// Pipelined echo over `conns` connections for `SECONDS`; messages/s.
fn echo(
    conns: usize,
    connect: impl Fn() -> Result<TcpStream, Box<dyn std::error::Error>>,
    batch: &[u8],
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut streams = (0..conns)
        .map(|_| connect())
        .collect::<Result<Vec<_>, _>>()?;
    for s in &streams {
        s.set_nodelay(true)?;
    }
    // Replies have the request's size (server frames are unmasked: 4
    // bytes shorter per WebSocket message).
    let reply_len = if batch.len() == BATCH * (BODY + 8) {
        batch.len()
    } else {
        batch.len() - 4 * BATCH
    };
    let mut buf = vec![0u8; reply_len];
    let start = Instant::now();
    let mut messages = 0u64;
    while start.elapsed() < Duration::from_secs(SECONDS) {
        for s in &mut streams {
            s.write_all(batch)?;
        }
        for s in &mut streams {
            s.read_exact(&mut buf)?;
        }
        messages += (conns * BATCH) as u64;
    }
    Ok(messages as f64 / start.elapsed().as_secs_f64())
}
