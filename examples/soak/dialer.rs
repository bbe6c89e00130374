//! Dial-out: a peer server (sequence packer, echo) that is stopped and
//! started again on the same port periodically, a dial with a reconnect
//! policy and a pool of the main server towards it, and a thread sending
//! requests through both.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use netloom::{
    ConnHandle, Dial, Hub, Pool, PoolConfig, PoolStats, Reconnect, SeqPacker, Server, ServerHandle,
};

use crate::clients::{body, Ctx};
use crate::servers::ECHO;

/// The peer's state, shared with the thread that restarts it.
pub struct Peer {
    pub addr: SocketAddr,
    server: Mutex<Option<ServerHandle>>,
    pub restarts: AtomicU64,
    pub up: AtomicBool,
}

fn start_peer(addr: &str) -> netloom::Result<ServerHandle> {
    Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .route(ECHO, |ctx| ctx.reply(ECHO, ctx.body()))
        .bind(addr)?
        .start()
}

impl Peer {
    pub fn start() -> netloom::Result<Arc<Peer>> {
        let server = start_peer("127.0.0.1:0")?;
        Ok(Arc::new(Peer {
            addr: server.local_addr(),
            server: Mutex::new(Some(server)),
            restarts: AtomicU64::new(0),
            up: AtomicBool::new(true),
        }))
    }

    /// Stop it (shutdown, 1 s deadline); a no-op if it is down.
    pub fn stop(&self) -> netloom::Result<()> {
        let server = self.server.lock().unwrap().take();
        self.up.store(false, Relaxed);
        server.map_or(Ok(()), |s| s.shutdown(Duration::from_secs(1)))
    }

    /// Start it again on the same address (retried for up to 5 s, in case
    /// the port is still held).
    fn restart(&self) -> netloom::Result<()> {
        let mut last = None;
        for _ in 0..50 {
            match start_peer(&self.addr.to_string()) {
                Ok(s) => {
                    *self.server.lock().unwrap() = Some(s);
                    self.up.store(true, Relaxed);
                    self.restarts.fetch_add(1, Relaxed);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100)); // port still held: retry
        }
        Err(last.unwrap())
    }
}

/// The main server's links to the peer.
pub struct Links {
    pub dial: ConnHandle,
    pub pool: Pool,
}

impl Links {
    pub fn open(hub: &Hub, peer: SocketAddr) -> netloom::Result<Links> {
        let policy = Reconnect {
            initial: Duration::from_millis(200),
            factor: 2.0,
            max: Duration::from_secs(1),
            jitter: 0.2,
            max_attempts: None,
        };
        let dial = hub.dial(Dial::new(peer).profile("backend").reconnect(policy))?;
        let pool = hub.pool(
            [Dial::new(peer).profile("backend")],
            PoolConfig {
                max_size: 4,
                min_idle: 1,
                ..PoolConfig::default()
            },
        )?;
        Ok(Links { dial, pool })
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    pub fn close(&self) {
        self.pool.close();
        self.dial.close();
    }
}

/// Stop the peer for `down` every `up`, until stopped.
pub fn spawn_restarter(
    ctx: &Ctx,
    peer: &Arc<Peer>,
    up: Duration,
    down: Duration,
) -> std::io::Result<JoinHandle<()>> {
    let (ctx, peer) = (ctx.clone(), peer.clone());
    std::thread::Builder::new()
        .name("peer-restarter".into())
        .spawn(move || {
            while !ctx.stopped() {
                ctx.pause(up);
                if ctx.stopped() {
                    break;
                }
                if let Err(e) = peer.stop() {
                    ctx.note(format!("peer stop: {e}"));
                }
                ctx.pause(down);
                if let Err(e) = peer.restart() {
                    ctx.note(format!("peer restart: {e}"));
                    break;
                }
            }
        })
}

/// Requests every 20 ms through the dial and through the pool (1 s
/// timeout each), every reply checked. Failures while the peer is down are
/// expected; they are counted.
pub fn spawn_requests(ctx: &Ctx, links: &Links) -> std::io::Result<JoinHandle<()>> {
    let (ctx, dial, pool) = (ctx.clone(), links.dial.clone(), links.pool.clone());
    std::thread::Builder::new()
        .name("dial-requests".into())
        .spawn(move || {
            let c = &ctx.counts;
            let timeout = Duration::from_secs(1);
            let mut n = 0u64;
            while !ctx.stopped() {
                n += 1;
                let b = body(b'D', n, 100);
                let r = dial.request(ECHO, &b, timeout).and_then(|r| r.wait());
                match r {
                    Ok(m) if m.body[..] == b[..] => c.dial_ok.fetch_add(1, Relaxed),
                    Ok(_) => {
                        ctx.note("dial: wrong reply".into());
                        c.dial_err.fetch_add(1, Relaxed)
                    }
                    Err(_) => c.dial_err.fetch_add(1, Relaxed),
                };
                match pool.request(ECHO, &b, timeout) {
                    Ok(m) if m.body[..] == b[..] => c.pool_ok.fetch_add(1, Relaxed),
                    Ok(_) => {
                        ctx.note("pool: wrong reply".into());
                        c.pool_err.fetch_add(1, Relaxed)
                    }
                    Err(_) => c.pool_err.fetch_add(1, Relaxed),
                };
                std::thread::sleep(Duration::from_millis(20));
            }
        })
}
