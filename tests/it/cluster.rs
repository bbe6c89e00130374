//! The cluster over a real Redis: `redis-server` started by the tests on
//! a free loopback port with a temporary directory (killed by pid), and
//! two or three netloom nodes in one process, each a server of its own
//! with its own `Cluster`. The nodes speak `examples/cluster_chat`'s
//! protocol (with answers to joins, so a client knows when they are done).

mod delivery;
mod edges;
mod example;
mod failure;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use netloom::cluster::{Cluster, ClusterConfig};
use netloom::{Builder, ConnHandle, Context, Server, ServerHandle};

use crate::common::peers::{require, target_dir, Peer};
use crate::common::{start, Client, TIMEOUT};

/// A `redis-server` of the test's own.
pub(crate) struct Redis {
    program: String,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Start one, or `None` if the peer is missing (and skipping is asked).
    pub(crate) fn start() -> Option<Redis> {
        let program = require(Peer::RedisServer)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = target_dir().join(format!("redis-tests/{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut redis = Redis {
            program,
            child: None,
            port,
            dir,
        };
        redis.run();
        Some(redis)
    }

    fn run(&mut self) {
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        // Bounded: it answers PING within TIMEOUT or the test fails.
        let deadline = Instant::now() + TIMEOUT;
        while !self.pings() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pings(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kill it (by its pid) and wait for it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port (empty: it saves nothing).
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One node: its server, its cluster, and its connections' handles as
/// they open.
pub(crate) struct Node {
    pub(crate) server: ServerHandle,
    pub(crate) cluster: Cluster,
    pub(crate) opens: Receiver<(SocketAddr, ConnHandle)>,
}

impl Node {
    pub(crate) fn connect(&self) -> Client {
        let c = Client::connect(self.server.local_addr());
        let (peer, _) = self.opens.recv_timeout(TIMEOUT).expect("on_open ran");
        assert_eq!(peer, c.stream.local_addr().unwrap());
        c
    }
}

/// The test's settings: quick heartbeats and reconnects.
pub(crate) fn config(redis: &Redis, name: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(redis.url(), name);
    config.heartbeat = Duration::from_millis(100);
    config.presence_timeout = Duration::from_millis(500);
    config.reconnect.initial = Duration::from_millis(20);
    config.reconnect.max = Duration::from_millis(200);
    config
}

fn split(body: &[u8]) -> Option<(String, &[u8])> {
    let at = body.iter().position(|b| *b == b'\n')?;
    Some((
        String::from_utf8_lossy(&body[..at]).into_owned(),
        &body[at + 1..],
    ))
}

/// A node on two loops in the cluster on `redis`.
pub(crate) fn node(redis: &Redis, name: &str) -> Node {
    node_with(config(redis, name), |b| b)
}

/// A node with `config`, its builder changed by `tweak`.
pub(crate) fn node_with(config: ClusterConfig, tweak: impl FnOnce(Builder) -> Builder) -> Node {
    let cell: Arc<OnceLock<Cluster>> = Arc::default();
    let (tx, opens) = crossbeam_channel::unbounded();
    let (c3, c4, c6) = (cell.clone(), cell.clone(), cell.clone());
    let builder = Server::builder()
        .event_loops(2)
        .on_open(move |s| {
            let _ = tx.send((s.peer_addr(), s.handle()));
        })
        .route(1, |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            match ctx.join(&room) {
                Ok(()) => ctx.reply(1, b"ok"),
                Err(e) => ctx.reply(1, format!("err: {e}")),
            }
        })
        .route(2, |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            ctx.leave(&room)?;
            ctx.reply(2, b"ok")
        })
        .route(3, move |ctx: &mut Context<'_>| -> netloom::Result<()> {
            let (Some(cluster), Some((room, _))) = (c3.get(), split(ctx.body())) else {
                return Ok(());
            };
            cluster.publish_except(&room, ctx.id(), 3, ctx.body())
        })
        .route(4, move |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            let n = c4.get().map_or(0, |c| c.room_len(&room));
            ctx.reply(4, n.to_string())
        })
        .route(6, move |ctx: &mut Context<'_>| -> netloom::Result<()> {
            match c6.get() {
                Some(cluster) => cluster.broadcast(6, ctx.body()),
                None => Ok(()),
            }
        });
    let server = start(tweak(builder));
    let cluster = Cluster::start(server.hub(), config).expect("cluster");
    let _ = cell.set(cluster.clone());
    Node {
        server,
        cluster,
        opens,
    }
}

/// Poll `cond` (cluster state: subscriptions, presence) within TIMEOUT.
pub(crate) fn settle(what: &str, cond: impl FnMut() -> bool) {
    crate::common::wait_until(what, cond);
}

/// Join `room` through the protocol and wait for the answer.
pub(crate) fn join(c: &mut Client, room: &str) {
    c.send(1, room.as_bytes());
    assert_eq!(c.recv(), (1, b"ok".to_vec()), "join {room}");
}
