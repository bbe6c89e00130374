//! `idle`: what idle connections cost a server.
//!
//! * Memory: for each server kind and each N, a fresh server child; its
//!   VmRSS is read, N connections are opened (each sends one PING and gets
//!   its echo, so every connection has really been served once), and once
//!   the server holds N more descriptors and has settled, VmRSS is read
//!   again: (after − before) / N is the server's user-space bytes per idle
//!   connection. Kernel socket memory is not in RSS and not counted.
//! * Heartbeat (`--heartbeat`, at the largest N): the server's CPU use
//!   while N connections each send a PING every `--ping-interval`: every
//!   kind without a heartbeat (what the pings alone cost), then netloom
//!   with its heartbeat on (check every `--hb-check`, idle timeout 3 × ping
//!   interval), measured over `--measure` after one idle timeout of
//!   warm-up so the wheel is in its steady state.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::args::{parse_duration, Args};
use crate::chart;
use crate::child::ServerChild;
use crate::compare::label;
use crate::fleet::{self, ConnectPlan};

struct MemRow {
    kind: String,
    target: usize,
    conns: usize,
    rss_before: u64,
    rss_after: u64,
    answered: usize,
    note: String,
}

impl MemRow {
    fn per_conn(&self) -> f64 {
        if self.conns == 0 {
            return f64::NAN;
        }
        (self.rss_after as f64 - self.rss_before as f64) / self.conns as f64
    }
}

struct HbRow {
    kind: String,
    heartbeat: bool,
    conns: usize,
    cpu_pct: f64,
    pings: u64,
    closed: u64,
    secs: f64,
}

