//! `pool`: requests through a connection pool of 8 from 64 callers, in
//! one run against the same netloom `SeqPacker` server (`serve rpc`, a
//! child pinned to the server CPUs):
//!
//! * `netloom-get`: 64 threads, each request on a connection held for it
//!   alone (`Pool::get`, then `ConnHandle::request`, then given back);
//! * `netloom-request`: 64 threads sharing the connections
//!   (`Pool::request`, many requests in flight on each);
//! * `netloom-chains`: 64 chains of requests without a thread each, as
//!   tokio's tasks are: each answer's callback, on the loop, takes a
//!   connection in turn (`Pool::pick`) for the chain's next request
//!   (`ConnHandle::request_with`);
//! * `deadpool`: 64 tokio tasks on a multi-threaded runtime, each request
//!   on a `deadpool` object held for it alone (a tokio-util `Framed`
//!   written, then read until its reply), what a tokio service does with
//!   `deadpool` or `bb8` today.
//!
//! Each caller sends the next request when its answer came (checked).
//! The report gives requests/s, client CPU per request, p50 and p99, and
//! the ratios to `deadpool`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use netloom::{Dial, PoolConfig, SeqPacker, Server};

use crate::args::{parse_duration, Args};
use crate::child::ServerChild;
use crate::rpc_clients::{Meter, ID, REQUEST_TIMEOUT};

