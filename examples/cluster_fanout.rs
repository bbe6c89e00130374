//! Cross-node fan-out: one publisher, a room with `--conns` members on
//! each of two nodes (two netloom servers in this process, each with its
//! own `Cluster` on one Redis), against the same fan-out within one node
//! (all members on one server, no broker). Then a flood: how many
//! publishes per second one Redis carries through one node's publisher.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run --release --features cluster --example cluster_fanout -- \
//!     --redis redis://127.0.0.1:6379/ [--conns 10000] [--messages 2000] \
//!     [--window 8] [--size 64] [--loops 1] [--flood-secs 5]
//! ```
//!
//! Each message carries its sequence number and the time it was
//! published; each member's client reports when it got it. A message's
//! latency is from its publish to its *last* receiver; at most `--window`
//! messages are in flight. Printed: deliveries per second, p50/p99/max
//! latency per setup, and the flood's publishes/s (accepted by the
//! publisher queue, sent to Redis, received by the other node).

#[allow(dead_code)]
#[path = "netloom_bench/args.rs"]
mod args;
#[allow(dead_code)]
#[path = "netloom_bench/os.rs"]
mod os;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::cluster::{Cluster, ClusterConfig};
use netloom::{Context, Hub, Server, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOM: &str = "bench";
const MSG: u32 = 9;

fn nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// A server whose id 1 joins the room named by the body.
fn server(loops: usize) -> netloom::Result<ServerHandle> {
    Server::builder()
        .event_loops(loops)
        .max_connections(1 << 20)
        .route(1, |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            if let Err(e) = ctx.join(&room) {
                eprintln!("join: {e}");
            }
        })
        .bind("127.0.0.1:0")?
        .start()
}

/// `n` members of `room` on `addr`, each reporting (seq, when) for every
/// message `MSG` it gets.
fn members(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    n: usize,
    room: &str,
    tx: &Sender<(u32, u64)>,
) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let joined: Vec<_> = chunk
            .iter()
            .map(|_| {
                let (tx, join) = (tx.clone(), frame(1, room.as_bytes()));
                rt.spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    s.set_nodelay(true).expect("nodelay");
                    s.write_all(&join).await.expect("join");
                    let (mut r, w) = s.into_split();
                    tokio::spawn(async move {
                        let _keep = w;
                        let mut head = [0u8; 8];
                        let mut body = Vec::new();
                        while r.read_exact(&mut head).await.is_ok() {
                            let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
                            let id = u32::from_le_bytes(head[4..].try_into().unwrap());
                            body.resize(len, 0);
                            if r.read_exact(&mut body).await.is_err() {
                                return;
                            }
                            if id == MSG && len >= 4 {
                                let seq = u32::from_le_bytes(body[..4].try_into().unwrap());
                                let _ = tx.send((seq, nanos()));
                            }
                        }
                    });
                })
            })
            .collect();
        rt.block_on(async {
            for j in joined {
                j.await.expect("a member connected");
            }
        });
    }
}

fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

struct Run {
    deliveries: u64,
    elapsed: Duration,
    latencies: Vec<u64>,
}

/// Publish `messages` (at most `window` in flight), each to `expected`
/// members, and collect each one's publish-to-last-receiver latency.
fn drive(
    publish: &dyn Fn(&[u8]) -> netloom::Result<()>,
    rx: &Receiver<(u32, u64)>,
    expected: usize,
    messages: u32,
    window: u32,
    size: usize,
) -> Result<Run, String> {
    let mut sent: HashMap<u32, (u64, usize)> = HashMap::new();
    let mut latencies = Vec::with_capacity(messages as usize);
    let (mut next, mut deliveries) = (0u32, 0u64);
    let start = Instant::now();
    while latencies.len() < messages as usize {
        while next < messages && sent.len() < window as usize {
            let mut body = vec![0u8; size.max(4)];
            body[..4].copy_from_slice(&next.to_le_bytes());
            sent.insert(next, (nanos(), 0));
            publish(&body).map_err(|e| format!("publish {next}: {e}"))?;
            next += 1;
        }
        let (seq, at) = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| {
            format!(
                "no delivery for 10 s ({} of {messages} done)",
                latencies.len()
            )
        })?;
        deliveries += 1;
        if let Some((t0, got)) = sent.get_mut(&seq) {
            *got += 1;
            if *got == expected {
                latencies.push(at.saturating_sub(*t0));
                sent.remove(&seq);
            }
        }
    }
    Ok(Run {
        deliveries,
        elapsed: start.elapsed(),
        latencies,
    })
}

