//! The bound on a connection's waiting work: over `exec_backlog` its reads
//! pause (memory stays bounded while its handler is stuck), and resume
//! with nothing lost; a dialed link, which may not pause, is closed with
//! `CloseReason::Backlog` instead.

use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver};
use netloom::{CloseReason, Context, Dial, Exec, Server};

use crate::common::{frame, start, start_tracked, wait_until, Client, TIMEOUT};

const BACKLOG: usize = 64 << 10;
const BODY: usize = 1024;

/// A route on the pool whose first message waits for `gate` (or
/// `TIMEOUT`), then echoes: the test holds the handler while work piles up.
fn gated(gate: Receiver<()>) -> impl Fn(&mut Context<'_>) -> netloom::Result<()> {
    let gate = Arc::new(gate);
    move |ctx: &mut Context<'_>| {
        if ctx.body().first() == Some(&b'g') {
            let _ = gate.recv_timeout(TIMEOUT);
        }
        ctx.reply(1, ctx.body())
    }
}

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("{}{i:08}", if i == 0 { 'g' } else { 'm' }).into_bytes();
    b.resize(BODY, b'.');
    b
}

#[test]
fn work_that_piles_up_pauses_the_reader_and_nothing_is_lost() {
    const MESSAGES: usize = 16 << 10; // 16 MiB: far more than the kernel's buffers hold
    let (open, gate) = bounded(1);
    let server = start(
        Server::builder()
            .event_loops(2)
            .exec(Exec::Pool(2))
            .exec_backlog(BACKLOG)
            .route(1, gated(gate))
            .route(2, |ctx: &mut Context<'_>| ctx.reply(2, ctx.body())),
    );
    let hub = server.hub();
    let mut client = Client::connect(server.local_addr());
    let mut writer = client.stream.try_clone().unwrap();
    let w = thread::spawn(move || {
        for i in 0..MESSAGES {
            if let Err(e) = writer.write_all(&frame(1, &body(i))) {
                return Err((i, e));
            }
        }
        Ok(())
    });
    wait_until("reads paused", || hub.stats().exec_pauses > 0);
    // Paused: what the server took in is the bound plus one read's worth,
    // not what the peer sent.
    let taken = hub.stats().messages_in as usize;
    let most = (BACKLOG + (64 << 10) + (256 << 10)) / BODY;
    assert!(
        taken <= most,
        "{taken} messages taken in while paused (at most {most})"
    );
    // Another connection (its work on the other worker) is served.
    let mut other = Client::connect(server.local_addr());
    other.send(2, b"meanwhile");
    assert_eq!(other.recv(), (2, b"meanwhile".to_vec()));
    assert!(hub.stats().messages_in as usize <= most + 1);
    open.send(()).unwrap();
    for i in 0..MESSAGES {
        let (id, got) = client.recv();
        assert!(id == 1 && got == body(i), "reply {i} out of order");
    }
    w.join()
        .unwrap()
        .map_err(|(i, e)| format!("write {i}: {e}"))
        .unwrap();
    let stats = hub.stats();
    assert_eq!(stats.closed_by(&CloseReason::Backlog), 0);
    server.shutdown(TIMEOUT).unwrap();
}

/// A backend that floods a dialed link: the server may not stop reading
/// it (it would stop reading replies), so past the bound the link closes
/// with `Backlog`, and the server goes on.
#[test]
fn a_dialed_link_that_piles_up_work_is_closed_with_backlog() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let flood = thread::spawn(move || {
        let (mut s, _) = backend.accept().unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        for i in 0..(BACKLOG * 4 / BODY) {
            match s.write_all(&frame(1, &body(i))) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break, // closed by the server: expected
            }
        }
        // Hold the socket until the server has closed its end.
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut sink);
    });
    let (open, gate) = bounded(1);
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .exec(Exec::Pool(1))
            .exec_backlog(BACKLOG)
            .route(1, gated(gate)),
    );
    let hub = server.hub();
    hub.dial(Dial::new(backend_addr)).unwrap();
    wait_until("the link closed for its backlog", || {
        hub.stats().closed_by(&CloseReason::Backlog) == 1
    });
    // Its `on_close` waits for its data, which the stuck handler holds.
    open.send(()).unwrap();
    let reason = closes.reason_for(backend_addr);
    assert!(
        matches!(reason, CloseReason::Backlog),
        "closed with {reason:?}"
    );
    flood.join().unwrap();
    // The server serves on.
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"still here");
    assert_eq!(c.recv(), (1, b"still here".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}
