//! The in-process clients: steady echo clients on every transport, honest
//! full-speed clients on every stream transport, churn (connections opened
//! and closed continuously) and a crowd of idle connections. Each is a
//! thread that runs until `stop` is set, checks every echo, and counts
//! what happened in `Counts`. Every wait is bounded (`conns::IO_TIMEOUT`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::conns::{Conn, Failure, Targets, Transport};

/// A client's role: the first byte of each body it sends, so that the
/// server's `on_close` can tell whose connection it closed.
pub mod role {
    pub const ECHO: u8 = b'E';
    pub const HONEST: u8 = b'H';
    pub const CHURN: u8 = b'C';
    pub const IDLE: u8 = b'I';
    pub const SLOW: u8 = b'S';
}

macro_rules! counts {
    ($($name:ident),* $(,)?) => {
        /// The clients' side of the story, counted as it happens.
        #[derive(Debug, Default)]
        pub struct Counts { $(pub $name: AtomicU64,)* }
        impl Counts {
            /// Every count by name, in a fixed order (the CSV's columns).
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Relaxed)),)*]
            }
        }
    };
}

counts!(
    echo_ok,
    echo_err,
    echo_wrong,
    honest_ok,
    honest_err,
    honest_wrong,
    churn_ok,
    churn_err,
    idle_ok,
    idle_err,
    udp_ok,
    udp_lost,
    udp_err,
    slow_opened,
    slow_closed,
    slow_unclosed,
    slow_err,
    dial_ok,
    dial_err,
    pool_ok,
    pool_err,
);