fn report(name: &str, mut run: Run) {
    run.latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((run.latencies.len() as f64 - 1.0) * p).round() as usize;
        run.latencies.get(i).copied().unwrap_or(0) as f64 / 1e6
    };
    let rate = run.deliveries as f64 / run.elapsed.as_secs_f64();
    println!(
        "{name}: {} deliveries in {:.2?}: {rate:.0}/s; publish to last receiver p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        run.deliveries,
        run.elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

fn cluster(hub: Hub, url: &str, node: &str) -> netloom::Result<Cluster> {
    let mut config = ClusterConfig::new(url, node);
    config.heartbeat = Duration::from_millis(200);
    config.presence_timeout = Duration::from_secs(2);
    config.queue = 1 << 16;
    config.queue_bytes = 256 << 20;
    Cluster::start(hub, config)
}

/// Flood: publish as fast as the queue takes for `secs` to a room with
/// one member on the other node.
fn flood(a: &Cluster, b: &Cluster, secs: u64) {
    let (a0, b0) = (a.stats(), b.stats());
    let (start, mut refused) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(secs) {
        if a.publish("flood", MSG, [0u8; 16]).is_err() {
            refused += 1;
            std::thread::yield_now();
        }
    }
    let _ = wait("the flood to drain", Duration::from_secs(30), || {
        b.stats().received - b0.received >= a.stats().published - a0.published
    });
    let secs = start.elapsed().as_secs_f64();
    let (sa, sb) = (a.stats(), b.stats());
    println!(
        "flood: {:.0} publishes/s sent to Redis, {:.0}/s received by the other node, {refused} refused (queue full)",
        (sa.published - a0.published) as f64 / secs,
        (sb.received - b0.received) as f64 / secs,
    );
}

fn main() -> Result<(), String> {
    let args = args::Args::parse(std::env::args().skip(1), &[])?;
    args.check(&[
        "redis",
        "conns",
        "messages",
        "window",
        "size",
        "loops",
        "flood-secs",
    ])?;
    let url = args
        .str("redis")
        .ok_or("--redis URL is required")?
        .to_string();
    let conns: usize = args.get("conns", 10_000)?;
    let messages: u32 = args.get("messages", 2000)?;
    let window: u32 = args.get("window", 8)?;
    let size: usize = args.get("size", 64)?;
    let loops: usize = args.get("loops", 1)?;
    let flood_secs: u64 = args.get("flood-secs", 5)?;
    let (soft, _) = os::raise_fd_limit().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    if (4 * conns + 64) as u64 > soft {
        return Err(format!(
            "{} descriptors needed, the limit is {soft}",
            4 * conns + 64
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let e = |e: netloom::Error| e.to_string();

    // Within one node: 2 × conns members on one server.
    let one = server(loops).map_err(e)?;
    let (tx, rx) = unbounded();
    members(&rt, one.local_addr(), 2 * conns, ROOM, &tx);
    let hub = one.hub();
    wait("members on one node", Duration::from_secs(60), || {
        hub.room_len(ROOM) == 2 * conns
    })?;
    let publish = |b: &[u8]| hub.publish(ROOM, MSG, b);
    let run = drive(&publish, &rx, 2 * conns, messages, window, size)?;
    report(&format!("one node, {} members", 2 * conns), run);
    one.shutdown(Duration::from_secs(5)).map_err(e)?;

    // Across two nodes: conns members on each.
    let (sa, sb) = (server(loops).map_err(e)?, server(loops).map_err(e)?);
    let a = cluster(sa.hub(), &url, "fanout-a").map_err(e)?;
    let b = cluster(sb.hub(), &url, "fanout-b").map_err(e)?;
    let (tx, rx) = unbounded();
    members(&rt, sa.local_addr(), conns, ROOM, &tx);
    members(&rt, sb.local_addr(), conns, ROOM, &tx);
    members(&rt, sb.local_addr(), 1, "flood", &unbounded().0);
    wait(
        "both nodes' members, subscribed",
        Duration::from_secs(60),
        || {
            a.room_len(ROOM) == 2 * conns
                && b.room_len(ROOM) == 2 * conns
                && b.is_subscribed("flood")
        },
    )?;
    let publish = |body: &[u8]| a.publish(ROOM, MSG, body);
    let run = drive(&publish, &rx, 2 * conns, messages, window, size)?;
    report(&format!("two nodes, {conns} members each"), run);
    flood(&a, &b, flood_secs);
    Ok(())
}
