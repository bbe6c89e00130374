//! The servers under soak and what they tell about the connections they
//! close. TLS applies to every listener of a netloom server, so plain TCP,
//! ws:// and UDP share one server (which also dials out) and TLS and wss://
//! are a second one in the same process, built the same way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netloom::{
    ws, CloseReason, Context, Profile, SeqPacker, Server, ServerHandle, SlowPeerPolicy, UdpSession,
};

use crate::args::Args;

/// The message id every stream client and the backend profile echo on.
pub const ECHO: u32 = 7;

/// What kind of client a connection serves: the first byte of every body
/// it sends (see `clients::Role`). The handler stores it as connection data
/// at the first message, so `on_close` can say whose connection it was.
#[derive(Debug, Clone, Copy)]
struct Role(u8);

/// Closes seen by `on_close`, by the client's role and the reason's kind,
/// and the stream connections open now (accepted, not UDP, not dialed).
#[derive(Debug, Default)]
pub struct Tally {
    closes: Mutex<BTreeMap<(char, &'static str), u64>>,
    pub streams_open: AtomicI64,
}

impl Tally {
    /// Every (role, reason kind) with its count.
    pub fn closes(&self) -> BTreeMap<(char, &'static str), u64> {
        self.closes.lock().unwrap().clone()
    }

    fn count(&self, role: char, reason: &'static str) {
        *self
            .closes
            .lock()
            .unwrap()
            .entry((role, reason))
            .or_default() += 1;
    }
}

/// A close reason's kind, as `Stats::closed_by_kind` names it.
pub fn reason_kind(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::PeerClosed => "peer_closed",
        CloseReason::IdleTimeout => "idle_timeout",
        CloseReason::Protocol(_) => "protocol",
        CloseReason::UnknownId(_) => "unknown_id",
        CloseReason::SlowPeer => "slow_peer",
        CloseReason::HandlerPanic => "handler_panic",
        CloseReason::Rejected(_) => "rejected",
        CloseReason::Local => "local",
        CloseReason::Shutdown => "shutdown",
        CloseReason::Io(_) => "io",
        CloseReason::TlsHandshake(_) => "tls_handshake",
        CloseReason::HandshakeTimeout => "handshake_timeout",
        CloseReason::Tls(_) => "tls",
        CloseReason::WsClosed { .. } => "ws_closed",
        CloseReason::WsProtocol { .. } => "ws_protocol",
        CloseReason::UpgradeRejected(_) => "upgrade_rejected",
        CloseReason::BadUpgrade(_) => "bad_upgrade",
        CloseReason::FrameTimeout => "frame_timeout",
        CloseReason::MemoryLimit => "memory_limit",
        CloseReason::ConnectFailed(_) => "connect_failed",
        CloseReason::ConnectTimeout => "connect_timeout",
        CloseReason::RequestTimeouts(_) => "request_timeouts",
        CloseReason::HealthCheckFailed(_) => "health_check_failed",
        CloseReason::ResolveFailed(_) => "resolve_failed",
        CloseReason::BadBody(_) => "bad_body",
        CloseReason::Backlog => "backlog",
        _ => "other",
    }
}

/// Echo the message back on its own id; remember the sender's role.
fn echo(ctx: &mut Context<'_>) -> netloom::Result<()> {
    if ctx.data().get::<Role>().is_none() {
        if let Some(&first) = ctx.body().first() {
            ctx.data_mut().insert(Role(first));
        }
    }
    ctx.reply(ctx.msg_id(), ctx.body())
}

/// The settings both servers share: loops, the high-water mark with slow
/// peers closed over it, a heartbeat, the echo routes and the hooks.
fn common(args: &Args, tally: &Arc<Tally>) -> netloom::Builder {
    let (opened, closed) = (tally.clone(), tally.clone());
    let stream =
        |s: &netloom::Session<'_>| s.profile().is_none() && s.data().get::<UdpSession>().is_none();
    Server::builder()
        .event_loops(args.loops)
        .write_high_water(args.high_water)
        .slow_peer(SlowPeerPolicy::Close)
        .heartbeat(Duration::from_secs(1), Duration::from_secs(30))
        .route(ECHO, echo)
        .route(ws::BINARY, echo)
        .on_open(move |s| {
            if stream(s) {
                opened.streams_open.fetch_add(1, Relaxed);
            }
        })
        .on_close(move |s, reason| {
            let role = match s.data().get::<Role>() {
                _ if s.data().get::<UdpSession>().is_some() => 'u',
                _ if s.profile().is_some() => 'd',
                Some(r) => r.0 as char,
                None => '-',
            };
            closed.count(role, reason_kind(reason));
            if stream(s) {
                closed.streams_open.fetch_sub(1, Relaxed);
            }
        })
}

/// The main server: TCP, ws:// and UDP on 127.0.0.1, and the `backend`
/// profile (sequence packer) its dial and pool use.
pub fn start_plain(args: &Args, tally: &Arc<Tally>) -> netloom::Result<ServerHandle> {
    common(args, tally)
        .profile("backend", Profile::new().packer(SeqPacker::default()))
        .bind("127.0.0.1:0")?
        .bind_ws("127.0.0.1:0")?
        .bind_udp("127.0.0.1:0")?
        .start()
}

/// The TLS server: TLS and wss:// on 127.0.0.1.
pub fn start_tls(
    args: &Args,
    tally: &Arc<Tally>,
    config: Arc<rustls::ServerConfig>,
) -> netloom::Result<ServerHandle> {
    common(args, tally)
        .tls(config)
        .bind("127.0.0.1:0")?
        .bind_ws("127.0.0.1:0")?
        .start()
}

/// The stats of several servers as one: counters and gauges added.
pub fn sum(all: &[netloom::Stats]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for s in all {
        let mut row: Vec<(String, u64)> = [
            ("connections", s.connections),
            ("accepted", s.accepted),
            ("messages_in", s.messages_in),
            ("messages_out", s.messages_out),
            ("bytes_in", s.bytes_in),
            ("bytes_out", s.bytes_out),
            ("partial_held", s.partial_held),
            ("slow_peer_events", s.slow_peer_events),
            ("send_errors", s.send_errors),
            ("request_timeouts", s.request_timeouts),
            ("late_replies", s.late_replies),
            ("connects", s.connects),
            ("connect_failures", s.connect_failures),
            ("unflushed_closes", s.unflushed_closes),
            ("datagrams_in", s.datagrams_in),
            ("datagrams_out", s.datagrams_out),
            ("datagrams_dropped", s.datagrams_dropped_total()),
            ("closed", s.closed_total()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        row.extend(s.closed_by_kind().map(|(k, v)| (format!("closed.{k}"), v)));
        if out.is_empty() {
            out = row;
        } else {
            for (o, (_, v)) in out.iter_mut().zip(row) {
                o.1 += v;
            }
        }
    }
    out
}
