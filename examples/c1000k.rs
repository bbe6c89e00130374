//! c1000k: open N mostly idle connections to one server and watch what it
//! costs (after netman's c1000k.md, in Rust).
//!
//! Connections are spread over many source addresses (127.0.0.2, …) so the
//! client can pass the ~28k ephemeral ports one address has per
//! destination. While connecting it prints the rate, the errors and the
//! server's connection count (its open descriptors, from /proc). Then every
//! connection sends a PING frame (8-byte header, empty body) every `T`
//! seconds for `--hold` seconds, and it prints the server's RSS per
//! connection. It raises its own RLIMIT_NOFILE to the hard limit and says
//! plainly when a descriptor limit (its own or the server's), rather than
//! the server, stopped it.
//!
//! ```text
//! cargo build --release --example netloom_bench --example c1000k
//! target/release/examples/c1000k --spawn-server --conns 19000 --hold 30
//! target/release/examples/c1000k --addr 127.0.0.1:6565 --server-pid 1234 --conns 1000000 --sources 50
//! ```
//!
//! README.md ("Benchmarks") explains the system settings for 1M.

#[allow(dead_code)]
#[path = "netloom_bench/args.rs"]
mod args;
#[allow(dead_code)]
#[path = "netloom_bench/child.rs"]
mod child;
#[allow(dead_code)]
#[path = "netloom_bench/fleet.rs"]
mod fleet;
#[allow(dead_code)]
#[path = "netloom_bench/os.rs"]
mod os;
#[allow(dead_code)]
#[path = "netloom_bench/wire.rs"]
mod wire;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use args::{parse_duration, Args};
use child::ServerChild;
use fleet::ConnectPlan;
use wire::Blame;

const USAGE: &str = "\
usage: c1000k (--spawn-server [--loops N] [--server-heartbeat CHECK,IDLE] | --addr A [--server-pid PID])
              [--conns N] [--sources K] [--ping-interval T] [--hold H] [--cpus LIST]

  --conns N            connections to open (default 19000)
  --sources K          spread over 127.0.0.2 .. 127.0.0.(K+1) (default: one per 10000 connections)
  --ping-interval T    each connection sends a PING frame every T (default 10s; 0: never)
  --hold H             keep the connections open this long, then exit (default 30s)
  --spawn-server       start `netloom_bench serve netloom` (pinned to CPU 0 on a multi-core machine)
  --server-pid PID     the server's pid, to show its connection count and RSS per connection
  --cpus LIST          pin this client (default: CPU 1 on a multi-core machine)
";

