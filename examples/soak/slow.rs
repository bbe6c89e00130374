//! Slow peers: clients that send echo requests and never read a reply, so
//! the server's write queue for them passes the high-water mark and the
//! server closes them (`SlowPeerPolicy::Close`, reason `SlowPeer`). One at
//! a time per thread, each transport in turn, one every two seconds.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clients::{body, role, Ctx};
use crate::conns::{stream, ws_upgrade, Io, Transport};
use crate::servers::ECHO;
use crate::ws_frame::client_frame;

/// A slow peer not closed by then is counted as `slow_unclosed`.
const CLOSE_WITHIN: Duration = Duration::from_secs(20);

/// What a slow peer sends, again and again: a 64 KiB echo request in the
/// transport's framing.
fn request(t: Transport, n: u64) -> Vec<u8> {
    let b = body(role::SLOW, n, 64 << 10);
    match t {
        Transport::Ws | Transport::Wss => client_frame(0x82, &b),
        _ => {
            let mut f = (b.len() as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&ECHO.to_le_bytes());
            f.extend_from_slice(&b);
            f
        }
    }
}

/// One slow peer's life: connect, flood, and see the server close it.
/// `Ok(true)`: closed by the server within `CLOSE_WITHIN`.
fn one(ctx: &Ctx, t: Transport, n: u64) -> Result<bool, String> {
    let s = stream(t, &ctx.targets).map_err(|e| format!("{e:?}"))?;
    let mut io: Box<dyn Io> = match t {
        Transport::Ws | Transport::Wss => {
            let mut ws = ws_upgrade(s).map_err(|e| format!("{e:?}"))?;
            // Past the upgrade tungstenite holds nothing we need: write
            // raw frames to the stream underneath.
            let io = std::mem::replace(ws.get_mut(), Box::new(std::io::empty()));
            drop(ws);
            io
        }
        _ => s,
    };
    ctx.counts.slow_opened.fetch_add(1, Relaxed);
    let frame = request(t, n);
    let started = Instant::now();
    while started.elapsed() < CLOSE_WITHIN && !ctx.stopped() {
        // A write that times out (IO_TIMEOUT) is the kernel buffer full:
        // keep pushing; the server is still reading us.
        match io.write_all(&frame).and_then(|()| io.flush()) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(true), // reset or broken pipe: closed
        }
    }
    Ok(ctx.stopped())
}

fn run(ctx: Ctx, i: usize) {
    let mut n = 0u64;
    while !ctx.stopped() {
        let t = Transport::STREAMS[(n as usize + i) % Transport::STREAMS.len()];
        n += 1;
        let began = Instant::now();
        match one(&ctx, t, n) {
            Ok(true) => {
                ctx.counts.slow_closed.fetch_add(1, Relaxed);
            }
            Ok(false) => {
                ctx.counts.slow_unclosed.fetch_add(1, Relaxed);
                ctx.note(format!(
                    "slow peer {t:?} not closed within {CLOSE_WITHIN:?}"
                ));
            }
            Err(e) if ctx.stopped() => drop(e),
            Err(e) => {
                ctx.counts.slow_err.fetch_add(1, Relaxed);
                ctx.note(format!("slow peer {t:?}: {e}"));
            }
        }
        ctx.pause(Duration::from_secs(2).saturating_sub(began.elapsed()));
    }
}

pub fn spawn_all(count: usize, ctx: &Ctx) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..count)
        .map(|i| {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("slow-{i}"))
                .spawn(move || run(ctx, i))
        })
        .collect()
}
