//! A mixed soak of netloom, in one process, bounded in time: servers on
//! every transport, clients of every kind, a sample a second, and a
//! verdict at the end. Not a benchmark: it looks for leaks, wrong closes
//! and panics over time.
//!
//! ```text
//! cargo run --release --example soak --all-features -- --minutes 10 --out target/soak
//! ```
//!
//! * Servers (2 event loops each; TLS applies to every listener of a
//!   netloom server, so there are two): TCP, ws:// and UDP on one, which
//!   also dials out; TLS and wss:// on the other (a self-signed certificate
//!   made in-process). Both close slow peers over a 1 MiB write high-water
//!   mark (`SlowPeerPolicy::Close`) and kick peers silent for 30 s.
//! * Dial-out: a peer server (sequence packer) stopped for `--peer-down`
//!   every `--peer-up` and started again on the same port; the main server
//!   dials it with a reconnect policy and keeps a pool to it, and a thread
//!   sends requests through both.
//! * Clients (threads of this process): steady echo on every transport
//!   (`--echo` each), honest full-speed bursts on TCP, TLS, ws and wss
//!   (`--honest` each), churn (`--churn` threads, `--churn-rate` per
//!   second in all), slow peers that never read (`--slow` threads), and
//!   `--idle` idle TCP connections that send every 10 s.
//! * Each second: elapsed, RSS, open descriptors, both servers' stats, the
//!   pool's and the peer's state, the clients' counts: `OUT/soak.csv`. At the
//!   end `OUT/soak.svg` (RSS, descriptors and connections over time) and
//!   `OUT/summary.txt`; the exit status is 1 if a check failed.
//!
//! The checks: no panic; honest connections closed only by their peer or
//! shutdown, every echo correct; every slow peer closed with `SlowPeer`;
//! the RSS peak of the last window within `--rss-margin` percent of the
//! first plateau's; descriptors back to the baseline once everything is
//! closed; the dial recovered after every restart of its peer.
//! Linux for RSS and descriptors (/proc); elsewhere they read "n/a".

#[path = "../common/counting_alloc.rs"]
mod counting_alloc;
#[path = "../common/procfs.rs"]
mod procfs;
#[path = "../common/self_signed.rs"]
mod self_signed;
#[path = "../common/ws_frame.rs"]
mod ws_frame;

mod args;
mod clients;
mod conns;
mod dialer;
mod plot;
mod sample;
mod servers;
mod slow;
mod verdict;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use args::Args;
use clients::{Counts, Ctx};

type BoxError = Box<dyn std::error::Error>;

/// The live heap is sampled too: RSS moves with the allocator's arenas and
/// fragmentation, the live heap only with what is really held.
#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

static PANICS: AtomicU64 = AtomicU64::new(0);

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}

/// Join `threads`, waiting at most until `deadline` for each; the names
/// of those that did not end.
fn join_all(threads: Vec<std::thread::JoinHandle<()>>, deadline: Instant) -> Vec<String> {
    let mut stuck = Vec::new();
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20)); // polling a join with a bound
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            stuck.push(t.thread().name().unwrap_or("?").to_string());
        }
    }
    stuck
}

