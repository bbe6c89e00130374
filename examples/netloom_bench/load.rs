//! `load`: the echo load generator.
//!
//! C connections, each keeping P frames of S-byte bodies in flight
//! (closed loop: a new frame leaves as soon as an echo completes). Every
//! echoed byte is checked against what was sent (header and body: see
//! `wire`), round trips go into an HDR histogram, and the run fails on any
//! mismatch, unexpected close or frame still missing after the drain.
//!
//! Phases: connect → warm-up (not counted) → measurement (D) → drain (no
//! new frames; in-flight ones must come back within the bound).
//!
//! In-flight bytes are capped: P is lowered so that C × P × (S + 8) stays
//! within `--inflight-budget` (default 256 MiB), never below 1. The report
//! says which P was used.
//!
//! This file: what to run, the run itself (connect, the phases, the
//! report) and the counts merged from the generator threads.
//! `load/worker.rs`: one generator thread, its connections' state and the
//! check of every echoed byte.

mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;

use crate::args::{fmt_size, parse_duration, parse_size, Args};
use crate::wire::{self, Pattern, HEADER};
use worker::Worker;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub conns: usize,
    pub pipeline: usize,
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Bound on waiting for in-flight frames after the measurement.
    pub drain: Duration,
    /// Spread source addresses over 127.0.0.2 .. 127.0.0.(1+sources);
    /// 0: let the kernel pick.
    pub sources: usize,
    pub threads: usize,
    /// CPUs for the generator threads (empty: no pinning).
    pub cpus: Vec<usize>,
    pub inflight_budget: usize,
    pub connect_timeout: Duration,
    pub quiet: bool,
    /// Bodies are JSON texts of a three-field struct (`Pattern::json`).
    pub json: bool,
}

impl LoadConfig {
    /// P after the in-flight cap.
    pub fn effective_pipeline(&self) -> usize {
        let per_frame = (self.size + HEADER) * self.conns.max(1);
        self.pipeline.min((self.inflight_budget / per_frame).max(1))
    }
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub conns: usize,
    pub pipeline: usize,
    pub size: usize,
    /// Echoes completed inside the measurement window.
    pub frames: u64,
    pub secs: f64,
    pub frames_per_sec: f64,
    /// Echoed bytes per second, one direction, headers included.
    pub mb_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Frames sent and echoes received over the whole run.
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub mismatches: u64,
    pub conn_errors: u64,
    pub first_error: Option<String>,
    /// CPU time of the generator process inside the window.
    pub gen_cpu_secs: f64,
    pub connect_secs: f64,
}

impl LoadReport {
    /// No mismatch, no lost frame, no broken connection.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.mismatches == 0 && self.conn_errors == 0
    }
}

/// Moments the caller may hook (e.g. to sample the server's CPU time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connected,
    MeasureStart,
    MeasureEnd,
}

pub fn main(args: Args) -> Result<(), String> {
    args.check(&[
        "addr",
        "conns",
        "pipeline",
        "size",
        "duration",
        "warmup",
        "drain",
        "sources",
        "threads",
        "cpus",
        "inflight-budget",
        "json",
    ])?;
    let cfg = LoadConfig {
        addr: args
            .str("addr")
            .ok_or("--addr is required")?
            .parse()
            .map_err(|e| format!("--addr: {e}"))?,
        conns: args.get("conns", 100)?,
        pipeline: args.get("pipeline", 1)?,
        size: parse_size(args.str("size").unwrap_or("64"))?,
        duration: parse_duration(args.str("duration").unwrap_or("5s"))?,
        warmup: parse_duration(args.str("warmup").unwrap_or("500ms"))?,
        drain: parse_duration(args.str("drain").unwrap_or("5s"))?,
        sources: match args.str("sources") {
            Some(v) => v.parse().map_err(|_| "bad --sources")?,
            None => wire::auto_sources(args.get("conns", 100)?),
        },
        threads: args.get("threads", 1)?,
        cpus: args.list("cpus", Vec::new())?,
        inflight_budget: parse_size(args.str("inflight-budget").unwrap_or("256MiB"))?,
        connect_timeout: Duration::from_secs(5),
        quiet: false,
        json: args.flag("json"),
    };
    let _ = crate::os::raise_fd_limit();
    let r = run(&cfg, &mut |_| {})?;
    println!("load: connected {} in {:.2}s", cfg.conns, r.connect_secs);
    println!(
        "load: {} conns x P={} x {} for {:.1}s: {:.0} frames/s, {:.1} MB/s, \
         rtt p50 {:.0} us, p99 {:.0} us, p999 {:.0} us, max {:.0} us; \
         sent {} received {} lost {} mismatches {} conn errors {}; generator CPU {:.0}%",
        r.conns,
        r.pipeline,
        fmt_size(r.size),
        r.secs,
        r.frames_per_sec,
        r.mb_per_sec,
        r.p50_us,
        r.p99_us,
        r.p999_us,
        r.max_us,
        r.sent,
        r.received,
        r.lost,
        r.mismatches,
        r.conn_errors,
        100.0 * r.gen_cpu_secs / r.secs.max(1e-9),
    );
    if let Some(e) = &r.first_error {
        eprintln!("load: first error: {e}");
    }
    if r.ok() {
        Ok(())
    } else {
        Err("load: FAILED (mismatch, lost frame or broken connection)".into())
    }
}