fn main() {
    let result = Args::parse(std::env::args().skip(1), &["spawn-server", "help"]).and_then(run);
    if let Err(e) = result {
        eprintln!("c1000k: {e}");
        std::process::exit(1);
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn run(args: Args) -> Result<(), String> {
    if args.flag("help") {
        print!("{USAGE}");
        return Ok(());
    }
    args.check(&[
        "spawn-server",
        "help",
        "addr",
        "server-pid",
        "loops",
        "server-heartbeat",
        "conns",
        "sources",
        "ping-interval",
        "hold",
        "cpus",
    ])?;
    let conns: usize = args.get("conns", 19000)?;
    let sources: usize = args.get("sources", wire::auto_sources(conns).max(1))?;
    let every = parse_duration(args.str("ping-interval").unwrap_or("10s"))?;
    let hold = parse_duration(args.str("hold").unwrap_or("30s"))?;
    let multi = os::cpus() >= 2;
    let cpus: Vec<usize> = args.list("cpus", if multi { vec![1] } else { vec![] })?;
    os::pin_current_thread(&cpus).map_err(|e| format!("pin to {cpus:?}: {e}"))?;

    // 1. Our own descriptor limit.
    let (soft, hard) = os::raise_fd_limit().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    let reserve = 32;
    println!("c1000k: fd limit of this process: {soft} (hard {hard})");
    if (conns + reserve) as u64 > soft {
        println!(
            "c1000k: NOTE: {conns} connections need {} descriptors here; this process can open \
             about {} connections, so its own fd limit will stop it, not the server. \
             See README.md (Benchmarks) to raise fs.nr_open and `ulimit -n`.",
            conns + reserve,
            soft.saturating_sub(reserve as u64)
        );
    }

    // 2. The server.
    let mut spawned = None;
    let (addr, pid): (SocketAddr, Option<u32>) = if args.flag("spawn-server") {
        let mut extra = Vec::new();
        if let Some(hb) = args.str("server-heartbeat") {
            extra = vec!["--heartbeat".to_string(), hb.to_string()];
        }
        let server_cpus = if multi { vec![0] } else { vec![] };
        let c = ServerChild::spawn("netloom", args.get("loops", 1)?, &server_cpus, &extra)?;
        let r = (c.addr, Some(c.pid));
        println!("c1000k: started netloom server pid {} on {}", c.pid, c.addr);
        spawned = Some(c);
        r
    } else {
        let a = args
            .str("addr")
            .ok_or("--addr or --spawn-server is required (--help)")?
            .parse()
            .map_err(|e| format!("--addr: {e}"))?;
        (
            a,
            args.str("server-pid")
                .map(str::parse)
                .transpose()
                .map_err(|_| "bad --server-pid")?,
        )
    };
    let server_limit = pid.and_then(os::fd_limit);
    if let (Some(limit), Some(p)) = (server_limit, pid) {
        println!("c1000k: server pid {p}: fd limit {limit}");
        if (conns as u64) + 16 > limit {
            println!(
                "c1000k: NOTE: the server may hold about {} connections: its fd limit, not its \
                 design, will stop it there.",
                limit.saturating_sub(16)
            );
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss0 = pid.and_then(os::rss);
    let fd0 = pid.and_then(os::fd_count).unwrap_or(0);
    let server_conns = || pid.and_then(os::fd_count).map(|n| n.saturating_sub(fd0));

    // 3. Connect, with progress.
    println!(
        "c1000k: connecting {conns} to {addr} from {sources} source address(es) \
         127.0.0.2..{}",
        wire::source_addr(sources - 1, sources).map_or("?".into(), |a| a.to_string())
    );
    let plan = ConnectPlan {
        addr,
        conns,
        sources,
        timeout: Duration::from_secs(1),
        max_time: Duration::from_secs(1800),
        max_consecutive_errors: 10,
    };
    let mut fleet = fleet::connect(&plan, &mut |p| {
        let server = server_conns().map_or("?".into(), |n| n.to_string());
        let rss = pid
            .and_then(os::rss)
            .map_or(String::new(), |r| format!(", RSS {:.1} MiB", mib(r)));
        println!(
            "[{:>5.1}s] connected {}/{} ({:.0}/s), errors {} | server: {server} conns{rss}",
            p.elapsed.as_secs_f64(),
            p.connected,
            p.target,
            p.rate,
            p.errors
        );
    });
    let n = fleet.streams.len();
    println!(
        "c1000k: {n} connected in {:.1}s ({:.0}/s); errors: {}",
        fleet.connect_time.as_secs_f64(),
        n as f64 / fleet.connect_time.as_secs_f64().max(1e-9),
        fleet.errors_line()
    );
    if matches!(fleet.stopped, Some((Blame::ClientFdLimit, _))) {
        // Reading /proc and holding need a few descriptors of our own.
        fleet.streams.truncate(n.saturating_sub(reserve));
    }
    let kept = fleet.streams.len();
    // Wait (bounded) for the server to hold what we connected.
    let t = Instant::now();
    while pid.is_some()
        && server_conns().unwrap_or(0) < kept
        && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the server held at the peak: everything we connected if it
    // holds all we kept (we closed the rest ourselves).
    let held = server_conns().map(|h| if h >= kept { n } else { h });
    let server_full =
        matches!((held, server_limit), (Some(h), Some(l)) if (fd0 + h + 16) as u64 >= l);
    verdict(&fleet, n, conns, soft, held, server_limit, server_full);
    if kept < n {
        println!(
            "c1000k: closed {} connections to leave this process descriptors to work with",
            n - kept
        );
    }
    let n = kept;

    // 4. Hold, pinging.
    let ping = (!every.is_zero()).then_some(every);
    println!(
        "c1000k: holding {n} connections for {hold:?}, PING every {}",
        ping.map_or("never".into(), |d| format!("{d:?}"))
    );
    let mut last = Instant::now();
    let r = fleet::hold(&mut fleet.streams, hold, ping, &mut |r| {
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            let server = server_conns().map_or("?".into(), |n| n.to_string());
            println!(
                "  pings {} echoed {} B, closed {} | server: {server} conns",
                r.pings, r.echoed, r.closed
            );
        }
    })
    .map_err(|e| format!("hold: {e}"))?;
    println!(
        "c1000k: held {n} connections for {hold:?}: {} pings, {} echo bytes, {} closed by the server",
        r.pings, r.echoed, r.closed
    );

    // 5. Memory per connection.
    if let (Some(before), Some(after), Some(held)) = (rss0, pid.and_then(os::rss), server_conns()) {
        if held > 0 {
            println!(
                "c1000k: server RSS {:.1} MiB -> {:.1} MiB with {held} connections: {:.0} bytes per connection",
                mib(before),
                mib(after),
                (after as f64 - before as f64) / held as f64
            );
        }
    } else {
        println!(
            "c1000k: give --server-pid (or --spawn-server) to see the server's RSS per connection"
        );
    }
    drop(fleet);
    if let Some(c) = spawned {
        c.stop();
    }
    Ok(())
}

/// Say what stopped the connecting, if anything did.
fn verdict(
    fleet: &fleet::Fleet,
    n: usize,
    target: usize,
    soft: u64,
    held: Option<usize>,
    server_limit: Option<u64>,
    server_full: bool,
) {
    let Some((blame, e)) = &fleet.stopped else {
        println!("c1000k: all {target} connections open");
        return;
    };
    let why = match blame {
        Blame::ClientFdLimit if server_full => format!(
            "THIS PROCESS's fd limit (RLIMIT_NOFILE {soft}) stopped it at {n} connections \
             ({e}); the server, holding {}, is at its own fd limit ({}) too",
            held.unwrap_or(0),
            server_limit.unwrap_or(0)
        ),
        Blame::ClientFdLimit => format!(
            "THIS PROCESS's fd limit (RLIMIT_NOFILE {soft}) stopped it at {n} connections \
             ({e}); the server was not the limit"
        ),
        Blame::SystemFdLimit => {
            format!("the SYSTEM's file table (fs.file-max) stopped it at {n} connections ({e})")
        }
        Blame::Ports => format!(
            "out of source ports at {n} connections ({e}): add --sources or widen \
             net.ipv4.ip_local_port_range"
        ),
        _ if server_full => format!(
            "the SERVER's fd limit ({}) stopped it: it holds {} connections ({e})",
            server_limit.unwrap_or(0),
            held.unwrap_or(0)
        ),
        Blame::Server => format!("the server stopped accepting at {n} connections ({e})"),
        Blame::Memory => format!("kernel memory ran out at {n} connections ({e})"),
        Blame::Other => format!("stopped at {n} connections: {e}"),
    };
    println!("c1000k: STOPPED EARLY: {why}");
}
