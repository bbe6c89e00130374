//! Limits never fire on honest peers (issues 18 and 25): clients that
//! stream whole messages at full speed, read every echo and never hold
//! more than a window unanswered, on every transport (TCP, TLS, ws://,
//! wss://), with large and small messages, for several frame windows,
//! alone and 100 at once under a small partial-frame budget. They are
//! never closed, get every byte back, and the server counts no limit
//! event. The clients are Python's asyncio, `ssl` and `websockets`
//! (tests/it/honest_stream.py): peers nobody on the team wrote.
//!
//! Each limit's hostile test is next to its definition (tests/it/hardening.rs,
//! tests/it/lifecycle/backpressure.rs); the limits set here are the same,
//! or tighter.

mod exec;
mod progress;
mod streams;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use netloom::{ws, Builder, CloseReason, Server, ServerHandle, Stats};

use crate::common::peers::{require, Peer};
use crate::common::{echo, run_bounded, track_closes, Closes};
use crate::tls_support::{server_config, test_cert, TempFile};

const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/honest_stream.py");

/// The frame deadline's window in these tests: every run lasts several.
pub const FRAME_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

pub const ALL: [Transport; 4] = [
    Transport::Tcp,
    Transport::Tls,
    Transport::Ws,
    Transport::Wss,
];

impl Transport {
    fn mode(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }
}

/// An echo server on one transport, its closes tracked, and the
/// certificate a TLS client trusts.
pub struct Honest {
    pub transport: Transport,
    pub server: ServerHandle,
    pub closes: Closes,
    cafile: Option<TempFile>,
}

/// The limits under test, tight: a 1 s frame window (at the default
/// 500 B/s), `partial` bytes of partial frames per loop, a 256 KiB
/// high-water mark (clients keep at most 128 KiB unanswered).
pub fn limits(builder: Builder, partial: usize) -> Builder {
    builder
        .frame_timeout(FRAME_WINDOW, 500)
        .max_partial_bytes(partial)
        .write_high_water(256 << 10)
}

/// Start an echo server on `transport` with `builder`'s settings.
pub fn serve(transport: Transport, builder: Builder) -> Honest {
    crate::common::init_logs();
    let mut builder = builder
        .route(1, echo)
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()));
    let mut cafile = None;
    if transport.tls() {
        let cert = test_cert();
        let config = server_config(&cert, rustls::ALL_VERSIONS);
        builder = builder.tls(Arc::new(config));
        cafile = Some(TempFile::new("honest-ca.pem", &cert.cert_pem));
    }
    let (builder, closes) = track_closes(builder);
    let builder = match transport {
        Transport::Tcp | Transport::Tls => builder.bind("127.0.0.1:0"),
        Transport::Ws | Transport::Wss => builder.bind_ws("127.0.0.1:0"),
    };
    let server = builder.expect("bind").start().expect("start");
    Honest {
        transport,
        server,
        closes,
        cafile,
    }
}

/// What one run of honest clients did.
#[derive(Debug)]
pub struct Run {
    pub bytes: u64,
    pub secs: f64,
}

impl Honest {
    /// Run `clients` honest clients with `size`-byte messages until each
    /// had `bytes` bytes echoed and `min_secs` passed; panics unless they
    /// all finish cleanly.
    pub fn stream(&self, py: &str, size: usize, bytes: u64, clients: usize, min_secs: f64) -> Run {
        let mut cmd = Command::new(py);
        cmd.arg(CLIENT_PY)
            .arg(self.transport.mode())
            .arg(self.server.local_addr().to_string())
            .arg(size.to_string())
            .arg(bytes.to_string())
            .args(["--clients", &clients.to_string()])
            .args(["--window", &(128 << 10).to_string()])
            .args(["--min-secs", &min_secs.to_string()]);
        if let Some(ca) = &self.cafile {
            cmd.args(["--cafile", ca.arg()]);
        }
        let out = run_bounded(cmd, Duration::from_secs(240));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = stdout.split_whitespace().collect();
        match (out.status.success(), words.as_slice()) {
            (true, ["ok", bytes, secs]) => Run {
                bytes: bytes.parse().expect("bytes"),
                secs: secs.parse().expect("secs"),
            },
            _ => panic!(
                "{:?} clients failed ({}): {stdout}\n{}\nserver: {}",
                self.transport,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.server.stats()
            ),
        }
    }

    /// Every client's close was its own (a clean close after its run),
    /// and the server counted no limit event.
    pub fn assert_untripped(&mut self, clients: usize) {
        for _ in 0..clients {
            let (peer, reason) = self.closes.next();
            let clean = match &reason {
                CloseReason::PeerClosed => true,
                CloseReason::WsClosed { code, .. } => *code == 1000,
                _ => false,
            };
            assert!(clean, "{:?}: {peer} closed: {reason}", self.transport);
        }
        assert_no_limit_event(&self.server.stats(), self.transport);
    }
}

/// No limit fired: no close for a limit, no pause, no refused send.
pub fn assert_no_limit_event(stats: &Stats, transport: Transport) {
    for reason in [
        CloseReason::FrameTimeout,
        CloseReason::MemoryLimit,
        CloseReason::SlowPeer,
        CloseReason::Backlog,
    ] {
        assert_eq!(
            stats.closed_by(&reason),
            0,
            "{transport:?}: {reason}: {stats}"
        );
    }
    assert_eq!(stats.slow_peer_events, 0, "{transport:?}: {stats}");
    assert_eq!(stats.send_errors, 0, "{transport:?}: {stats}");
}

/// The Python with `websockets` (it runs every mode), or `None` when the
/// test is skipped.
pub fn python() -> Option<String> {
    require(Peer::PyWebsockets)
}

/// A server's builder with two loops (ids on different loops look alike).
pub fn two_loops() -> Builder {
    Server::builder().event_loops(2)
}
