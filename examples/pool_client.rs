//! Many threads sending requests through one connection pool, every answer
//! checked against its request.
//!
//! ```text
//! cargo run --release --example rpc_server &
//! cargo run --release --example pool_client -- 127.0.0.1:6572
//! cargo run --release --example pool_client -- 127.0.0.1:6572 --threads 64 --requests 1000 --size 4
//! ```
//!
//! `pool_client ADDR [--threads T] [--requests N] [--size S] [--timeout-ms MS]`
//! (defaults: ADDR 127.0.0.1:6572, 50 threads, 200 requests each, a pool
//! of 8 connections, 1000 ms). Each thread sends N `SeqPacker` requests
//! with message id 1 and an 8-byte body (its thread number and request
//! number) through the pool, half of the threads holding a connection for
//! each request (`Pool::get`), the other half sharing them
//! (`Pool::request`), and checks that each answer has the request's id
//! and body. Where the server is down, requests fail with typed errors and
//! the run goes on. The last line is
//! `pool: requests=<T*N> ok=<n> failed=<n> timeouts=<n> max_size=<S>`;
//! the exit status is 1 only if an answer was wrong (or crossed to
//! another caller), 2 for bad arguments.

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use netloom::{Dial, Error, Pool, PoolConfig, SeqPacker, Server};

/// The message id `rpc_server` answers at once.
const ECHO: u32 = 1;

#[derive(Debug, Clone)]
struct Opts {
    addr: String,
    threads: usize,
    requests: usize,
    size: usize,
    timeout: Duration,
}

/// What one thread saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    timeouts: u64,
    wrong: u64,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let opts = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pool_client: {e}");
            eprintln!(
                "usage: pool_client ADDR [--threads T] [--requests N] [--size S] [--timeout-ms MS]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(t) if t.wrong == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pool_client: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(o: &Opts) -> Result<Tally, Error> {
    let addr = o
        .addr
        .parse()
        .map_err(|e| Error::Config(format!("ADDR {:?}: {e}", o.addr)))?;
    // A server that only dials (no bind) hosts the pool's connections.
    let server = Server::builder()
        .packer(SeqPacker::default())
        .event_loops(1)
        .start()?;
    let config = PoolConfig {
        max_size: o.size,
        ..PoolConfig::default()
    };
    let pool = server.hub().pool([Dial::new(addr)], config)?;
    println!(
        "{} threads × {} requests through a pool of {} to {}, timeout {:?}",
        o.threads, o.requests, o.size, o.addr, o.timeout
    );
    let workers: Vec<_> = (0..o.threads)
        .map(|t| {
            let (pool, o) = (pool.clone(), o.clone());
            thread::spawn(move || worker(t, &pool, &o))
        })
        .collect();
    let mut all = Tally::default();
    for w in workers {
        let t = w
            .join()
            .map_err(|_| Error::Config("a worker panicked".into()))?;
        all.ok += t.ok;
        all.failed += t.failed;
        all.timeouts += t.timeouts;
        all.wrong += t.wrong;
    }
    let stats = pool.stats();
    println!(
        "pool stats: created {}, discarded {}, connect failures {}, waits {}, wait timeouts {}",
        stats.created, stats.discarded, stats.connect_failures, stats.waits, stats.wait_timeouts
    );
    if all.wrong > 0 {
        eprintln!(
            "pool_client: {} answers were not their request's",
            all.wrong
        );
    }
    println!(
        "pool: requests={} ok={} failed={} timeouts={} max_size={}",
        o.threads * o.requests,
        all.ok,
        all.failed,
        all.timeouts,
        o.size
    );
    drop(pool);
    server.shutdown(Duration::from_secs(2))?;
    Ok(all)
}

/// One thread's requests: even threads hold a connection per request,
/// odd ones share them.
fn worker(t: usize, pool: &Pool, o: &Opts) -> Tally {
    let mut tally = Tally::default();
    for n in 0..o.requests {
        let mut body = [0u8; 8];
        body[..4].copy_from_slice(&(t as u32).to_le_bytes());
        body[4..].copy_from_slice(&(n as u32).to_le_bytes());
        let answer = if t % 2 == 0 {
            pool.get(o.timeout)
                .and_then(|conn| conn.request(ECHO, body, o.timeout)?.wait())
        } else {
            pool.request(ECHO, body, o.timeout)
        };
        match answer {
            Ok(m) if m.id == ECHO && m.body[..] == body => tally.ok += 1,
            Ok(m) => {
                tally.wrong += 1;
                eprintln!(
                    "thread {t} request {n}: wrong answer id {} body {:?}",
                    m.id,
                    &m.body[..]
                );
            }
            Err(Error::Timeout) => tally.timeouts += 1,
            Err(_) => tally.failed += 1,
        }
    }
    tally
}

fn parse(args: Vec<String>) -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:6572".into(),
        threads: 50,
        requests: 200,
        size: 8,
        timeout: Duration::from_millis(1000),
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            it.next()
                .ok_or(format!("{name} needs a value"))?
                .parse()
                .map_err(|_| format!("{name}: not a number"))
        };
        match a.as_str() {
            "--threads" => o.threads = value("--threads")?.max(1),
            "--requests" => o.requests = value("--requests")?,
            "--size" => o.size = value("--size")?.max(1),
            "--timeout-ms" => o.timeout = Duration::from_millis(value("--timeout-ms")? as u64),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => o.addr = s.to_string(),
        }
    }
    Ok(o)
}