pub fn main(args: Args) -> Result<(), String> {
    args.check(&[
        "conns",
        "kinds",
        "loops",
        "sources",
        "heartbeat",
        "no-touch",
        "ping-interval",
        "hb-check",
        "measure",
        "out",
        "server-cpus",
        "load-cpus",
        "busy-poll",
    ])?;
    let counts: Vec<usize> = args.list("conns", vec![1000, 10000, 19000])?;
    let kinds: Vec<String> = args.list(
        "kinds",
        vec!["mio".to_string(), "tokio".into(), "netloom".into()],
    )?;
    let loops: usize = args.get("loops", 1)?;
    let sources: Option<usize> = args
        .str("sources")
        .map(str::parse)
        .transpose()
        .map_err(|_| "bad --sources")?;
    let touch = !args.flag("no-touch");
    let out = PathBuf::from(args.str("out").unwrap_or("docs/bench"));
    let server_cpus: Vec<usize> = args.list(
        "server-cpus",
        if crate::os::cpus() >= 2 {
            vec![0]
        } else {
            vec![]
        },
    )?;
    let load_cpus: Vec<usize> = args.list(
        "load-cpus",
        if crate::os::cpus() >= 2 {
            vec![1]
        } else {
            vec![]
        },
    )?;
    // This thread connects and holds the connections: keep it off the
    // server's CPU (children re-pin themselves with --cpus).
    crate::os::pin_current_thread(&load_cpus).map_err(|e| format!("pin: {e}"))?;
    let (soft, hard) = crate::os::raise_fd_limit().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    let max = counts.iter().copied().max().unwrap_or(0);
    if max as u64 + 64 > soft {
        eprintln!(
            "idle: warning: this process may open {soft} descriptors (hard limit {hard}); \
             {max} connections will stop at the fd limit (EMFILE)"
        );
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let command = format!(
        "netloom_bench {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    println!("# {command}");
    println!("# machine: {}", crate::os::machine());
    println!(
        "{:<11} {:>7} {:>9} {:>12} {:>12} {:>10} {:>9}",
        "server", "conns", "answered", "RSS before", "RSS after", "B/conn", ""
    );
    let mut rows = Vec::new();
    for kind in &kinds {
        for &n in &counts {
            let row = memory_one(
                kind,
                loops,
                n,
                sources.unwrap_or(crate::wire::auto_sources(n)),
                touch,
                &server_cpus,
            )?;
            println!(
                "{:<11} {:>7} {:>9} {:>11.1}M {:>11.1}M {:>10.0} {}",
                label(kind),
                row.conns,
                row.answered,
                row.rss_before as f64 / (1 << 20) as f64,
                row.rss_after as f64 / (1 << 20) as f64,
                row.per_conn(),
                row.note
            );
            rows.push(row);
        }
    }

    let mut hb_rows = Vec::new();
    if args.flag("heartbeat") {
        let every = parse_duration(args.str("ping-interval").unwrap_or("10s"))?;
        let check = parse_duration(args.str("hb-check").unwrap_or("1s"))?;
        let measure = parse_duration(args.str("measure").unwrap_or("20s"))?;
        let busy_poll = parse_duration(args.str("busy-poll").unwrap_or("0s"))?;
        println!();
        println!(
            "heartbeat: {max} connections, each sends a PING every {every:?}; \
             heartbeat check every {check:?}, idle timeout {:?}; CPU over {measure:?}",
            every * 3
        );
        if !busy_poll.is_zero() {
            println!("  netloom with busy_poll {busy_poll:?} (the other servers as always)");
        }
        // The same ping traffic on every kind (the floor and tokio have no
        // heartbeat: they show what the pings alone cost), then netloom
        // with its heartbeat on.
        let mut variants: Vec<(String, bool)> = kinds.iter().map(|k| (k.clone(), false)).collect();
        if kinds.iter().any(|k| k == "netloom") {
            variants.push(("netloom".into(), true));
        }
        for (kind, hb) in variants {
            let srcs = sources.unwrap_or(crate::wire::auto_sources(max));
            let spin = if kind == "netloom" {
                busy_poll
            } else {
                Duration::ZERO
            };
            let timing = HbTiming {
                every,
                check,
                measure,
                busy_poll: spin,
            };
            let r = heartbeat_one(&kind, hb, max, srcs, &timing, &server_cpus)?;
            println!(
                "  {:<11} heartbeat {:<3}: {} conns, server CPU {:.2}% of a core ({} pings, {} closed)",
                label(&kind),
                if hb { "on" } else { "off" },
                r.conns,
                r.cpu_pct,
                r.pings,
                r.closed
            );
            hb_rows.push(r);
        }
        let find = |hb: bool| {
            hb_rows
                .iter()
                .find(|r| r.kind == "netloom" && r.heartbeat == hb)
                .map(|r| r.cpu_pct)
        };
        if let (Some(off), Some(on)) = (find(false), find(true)) {
            println!(
                "  heartbeat's own cost: {:+.2}% of a core (netloom on - off)",
                on - off
            );
        }
    }
    write_outputs(&out, &command, &rows, &hb_rows)?;
    println!("results: {}", out.display());
    Ok(())
}

fn memory_one(
    kind: &str,
    loops: usize,
    n: usize,
    sources: usize,
    touch: bool,
    cpus: &[usize],
) -> Result<MemRow, String> {
    let child = ServerChild::spawn(kind, loops, cpus, &[])?;
    let pid = child.pid;
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = crate::os::rss(pid).ok_or("cannot read the server's RSS")?;
    let fds_before = crate::os::fd_count(pid).unwrap_or(0);
    let mut fleet = fleet::connect(&plan(child.addr, n, sources), &mut |p| {
        eprintln!(
            "  {kind}: connected {}/{} ({:.0}/s), errors {}",
            p.connected, p.target, p.rate, p.errors
        )
    });
    let mut note = String::new();
    if let Some((blame, e)) = &fleet.stopped {
        let _ = write!(note, "stopped at {} ({blame:?}: {e})", fleet.streams.len());
    }
    let conns = fleet.streams.len();
    let answered = if touch {
        fleet::ping_all(&mut fleet.streams, Duration::from_secs(30)).map_err(|e| e.to_string())?
    } else {
        conns
    };
    // Wait (bounded) until the server holds every connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::os::fd_count(pid).unwrap_or(0) < fds_before + conns && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = crate::os::rss(pid).ok_or("cannot read the server's RSS")?;
    drop(fleet);
    child.stop();
    Ok(MemRow {
        kind: kind.to_string(),
        target: n,
        conns,
        rss_before,
        rss_after,
        answered,
        note,
    })
}

fn plan(addr: std::net::SocketAddr, conns: usize, sources: usize) -> ConnectPlan {
    ConnectPlan {
        addr,
        conns,
        sources,
        timeout: Duration::from_secs(5),
        max_time: Duration::from_secs(120),
        max_consecutive_errors: 100,
    }
}

/// The heartbeat run's timing: ping interval, heartbeat check, measurement
/// window, and the server's busy polling (netloom only; zero: off).
struct HbTiming {
    every: Duration,
    check: Duration,
    measure: Duration,
    busy_poll: Duration,
}

fn heartbeat_one(
    kind: &str,
    heartbeat: bool,
    n: usize,
    sources: usize,
    timing: &HbTiming,
    cpus: &[usize],
) -> Result<HbRow, String> {
    let HbTiming {
        every,
        check,
        measure,
        busy_poll,
    } = *timing;
    let idle = every * 3;
    let mut extra = Vec::new();
    if heartbeat {
        extra.push("--heartbeat".to_string());
        extra.push(format!("{}ms,{}ms", check.as_millis(), idle.as_millis()));
    }
    if !busy_poll.is_zero() {
        extra.push("--busy-poll".to_string());
        extra.push(format!("{}us", busy_poll.as_micros()));
    }
    let child = ServerChild::spawn(kind, 1, cpus, &extra)?;
    let pid = child.pid;
    let mut fleet = fleet::connect(&plan(child.addr, n, sources), &mut |p| {
        eprintln!("  connected {}/{} ({:.0}/s)", p.connected, p.target, p.rate)
    });
    // Warm up for one idle timeout, so every connection's heartbeat entry
    // has fired and been rescheduled at least once (steady state).
    let warm = if heartbeat { idle } else { every };
    eprintln!("  warming up for {warm:?}");
    let w = fleet::hold(&mut fleet.streams, warm, Some(every), &mut |_| {})
        .map_err(|e| e.to_string())?;
    let cpu0 = crate::os::cpu_time(pid).ok_or("cannot read the server's CPU time")?;
    let t0 = Instant::now();
    let r = fleet::hold(&mut fleet.streams, measure, Some(every), &mut |_| {})
        .map_err(|e| e.to_string())?;
    let cpu1 = crate::os::cpu_time(pid).ok_or("cannot read the server's CPU time")?;
    let secs = t0.elapsed().as_secs_f64();
    let conns = fleet.streams.len();
    drop(fleet);
    child.stop();
    Ok(HbRow {
        kind: kind.to_string(),
        heartbeat,
        conns,
        cpu_pct: 100.0 * cpu1.saturating_sub(cpu0).as_secs_f64() / secs,
        pings: r.pings,
        closed: r.closed + w.closed,
        secs,
    })
}

fn write_outputs(
    out: &std::path::Path,
    command: &str,
    rows: &[MemRow],
    hb: &[HbRow],
) -> Result<(), String> {
    let w = |name: &str, text: &str| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut csv = String::from(
        "server,target_conns,conns,answered,rss_before_bytes,rss_after_bytes,bytes_per_conn,note\n",
    );
    let mut md = format!(
        "<!-- generated by `{command}` -->\n\nMachine: {}\n\n\
         | server | connections | answered | RSS before | RSS after | bytes per idle connection |\n\
         |---|---:|---:|---:|---:|---:|\n",
        crate::os::machine()
    );
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{:.1},{:?}",
            r.kind,
            r.target,
            r.conns,
            r.answered,
            r.rss_before,
            r.rss_after,
            r.per_conn(),
            r.note
        );
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.0}{} |",
            label(&r.kind),
            r.conns,
            r.answered,
            r.rss_before as f64 / (1 << 20) as f64,
            r.rss_after as f64 / (1 << 20) as f64,
            r.per_conn(),
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.note)
            }
        );
    }
    w("idle.csv", &csv)?;
    if !hb.is_empty() {
        let mut h = String::from("server,heartbeat,conns,server_cpu_pct,pings,closed,secs\n");
        md.push_str(
            "\n| server | heartbeat | connections | pings sent | server CPU (% of a core) |\n|---|---|---:|---:|---:|\n",
        );
        for r in hb {
            let _ = writeln!(
                h,
                "{},{},{},{:.3},{},{},{:.1}",
                r.kind, r.heartbeat, r.conns, r.cpu_pct, r.pings, r.closed, r.secs
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2}% |",
                label(&r.kind),
                if r.heartbeat { "on" } else { "off" },
                r.conns,
                r.pings,
                r.cpu_pct
            );
        }
        w("heartbeat.csv", &h)?;
    }
    w("idle.md", &md)?;

    let mut series: Vec<chart::Series> = Vec::new();
    for r in rows {
        let name = label(&r.kind).to_string();
        let pt = (r.conns as f64, r.per_conn());
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push(pt),
            None => series.push((name, vec![pt])),
        }
    }
    for (_, pts) in &mut series {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    chart::log_log(
        &out.join("rss-per-conn.svg"),
        "Server RSS per idle connection",
        "connections",
        "bytes per connection",
        &series,
    )?;
    let totals: Vec<chart::Series> = kinds_in(rows)
        .into_iter()
        .map(|k| {
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| label(&r.kind) == k)
                .map(|r| (r.conns as f64, r.rss_after as f64 / (1 << 20) as f64))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, pts)
        })
        .collect();
    chart::log_log(
        &out.join("rss.svg"),
        "Server RSS with N idle connections",
        "connections",
        "server RSS (MiB)",
        &totals,
    )
}

fn kinds_in(rows: &[MemRow]) -> Vec<String> {
    let mut k: Vec<String> = Vec::new();
    for r in rows {
        let l = label(&r.kind).to_string();
        if !k.contains(&l) {
            k.push(l);
        }
    }
    k
}