pub fn main(args: Args) -> Result<(), String> {
    args.check(&[
        "kinds",
        "callers",
        "size",
        "pool",
        "duration",
        "warmup",
        "repeat",
        "server-cpus",
        "client-cpus",
        "out",
    ])?;
    let kinds: Vec<String> = args.list(
        "kinds",
        vec![
            "netloom-get".into(),
            "netloom-request".into(),
            "netloom-chains".into(),
            "deadpool".into(),
        ],
    )?;
    let callers: usize = args.get("callers", 64)?;
    let pool_size: usize = args.get("pool", 8)?;
    let size: usize = args.get("size", 32)?;
    let duration = parse_duration(args.str("duration").unwrap_or("5s"))?;
    let warmup = parse_duration(args.str("warmup").unwrap_or("1s"))?;
    let repeat: usize = args.get("repeat", 1)?;
    let server_cpus: Vec<usize> = args.list("server-cpus", vec![0])?;
    let client_cpus: Vec<usize> = args.list("client-cpus", vec![1])?;
    crate::os::pin_current_thread(&client_cpus)
        .map_err(|e| format!("pin to {client_cpus:?}: {e}"))?;
    let server = ServerChild::spawn("rpc", 1, &server_cpus, &[])?;
    println!(
        "pool: {callers} callers, pool of {pool_size}, {size}-byte bodies against pid {} on {} \
         (CPUs {server_cpus:?}); clients on CPUs {client_cpus:?}",
        server.pid, server.addr
    );
    let mut rows: Vec<(String, [f64; 4], u64)> = Vec::new();
    for round in 0..repeat {
        let mut order = kinds.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for kind in &order {
            let meter = Meter::new(size);
            let me = std::process::id();
            let mut sample = None;
            let mut window = |m: &Meter| {
                std::thread::sleep(warmup); // the warm-up's length
                m.start();
                let (cpu0, t0) = (crate::os::cpu_time(me), Instant::now());
                std::thread::sleep(duration); // the window's length
                let (cpu1, wall) = (crate::os::cpu_time(me), t0.elapsed());
                sample = Some((m.finish(), wall, cpu0.zip(cpu1).map(|(a, b)| b - a)));
            };
            run(kind, server.addr, callers, pool_size, &meter, &mut window)?;
            let ((replies, errors, p50, p99), wall, cpu) = sample.ok_or("no window")?;
            let cpu = cpu.ok_or("cannot read this process's CPU time")?;
            let rps = replies as f64 / wall.as_secs_f64();
            let cpu_us = cpu.as_secs_f64() * 1e6 / replies.max(1) as f64;
            println!(
                "  {kind:<16} {rps:>9.0} req/s  {cpu_us:>6.2} us CPU/req  p50 {p50:>7.1} us  \
                 p99 {p99:>7.1} us  errors {errors}"
            );
            rows.push((kind.clone(), [rps, cpu_us, p50, p99], errors));
        }
    }
    server.stop();
    let report = report(&rows, &kinds);
    println!("\n{report}");
    if let Some(dir) = args.str("out") {
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        let path = std::path::Path::new(dir).join("pool.md");
        std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if rows.iter().any(|r| r.2 > 0) {
        return Err("some requests failed or got the wrong answer".into());
    }
    Ok(())
}

/// Medians per kind, and the ratios to `deadpool`.
fn report(rows: &[(String, [f64; 4], u64)], kinds: &[String]) -> String {
    let median = |kind: &str, i: usize| {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == kind)
            .map(|r| r.1[i])
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut out = String::from(
        "| client | req/s | client CPU/req | p50 | p99 | req/s ÷ deadpool | CPU ÷ deadpool | p99 ÷ deadpool |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for kind in kinds {
        let ratio = |i| median(kind, i) / median("deadpool", i);
        let _ = writeln!(
            out,
            "| {kind} | {:.0} | {:.2} µs | {:.0} µs | {:.0} µs | {:.2} | {:.2} | {:.2} |",
            median(kind, 0),
            median(kind, 1),
            median(kind, 2),
            median(kind, 3),
            ratio(0),
            ratio(1),
            ratio(3)
        );
    }
    out
}

fn run(
    kind: &str,
    addr: SocketAddr,
    callers: usize,
    pool_size: usize,
    meter: &Arc<Meter>,
    window: &mut dyn FnMut(&Meter),
) -> Result<(), String> {
    match kind {
        "netloom-get" | "netloom-request" | "netloom-chains" => {
            run_netloom(kind, addr, callers, pool_size, meter, window)
        }
        "deadpool" => run_deadpool(addr, callers, pool_size, meter, window),
        other => Err(format!("unknown kind {other:?}")),
    }
}

fn run_netloom(
    kind: &str,
    addr: SocketAddr,
    callers: usize,
    pool_size: usize,
    meter: &Arc<Meter>,
    window: &mut dyn FnMut(&Meter),
) -> Result<(), String> {
    let err = |e: netloom::Error| format!("netloom pool: {e}");
    let host = Server::builder()
        .packer(SeqPacker::new(crate::serve::MAX_BODY))
        .event_loops(1)
        .start()
        .map_err(err)?;
    let config = PoolConfig {
        max_size: pool_size,
        min_idle: pool_size,
        ..PoolConfig::default()
    };
    let pool = host.hub().pool([Dial::new(addr)], config).map_err(err)?;
    let exclusive = kind == "netloom-get";
    if kind == "netloom-chains" {
        let ready = Instant::now() + REQUEST_TIMEOUT;
        while pool.stats().idle < pool_size && Instant::now() < ready {
            std::thread::sleep(Duration::from_millis(5)); // polling a counter before the run
        }
        for _ in 0..callers {
            chain(pool.clone(), meter.clone());
        }
    }
    let threads = if kind == "netloom-chains" { 0 } else { callers };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (pool, m) = (pool.clone(), meter.clone());
            std::thread::spawn(move || {
                while !m.stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let answer = if exclusive {
                        pool.get(REQUEST_TIMEOUT)
                            .and_then(|c| c.request(ID, &m.body, REQUEST_TIMEOUT)?.wait())
                    } else {
                        pool.request(ID, &m.body, REQUEST_TIMEOUT)
                    };
                    m.reply(answer.is_ok_and(|a| a.body == m.body), sent);
                }
                m.ended.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    window(meter);
    let drained = meter.drain(callers as u64);
    for w in workers {
        let _ = w.join();
    }
    drop(pool);
    let _ = host.shutdown(Duration::from_secs(2));
    drained
}

/// `len u32 | id u32 | seq u32 | body` as a tokio-util codec.
struct SeqCodec;

impl tokio_util::codec::Decoder for SeqCodec {
    type Item = (u32, Bytes);
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::io::Result<Option<(u32, Bytes)>> {
        crate::serve::decode_frame(src, 12, 8)
    }
}

impl tokio_util::codec::Encoder<(u32, Bytes)> for SeqCodec {
    type Error = std::io::Error;

    fn encode(&mut self, (seq, body): (u32, Bytes), dst: &mut BytesMut) -> std::io::Result<()> {
        dst.reserve(12 + body.len());
        dst.put_u32_le(body.len() as u32);
        dst.put_u32_le(ID);
        dst.put_u32_le(seq);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

type Link = tokio_util::codec::Framed<tokio::net::TcpStream, SeqCodec>;

/// deadpool's recipe: make a `Framed` connection; reuse it as it is.
struct Manager(SocketAddr);

impl deadpool::managed::Manager for Manager {
    type Type = (Link, u32);
    type Error = std::io::Error;

    async fn create(&self) -> std::io::Result<(Link, u32)> {
        let stream = tokio::net::TcpStream::connect(self.0).await?;
        stream.set_nodelay(true)?;
        Ok((tokio_util::codec::Framed::new(stream, SeqCodec), 0))
    }

    async fn recycle(
        &self,
        _: &mut (Link, u32),
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<std::io::Error> {
        Ok(())
    }
}

fn run_deadpool(
    addr: SocketAddr,
    callers: usize,
    pool_size: usize,
    meter: &Arc<Meter>,
    window: &mut dyn FnMut(&Meter),
) -> Result<(), String> {
    use futures_util::{SinkExt, StreamExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let pool = deadpool::managed::Pool::<Manager>::builder(Manager(addr))
        .max_size(pool_size)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("deadpool: {e}"))?;
    for _ in 0..callers {
        let (pool, m) = (pool.clone(), meter.clone());
        rt.spawn(async move {
            while !m.stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let ok = async {
                    let mut conn = pool.get().await.ok()?;
                    let (link, seq) = &mut *conn;
                    *seq = seq.wrapping_add(1);
                    link.send((*seq, m.body.clone())).await.ok()?;
                    loop {
                        let (got, body) = link.next().await?.ok()?;
                        if got == *seq {
                            return Some(body == m.body);
                        }
                    }
                };
                let ok = tokio::time::timeout(REQUEST_TIMEOUT, ok).await;
                m.reply(matches!(ok, Ok(Some(true))), sent);
            }
            m.ended.fetch_add(1, Ordering::Relaxed);
        });
    }
    window(meter);
    let drained = meter.drain(callers as u64);
    rt.shutdown_timeout(Duration::from_secs(2));
    drained
}

/// One request of a chain on a connection the pool picks; its callback
/// (on the loop) checks the answer and sends the next, until the meter
/// says stop.
fn chain(pool: netloom::Pool, meter: Arc<Meter>) {
    let sent = Instant::now();
    let Some(conn) = pool.pick() else {
        meter.errors.fetch_add(1, Ordering::Relaxed);
        meter.ended.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let m = meter.clone();
    let started = conn.request_with(ID, &meter.body, REQUEST_TIMEOUT, move |answer| {
        m.reply(answer.is_ok_and(|a| a.body == m.body), sent);
        if m.stop.load(Ordering::Relaxed) {
            m.ended.fetch_add(1, Ordering::Relaxed);
        } else {
            chain(pool, m);
        }
    });
    if started.is_err() {
        meter.errors.fetch_add(1, Ordering::Relaxed);
        meter.ended.fetch_add(1, Ordering::Relaxed);
    }
}