fn run(args: &Args) -> Result<bool, BoxError> {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,netloom::dispatch=error"),
    )
    .init();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Relaxed);
        default_hook(info);
    }));
    std::fs::create_dir_all(&args.out)?;
    let pid = std::process::id();
    let fds_baseline = procfs::fd_count(pid);
    let heap_baseline = counting_alloc::live().0;

    let tls = self_signed::self_signed()?;
    let tally = Arc::new(servers::Tally::default());
    let plain = servers::start_plain(args, &tally)?;
    let secure = servers::start_tls(args, &tally, tls.server.clone())?;
    let peer = dialer::Peer::start()?;
    let links = dialer::Links::open(&plain.hub(), peer.addr)?;
    let (p, s) = (plain.local_addrs(), secure.local_addrs());
    let ctx = Ctx {
        targets: conns::Targets {
            tcp: p[0],
            ws: p[1],
            udp: plain.udp_addrs()[0],
            tls: s[0],
            wss: s[1],
            tls_client: tls.client.clone(),
        },
        counts: Arc::new(Counts::default()),
        stop: Arc::new(AtomicBool::new(false)),
        failures: Default::default(),
    };
    println!(
        "soak: {:.1} min; TCP {} ws {} UDP {} TLS {} wss {} peer {}; writing {}",
        args.duration.as_secs_f64() / 60.0,
        p[0],
        p[1],
        ctx.targets.udp,
        s[0],
        s[1],
        peer.addr,
        args.out.display()
    );

    let start = Instant::now();
    let mut sampler = sample::Sampler::create(&args.out.join("soak.csv"), start)?;
    let mut threads = clients::spawn_all(args, &ctx)?;
    threads.extend(slow::spawn_all(args.slow, &ctx)?);
    threads.push(dialer::spawn_requests(&ctx, &links)?);
    threads.push(dialer::spawn_restarter(
        &ctx,
        &peer,
        args.peer_up,
        args.peer_down,
    )?);

    let figures = |links: &dialer::Links| {
        let (heap, blocks) = counting_alloc::live();
        let mut f = vec![
            ("heap_kib".to_string(), heap.max(0) as u64 / 1024),
            ("heap_blocks".to_string(), blocks.max(0) as u64),
            (
                "malloc_kib".to_string(),
                procfs::malloc_in_use().map_or(0, |b| b / 1024),
            ),
        ];
        f.extend(servers::sum(&[plain.stats(), secure.stats()]));
        let pool = links.pool_stats();
        f.extend(
            [
                ("pool_size", pool.size as u64),
                ("pool_idle", pool.idle as u64),
                ("pool_in_use", pool.in_use as u64),
                ("pool_created", pool.created),
                ("pool_discarded", pool.discarded),
                ("peer_up", peer.up.load(Relaxed) as u64),
                ("peer_restarts", peer.restarts.load(Relaxed)),
                (
                    "streams_open",
                    tally.streams_open.load(Relaxed).max(0) as u64,
                ),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        f.extend(
            ctx.counts
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        f
    };
    // One sample a second until the duration is over.
    let mut next = start;
    while start.elapsed() < args.duration {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now())); // the sampling period
        let s = sampler.take(figures(&links))?;
        if s.elapsed as u64 % 30 == 0 {
            println!(
                "  {:>4.0} s: RSS {} KiB, {} fds, {} connections, {} messages in",
                s.elapsed,
                s.rss.map_or("n/a".into(), |b| (b / 1024).to_string()),
                s.fds.map_or("n/a".into(), |n| n.to_string()),
                s.get("connections"),
                s.get("messages_in")
            );
        }
    }

    // Stop the clients; sample while their connections close.
    let load_end = start.elapsed().as_secs_f64();
    ctx.stop.store(true, Relaxed);
    let stuck = join_all(threads, Instant::now() + Duration::from_secs(30));
    if !stuck.is_empty() {
        ctx.note(format!(
            "threads that did not end within 30 s: {}",
            stuck.join(", ")
        ));
    }
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now())); // the sampling period
        sampler.take(figures(&links))?;
        if tally.streams_open.load(Relaxed) == 0 || Instant::now() > settle {
            break;
        }
    }
    let streams_left = tally.streams_open.load(Relaxed);

    // Close everything, then count descriptors.
    links.close();
    drop(links);
    peer.stop()?;
    plain.shutdown(Duration::from_secs(5))?;
    secure.shutdown(Duration::from_secs(5))?;
    sampler.finish()?;
    let fds_end = procfs::fd_count(pid);
    // What the report needs, then everything else dropped (the TLS
    // configurations and their session caches too) before the heap is
    // read; the samples kept for the report are taken off.
    let failures = ctx.failures.lock().unwrap().clone();
    let (closes, counts) = (tally.closes(), ctx.counts.snapshot());
    let peer_restarts = peer.restarts.load(Relaxed);
    drop((ctx, tls, tally, peer));
    let heap_growth = counting_alloc::live().0 - heap_baseline - sampler.footprint() as isize;

    let outcome = verdict::Outcome {
        args,
        samples: &sampler.samples,
        load_end,
        closes,
        counts,
        failures,
        panics: PANICS.load(Relaxed),
        fds_baseline,
        fds_end,
        heap_growth,
        streams_left,
        peer_restarts,
    };
    let (pass, summary) = verdict::judge(&outcome);
    print!("{summary}");
    std::fs::write(args.out.join("summary.txt"), &summary)?;
    let title = format!(
        "netloom soak, {:.1} min: {}",
        load_end / 60.0,
        if pass { "pass" } else { "FAIL" }
    );
    plot::draw(
        &args.out.join("soak.svg"),
        &title,
        &sampler.samples,
        load_end,
    )?;
    println!(
        "wrote {}/soak.csv, soak.svg, summary.txt",
        args.out.display()
    );
    Ok(pass)
}
