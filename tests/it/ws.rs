//! WebSocket listeners over real loopback sockets, against clients nobody
//! on the team wrote: Python's `websockets` (tests/it/ws_client.py), headless
//! Chromium, curl; plus a raw client for the protocol's corner cases.
//!
//! The peers are found by `crate::common::peers` (Python: `NETLOOM_PY`,
//! else the venv `scripts/test` makes, else `python3`): a test whose peer
//! is missing fails with how to install it, or is skipped and listed under
//! `NETLOOM_SKIP_MISSING_PEERS=1`.
//!
//! This file: the helpers the submodules share (running a peer with a
//! bound, the server, its close reasons). `ws/python.rs`: Python's
//! `websockets`. `ws/browser.rs`: headless Chromium. `ws/upgrade.rs`: curl
//! and raw TCP, requests that are not WebSocket upgrades. `ws/frames.rs`:
//! raw frames, the protocol's duties. `ws/cross_thread.rs`: cross-thread
//! sends, broadcast, mixed listeners, backpressure.

mod browser;
mod cross_thread;
mod frames;
mod python;
mod upgrade;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use netloom::ws;
use netloom::{Builder, CloseReason, Server, ServerHandle};

use crate::common::TIMEOUT;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Run a command, killing it (by pid) if it outlives `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

fn start_ws(builder: Builder) -> ServerHandle {
    crate::common::init_logs();
    builder
        .event_loops(2)
        .bind_ws("127.0.0.1:0")
        .expect("bind_ws")
        .start()
        .expect("start")
}

/// Close reasons, as `on_close` reports them.
fn closes(builder: Builder) -> (Builder, Receiver<CloseReason>) {
    let (tx, rx) = unbounded();
    let builder = builder.on_close(move |_, reason| {
        let _ = tx.send(reason.clone());
    });
    (builder, rx)
}

fn next_close(rx: &Receiver<CloseReason>) -> CloseReason {
    rx.recv_timeout(TIMEOUT)
        .expect("on_close within the timeout")
}

/// The echo server most tests use: text and binary come back as they were;
/// `on_open` queues a "welcome" before the upgrade is even read.
fn echo_builder() -> Builder {
    Server::builder()
        .on_open(|s| {
            let _ = s.send_text("welcome");
        })
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
}