/// Shared by every client thread.
#[derive(Clone)]
pub struct Ctx {
    pub targets: Targets,
    pub counts: Arc<Counts>,
    pub stop: Arc<AtomicBool>,
    /// First few failures, for the report.
    pub failures: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Ctx {
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    pub fn note(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 20 {
            f.push(what);
        }
    }

    /// Sleep `d` in steps, ending early once stopped.
    pub fn pause(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stopped() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// A body: the role byte, a counter, then a pattern of `len` bytes in all.
pub fn body(role: u8, n: u64, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len.max(9));
    b.push(role);
    b.extend_from_slice(&n.to_le_bytes());
    let fill = (n as u8).wrapping_mul(31);
    b.extend((b.len()..len).map(|i| fill.wrapping_add(i as u8)));
    b
}

/// Where one kind of client counts its bursts.
#[derive(Clone, Copy)]
struct Tallies<'a> {
    ok: &'a AtomicU64,
    err: &'a AtomicU64,
    wrong: &'a AtomicU64,
}

/// Count one burst's outcome (UDP's in the `udp_` counts); `true` if the
/// connection is still good.
fn tally(ctx: &Ctx, t: Transport, who: &str, r: Result<(), Failure>, k: Tallies<'_>) -> bool {
    let c = &ctx.counts;
    let udp = t == Transport::Udp;
    match r {
        Ok(()) => {
            if udp { &c.udp_ok } else { k.ok }.fetch_add(1, Relaxed);
            true
        }
        Err(Failure::Lost) => {
            c.udp_lost.fetch_add(1, Relaxed);
            false
        }
        Err(Failure::Wrong(w)) => {
            k.wrong.fetch_add(1, Relaxed);
            ctx.note(format!("{who} {t:?}: wrong echo: {w}"));
            false
        }
        // The run ended under it.
        Err(Failure::Io(_)) if ctx.stopped() => false,
        Err(Failure::Io(e)) => {
            if udp { &c.udp_err } else { k.err }.fetch_add(1, Relaxed);
            ctx.note(format!("{who} {t:?}: {e}"));
            false
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(f)
}

/// One connection on `t`, kept open (reopened after a failure, a second
/// later), sending the bursts `next` makes with `pace` between them.
fn drive(
    ctx: &Ctx,
    t: Transport,
    who: &str,
    k: Tallies<'_>,
    pace: Duration,
    mut next: impl FnMut() -> Vec<Vec<u8>>,
) {
    let mut conn: Option<Conn> = None;
    while !ctx.stopped() {
        let open = match conn.as_mut() {
            Some(open) => open,
            None => match Conn::open(t, &ctx.targets) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally(ctx, t, who, Err(e), k);
                    ctx.pause(Duration::from_secs(1));
                    continue;
                }
            },
        };
        if !tally(ctx, t, who, open.burst(&next()), k) {
            conn = None;
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    if let Some(conn) = conn {
        conn.close();
    }
}

/// Steady echo: one message of 16 to 4,096 bytes (UDP: to 1,015) every
/// 20 ms.
fn steady(ctx: Ctx, t: Transport, i: usize) {
    let c = &ctx.counts;
    let k = Tallies {
        ok: &c.echo_ok,
        err: &c.echo_err,
        wrong: &c.echo_wrong,
    };
    let mut n = 0u64;
    drive(&ctx, t, "echo", k, Duration::from_millis(20), || {
        n += 1;
        let len = match t {
            Transport::Udp => 16 + (n as usize * 37) % 1000,
            _ => 16 + (n as usize * 97 + i) % 4080,
        };
        vec![body(role::ECHO, n, len)]
    });
}

/// Honest and at full speed: bursts of 8 messages (16 B to 256 KiB, at
/// most 704 KiB in flight, under the 1 MiB high-water mark), every echo
/// read and checked before the next burst. Never paced.
fn honest(ctx: Ctx, t: Transport) {
    const SIZES: [usize; 8] = [
        16,
        64 << 10,
        1000,
        16 << 10,
        64 << 10,
        200,
        256 << 10,
        64 << 10,
    ];
    let c = &ctx.counts;
    let k = Tallies {
        ok: &c.honest_ok,
        err: &c.honest_err,
        wrong: &c.honest_wrong,
    };
    let mut n = 0u64;
    drive(&ctx, t, "honest", k, Duration::ZERO, || {
        SIZES
            .iter()
            .map(|&len| {
                n += 1;
                body(role::HONEST, n, len)
            })
            .collect()
    });
}

/// Churn: open a connection (each transport in turn), one echo, close;
/// `per_second` of them.
fn churn(ctx: Ctx, i: usize, per_second: u64) {
    let c = &ctx.counts;
    let k = Tallies {
        ok: &c.churn_ok,
        err: &c.churn_err,
        wrong: &c.churn_err,
    };
    let gap = Duration::from_secs_f64(1.0 / per_second.max(1) as f64);
    let mut n = 0u64;
    let mut next = Instant::now();
    while !ctx.stopped() {
        let t = Transport::ALL[(n as usize + i) % Transport::ALL.len()];
        n += 1;
        let r = Conn::open(t, &ctx.targets).and_then(|mut conn| {
            conn.burst(&[body(role::CHURN, n, 64 + (n as usize % 500))])?;
            conn.close();
            Ok(())
        });
        tally(&ctx, t, "churn", r, k);
        next += gap;
        ctx.pause(next.saturating_duration_since(Instant::now()));
    }
}

/// Idle crowd: `count` TCP connections held all along, each sending one
/// small message every 10 s (well inside the 30 s idle timeout).
fn idle(ctx: Ctx, count: usize) {
    let c = &ctx.counts;
    let k = Tallies {
        ok: &c.idle_ok,
        err: &c.idle_err,
        wrong: &c.idle_err,
    };
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(count);
    for _ in 0..count {
        if ctx.stopped() {
            break;
        }
        let r = Conn::open(Transport::Tcp, &ctx.targets);
        conns.push(match r {
            Ok(conn) => Some(conn),
            Err(e) => {
                tally(&ctx, Transport::Tcp, "idle open", Err(e), k);
                None
            }
        });
    }
    let mut n = 0u64;
    while !ctx.stopped() {
        let round = Instant::now();
        for slot in conns.iter_mut() {
            if ctx.stopped() {
                break;
            }
            if let Some(conn) = slot {
                n += 1;
                let r = conn.burst(&[body(role::IDLE, n, 32)]);
                if !tally(&ctx, Transport::Tcp, "idle", r, k) {
                    *slot = None;
                }
            }
        }
        ctx.pause(Duration::from_secs(10).saturating_sub(round.elapsed()));
    }
    for conn in conns.into_iter().flatten() {
        conn.close();
    }
}

/// Start every client thread.
pub fn spawn_all(args: &Args, ctx: &Ctx) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for t in Transport::ALL {
        for i in 0..args.echo {
            let ctx = ctx.clone();
            threads.push(spawn(format!("echo-{t:?}-{i}"), move || steady(ctx, t, i))?);
        }
    }
    for t in Transport::STREAMS {
        for i in 0..args.honest {
            let ctx = ctx.clone();
            threads.push(spawn(format!("honest-{t:?}-{i}"), move || honest(ctx, t))?);
        }
    }
    let per_thread = args.churn_rate / args.churn.max(1) as u64;
    for i in 0..args.churn {
        let ctx = ctx.clone();
        threads.push(spawn(format!("churn-{i}"), move || {
            churn(ctx, i, per_thread)
        })?);
    }
    if args.idle > 0 {
        let (ctx, n) = (ctx.clone(), args.idle);
        threads.push(spawn("idle".into(), move || idle(ctx, n))?);
    }
    Ok(threads)
}