/// Connect, run, drain; `hook` is called at each [`Phase`] from the
/// calling thread.
pub fn run(cfg: &LoadConfig, hook: &mut dyn FnMut(Phase)) -> Result<LoadReport, String> {
    let pipeline = cfg.effective_pipeline();
    let pattern = Arc::new(if cfg.json {
        Pattern::json(cfg.size)
    } else {
        Pattern::new(cfg.size)
    });
    let threads = cfg.threads.clamp(1, cfg.conns.max(1));

    // Connect from the generator's CPUs: a connecting thread that shares
    // the server's core can outrun its accept loop and overflow the backlog.
    if let Err(e) = crate::os::pin_current_thread(&cfg.cpus) {
        eprintln!("load: cannot pin to CPUs {:?}: {e}", cfg.cpus);
    }
    let t0 = Instant::now();
    let mut per_thread: Vec<Vec<(u32, TcpStream)>> = (0..threads).map(|_| Vec::new()).collect();
    let mut last_progress = Instant::now();
    for i in 0..cfg.conns {
        let s = wire::connect(cfg.addr, i, cfg.sources, cfg.connect_timeout).map_err(|e| {
            let (name, _) = wire::classify(&e);
            format!("connect #{i} to {} failed ({name}): {e}", cfg.addr)
        })?;
        per_thread[i % threads].push((i as u32, TcpStream::from_std(s)));
        if !cfg.quiet && last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("load: connected {}/{}", i + 1, cfg.conns);
            last_progress = Instant::now();
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    hook(Phase::Connected);

    let start = Instant::now() + Duration::from_millis(20);
    let plan = Plan {
        start,
        measure_start: start + cfg.warmup,
        measure_end: start + cfg.warmup + cfg.duration,
        deadline: start + cfg.warmup + cfg.duration + cfg.drain,
        pipeline,
    };
    let mut handles = Vec::new();
    for (t, conns) in per_thread.into_iter().enumerate() {
        let pattern = pattern.clone();
        let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[t % cfg.cpus.len()]);
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = crate::os::pin_current_thread(&[cpu]) {
                        eprintln!("load: cannot pin to CPU {cpu}: {e}");
                    }
                }
                Worker::new(conns, &pattern, plan).and_then(|w| w.run())
            })
            .map_err(|e| format!("spawn generator thread: {e}"))?;
        handles.push(h);
    }

    sleep_until(plan.measure_start);
    hook(Phase::MeasureStart);
    let me = std::process::id();
    let cpu0 = crate::os::cpu_time(me);
    sleep_until(plan.measure_end);
    let cpu1 = crate::os::cpu_time(me);
    hook(Phase::MeasureEnd);

    let mut total = Tally::new();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| "generator thread panicked".to_string())?
            .map_err(|e| format!("generator: {e}"))?;
        total.merge(t);
    }
    let secs = cfg.duration.as_secs_f64();
    let q = |p: f64| total.hist.value_at_quantile(p) as f64 / 1000.0;
    Ok(LoadReport {
        conns: cfg.conns,
        pipeline,
        size: cfg.size,
        frames: total.window_frames,
        secs,
        frames_per_sec: total.window_frames as f64 / secs,
        mb_per_sec: total.window_frames as f64 * pattern.frame_len() as f64 / secs / 1e6,
        p50_us: q(0.50),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: total.hist.max() as f64 / 1000.0,
        sent: total.sent,
        received: total.received,
        lost: total.lost,
        mismatches: total.mismatches,
        conn_errors: total.conn_errors,
        first_error: total.first_error,
        gen_cpu_secs: match (cpu0, cpu1) {
            (Some(a), Some(b)) => (b.saturating_sub(a)).as_secs_f64(),
            _ => 0.0,
        },
        connect_secs,
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    start: Instant,
    measure_start: Instant,
    measure_end: Instant,
    deadline: Instant,
    pipeline: usize,
}

/// One worker's counts.
struct Tally {
    hist: Histogram<u64>,
    window_frames: u64,
    sent: u64,
    received: u64,
    lost: u64,
    mismatches: u64,
    conn_errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            // Nanoseconds, 1 ns .. 100 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
            window_frames: 0,
            sent: 0,
            received: 0,
            lost: 0,
            mismatches: 0,
            conn_errors: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, o: Tally) {
        let _ = self.hist.add(&o.hist);
        self.window_frames += o.window_frames;
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.mismatches += o.mismatches;
        self.conn_errors += o.conn_errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn error(&mut self, e: String) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}
