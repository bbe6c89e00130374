//! Chat rooms across nodes: `cluster_chat [ADDR] [--redis URL] [--node NAME]`.
//!
//! Defaults: `127.0.0.1:6570`, no Redis (one node alone), the node named
//! after the host and the process id. Two or three nodes on one Redis form
//! a cluster. The default packer (`len u32 LE | id u32 LE | body`):
//!
//! * id 1: join the room named by the body;
//! * id 2: leave it;
//! * id 3: `ROOM\nTEXT`: every other member of ROOM on every node
//!   receives id 3 with the same body, once (the sender does not);
//! * id 4: a room's name; answered with id 4 and the room's member count
//!   across all nodes, in decimal.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run --features cluster --example cluster_chat -- 127.0.0.1:6570 --redis redis://127.0.0.1:6379/ --node a
//! cargo run --features cluster --example cluster_chat -- 127.0.0.1:6571 --redis redis://127.0.0.1:6379/ --node b
//! ```

use std::sync::{Arc, OnceLock};

use netloom::cluster::{Cluster, ClusterConfig};
use netloom::{Context, Hub, Server};

/// Where room messages go: this node alone, or the cluster.
#[derive(Clone)]
enum Rooms {
    Alone(Hub),
    Cluster(Cluster),
}

impl Rooms {
    fn publish_except(&self, ctx: &Context<'_>, room: &str) -> netloom::Result<()> {
        let body = ctx.body();
        match self {
            Rooms::Alone(hub) => hub.publish_except(room, ctx.id(), 3, body),
            Rooms::Cluster(c) => c.publish_except(room, ctx.id(), 3, body),
        }
    }

    fn len(&self, room: &str) -> usize {
        match self {
            Rooms::Alone(hub) => hub.room_len(room),
            Rooms::Cluster(c) => c.room_len(room),
        }
    }
}

struct Args {
    addr: String,
    redis: Option<String>,
    node: String,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:6570".into(),
        redis: None,
        node: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--redis" => args.redis = Some(it.next().ok_or("--redis needs a URL")?),
            "--node" => args.node = it.next().ok_or("--node needs a name")?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            addr => args.addr = addr.into(),
        }
    }
    if args.node.is_empty() {
        // At most 40 characters of the host name (any bytes on Linux: cut
        // on a character, never inside one).
        let host: String = host_name().chars().take(40).collect();
        args.node = format!("{host}-{}", std::process::id());
    }
    Ok(args)
}

/// The room and text of an id 3 body.
fn room_of(body: &[u8]) -> Option<String> {
    let at = body.iter().position(|b| *b == b'\n')?;
    Some(String::from_utf8_lossy(&body[..at]).into_owned())
}

fn main() -> netloom::Result<()> {
    env_logger::init();
    let args = parse().map_err(|e| {
        eprintln!("usage: cluster_chat [ADDR] [--redis URL] [--node NAME]\n{e}");
        netloom::Error::Config(e)
    })?;
    let rooms: Arc<OnceLock<Rooms>> = Arc::default();
    let (r3, r4) = (rooms.clone(), rooms.clone());
    let server = Server::builder()
        .route(1, |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            if let Err(e) = ctx.join(&room) {
                log::info!("{}: join refused: {e}", ctx.id());
            }
        })
        .route(2, |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            if let Err(e) = ctx.leave(&room) {
                log::info!("{}: leave refused: {e}", ctx.id());
            }
        })
        .route(3, move |ctx: &mut Context<'_>| {
            let (Some(rooms), Some(room)) = (r3.get(), room_of(ctx.body())) else {
                return;
            };
            // Broker down: this node's members got it; logged, counted.
            if let Err(e) = rooms.publish_except(ctx, &room) {
                log::warn!("{}: to {room}: {e}", ctx.id());
            }
        })
        .route(4, move |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            let n = r4.get().map_or(0, |r| r.len(&room));
            ctx.reply(4, n.to_string())
        })
        .bind(&args.addr)?
        .start()?;
    let chosen = match &args.redis {
        Some(url) => {
            let config = ClusterConfig::new(url.clone(), args.node.clone());
            Rooms::Cluster(Cluster::start(server.hub(), config)?)
        }
        None => Rooms::Alone(server.hub()),
    };
    let _ = rooms.set(chosen);
    let with = args.redis.as_deref().unwrap_or("no Redis: alone");
    println!(
        "cluster_chat: node {} listening on {} ({with})",
        args.node,
        server.local_addr()
    );
    server.join()?;
    Ok(())
}
