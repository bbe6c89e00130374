//! WebSocket client load, netloom's client (`Dial::ws`) next to a
//! tokio-tungstenite client, against one netloom WebSocket echo server run
//! in a child process (so the client's CPU is its own), in one run.
//!
//! ```text
//! cargo run --release --example ws_client_bench -- [--conns N] [--inflight K] [--secs S] [--size B] [--loops L]
//! ```
//!
//! Defaults: 1,000 connections × 16 binary messages of 64 bytes in flight
//! each, 5 s measured after 1 s of warm-up, 1 client loop or tokio worker
//! (the machine these figures come from has 2 cores: one for the server).
//! Each client echoes what comes back (another message goes out for each
//! one received) and checks its length; it prints messages/s, client CPU
//! per message (user + system of this process over the measured window)
//! and p99 round trip, then netloom/tokio ratios. At most ~20,000 open
//! files per process here: `--conns` up to ~9,000.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use netloom::ws;
use netloom::{Dial, Server};

#[derive(Clone, Copy)]
struct Args {
    conns: usize,
    inflight: usize,
    secs: u64,
    size: usize,
    loops: usize,
}

fn parse() -> Result<(Args, Option<String>), String> {
    let mut a = Args {
        conns: 1000,
        inflight: 16,
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
            "--conns" => a.conns = num("--conns")?,
            "--inflight" => a.inflight = num("--inflight")?.max(1),
            "--secs" => a.secs = num("--secs")? as u64,
            "--size" => a.size = num("--size")?.max(8),
            "--loops" => a.loops = num("--loops")?.max(1),
            "--serve" => serve = it.next(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((a, serve))
}

fn main() {
    let (args, serve) = match parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ws_client_bench: {e}");
            std::process::exit(2);
        }
    };
    if let Some(addr) = serve {
        return serve_echo(&addr);
    }
    let (mut child, port) = spawn_server();
    let url = format!("ws://127.0.0.1:{port}/");
    println!(
        "{} connections x {} in flight, {} B messages, {} s; server: netloom ws echo (child process)",
        args.conns, args.inflight, args.size, args.secs
    );
    let netloom = run_netloom(&url, args);
    print("netloom", &netloom);
    let tokio = run_tokio(&url, args);
    print("tokio-tungstenite", &tokio);
    println!(
        "ratios netloom/tokio: messages/s {:.2}, CPU per message {:.2}, p99 {:.2}",
        netloom.rate() / tokio.rate(),
        netloom.cpu_per_msg_us() / tokio.cpu_per_msg_us(),
        netloom.p99_us as f64 / tokio.p99_us.max(1) as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The echo server: this binary with `--serve ADDR`.
fn serve_echo(addr: &str) {
    let server = Server::builder()
        .event_loops(1)
        .ws_max_message(1 << 20)
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
        .bind_ws(addr)
        .and_then(|b| b.start())
        .expect("start the echo server");
    println!("{}", server.local_addr().port());
    let _ = server.join();
}

fn spawn_server() -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["--serve", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server process");
    let out = child.stdout.take().expect("its stdout");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("its port");
    (child, line.trim().parse().expect("a port"))
}

struct Run {
    messages: u64,
    window: Duration,
    cpu: Duration,
    p99_us: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.window.as_secs_f64()
    }

    fn cpu_per_msg_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }
}

fn print(name: &str, r: &Run) {
    println!(
        "{name:>18}: {:>9.0} messages/s, {:.2} µs CPU per message, p99 {} µs",
        r.rate(),
        r.cpu_per_msg_us(),
        r.p99_us
    );
}

/// User + system CPU time of this process (all threads), from /proc.
fn cpu_now() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime (fields 14 and 15), in clock ticks of 1/100 s.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Count messages and sample round trips during the measured window.
struct Meter {
    measuring: AtomicBool,
    messages: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

impl Meter {
    fn new() -> Arc<Meter> {
        Arc::new(Meter {
            measuring: AtomicBool::new(false),
            messages: AtomicU64::new(0),
            hist: Mutex::new(Histogram::new(3).expect("a histogram")),
        })
    }

    /// A message came back: `sent` is the time stamp it carried.
    fn got(&self, body: &[u8], size: usize, start: Instant) {
        assert_eq!(body.len(), size, "an echo of another length");
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        self.messages.fetch_add(1, Ordering::Relaxed);
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&body[..8]);
        let sent = u64::from_le_bytes(stamp);
        let now = start.elapsed().as_micros() as u64;
        if let Ok(mut h) = self.hist.try_lock() {
            let _ = h.record(now.saturating_sub(sent));
        }
    }

    /// Warm up, then measure for `secs`.
    fn measure(&self, secs: u64) -> Run {
        std::thread::sleep(Duration::from_secs(1));
        let cpu0 = cpu_now();
        let t0 = Instant::now();
        self.measuring.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(secs));
        self.measuring.store(false, Ordering::Relaxed);
        let window = t0.elapsed();
        let cpu = cpu_now().saturating_sub(cpu0);
        let p99_us = self.hist.lock().map_or(0, |h| h.value_at_quantile(0.99));
        Run {
            messages: self.messages.load(Ordering::Relaxed),
            window,
            cpu,
            p99_us,
        }
    }
}

/// A message of `size` bytes stamped with the time since `start`.
fn message(size: usize, start: Instant) -> Vec<u8> {
    let mut m = vec![7u8; size];
    m[..8].copy_from_slice(&(start.elapsed().as_micros() as u64).to_le_bytes());
    m
}

fn run_netloom(url: &str, a: Args) -> Run {
    let meter = Meter::new();
    let start = Instant::now();
    let (m, size, inflight) = (meter.clone(), a.size, a.inflight);
    let client = Server::builder()
        .event_loops(a.loops)
        .route(ws::BINARY, move |ctx| {
            m.got(ctx.body(), size, start);
            ctx.reply(ws::BINARY, message(size, start))
        })
        .on_open(move |s| {
            for _ in 0..inflight {
                let _ = s.send(ws::BINARY, message(size, start));
            }
        })
        .start()
        .expect("start the client");
    let hub = client.hub();
    for _ in 0..a.conns {
        hub.dial(Dial::ws(url).expect("the URL")).expect("dial");
    }
    let run = meter.measure(a.secs);
    let _ = client.shutdown(Duration::from_secs(2));
    run
}

fn run_tokio(url: &str, a: Args) -> Run {
    let meter = Meter::new();
    let start = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.loops)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..a.conns {
        let (m, url, stop) = (meter.clone(), url.to_owned(), stop.clone());
        rt.spawn(async move {
            let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await else {
                return;
            };
            let (mut tx, mut rx) = ws.split();
            for _ in 0..a.inflight {
                let msg = message(a.size, start);
                if tx
                    .send(tokio_tungstenite::tungstenite::Message::binary(msg))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            while let Some(Ok(msg)) = rx.next().await {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                m.got(&msg.into_data(), a.size, start);
                let msg = message(a.size, start);
                if tx
                    .send(tokio_tungstenite::tungstenite::Message::binary(msg))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let run = meter.measure(a.secs);
    stop.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(2));
    run
}
