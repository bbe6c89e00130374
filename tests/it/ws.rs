//! WebSocket listeners over real loopback sockets, against clients nobody
//! on the team wrote: Python's `websockets` (tests/it/ws_client.py), headless
//! Chromium, curl; plus a raw client for the protocol's corner cases.
//!
//! The peers are found by `crate::common::peers` (Python: `NETLOOM_PY`,
//! else the venv `scripts/test` makes, else `python3`): a test whose peer
//! is missing fails with how to install it, or is skipped and listed under
//! `NETLOOM_SKIP_MISSING_PEERS=1`.
//!
//! This file: the helpers the submodules share (the servers, their close
//! reasons; peers run with a bound through `crate::common::run_bounded`).
//! `ws/python.rs`: Python's `websockets`. `ws/browser.rs`: headless
//! Chromium. `ws/upgrade.rs`: curl and raw TCP, requests that are not
//! WebSocket upgrades. `ws/frames.rs`: raw frames, the protocol's duties.
//! `ws/cross_thread.rs`: cross-thread sends, broadcast, mixed listeners,
//! backpressure.

pub(crate) mod browser;
mod closes;
mod cross_thread;
mod frames;
mod python;
mod upgrade;

use crossbeam_channel::{unbounded, Receiver};
use netloom::ws;
use netloom::{Builder, CloseReason, ConnHandle, Server, ServerHandle};

use crate::common::TIMEOUT;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Start `builder` on two loops with a WebSocket listener.
fn start_ws(builder: Builder) -> ServerHandle {
    crate::common::init_logs();
    builder
        .event_loops(2)
        .bind_ws("127.0.0.1:0")
        .expect("bind_ws")
        .start()
        .expect("start")
}

/// Start `builder` on two loops with a TCP listener (`local_addrs()[0]`)
/// and a WebSocket one (`local_addrs()[1]`).
fn start_tcp_and_ws(builder: Builder) -> ServerHandle {
    start_ws(builder.bind("127.0.0.1:0").expect("bind"))
}

/// Each upgraded connection's handle, sent from `ws_on_upgrade`.
fn upgrade_handles(builder: Builder) -> (Builder, Receiver<ConnHandle>) {
    let (tx, rx) = unbounded();
    let builder = builder.ws_on_upgrade(move |session, _| {
        let _ = tx.send(session.handle());
        Ok(())
    });
    (builder, rx)
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
