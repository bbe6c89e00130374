//! How a loop ends, on a real loop over loopback sockets (driven by hand,
//! turn by turn): nothing that reaches it late is dropped unanswered or
//! left counted.
//!
//! * A dial that lands after shutdown began is refused (`ShutDown`): the
//!   loop had closed everything and would wait for it until the deadline.
//! * A request still in the inbox when the loop exits has its callback
//!   called with `ShutDown`, never dropped unrun.
//! * The broken-poll exit (`close_all_now`) removes a dialed connection
//!   with a reconnect policy too: uncounted, `on_close` run.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{unbounded, Receiver};

use super::{EventLoop, WAKER};
use crate::codec::{LengthPacker, ServerPacker};
use crate::config::{Config, Reconnect};
use crate::conn::dial::Dial;
use crate::conn::requests::{Callback, ReplySink};
use crate::dispatch::hooks::Hooks;
use crate::dispatch::App;
use crate::error::{CloseReason, Error};
use crate::runtime::{Command, LoopShared, Runtime};
use crate::transport::Wire;

/// Loop 0 of a one-loop server (not running: the test turns it), its
/// runtime, and the reasons `on_close` reports.
fn one_loop() -> (EventLoop, Arc<Runtime>, Receiver<CloseReason>) {
    let config = Config {
        event_loops: 1,
        ..Config::default()
    };
    let poll = mio::Poll::new().unwrap();
    let waker = mio::Waker::new(poll.registry(), WAKER).unwrap();
    let accept_poll = mio::Poll::new().unwrap();
    let accept_waker = mio::Waker::new(accept_poll.registry(), mio::Token(0)).unwrap();
    let (tx, inbox) = unbounded();
    let packer = ServerPacker::Length(LengthPacker::default());
    let wire = Wire::new(packer, Vec::new(), None, None, Vec::new(), &config).unwrap();
    let shared = vec![LoopShared::new(tx, waker)];
    let runtime = Arc::new(Runtime::new(config, Arc::new(wire), shared, accept_waker));
    let (closed_tx, closed) = unbounded();
    let app = App {
        router: Default::default(),
        unknown_id: Default::default(),
        profiles: Vec::new(),
        timers: Default::default(),
        hooks: Hooks {
            on_close: Some(Box::new(move |_, reason| {
                let _ = closed_tx.send(reason.clone());
            })),
            ..Hooks::default()
        },
        state: Arc::default(),
        exec: Default::default(),
        bad_bodies: Default::default(),
    };
    let event_loop = EventLoop::new(
        0,
        runtime.clone(),
        Arc::new(app),
        poll,
        inbox,
        Default::default(),
    );
    (event_loop, runtime, closed)
}

/// A loopback address something listens on (kept open by the caller).
fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

#[test]
fn a_dial_that_lands_after_shutdown_began_is_refused() {
    let (mut el, runtime, _closed) = one_loop();
    let backend = listener();
    runtime.acceptor_stopped();
    // Shutdown goes into the inbox first, then a dial that passed
    // `Hub::dial`'s check just before.
    runtime.request_shutdown(Instant::now() + Duration::from_secs(5));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let dial = Arc::new(Dial::new(backend.local_addr().unwrap()));
    runtime.push(0, 0, Command::Dial(dial, tx)).unwrap();
    el.drain_inbox();
    assert!(matches!(rx.try_recv(), Ok(Err(Error::ShutDown))));
    assert!(
        el.core.table.conns.borrow().is_empty(),
        "nothing to wait for"
    );
    assert_eq!(runtime.live.load(Ordering::Relaxed), 0);
}

#[test]
fn a_request_left_in_the_inbox_of_an_exiting_loop_is_answered() {
    let (el, runtime, _closed) = one_loop();
    let (tx, rx) = unbounded();
    let sink = ReplySink::Callback(Callback::new(move |r| {
        let _ = tx.send(r);
    }));
    let to = el.core.table.id(0, 1);
    let cmd = Command::Request {
        to,
        id: 1,
        body: Bytes::from_static(b"late"),
        timeout: Duration::from_secs(1),
        sink,
    };
    runtime.push(0, 4, cmd).unwrap();
    drop(el);
    assert!(matches!(rx.try_recv(), Ok(Err(Error::ShutDown))));
}

#[test]
fn closing_everything_removes_a_dialed_connection_that_would_reconnect() {
    let (mut el, runtime, closed) = one_loop();
    let backend = listener();
    let dial = Dial::new(backend.local_addr().unwrap()).reconnect(Reconnect::default());
    let id = el.core.reserve_dial(Arc::new(dial)).unwrap();
    el.start_dials();
    assert_eq!(runtime.live.load(Ordering::Relaxed), 1);
    // The peer went away as the poll broke: closing, for a reason that
    // would otherwise reconnect.
    el.core.table.close_with(id, CloseReason::PeerClosed, None);
    el.close_all_now();
    assert!(el.core.table.conns.borrow().is_empty(), "kept to reconnect");
    assert_eq!(runtime.live.load(Ordering::Relaxed), 0);
    assert!(matches!(closed.try_recv(), Ok(CloseReason::PeerClosed)));
}

/// review32: a wss:// dial whose backend accepted the TCP connection but
/// never answers the ClientHello (the handshake is still going) when the
/// poll breaks. Its upgrade request waits behind the handshake
/// (`owes_request`, in `layer.wants_write()`), but no data was queued:
/// `flush` calls such a connection unopened and drops it uncounted;
/// `close_all_now` (`Conn::unsent`) counts it in `unflushed_closes`.
#[cfg(all(feature = "tls", feature = "ws"))]
#[test]
fn closing_everything_does_not_count_a_wss_dial_in_its_handshake_as_unflushed() {
    let (mut el, _runtime, _closed) = one_loop();
    let backend = listener();
    let roots = rustls::RootCertStore::empty();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("wss://{}/", backend.local_addr().unwrap());
    let dial = Dial::wss(&url, Arc::new(config)).unwrap();
    let id = el.core.reserve_dial(Arc::new(dial)).unwrap();
    el.start_dials();
    // Turn the loop by hand until the TCP connect is done and the
    // ClientHello written (the backend's kernel accepts; nobody answers).
    let mut events = mio::Events::with_capacity(8);
    let began = Instant::now();
    loop {
        assert!(began.elapsed() < Duration::from_secs(10), "never connected");
        el.poll
            .poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for event in events.iter() {
            let mio::Token(key) = event.token();
            if event.token() != WAKER && el.writable_event(key, event.is_writable()) {
                el.flush(key);
            }
        }
        el.flush_dirty();
        let slab = el.core.table.conns.borrow();
        let conn = slab.get(id.key()).expect("the dial");
        if conn.is_connected() && !conn.has(crate::conn::flag::CONNECTING) {
            assert!(conn.layer.is_handshaking());
            assert_eq!(conn.queued(), 0);
            break;
        }
    }
    el.close_all_now();
    let unflushed = el
        .core
        .table
        .counters()
        .unflushed_closes
        .load(Ordering::Relaxed);
    assert_eq!(unflushed, 0, "nothing queued was dropped");
}
