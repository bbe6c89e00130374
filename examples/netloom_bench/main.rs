//! netloom's benchmark tool: echo servers (netloom, a raw mio floor, tokio),
//! an echo load generator that verifies every byte, side-by-side
//! comparisons, idle-connection memory and heartbeat cost, and
//! request/response against a tokio client.
//!
//! ```text
//! cargo build --release --example netloom_bench
//! B=target/release/examples/netloom_bench
//! $B compare --quick --out docs/bench         # all three servers, ratios, charts
//! $B idle --conns 1000,10000,19000 --heartbeat --out docs/bench
//! $B rpc --repeat 3 --out docs/bench            # request/response vs tokio
//! $B serve netloom --loops 2                  # prints LISTENING <addr>; stops at stdin EOF
//! $B load --addr 127.0.0.1:PORT --conns 1000 --pipeline 16 --size 64 --duration 5s
//! ```
//!
//! See docs/BENCHMARKS.md for what each number means. Linux only (it reads
//! /proc and pins threads with sched_setaffinity).

mod args;
mod chart;
mod child;
mod compare;
// Shared with examples/c1000k.rs, which uses parts this binary does not.
#[allow(dead_code)]
mod fleet;
mod idle;
mod load;
#[allow(dead_code)]
mod os;
mod pool;
mod rpc;
mod rpc_clients;
mod rpc_floor;
mod serve;
mod serve_exec;
mod serve_tokio;
// The JSON kinds need the `json` feature (`--features json`).
#[cfg(feature = "json")]
mod serve_json;
mod wire;

use args::Args;

const USAGE: &str = "\
usage: netloom_bench <command> [options]

  serve <netloom|netloom-pool|netloom-single|rpc|mio|tokio|tokio-blocking> [--addr 127.0.0.1:0] [--loops N] [--heartbeat CHECK,IDLE]
        [--busy-poll DUR] [--cpus LIST]
        run one echo server; prints `LISTENING <addr>`, exits when stdin closes
  load --addr A [--conns C] [--pipeline P] [--size S] [--duration D] [--warmup W]
       [--sources N] [--threads T] [--cpus LIST] [--inflight-budget BYTES]
        echo load generator; verifies every byte; non-zero exit on mismatch or loss
  compare [--quick] [--json] [--scenario FILTER] [--loops L] [--conns C] [--pipeline P] [--size S]
          [--duration D] [--kinds netloom,mio,tokio] [--repeat R] [--out DIR]
          [--server-cpus 0] [--load-cpus 1] [--busy-poll DUR]
        every scenario against every server, side by side, with ratios and charts
        (--busy-poll: netloom's Builder::busy_poll, e.g. 50us; off by default)
  idle [--conns 1000,10000,19000] [--kinds netloom,mio,tokio] [--heartbeat] [--out DIR]
       [--ping-interval 10s] [--hb-check 1s] [--measure 20s] [--busy-poll DUR]
        server RSS per idle connection; with --heartbeat, server CPU with idle
        connections that ping (heartbeat off vs on; --busy-poll for netloom there)
  rpc [--scenarios 1x1,1x16,1x256,100x1,100x16] [--kinds netloom,tokio,mio] [--size 32]
      [--duration 5s] [--warmup 1s] [--repeat R] [--server-cpus 0] [--client-cpus 1] [--out DIR]
        request/response matched by sequence number: netloom's request against a
        tokio Framed + map-of-oneshots client and a raw-mio floor, same netloom
        server (`serve rpc`); req/s, client CPU per request, p50/p99, ratios
  pool [--callers 64] [--pool 8] [--kinds netloom-get,netloom-request,deadpool] [--size 32]
       [--duration 5s] [--warmup 1s] [--repeat R] [--server-cpus 0] [--client-cpus 1] [--out DIR]
        requests through a pool of 8 from 64 callers: netloom's Pool (get, request)
        against tokio + deadpool, same netloom server; req/s, CPU/req, p50/p99, ratios
";

fn main() {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let rest: Vec<String> = argv.collect();
    let result = match cmd.as_str() {
        "serve" => Args::parse(rest, &[]).and_then(serve::main),
        "load" => Args::parse(rest, &["json"]).and_then(load::main),
        "compare" => Args::parse(rest, &["quick", "json"]).and_then(compare::main),
        "idle" => Args::parse(rest, &["heartbeat", "no-touch"]).and_then(idle::main),
        "rpc" => Args::parse(rest, &[]).and_then(rpc::main),
        "pool" => Args::parse(rest, &[]).and_then(pool::main),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command {cmd:?}\n\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("netloom_bench: {e}");
        std::process::exit(1);
    }
}
