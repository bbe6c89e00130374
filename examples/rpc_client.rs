//! Many threads sending requests over connections the loops dialed, many
//! in flight at once, every reply checked against its request.
//!
//! ```text
//! cargo run --release --example rpc_server &
//! cargo run --release --example rpc_client -- 127.0.0.1:6572
//! cargo run --release --example rpc_client -- 127.0.0.1:6572 --threads 64 --in-flight 100 --requests 200000
//! cargo run --release --example rpc_client -- 127.0.0.1:6572 --slow-every 50   # some time out
//! ```
//!
//! Options: `--conns N` (connections, shared by the threads round-robin;
//! default 1), `--threads N` (8), `--in-flight N` (requests each thread
//! keeps in flight; 16), `--requests N` (in all; 100000), `--size BYTES`
//! (body size; 32), `--timeout-ms N` (1000), `--slow-every N` (every Nth
//! request asks `rpc_server` to answer it after twice the timeout, so it
//! times out; 0: none). Ends with one summary line; exits with status 1
//! if any reply was not its request's (or nothing was answered).

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use netloom::{ConnHandle, Error, SeqPacker, Server};

/// Message id answered at once by `rpc_server`, and the one it answers
/// after the body's milliseconds.
const ECHO: u32 = 1;
const SLOW: u32 = 2;

#[derive(Debug, Clone)]
struct Opts {
    addr: String,
    conns: usize,
    threads: usize,
    in_flight: usize,
    requests: usize,
    size: usize,
    timeout: Duration,
    slow_every: usize,
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    timed_out: u64,
    failed: u64,
    mismatched: u64,
    micros: Vec<u32>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let opts = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rpc_client: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(t) if t.mismatched == 0 && t.ok > 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rpc_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Opts) -> Result<Tally, Error> {
    // A server that only dials: no bind.
    let client = Server::builder()
        .packer(SeqPacker::default())
        .event_loops(1)
        .start()?;
    let conns: Vec<ConnHandle> = (0..o.conns)
        .map(|_| client.hub().connect(o.addr.as_str()))
        .collect::<Result<_, _>>()?;
    println!(
        "{} threads × {} in flight over {} connection(s) to {}: {} requests of {} bytes, timeout {:?}",
        o.threads, o.in_flight, o.conns, o.addr, o.requests, o.size, o.timeout
    );
    let started = Instant::now();
    let workers: Vec<_> = (0..o.threads)
        .map(|t| {
            let (conn, o) = (conns[t % conns.len()].clone(), o.clone());
            let share = o.requests / o.threads + usize::from(t < o.requests % o.threads);
            thread::spawn(move || worker(t, share, &conn, &o))
        })
        .collect();
    let mut all = Tally::default();
    for w in workers {
        let t = w
            .join()
            .map_err(|_| Error::Config("a worker panicked".into()))?;
        all.ok += t.ok;
        all.timed_out += t.timed_out;
        all.failed += t.failed;
        all.mismatched += t.mismatched;
        all.micros.extend(t.micros);
    }
    let took = started.elapsed();
    all.micros.sort_unstable();
    let q = |p: f64| {
        let i = ((all.micros.len() as f64 - 1.0) * p).round() as usize;
        all.micros.get(i).copied().unwrap_or(0)
    };
    let stats = client.stats();
    println!(
        "requests {}: ok {}, timed out {}, failed {}, mismatched {}; {:.0} req/s; \
         p50 {} us, p99 {} us; late replies dropped {}",
        o.requests,
        all.ok,
        all.timed_out,
        all.failed,
        all.mismatched,
        all.ok as f64 / took.as_secs_f64(),
        q(0.50),
        q(0.99),
        stats.late_replies
    );
    client.shutdown(Duration::from_secs(2))?;
    Ok(all)
}

/// One thread: windows of `in_flight` requests, sent together, then each
/// reply waited for and checked.
fn worker(t: usize, count: usize, conn: &ConnHandle, o: &Opts) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0;
    while n < count {
        let window: Vec<_> = (n..count.min(n + o.in_flight))
            .map(|i| {
                let slow = o.slow_every > 0 && (t * count + i) % o.slow_every == 0;
                let (id, body) = if slow {
                    (SLOW, format!("{}", o.timeout.as_millis() * 2).into_bytes())
                } else {
                    (ECHO, body(t, i, o.size))
                };
                let sent = Instant::now();
                (id, conn.request(id, &body, o.timeout), body, sent)
            })
            .collect();
        n += window.len();
        for (id, pending, body, sent) in window {
            match pending.and_then(|p| p.wait()) {
                Ok(reply) if reply.id == id && reply.body == body => {
                    tally.ok += 1;
                    let us = sent.elapsed().as_micros();
                    tally.micros.push(us.min(u128::from(u32::MAX)) as u32);
                }
                Ok(reply) => {
                    tally.mismatched += 1;
                    eprintln!(
                        "mismatch: sent id {id} body {:?}, got id {} body {:?}",
                        String::from_utf8_lossy(&body),
                        reply.id,
                        String::from_utf8_lossy(&reply.body)
                    );
                }
                Err(Error::Timeout) => tally.timed_out += 1,
                Err(e) => {
                    if tally.failed == 0 {
                        eprintln!("thread {t}: {e}");
                    }
                    tally.failed += 1;
                }
            }
        }
    }
    tally
}

/// A body unique to (thread, request), padded to `size` bytes.
fn body(t: usize, i: usize, size: usize) -> Vec<u8> {
    let mut b = format!("{t}:{i}:").into_bytes();
    b.resize(size.max(b.len()), b'.');
    b
}

fn parse(args: Vec<String>) -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:6572".into(),
        conns: 1,
        threads: 8,
        in_flight: 16,
        requests: 100_000,
        size: 32,
        timeout: Duration::from_millis(1000),
        slow_every: 0,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if !a.starts_with("--") {
            o.addr = a;
            continue;
        }
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        let n: usize = v.parse().map_err(|_| format!("bad value for {a}: {v}"))?;
        match a.as_str() {
            "--conns" => o.conns = n.max(1),
            "--threads" => o.threads = n.max(1),
            "--in-flight" => o.in_flight = n.max(1),
            "--requests" => o.requests = n,
            "--size" => o.size = n,
            "--timeout-ms" => o.timeout = Duration::from_millis(n as u64),
            "--slow-every" => o.slow_every = n,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}
