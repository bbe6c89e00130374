//! A gateway in one server: its clients speak the default packer
//! (`LengthPacker`: body length u32 LE, message id u32 LE, body); its
//! backends speak `SeqPacker` (the same with a sequence number) through a
//! dial profile, on the same event loops. Every client message is sent to
//! the next backend (round-robin) as a request with the same id and body,
//! and the backend's answer goes back to the client under that id.
//!
//! ```text
//! cargo run --release --example rpc_server -- 127.0.0.1:6568 &
//! cargo run --release --example gateway        # listens on 127.0.0.1:6570, backend 127.0.0.1:6568
//! cargo run --release --example gateway -- 0.0.0.0:7000 10.0.0.5:6572 10.0.0.6:6572
//! ```
//!
//! Usage: `gateway [LISTEN] [BACKEND...]`. A backend that is down or does
//! not answer within 2 s makes the client's answer a message with id
//! `u32::MAX` whose body says why; the gateway keeps dialing it (1 s,
//! doubling up to 10 s). The backend links have a heartbeat of their own
//! (the clients have none): silent for 10 s, a link is pinged with id
//! `PING` (which `rpc_server` echoes; the profile's route takes the echo);
//! silent for 30 s, it is dropped and dialed again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use netloom::{
    ConnHandle, Context, Dial, Error, HandlerResult, Profile, Reconnect, SeqPacker, Server,
    WhileDown,
};

/// The id of a client's answer when its backend failed.
const FAILED: u32 = u32::MAX;
/// The id of the heartbeat's ping to a backend.
const PING: u32 = 0xFFFF_0000;
/// How long a backend may take to answer.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The backend links, dialed once the server runs, taken in turn.
#[derive(Default)]
struct Backends {
    links: OnceLock<Vec<ConnHandle>>,
    next: AtomicUsize,
}

impl Backends {
    fn next(&self) -> Option<&ConnHandle> {
        let links = self.links.get()?;
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        links.get(i % links.len().max(1))
    }
}

fn main() -> Result<(), Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:6570".into());
    let mut addrs: Vec<String> = args.collect();
    if addrs.is_empty() {
        addrs.push("127.0.0.1:6568".into());
    }
    let addrs = addrs
        .iter()
        .map(|a| {
            a.parse::<SocketAddr>()
                .map_err(|e| Error::Config(format!("backend {a:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let backends = Arc::new(Backends::default());
    let to_backend = backends.clone();
    let server = Server::builder()
        // The backends' protocol: their packer, heartbeat and socket
        // options, and a route for the echo of the heartbeat's ping.
        .profile(
            "backend",
            Profile::new()
                .packer(SeqPacker::default())
                .heartbeat(Duration::from_secs(5), Duration::from_secs(30))
                .ping_before_kick(Duration::from_secs(10), PING)
                .keepalive(Duration::from_secs(60))
                .route(PING, |_ctx: &mut Context<'_>| {}),
        )
        // The clients' protocol: the server's own (the default packer).
        .fallback(move |ctx: &mut Context<'_>| relay(ctx, &to_backend))
        .on_disconnect(|s, why| log::warn!("backend {} lost: {}", s.peer_addr(), why.reason))
        .on_reconnect(|s, attempts| {
            log::info!("backend {} back after {attempts} attempt(s)", s.peer_addr())
        })
        .config_from_env()?
        .bind(listen.as_str())?
        .start()?;
    let hub = server.hub();
    let links = addrs
        .iter()
        .map(|&addr| {
            let dial = Dial::new(addr)
                .profile("backend")
                .while_down(WhileDown::Refuse)
                .reconnect(Reconnect {
                    initial: Duration::from_secs(1),
                    max: Duration::from_secs(10),
                    ..Reconnect::default()
                });
            hub.dial(dial)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let _ = backends.links.set(links);
    println!(
        "netloom gateway listening on {}, backends {addrs:?}",
        server.local_addr()
    );
    println!("press Ctrl-C to stop");
    server.join()
}

/// Send the client's message to the next backend as a request; its answer
/// (or why there is none) goes back to the client.
fn relay(ctx: &mut Context<'_>, backends: &Backends) -> HandlerResult {
    let id = ctx.msg_id();
    let Some(backend) = backends.next() else {
        return Ok(ctx.reply(FAILED, b"no backend yet")?);
    };
    let responder = ctx.responder();
    let sent = backend.request_with(id, ctx.body(), BACKEND_TIMEOUT, move |answer| {
        let _ = match answer {
            Ok(answer) => responder.respond(id, answer.body),
            Err(e) => responder.respond(FAILED, format!("backend: {e}")),
        };
    });
    if let Err(e) = sent {
        ctx.reply(FAILED, format!("backend: {e}"))?;
    }
    Ok(())
}
