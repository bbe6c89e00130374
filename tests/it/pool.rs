//! The connection pool (issue 19, item 4) over real loopback sockets:
//! `hammer`: 50 threads against a pool of 8 while the backend restarts;
//! `rules`: the FIFO, timeouts, retirement, the health check, timed-out
//! requests, several targets. The pools live on dialing servers with two
//! loops; the backends are netloom `SeqPacker` servers.

mod edges;
mod hammer;
mod rules;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use netloom::{Context, SeqPacker, Server, ServerHandle};

use crate::common::{init_logs, TIMEOUT};

/// Message ids of the test backend.
pub const ECHO: u32 = 1;
pub const NEVER: u32 = 3;
pub const HEALTH: u32 = 9;
pub const MUTE: u32 = 10;

/// A `SeqPacker` backend on `addr`: `ECHO` answered with its body and
/// the backend's `tag` appended, `NEVER` never, `HEALTH` answered unless
/// the connection sent `MUTE` before.
pub fn backend_on(addr: SocketAddr, tag: u8) -> ServerHandle {
    init_logs();
    struct Muted(AtomicBool);
    Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .on_open(|s| {
            s.data_mut().insert(Muted(AtomicBool::new(false)));
        })
        .route(ECHO, move |ctx: &mut Context<'_>| {
            let mut body = ctx.body().to_vec();
            body.push(tag);
            ctx.reply(ECHO, body)
        })
        .route(NEVER, |_ctx: &mut Context<'_>| {})
        .route(MUTE, |ctx: &mut Context<'_>| {
            if let Some(m) = ctx.data().get::<Muted>() {
                m.0.store(true, Ordering::Relaxed);
            }
        })
        .route(HEALTH, |ctx: &mut Context<'_>| {
            let muted = ctx
                .data()
                .get::<Muted>()
                .is_some_and(|m| m.0.load(Ordering::Relaxed));
            if muted {
                return Ok(());
            }
            ctx.reply(HEALTH, b"ok")
        })
        .bind(addr)
        .expect("bind the backend")
        .start()
        .expect("start the backend")
}

/// A backend on an ephemeral port.
pub fn backend(tag: u8) -> ServerHandle {
    backend_on("127.0.0.1:0".parse().unwrap(), tag)
}

/// A server with two loops and no listener, to host pools.
pub fn host() -> ServerHandle {
    init_logs();
    Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .start()
        .expect("start the pool's host")
}

/// Shut down, bounded.
pub fn stop(server: ServerHandle) {
    server.shutdown(TIMEOUT).expect("shutdown");
}
