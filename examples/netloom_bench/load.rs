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

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::args::{fmt_size, parse_duration, parse_size, Args};
use crate::wire::{self, Pattern, HEADER};

/// Most frames handed to one `writev`.
const WRITE_BATCH: usize = 32;
/// Read buffer of each generator thread.
const READ_BUF: usize = 256 << 10;

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
    let pattern = Arc::new(Pattern::new(cfg.size));
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

/// One connection's progress. Frames `recv_seq .. next_seq` are in flight;
/// `write_seq .. next_seq` are not fully written yet.
struct Conn {
    stream: TcpStream,
    id: u32,
    next_seq: u64,
    write_seq: u64,
    write_off: usize,
    recv_seq: u64,
    recv_off: usize,
    /// When each in-flight frame was queued (front: `recv_seq`).
    sent_at: std::collections::VecDeque<Instant>,
    writable: bool,
    dead: bool,
}

struct Worker<'p> {
    poll: Poll,
    conns: Vec<Conn>,
    pattern: &'p Pattern,
    plan: Plan,
    buf: Vec<u8>,
    tally: Tally,
    outstanding: u64,
}

impl<'p> Worker<'p> {
    fn new(streams: Vec<(u32, TcpStream)>, pattern: &'p Pattern, plan: Plan) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(streams.len());
        for (i, (id, mut stream)) in streams.into_iter().enumerate() {
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)?;
            conns.push(Conn {
                stream,
                id,
                next_seq: 0,
                write_seq: 0,
                write_off: 0,
                recv_seq: 0,
                recv_off: 0,
                sent_at: std::collections::VecDeque::with_capacity(plan.pipeline),
                writable: false,
                dead: false,
            });
        }
        Ok(Worker {
            poll,
            conns,
            pattern,
            plan,
            buf: vec![0; READ_BUF],
            tally: Tally::new(),
            outstanding: 0,
        })
    }

    fn run(mut self) -> io::Result<Tally> {
        sleep_until(self.plan.start);
        let now = Instant::now();
        for k in 0..self.conns.len() {
            for _ in 0..self.plan.pipeline {
                self.queue_frame(k, now);
            }
            self.write(k);
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= self.plan.deadline || (now >= self.plan.measure_end && self.outstanding == 0)
            {
                break;
            }
            let until = if now < self.plan.measure_end {
                self.plan.measure_end
            } else {
                self.plan.deadline
            };
            let timeout = (until - now).min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                let k = ev.token().0;
                if self.conns[k].dead {
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(k);
                }
                if !self.conns[k].dead && (ev.is_writable() || self.has_unwritten(k)) {
                    self.write(k);
                }
            }
        }
        self.tally.lost += self.outstanding;
        if self.outstanding > 0 {
            self.tally.error(format!(
                "{} frames still unanswered {:?} after the measurement",
                self.outstanding,
                self.plan.deadline - self.plan.measure_end
            ));
        }
        Ok(self.tally)
    }

    fn has_unwritten(&self, k: usize) -> bool {
        let c = &self.conns[k];
        c.write_seq < c.next_seq
    }

    fn queue_frame(&mut self, k: usize, now: Instant) {
        let c = &mut self.conns[k];
        c.next_seq += 1;
        c.sent_at.push_back(now);
        self.tally.sent += 1;
        self.outstanding += 1;
    }

    fn fail(&mut self, k: usize, why: String) {
        let c = &mut self.conns[k];
        if c.dead {
            return;
        }
        c.dead = true;
        let inflight = c.next_seq - c.recv_seq;
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.tally.conn_errors += 1;
        self.tally.lost += inflight;
        self.outstanding -= inflight;
        self.tally.error(why);
    }

    /// Read until WouldBlock, verifying every byte and completing frames.
    fn read(&mut self, k: usize) {
        loop {
            let n = match (&self.conns[k].stream).read(&mut self.buf) {
                Ok(0) => {
                    let c = &self.conns[k];
                    let why = format!(
                        "conn {}: server closed the connection with {} frames in flight",
                        c.id,
                        c.next_seq - c.recv_seq
                    );
                    return self.fail(k, why);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let why = format!("conn {}: read: {e}", self.conns[k].id);
                    return self.fail(k, why);
                }
            };
            let now = Instant::now();
            if let Err(why) = self.consume(k, n, now) {
                self.tally.mismatches += 1;
                return self.fail(k, why);
            }
            // A short read drained the socket; edge-triggered epoll reports
            // the next arrival, so skip the read that would say WouldBlock.
            if n < self.buf.len() {
                return;
            }
        }
    }

    /// Check `self.buf[..n]` against the expected echo stream.
    fn consume(&mut self, k: usize, n: usize, now: Instant) -> Result<(), String> {
        let pattern = self.pattern;
        let flen = pattern.frame_len();
        let mut data = &self.buf[..n];
        let plan = self.plan;
        let mut completed = 0;
        let mut window = 0;
        let c = &mut self.conns[k];
        while !data.is_empty() {
            if c.recv_seq >= c.next_seq {
                return Err(format!(
                    "conn {}: {} unexpected bytes after frame {}",
                    c.id,
                    data.len(),
                    c.recv_seq
                ));
            }
            if c.recv_off < HEADER {
                let head = pattern.header(c.id, c.recv_seq);
                let m = (HEADER - c.recv_off).min(data.len());
                let want = &head[c.recv_off..c.recv_off + m];
                if data[..m] != *want {
                    return Err(mismatch(c, &data[..m], want));
                }
                c.recv_off += m;
                data = &data[m..];
            }
            if c.recv_off >= HEADER && c.recv_off < flen && !data.is_empty() {
                let body = pattern.body(c.id, c.recv_seq);
                let at = c.recv_off - HEADER;
                let m = (body.len() - at).min(data.len());
                let want = &body[at..at + m];
                if data[..m] != *want {
                    return Err(mismatch(c, &data[..m], want));
                }
                c.recv_off += m;
                data = &data[m..];
            }
            if c.recv_off == flen {
                c.recv_off = 0;
                c.recv_seq += 1;
                completed += 1;
                let sent = c.sent_at.pop_front().expect("a send time per frame");
                if now >= plan.measure_start && now < plan.measure_end {
                    window += 1;
                    let _ = self
                        .tally
                        .hist
                        .record((now - sent).as_nanos().max(1) as u64);
                }
            }
        }
        self.tally.received += completed;
        self.tally.window_frames += window;
        self.outstanding -= completed;
        if now < plan.measure_end {
            for _ in 0..completed {
                self.queue_frame(k, now);
            }
        }
        Ok(())
    }

    /// Write queued frames straight from the pattern (vectored: header and
    /// body slices) until done or WouldBlock.
    fn write(&mut self, k: usize) {
        let pattern = self.pattern;
        let flen = pattern.frame_len();
        loop {
            let c = &mut self.conns[k];
            if c.write_seq == c.next_seq {
                if c.writable {
                    c.writable = false;
                    let _ = self.poll.registry().reregister(
                        &mut c.stream,
                        Token(k),
                        Interest::READABLE,
                    );
                }
                return;
            }
            let frames = ((c.next_seq - c.write_seq) as usize).min(WRITE_BATCH);
            let mut heads = [[0u8; HEADER]; WRITE_BATCH];
            for (i, h) in heads.iter_mut().enumerate().take(frames) {
                *h = pattern.header(c.id, c.write_seq + i as u64);
            }
            let mut slices = [IoSlice::new(&[]); 2 * WRITE_BATCH];
            let mut count = 0;
            for (i, head) in heads.iter().enumerate().take(frames) {
                let seq = c.write_seq + i as u64;
                let skip = if i == 0 { c.write_off } else { 0 };
                if skip < HEADER {
                    slices[count] = IoSlice::new(&head[skip..]);
                    count += 1;
                }
                let body = pattern.body(c.id, seq);
                let bskip = skip.saturating_sub(HEADER);
                if bskip < body.len() {
                    slices[count] = IoSlice::new(&body[bskip..]);
                    count += 1;
                }
            }
            let r = if count == 1 {
                (&c.stream).write(&slices[0])
            } else {
                (&c.stream).write_vectored(&slices[..count])
            };
            match r {
                Ok(0) => {
                    let why = format!("conn {}: write returned 0", c.id);
                    return self.fail(k, why);
                }
                Ok(mut n) => {
                    while n > 0 {
                        let left = flen - c.write_off;
                        if n >= left {
                            n -= left;
                            c.write_seq += 1;
                            c.write_off = 0;
                        } else {
                            c.write_off += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.writable {
                        c.writable = true;
                        let _ = self.poll.registry().reregister(
                            &mut c.stream,
                            Token(k),
                            Interest::READABLE | Interest::WRITABLE,
                        );
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("conn {}: write: {e}", c.id);
                    return self.fail(k, why);
                }
            }
        }
    }
}

fn mismatch(c: &Conn, got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
    format!(
        "conn {}: frame {} byte {}: got {:#04x}, expected {:#04x}",
        c.id,
        c.recv_seq,
        c.recv_off + at,
        got[at],
        want[at]
    )
}
