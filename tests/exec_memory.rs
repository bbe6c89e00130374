//! Execution models (found by the review of issue 21): what a connection's waiting work really holds,
//! measured with a counting allocator (this binary's own), against what
//! `Config::exec_backlog` counts.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use crossbeam_channel::bounded;
use netloom::{Context, Exec, Server};

use common::{serial, start, wait_until, Client, TIMEOUT};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        System.realloc(ptr, layout, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A stuck pool handler; the peer sends 4 KiB messages, each in its own
/// read. The backlog counts 4 KiB a message; what is held?
#[test]
fn waiting_work_holds_what_the_backlog_counts() {
    let _serial = serial();
    const BACKLOG: usize = 256 << 10;
    const BODY: usize = 4096;
    let (open, gate) = bounded::<()>(1);
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(1))
            .exec_backlog(BACKLOG)
            .route(1, move |ctx: &mut Context<'_>| {
                if ctx.body().first() == Some(&b'g') {
                    let _ = gate.recv_timeout(TIMEOUT);
                }
            }),
    );
    let hub = server.hub();
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"g");
    wait_until("the first message in", || hub.stats().messages_in == 1);
    let before = LIVE.load(Ordering::SeqCst);
    let mut sent = 0u64;
    // One message a read, until the bound pauses the reader.
    while hub.stats().exec_pauses == 0 && sent < 1024 {
        c.send(1, &vec![b'm'; BODY]);
        sent += 1;
        wait_until("the message read", || hub.stats().messages_in == 1 + sent);
    }
    let held = LIVE.load(Ordering::SeqCst) - before;
    println!(
        "{sent} messages of {BODY} B waiting ({} KiB counted, bound {} KiB): {} KiB allocated",
        (sent as usize * BODY) >> 10,
        BACKLOG >> 10,
        held >> 10
    );
    open.send(()).unwrap();
    assert!(
        held < (BACKLOG * 2) as isize,
        "{} KiB held for a backlog bound of {} KiB",
        held >> 10,
        BACKLOG >> 10
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// Replies of a pool task wait in the write queue of a peer that does not
/// read. Each task of 64 messages has one 16 KiB reply (the others answer
/// nothing): the queue counts 16 KiB a task; what is held?
#[test]
fn replies_from_the_pool_hold_what_the_write_queue_counts() {
    let _serial = serial();
    const BURSTS: usize = 320;
    const REPLY: usize = 16 << 10;
    let server = start(
        Server::builder()
            .event_loops(1)
            .exec(Exec::Pool(1))
            .write_high_water(64 << 20)
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, vec![b'r'; REPLY]))
            .route(2, |_ctx: &mut Context<'_>| {}),
    );
    let hub = server.hub();
    // A peer that does not read, with a small receive buffer (the
    // kernel holds little of what is sent to it).
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&server.local_addr().into(), TIMEOUT)
        .unwrap();
    let mut c = Client {
        stream: sock.into(),
    };
    let before = LIVE.load(Ordering::SeqCst);
    let mut burst = common::frame(1, b"");
    for _ in 0..63 {
        burst.extend(common::frame(2, b""));
    }
    for b in 0..BURSTS {
        c.send_raw(&burst);
        wait_until("the burst handled", || {
            hub.stats().messages_in == ((b + 1) * 64) as u64
        });
    }
    // Every reply handed to the loop (a probe behind them all).
    hub.connections()[0].run(|_| ()).wait().unwrap();
    let bytes_out = hub.stats().bytes_out;
    let held = LIVE.load(Ordering::SeqCst) - before;
    let counted = BURSTS * (REPLY + 8) - bytes_out as usize;
    println!(
        "{BURSTS} replies of {REPLY} B: {} KiB written to the socket, {} KiB queued (counted), {} KiB allocated",
        bytes_out >> 10,
        counted >> 10,
        held >> 10
    );
    assert!(
        held < (counted * 2 + (1 << 20)) as isize,
        "{} KiB held for {} KiB of queued replies",
        held >> 10,
        counted >> 10
    );
    drop(c);
    server.shutdown(TIMEOUT).unwrap();
}
