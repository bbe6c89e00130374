//! `rpc`: requests matched to replies by sequence number, netloom's
//! `ConnHandle::request_with` against a tokio client doing the same
//! correlation (see `rpc_clients.rs`) and the raw-mio floor
//! (`rpc_floor.rs`), all against the same netloom
//! server (`serve rpc`, a child pinned to the server CPUs) in one run.
//!
//! For each scenario (connections × requests in flight on each) and each
//! client, in this process pinned to the client CPUs: a warm-up, then a
//! window in which replies are counted and timed and this process's CPU
//! time is sampled (the server is another process, so it is the client's
//! alone). The report gives requests/s, **client CPU per request**, p50
//! and p99, and the netloom/tokio ratios.

use std::fmt::Write as _;
use std::time::Duration;

use crate::args::{parse_duration, Args};
use crate::child::ServerChild;
use crate::rpc_clients::{self, Meter};

/// One client's result in one scenario.
#[derive(Debug, Clone)]
struct Row {
    scenario: (usize, usize),
    kind: String,
    rps: f64,
    cpu_us_per_req: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

pub fn main(args: Args) -> Result<(), String> {
    args.check(&[
        "scenarios",
        "kinds",
        "size",
        "duration",
        "warmup",
        "repeat",
        "server-cpus",
        "client-cpus",
        "out",
    ])?;
    let scenarios = parse_scenarios(
        args.str("scenarios")
            .unwrap_or("1x1,1x16,1x256,100x1,100x16"),
    )?;
    let kinds: Vec<String> = args.list(
        "kinds",
        vec!["netloom".into(), "tokio".into(), "mio".into()],
    )?;
    let size: usize = args.get("size", 32)?;
    let duration = parse_duration(args.str("duration").unwrap_or("5s"))?;
    let warmup = parse_duration(args.str("warmup").unwrap_or("1s"))?;
    let repeat: usize = args.get("repeat", 1)?;
    let server_cpus: Vec<usize> = args.list("server-cpus", vec![0])?;
    let client_cpus: Vec<usize> = args.list("client-cpus", vec![1])?;
    crate::os::pin_current_thread(&client_cpus)
        .map_err(|e| format!("pin to {client_cpus:?}: {e}"))?;
    let _ = crate::os::raise_fd_limit();
    let server = ServerChild::spawn("rpc", 1, &server_cpus, &[])?;
    println!(
        "rpc server (netloom, SeqPacker, 1 loop) pid {} on {}, CPUs {server_cpus:?}; \
         clients on CPUs {client_cpus:?}; {size}-byte bodies, {warmup:?} warm-up, {duration:?} window",
        server.pid,
        server.addr,
    );
    let mut rows = Vec::new();
    for round in 0..repeat {
        for &(conns, in_flight) in &scenarios {
            // Alternate which client goes first, so neither always runs
            // on a warmer server.
            let mut order = kinds.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for kind in &order {
                let row = measure(kind, &server, conns, in_flight, size, warmup, duration)?;
                println!(
                    "  {:>4} conns × {:>3} in flight  {:<8} {:>9.0} req/s  {:>6.2} us CPU/req  \
                     p50 {:>7.1} us  p99 {:>7.1} us  errors {}",
                    conns,
                    in_flight,
                    row.kind,
                    row.rps,
                    row.cpu_us_per_req,
                    row.p50_us,
                    row.p99_us,
                    row.errors
                );
                rows.push(row);
            }
        }
    }
    server.stop();
    let report = report(&rows, &scenarios);
    println!("\n{report}");
    if let Some(dir) = args.str("out") {
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        let path = std::path::Path::new(dir).join("rpc.md");
        std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if rows.iter().any(|r| r.errors > 0) {
        return Err("some requests failed or got the wrong reply".into());
    }
    Ok(())
}

fn measure(
    kind: &str,
    server: &ServerChild,
    conns: usize,
    in_flight: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Row, String> {
    let meter = Meter::new(size);
    let me = std::process::id();
    let mut sample = None;
    rpc_clients::run(kind, server.addr, conns, in_flight, &meter, &mut |m| {
        std::thread::sleep(warmup); // the warm-up's length, not a synchronisation
        m.start();
        let cpu0 = crate::os::cpu_time(me);
        let t0 = std::time::Instant::now();
        std::thread::sleep(duration); // the window's length
        let cpu1 = crate::os::cpu_time(me);
        let wall = t0.elapsed();
        sample = Some((
            m.finish(),
            wall,
            cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a)),
        ));
    })?;
    let ((replies, errors, p50, p99), wall, cpu) = sample.ok_or("the window never ran")?;
    let cpu = cpu.ok_or("cannot read this process's CPU time (/proc)")?;
    Ok(Row {
        scenario: (conns, in_flight),
        kind: kind.to_string(),
        rps: replies as f64 / wall.as_secs_f64(),
        cpu_us_per_req: cpu.as_secs_f64() * 1e6 / (replies.max(1) as f64),
        p50_us: p50,
        p99_us: p99,
        errors,
    })
}

fn parse_scenarios(s: &str) -> Result<Vec<(usize, usize)>, String> {
    s.split(',')
        .map(|one| {
            let (c, f) = one
                .split_once('x')
                .ok_or(format!("scenario {one:?}: CONNSxIN_FLIGHT, e.g. 100x16"))?;
            let n = |v: &str| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad scenario {one:?}"))
            };
            Ok((n(c)?.max(1), n(f)?.max(1)))
        })
        .collect()
}

/// Medians over the rounds per scenario and client, then the ratios.
fn report(rows: &[Row], scenarios: &[(usize, usize)]) -> String {
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let pick = |sc: (usize, usize), kind: &str, f: fn(&Row) -> f64| {
        median(
            rows.iter()
                .filter(|r| r.scenario == sc && r.kind == kind)
                .map(f)
                .collect(),
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| conns × in flight | client | req/s | client CPU/req | p50 | p99 |\n|---|---|---:|---:|---:|---:|"
    );
    for &sc in scenarios {
        for kind in ["netloom", "tokio", "mio"] {
            let rps = pick(sc, kind, |r| r.rps);
            if rps.is_nan() {
                continue;
            }
            let _ = writeln!(
                out,
                "| {} × {} | {kind} | {:.0} | {:.2} µs | {:.0} µs | {:.0} µs |",
                sc.0,
                sc.1,
                rps,
                pick(sc, kind, |r| r.cpu_us_per_req),
                pick(sc, kind, |r| r.p50_us),
                pick(sc, kind, |r| r.p99_us)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| conns × in flight | CPU/req netloom/tokio | p99 netloom/tokio | req/s netloom/tokio \
         | CPU/req netloom/mio | CPU/req tokio/mio |\n|---|---:|---:|---:|---:|---:|"
    );
    for &sc in scenarios {
        let ratio = |a: &str, b: &str, f: fn(&Row) -> f64| pick(sc, a, f) / pick(sc, b, f);
        let cpu = |r: &Row| r.cpu_us_per_req;
        let _ = writeln!(
            out,
            "| {} × {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            sc.0,
            sc.1,
            ratio("netloom", "tokio", cpu),
            ratio("netloom", "tokio", |r| r.p99_us),
            ratio("netloom", "tokio", |r| r.rps),
            ratio("netloom", "mio", cpu),
            ratio("tokio", "mio", cpu),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_bad_ones_are_errors() {
        assert_eq!(parse_scenarios("1x16, 100x1").unwrap(), [(1, 16), (100, 1)]);
        assert!(parse_scenarios("16").is_err());
        assert!(parse_scenarios("ax1").is_err());
    }
}
