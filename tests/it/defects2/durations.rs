//! Durations too long for the timer wheel (issue 25, items 5 and 7): every
//! duration setting saturates at `netloom::FOREVER`, so `Duration::MAX`
//! means "never" and neither fires at once nor panics (these tests run in
//! debug builds, where an overflow panics on the loop thread).
//!
//! What is checked is that something does *not* happen for a while: each
//! such wait is an `on_close` that must not come within a bound.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Duration;

use netloom::{CloseReason, Context, Dial, SeqPacker, Server};

use crate::common::{echo, frame, start_tracked, track_closes, Client, TIMEOUT};

/// Long enough for a timer that wrapped to have fired several ticks over
/// (the wheel's tick is at most 100 ms).
const QUIET: Duration = Duration::from_millis(400);

#[test]
fn frame_timeout_max_never_closes_an_unfinished_frame() {
    let (server, closes) = start_tracked(
        Server::builder()
            .frame_timeout(Duration::MAX, 500)
            .route(1, echo),
    );
    let mut client = Client::connect(server.local_addr());
    // The loop's clock has moved on when the frame starts (a deadline
    // computed at its very first millisecond did not overflow).
    assert!(closes.rx.recv_timeout(QUIET).is_err(), "closed while idle");
    let whole = frame(1, b"a frame sent in two halves");
    client.send_raw(&whole[..12]);
    assert!(
        closes.rx.recv_timeout(QUIET).is_err(),
        "closed while its frame was unfinished"
    );
    // Still open, and the frame completes.
    client.stream.set_read_timeout(Some(QUIET)).unwrap();
    let mut byte = [0u8; 1];
    let quiet = client.stream.read(&mut byte);
    assert!(
        matches!(&quiet, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "{quiet:?}"
    );
    client.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_raw(&whole[12..]);
    assert_eq!(client.recv(), (1, b"a frame sent in two halves".to_vec()));
    server.shutdown(TIMEOUT).expect("no loop thread panicked");
}

#[test]
fn close_linger_max_keeps_flushing_until_everything_is_written() {
    const BIG: usize = 32 << 20;
    let (server, mut closes) = start_tracked(
        Server::builder()
            .close_linger(Duration::MAX)
            .max_body_length(BIG)
            .route(2, |ctx: &mut Context<'_>| -> netloom::Result<()> {
                ctx.reply(2, vec![7u8; BIG])?;
                ctx.close();
                Ok(())
            }),
    );
    let mut client = Client::connect(server.local_addr());
    assert!(closes.rx.recv_timeout(QUIET).is_err(), "closed while idle");
    client.send(2, b"");
    // Not read for a while: the reply is more than the kernel buffers
    // hold, so the closing connection lingers with data unsent.
    assert!(
        closes.rx.recv_timeout(QUIET).is_err(),
        "the linger ended at once"
    );
    let (id, body) = client.recv();
    assert_eq!((id, body.len()), (2, BIG), "the reply was cut");
    assert!(body.iter().all(|&b| b == 7));
    client.expect_closed();
    let addr = client.stream.local_addr().unwrap();
    assert!(matches!(closes.reason_for(addr), CloseReason::Local));
    server.shutdown(TIMEOUT).expect("no loop thread panicked");
}

/// A listener whose accept queue is full never answers a connect.
fn unanswered_listener() -> (socket2::Socket, SocketAddr, Vec<std::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue: {e}"),
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    (listener, addr, fillers)
}

#[test]
fn dial_connect_timeout_max_waits_for_the_connect() {
    crate::common::init_logs();
    let (builder, mut closes) = track_closes(Server::builder().packer(SeqPacker::default()));
    let client = builder.start().unwrap();
    // Filling the queue takes a connect timeout (200 ms): the loop's clock
    // has moved on when the dial comes.
    let (_listener, addr, _fillers) = unanswered_listener();
    let conn = client
        .hub()
        .dial(Dial::new(addr).connect_timeout(Duration::MAX))
        .unwrap();
    assert!(
        closes.rx.recv_timeout(QUIET).is_err(),
        "the connect attempt ended at once"
    );
    conn.close();
    let reason = closes.reason_for(addr);
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");
    client.shutdown(TIMEOUT).expect("no loop thread panicked");
}

/// Request timeouts of `Duration::MAX`: waiting for the reply, with a
/// callback, and on the blocking client.
#[test]
fn requests_with_timeout_max_get_their_replies() {
    let backend = crate::common::start(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body_bytes())),
    );
    crate::common::init_logs();
    let client = Server::builder()
        .packer(SeqPacker::default())
        .start()
        .unwrap();
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    let reply = conn.request(1, b"wait", Duration::MAX).unwrap().wait();
    assert_eq!(&reply.unwrap().body[..], b"wait");
    let (tx, rx) = crossbeam_channel::bounded(1);
    conn.request_with(1, b"callback", Duration::MAX, move |r| {
        let _ = tx.send(r.map(|m| m.body.to_vec()));
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap().unwrap(), b"callback");
    let mut blocking = netloom::client::Client::connect(backend.local_addr())
        .unwrap()
        .with_packer(SeqPacker::default());
    let reply = blocking.request(1, b"blocking", Duration::MAX).unwrap();
    assert_eq!(&reply.body[..], b"blocking");
    client.shutdown(TIMEOUT).expect("no loop thread panicked");
    backend.shutdown(TIMEOUT).unwrap();
}

/// `shutdown(Duration::MAX)` ("flush for as long as it takes") stops the
/// server, from the handle and from a `ShutdownHandle`: the deadline
/// saturates instead of overflowing `Instant + Duration`.
#[test]
fn shutdown_with_duration_max_stops_the_server() {
    let (server, _closes) = start_tracked(Server::builder().route(1, echo));
    let mut client = Client::connect(server.local_addr());
    client.send(1, b"before");
    assert_eq!(client.recv(), (1, b"before".to_vec()));
    let stop = server.shutdown_handle();
    let stopped = std::thread::spawn(move || server.shutdown(Duration::MAX));
    let result = stopped
        .join()
        .expect("shutdown(Duration::MAX) does not panic");
    result.expect("a clean stop");
    // Asked again, after the fact: nothing happens, and nothing panics.
    stop.shutdown(Duration::MAX);
    client.expect_closed();
}
