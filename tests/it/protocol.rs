//! Protocol-level behaviour over real loopback sockets: framing, ordering,
//! routing and middleware, cross-thread sends, broadcast, and what happens
//! to peers that break the protocol.
//!
//! Every frame a client sends is written from literal bytes (or assembled
//! by hand with `crate::common::frame`), never with netloom's encoder. Nothing
//! sleeps to synchronise: tests wait on channels fed by hooks and handlers,
//! on blocking reads with timeouts, or (for counters) `crate::common::wait_until`.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use crossbeam_channel::unbounded;
use netloom::{
    Builder, CloseReason, ConnHandle, ConnId, Context, Error, LengthPacker, Message, Next,
    PackError, Packer, Peek, Server, UnknownIdPolicy,
};

use crate::common::peers::{require, Peer};
use crate::common::{echo, frame, start, track_closes, wait_until, Client, TIMEOUT};

// ---------------------------------------------------------------------------
// Helpers local to this file.
// ---------------------------------------------------------------------------

/// Reply with the request's id and body.
/// A server echoing ids 1, 2 and 3 on `loops` event loops.
fn echo_builder(loops: usize) -> Builder {
    Server::builder()
        .event_loops(loops)
        .route(1, echo)
        .route(2, echo)
        .route(3, echo)
}

fn local_addr(client: &Client) -> SocketAddr {
    client.stream.local_addr().expect("local addr")
}

/// The next read must be the end of the stream (or a reset): no data.
fn assert_eof(client: &mut Client) {
    let mut buf = [0u8; 256];
    match client.stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} more bytes: {:?}", &buf[..n]),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) => {}
        Err(e) => panic!("expected EOF, got {e} (kind {:?})", e.kind()),
    }
}

/// Read exactly `n` raw bytes.
fn read_raw(client: &mut Client, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    client.stream.read_exact(&mut buf).expect("read raw bytes");
    buf
}

/// One round trip on echo id 1.
fn assert_echoes(client: &mut Client, body: &[u8]) {
    client.send(1, body);
    assert_eq!(client.recv(), (1, body.to_vec()));
}

/// xorshift64: reproducible garbage without a dependency.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

// ---------------------------------------------------------------------------
// Framing.
// ---------------------------------------------------------------------------

#[test]
fn echoes_literal_frame_and_empty_body_byte_exact() {
    let server = start(echo_builder(2));
    let mut c = Client::connect(server.local_addr());

    let hello = b"\x05\x00\x00\x00\x01\x00\x00\x00hello";
    c.send_raw(hello);
    assert_eq!(read_raw(&mut c, hello.len()), hello.to_vec());

    // An empty body is a valid message and comes back as a bare header.
    let empty = b"\x00\x00\x00\x00\x02\x00\x00\x00";
    c.send_raw(empty);
    assert_eq!(read_raw(&mut c, empty.len()), empty.to_vec());

    // Still in sync afterwards.
    let again = b"\x03\x00\x00\x00\x03\x00\x00\x00abc";
    c.send_raw(again);
    assert_eq!(read_raw(&mut c, again.len()), again.to_vec());
}

#[test]
fn frames_split_byte_by_byte_are_echoed_in_order() {
    let server = start(echo_builder(2));
    let mut c = Client::connect(server.local_addr());

    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let mut wire = Vec::new();
    wire.extend_from_slice(b"\x03\x00\x00\x00\x01\x00\x00\x00abc");
    wire.extend_from_slice(b"\x00\x00\x00\x00\x02\x00\x00\x00");
    wire.extend_from_slice(&frame(3, &big));
    wire.extend_from_slice(b"\x01\x00\x00\x00\x01\x00\x00\x00z");

    for byte in &wire {
        c.stream.write_all(std::slice::from_ref(byte)).unwrap();
        c.stream.flush().unwrap();
    }
    assert_eq!(c.recv(), (1, b"abc".to_vec()));
    assert_eq!(c.recv(), (2, Vec::new()));
    assert_eq!(c.recv(), (3, big));
    assert_eq!(c.recv(), (1, b"z".to_vec()));
}

#[test]
fn many_frames_in_one_write_are_echoed_in_order_byte_exact() {
    let server = start(echo_builder(2));
    let mut c = Client::connect(server.local_addr());

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut wire = Vec::new();
    for i in 0..500u32 {
        let len = match i {
            250 => 200 * 1024,
            _ if i % 10 == 0 => 0,
            _ => (xorshift(&mut seed) % 3000) as usize,
        };
        let body: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
        wire.extend_from_slice(&frame(1 + i % 3, &body));
    }

    // Write everything at once from another thread while this one reads,
    // so neither side can stall on a full kernel buffer.
    let mut writer = c.stream.try_clone().unwrap();
    let to_send = wire.clone();
    let sender = std::thread::spawn(move || writer.write_all(&to_send));
    let got = read_raw(&mut c, wire.len());
    sender.join().unwrap().expect("write all frames");
    assert!(got == wire, "echoed bytes differ from the frames sent");
}

/// Large bodies around the size where replies stop being copied, echoed
/// whole (id 1), as a slice of the request (id 2), or kept by the handler
/// (id 3), arriving in writes of random sizes: every reply is byte exact
/// and in order, whether it was copied or queued by reference, and whether
/// its frame was read through the scratch buffer or straight into the
/// buffer reserved for it.
#[test]
fn large_bodies_echoed_by_reference_or_kept_come_back_byte_exact() {
    #[derive(Default)]
    struct Kept(Vec<bytes::Bytes>);
    let server = start(
        Server::builder()
            .event_loops(1)
            // All 60 replies (about 20 MiB) may be queued while the reader
            // thread lags: over the default 4 MiB mark the echo handler's
            // reply would be refused (BufferFull) and never arrive.
            .write_high_water(64 << 20)
            .on_open(|s| {
                s.data_mut().insert(Kept::default());
            })
            .route(1, echo)
            .route(2, |ctx: &mut Context<'_>| {
                let body = ctx.body();
                let inner = body.get(3..body.len().saturating_sub(5)).unwrap_or(&[]);
                ctx.reply(2, inner)
            })
            .route(3, |ctx: &mut Context<'_>| {
                let body = ctx.body_bytes();
                if let Some(kept) = ctx.data_mut().get_mut::<Kept>() {
                    kept.0.push(body);
                }
                ctx.reply(3, ctx.body())
            }),
    );
    let mut c = Client::connect(server.local_addr());

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let sizes: [usize; 7] = [16 * 1024 - 1, 16 * 1024, 70_000, 300_000, 1 << 20, 0, 5];
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for i in 0..60u32 {
        let len = sizes[xorshift(&mut seed) as usize % sizes.len()];
        let body: Vec<u8> = (0..len).map(|j| (j as u32 ^ (i * 131)) as u8).collect();
        let id = 1 + i % 3;
        wire.extend_from_slice(&frame(id, &body));
        let reply = match id {
            2 => body.get(3..len.saturating_sub(5)).unwrap_or(&[]).to_vec(),
            _ => body,
        };
        expected.extend_from_slice(&frame(id, &reply));
    }

    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (1 + xorshift(&mut seed) as usize % 200_000).min(rest.len());
            writer.write_all(&rest[..n])?;
            rest = &rest[n..];
        }
        Ok::<_, io::Error>(())
    });
    let got = read_raw(&mut c, expected.len());
    sender.join().unwrap().expect("write all frames");
    assert!(got == expected, "replies differ from what was expected");
}

/// Bodies a handler keeps (`body_bytes`) share the loop's receive buffer:
/// later reads must not overwrite them. Thousands of small frames arrive in
/// many reads while every body is kept; afterwards each kept body must still
/// be what was sent.
#[test]
fn bodies_kept_past_the_handler_stay_intact_while_reads_continue() {
    let kept = Arc::new(Mutex::new(Vec::<bytes::Bytes>::new()));
    let keep = kept.clone();
    let server = start(
        Server::builder()
            .event_loops(1)
            .route(1, move |ctx: &mut Context<'_>| {
                keep.lock().unwrap().push(ctx.body_bytes());
                ctx.reply(1, b"")
            }),
    );
    let mut c = Client::connect(server.local_addr());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let bodies: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| {
            let len = xorshift(&mut seed) as usize % 100;
            (0..len).map(|j| (j as u32 * 7 + i) as u8).collect()
        })
        .collect();
    let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(1, b)).collect();
    // Where each frame ends on the wire.
    let ends: Vec<usize> = bodies
        .iter()
        .scan(0, |end, b| {
            *end += 8 + b.len();
            Some(*end)
        })
        .collect();
    // Uneven writes, each followed by the acks of the frames it completed,
    // so the server reads many times into the buffer the kept bodies share.
    let (mut sent, mut acked) = (0, 0);
    while sent < wire.len() {
        let n = (1 + xorshift(&mut seed) as usize % 3000).min(wire.len() - sent);
        c.send_raw(&wire[sent..sent + n]);
        sent += n;
        while acked < ends.len() && ends[acked] <= sent {
            assert_eq!(c.recv(), (1, Vec::new()));
            acked += 1;
        }
    }
    while acked < bodies.len() {
        assert_eq!(c.recv(), (1, Vec::new()));
        acked += 1;
    }
    let kept = kept.lock().unwrap();
    assert_eq!(kept.len(), bodies.len());
    for (i, (got, sent)) in kept.iter().zip(&bodies).enumerate() {
        assert!(
            got[..] == sent[..],
            "kept body {i} changed: {got:?} != {sent:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Custom packers through the server.
// ---------------------------------------------------------------------------

/// Lines of at most 64 bytes, id 0: a packer with `decode` only (no `peek`).
struct Lines;

impl Packer for Lines {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) if end <= 64 => {
                let line = buf.split_to(end).freeze();
                buf.advance(1);
                Ok(Some(Message::new(0, line)))
            }
            Some(end) => Err(PackError::TooLong { len: end, max: 64 }),
            None if buf.len() > 64 => Err(PackError::TooLong {
                len: buf.len(),
                max: 64,
            }),
            None => Ok(None),
        }
    }

    fn encode(
        &self,
        _id: u32,
        _seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), PackError> {
        out.extend_from_slice(body);
        out.extend_from_slice(b"\n");
        Ok(())
    }
}

/// A packer that implements only `decode` (no `peek`) frames every message
/// through it: lines split across writes come back in order, and an
/// over-long line closes only its connection.
#[test]
fn a_packer_with_only_decode_serves_split_lines_in_order() {
    let (builder, mut closes) = track_closes(Server::builder().event_loops(1).packer(Lines).route(
        0,
        |ctx: &mut Context<'_>| {
            // The body stays borrowed while the context is changed.
            let line = ctx.body();
            ctx.values_mut().insert(line.len());
            ctx.reply(0, line.to_ascii_uppercase())
        },
    ));
    let server = start(builder);
    let mut c = Client::connect(server.local_addr());
    let text: String = (0..200).map(|i| format!("line {i} of many\n")).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let n = (1 + xorshift(&mut seed) as usize % 40).min(rest.len());
        c.send_raw(&rest[..n]);
        rest = &rest[n..];
    }
    let got = read_raw(&mut c, text.len());
    assert_eq!(String::from_utf8(got).unwrap(), text.to_uppercase());

    let mut bad = Client::connect(server.local_addr());
    bad.send_raw(&[b'x'; 100]);
    bad.expect_closed();
    let reason = closes.reason_for(local_addr(&bad));
    assert!(
        matches!(reason, CloseReason::Protocol(PackError::TooLong { .. })),
        "got {reason:?}"
    );
    c.send_raw(b"still here\n");
    assert_eq!(read_raw(&mut c, 11), b"STILL HERE\n");
}

/// The default wire format, except that a frame whose id is 13 makes
/// `peek` misbehave as its first body byte says: `p` panics, `r` reports a
/// body outside the frame, `z` reports an empty frame, `i` reports a frame
/// that is there as incomplete, `h` declares a frame of `usize::MAX` bytes
/// (a packer that forgot its limit).
struct Moody;

impl Packer for Moody {
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        let peeked = LengthPacker::default().peek(buf)?;
        match (&peeked, buf.get(8)) {
            (Peek::Frame { id: 13, .. }, Some(b'p')) => panic!("moody packer"),
            (Peek::Frame { id: 13, len, .. }, Some(b'r')) => Ok(Peek::Frame {
                id: 13,
                seq: 0,
                body: 8..len + 1,
                len: *len,
            }),
            (Peek::Frame { id: 13, .. }, Some(b'z')) => Ok(Peek::Frame {
                id: 13,
                seq: 0,
                body: 0..0,
                len: 0,
            }),
            (Peek::Frame { id: 13, .. }, Some(b'i')) => Ok(Peek::Incomplete { frame_len: Some(1) }),
            (Peek::Frame { id: 13, .. }, Some(b'h')) => Ok(Peek::Incomplete {
                frame_len: Some(usize::MAX),
            }),
            _ => Ok(peeked),
        }
    }

    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        LengthPacker::default().encode(id, seq, body, out)
    }
}

/// A `peek` that panics or reports an impossible frame closes only its
/// connection, with a typed reason, after the frames before it were
/// handled; the server keeps serving everyone else.
#[test]
fn a_misbehaving_peek_closes_only_its_connection() {
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(1)
            .packer(Moody)
            .route(1, echo)
            .route(13, echo),
    );
    let server = start(builder);
    let mut good = Client::connect(server.local_addr());
    assert_echoes(&mut good, b"before");
    for (mood, expected) in [
        (b'p', "panic"),
        (b'r', "range"),
        (b'z', "empty"),
        (b'i', "incomplete"),
    ] {
        let mut bad = Client::connect(server.local_addr());
        // A good frame, then the bad one, in one write: the good one is
        // still answered.
        let mut wire = frame(1, b"first");
        wire.extend_from_slice(&frame(13, &[mood]));
        bad.send_raw(&wire);
        assert_eq!(bad.recv(), (1, b"first".to_vec()), "{expected}");
        bad.expect_closed();
        let reason = closes.reason_for(local_addr(&bad));
        match expected {
            "panic" => assert!(matches!(reason, CloseReason::HandlerPanic), "{reason:?}"),
            _ => assert!(
                matches!(reason, CloseReason::Protocol(PackError::Malformed(_))),
                "{expected}: {reason:?}"
            ),
        }
        assert_echoes(&mut good, expected.as_bytes());
    }

    // A declared length the packer did not check reserves at most
    // max_body_length plus one read up front (no capacity-overflow panic
    // on the loop): the connection just waits for its frame, and every
    // connection on that loop carries on.
    let mut waiting = Client::connect(server.local_addr());
    let mut wire = frame(1, b"first");
    wire.extend_from_slice(&frame(13, b"h"));
    waiting.send_raw(&wire);
    assert_eq!(waiting.recv(), (1, b"first".to_vec()));
    assert_echoes(&mut good, b"after a huge declared length");
    let mut later = Client::connect(server.local_addr());
    assert_echoes(&mut later, b"the loop still accepts");
    assert_eq!(server.stats().connections, 3, "{}", server.stats());
}

/// A packer that implements neither `peek` nor `decode` is refused when
/// the server starts, not found out on every connection's first byte.
#[test]
fn a_packer_that_cannot_decode_is_a_config_error() {
    struct EncodeOnly;
    impl Packer for EncodeOnly {
        fn encode(
            &self,
            id: u32,
            seq: u32,
            body: &[u8],
            out: &mut BytesMut,
        ) -> Result<(), PackError> {
            LengthPacker::default().encode(id, seq, body, out)
        }
    }
    let started = Server::builder()
        .packer(EncodeOnly)
        .route(1, echo)
        .bind("127.0.0.1:0")
        .expect("bind")
        .start();
    match started {
        Err(Error::Config(why)) => assert!(why.contains("neither"), "{why}"),
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("a packer that cannot decode was accepted"),
    }
}

// ---------------------------------------------------------------------------
// Ordering and many clients.
// ---------------------------------------------------------------------------

/// Per-connection request counter (user data).
struct Counter(u64);

/// Reply on `100 + msg_id` with (per-connection counter u64 LE, body).
fn counted_reply(ctx: &mut Context<'_>) -> netloom::Result<()> {
    let n = match ctx.data_mut().get_mut::<Counter>() {
        Some(c) => {
            c.0 += 1;
            c.0
        }
        None => {
            ctx.data_mut().insert(Counter(0));
            0
        }
    };
    let mut out = n.to_le_bytes().to_vec();
    out.extend_from_slice(ctx.body());
    ctx.reply(100 + ctx.msg_id(), out)
}

#[test]
fn pipelined_requests_are_answered_in_request_order() {
    let server = start(
        Server::builder()
            .event_loops(2)
            .route(1, counted_reply)
            .route(2, counted_reply)
            .route(3, counted_reply),
    );
    const N: u32 = 1000;
    // Two connections (on different loops), each with its own counter,
    // both fully pipelined before either reads.
    let mut clients = [
        Client::connect(server.local_addr()),
        Client::connect(server.local_addr()),
    ];
    for (k, c) in clients.iter_mut().enumerate() {
        let mut wire = Vec::new();
        for i in 0..N {
            let id = 1 + (i + k as u32) % 3;
            wire.extend_from_slice(&frame(id, &i.to_le_bytes()));
        }
        c.send_raw(&wire);
    }
    for (k, c) in clients.iter_mut().enumerate() {
        for i in 0..N {
            let (id, body) = c.recv();
            assert_eq!(id, 101 + (i + k as u32) % 3, "conn {k}, reply {i}: route");
            assert_eq!(body.len(), 12, "conn {k}, reply {i}: body length");
            let counter = u64::from_le_bytes(body[..8].try_into().unwrap());
            let echoed = u32::from_le_bytes(body[8..].try_into().unwrap());
            assert_eq!(counter, u64::from(i), "conn {k}: reply {i} out of order");
            assert_eq!(echoed, i, "conn {k}: reply {i} answers another request");
        }
    }
}

/// Raise this process's soft descriptor limit to its hard limit (only
/// ever raised, under `serial()`: it is process-wide), then check that
/// `needed` more descriptors fit under it.
fn ensure_descriptors(needed: u64) {
    let _serial = crate::common::serial();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    // macOS refuses a soft limit over OPEN_MAX (10240): try that second.
    for soft in [lim.rlim_max, lim.rlim_max.min(10240)] {
        if soft <= lim.rlim_cur {
            break;
        }
        let raised = libc::rlimit {
            rlim_cur: soft,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = soft;
            break;
        }
    }
    let open = std::fs::read_dir("/dev/fd").map_or(0, |d| d.count() as u64);
    assert!(
        lim.rlim_cur >= open + needed,
        "this test needs {needed} descriptors beyond the {open} open, and the limit is {} \
         (hard limit {}): raise `ulimit -n`",
        lim.rlim_cur,
        lim.rlim_max
    );
}

#[test]
fn thousand_concurrent_clients_each_get_their_own_echoes() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 125;
    // A descriptor per client and one per server side, and room for the
    // tests running beside this one.
    ensure_descriptors(2 * (THREADS * PER_THREAD) as u64 + 512);
    let server = start(echo_builder(4));
    let addr = server.local_addr();
    let started = Instant::now();

    let all: Vec<Vec<Client>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut clients: Vec<Client> =
                        (0..PER_THREAD).map(|_| Client::connect(addr)).collect();
                    for (c, client) in clients.iter_mut().enumerate() {
                        let mut wire = frame(1, format!("t{t}-c{c}-first").as_bytes());
                        wire.extend_from_slice(&frame(2, format!("t{t}-c{c}-second").as_bytes()));
                        client.send_raw(&wire);
                    }
                    for (c, client) in clients.iter_mut().enumerate() {
                        assert_eq!(client.recv(), (1, format!("t{t}-c{c}-first").into_bytes()));
                        assert_eq!(client.recv(), (2, format!("t{t}-c{c}-second").into_bytes()));
                    }
                    clients
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let total: usize = all.iter().map(Vec::len).sum();
    assert_eq!(total, THREADS * PER_THREAD);
    assert_eq!(server.connection_count(), THREADS * PER_THREAD);
    let stats = server.stats();
    assert_eq!(stats.accepted, (THREADS * PER_THREAD) as u64);
    assert_eq!(stats.messages_in, (2 * THREADS * PER_THREAD) as u64);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "1000 clients took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Cross-thread sends and broadcast.
// ---------------------------------------------------------------------------

#[test]
fn handle_sends_from_another_thread_and_fails_or_counts_after_close() {
    let (handles_tx, handles) = unbounded::<ConnHandle>();
    let (builder, mut closes) = track_closes(echo_builder(2).route(5, move |ctx| {
        let _ = handles_tx.send(ctx.handle());
        ctx.reply(5, b"registered")
    }));
    let server = start(builder);

    let mut a = Client::connect(server.local_addr());
    a.send(5, b"");
    assert_eq!(a.recv(), (5, b"registered".to_vec()));
    let handle = handles
        .recv_timeout(TIMEOUT)
        .expect("handler sent its handle");

    // From the test thread (no loop here).
    handle.send(42, b"pushed from the test thread").unwrap();
    assert_eq!(a.recv(), (42, b"pushed from the test thread".to_vec()));

    // From yet another thread, many in a row: they arrive in send order.
    let h = handle.clone();
    std::thread::spawn(move || {
        for i in 0..100u32 {
            h.send(43, i.to_le_bytes()).unwrap();
        }
    })
    .join()
    .unwrap();
    for i in 0..100u32 {
        assert_eq!(a.recv(), (43, i.to_le_bytes().to_vec()));
    }

    // The client goes away; once on_close has run, a send through the old
    // handle either fails with Closed or is counted in send_errors (the
    // documented contract for sends from a non-loop thread).
    let a_addr = local_addr(&a);
    drop(a);
    assert!(matches!(closes.reason_for(a_addr), CloseReason::PeerClosed));
    for attempt in 0..2 {
        let before = server.stats().send_errors;
        let result = if attempt == 0 {
            handle.send(42, b"too late")
        } else {
            server.hub().conn(handle.id()).send(42, b"too late")
        };
        match result {
            Err(Error::Closed) => {}
            Ok(()) => wait_until("send to a closed connection counted", || {
                server.stats().send_errors > before
            }),
            Err(e) => panic!("unexpected error sending to a closed connection: {e}"),
        }
    }

    // New connections may reuse the closed one's slot; the stale handle
    // must never reach them.
    let mut b = Client::connect(server.local_addr());
    let mut c = Client::connect(server.local_addr());
    for client in [&mut b, &mut c] {
        client.send(5, b"");
        assert_eq!(client.recv(), (5, b"registered".to_vec()));
    }
    // b registered (and got its answer) before c did: handles arrive in order.
    let fresh: Vec<ConnHandle> = (0..2)
        .map(|_| handles.recv_timeout(TIMEOUT).unwrap())
        .collect();
    assert!(
        fresh.iter().all(|h| h.id() != handle.id()),
        "a ConnId was handed out twice"
    );
    let before = server.stats().send_errors;
    match handle.send(44, b"stale") {
        Err(Error::Closed) => {}
        Ok(()) => wait_until("stale send counted", || server.stats().send_errors > before),
        Err(e) => panic!("unexpected error sending through a stale handle: {e}"),
    }
    for client in [&mut b, &mut c] {
        // The first frame they see must be their own echo, not "stale".
        assert_echoes(client, b"still mine");
    }

    // Closing through a handle from this thread: the client sees EOF and
    // on_close gets Local.
    fresh[0].close();
    assert_eof(&mut b);
    assert!(matches!(
        closes.reason_for(local_addr(&b)),
        CloseReason::Local
    ));
    assert_echoes(&mut c, b"unaffected");
}

#[test]
fn broadcast_reaches_every_client_exactly_once() {
    const CLIENTS: usize = 50;
    let (opened_tx, opened) = unbounded::<ConnId>();
    let server = start(
        echo_builder(3)
            .on_open(move |session| {
                let _ = opened_tx.send(session.id());
            })
            .route(71, |ctx| ctx.hub().broadcast(72, ctx.body())),
    );
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let ids: HashSet<ConnId> = (0..CLIENTS)
        .map(|_| opened.recv_timeout(TIMEOUT).expect("on_open ran"))
        .collect();
    assert_eq!(ids.len(), CLIENTS, "ConnIds must be distinct");
    let loops: HashSet<usize> = ids.iter().map(ConnId::loop_index).collect();
    assert_eq!(loops.len(), 3, "connections should span every loop");

    let hub = server.hub();
    assert_eq!(hub.connection_count(), CLIENTS);
    let listed: HashSet<ConnId> = hub.connections().iter().map(ConnHandle::id).collect();
    assert_eq!(
        listed, ids,
        "hub.connections() must list every open connection"
    );

    // From the test thread.
    hub.broadcast(70, b"news").unwrap();
    for c in clients.iter_mut() {
        assert_eq!(c.recv(), (70, b"news".to_vec()));
    }

    // From inside a handler (its own loop directly, the others through
    // their inboxes).
    clients[7].send(71, b"relayed by a handler");
    for c in clients.iter_mut() {
        assert_eq!(c.recv(), (72, b"relayed by a handler".to_vec()));
    }

    // Exactly one copy each: the next frame every client sees is its echo.
    for (i, c) in clients.iter_mut().enumerate() {
        assert_echoes(c, format!("sync {i}").as_bytes());
    }
}

/// A connection's name in the relay test (user data).
struct Name(String);

type Registry = Arc<Mutex<HashMap<String, ConnHandle>>>;

#[test]
fn handlers_and_on_close_send_to_connections_on_other_loops() {
    let registry: Registry = Arc::default();
    let (joined, say, left) = (registry.clone(), registry.clone(), registry.clone());
    let server = start(
        Server::builder()
            .event_loops(2)
            .route(1, echo)
            // 60 "name": join under that name; answers with the loop index.
            .route(60, move |ctx| {
                let name = String::from_utf8_lossy(ctx.body()).into_owned();
                joined.lock().unwrap().insert(name.clone(), ctx.handle());
                ctx.data_mut().insert(Name(name));
                let index = ctx.id().loop_index() as u32;
                ctx.reply(60, index.to_le_bytes())
            })
            // 61 "to:text": relay as 62 "from: text" through the target's handle.
            .route(61, move |ctx| -> netloom::HandlerResult {
                let body = ctx.body();
                let text = String::from_utf8_lossy(body);
                let (to, text) = text.split_once(':').ok_or("no target")?;
                let from = ctx.data().get::<Name>().map_or("?", |n| n.0.as_str());
                let target = say.lock().unwrap().get(to).cloned().ok_or("no such peer")?;
                target.send(62, format!("{from}: {text}"))?;
                ctx.reply(61, b"sent")?;
                Ok(())
            })
            // Tell everyone else who left, from the leaver's loop.
            .on_close(move |session, _| {
                let Some(name) = session.data().get::<Name>().map(|n| n.0.clone()) else {
                    return;
                };
                let others: Vec<ConnHandle> = {
                    let mut map = left.lock().unwrap();
                    map.remove(&name);
                    map.values().cloned().collect()
                };
                for other in others {
                    let _ = other.send(63, format!("{name} left"));
                }
            }),
    );
    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let mut loops = Vec::new();
    for (c, name) in clients.iter_mut().zip(["a", "b", "c"]) {
        c.send(60, name.as_bytes());
        let (id, body) = c.recv();
        assert_eq!(id, 60);
        loops.push(u32::from_le_bytes(body[..].try_into().unwrap()));
    }
    // Round-robin over two loops: a and c share one, b is on the other.
    assert_eq!(loops[0], loops[2]);
    assert_ne!(loops[0], loops[1]);
    let [a, b, c] = &mut clients[..] else {
        unreachable!()
    };

    a.send(61, b"b:across loops");
    assert_eq!(a.recv(), (61, b"sent".to_vec()));
    assert_eq!(b.recv(), (62, b"a: across loops".to_vec()));

    a.send(61, b"c:same loop, other connection");
    assert_eq!(a.recv(), (61, b"sent".to_vec()));
    assert_eq!(c.recv(), (62, b"a: same loop, other connection".to_vec()));

    b.send(61, b"a:and back");
    assert_eq!(b.recv(), (61, b"sent".to_vec()));
    assert_eq!(a.recv(), (62, b"b: and back".to_vec()));

    // a leaves: its on_close reaches c on its own loop and b on the other.
    clients.remove(0);
    let [b, c] = &mut clients[..] else {
        unreachable!()
    };
    assert_eq!(b.recv(), (63, b"a left".to_vec()));
    assert_eq!(c.recv(), (63, b"a left".to_vec()));
    // Exactly one notice each.
    assert_echoes(b, b"nothing else queued");
    assert_echoes(c, b"nothing else queued");
}

// ---------------------------------------------------------------------------
// Middleware and user data.
// ---------------------------------------------------------------------------

type Log = Arc<Mutex<Vec<&'static str>>>;

fn logging(
    log: &Log,
    before: &'static str,
    after: &'static str,
) -> impl Fn(&mut Context<'_>, Next<'_>) -> netloom::HandlerResult + Send + Sync + 'static {
    let log = log.clone();
    move |ctx: &mut Context<'_>, next: Next<'_>| {
        log.lock().unwrap().push(before);
        let result = next.run(ctx);
        log.lock().unwrap().push(after);
        result
    }
}

#[test]
fn middleware_runs_global_then_group_in_order_around_the_handler() {
    let log: Log = Arc::default();
    let (h1, h2) = (log.clone(), log.clone());
    let server = start(
        Server::builder()
            .event_loops(2)
            .middleware(logging(&log, "g1-before", "g1-after"))
            // A route declared between global middleware still gets both.
            .route(11, move |ctx| {
                h1.lock().unwrap().push("plain-handler");
                ctx.reply(11, b"plain")
            })
            .middleware(logging(&log, "g2-before", "g2-after"))
            // Middleware that captures goes in with `Group::middleware`.
            .group([], |g| {
                g.middleware(logging(&log, "grp-before", "grp-after"))
                    .middleware(logging(&log, "grp2-before", "grp2-after"))
                    .route(10, move |ctx| {
                        h2.lock().unwrap().push("handler");
                        ctx.reply(10, b"grouped")
                    })
            }),
    );
    let mut c = Client::connect(server.local_addr());

    c.send(10, b"");
    assert_eq!(c.recv(), (10, b"grouped".to_vec()));
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        [
            "g1-before",
            "g2-before",
            "grp-before",
            "grp2-before",
            "handler",
            "grp2-after",
            "grp-after",
            "g2-after",
            "g1-after"
        ]
    );

    c.send(11, b"");
    assert_eq!(c.recv(), (11, b"plain".to_vec()));
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        [
            "g1-before",
            "g2-before",
            "plain-handler",
            "g2-after",
            "g1-after"
        ]
    );
}

struct LoggedIn(u64);
struct UserId(u64);

#[test]
fn auth_middleware_short_circuits_and_passes_values_to_the_handler() {
    let handled = Arc::new(AtomicUsize::new(0));
    let seen = handled.clone();
    let logins = Arc::new(AtomicUsize::new(0));
    let login_count = logins.clone();
    let auth = |ctx: &mut Context<'_>, next: Next<'_>| -> netloom::HandlerResult {
        match ctx.data().get::<LoggedIn>().map(|l| l.0) {
            Some(uid) => {
                ctx.values_mut().insert(UserId(uid));
                next.run(ctx)
            }
            None => {
                ctx.reply(401, b"login first")?;
                ctx.close();
                Ok(())
            }
        }
    };
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .route(21, move |ctx| {
                login_count.fetch_add(1, Ordering::SeqCst);
                let uid = u64::from_le_bytes(ctx.body()[..].try_into()?);
                ctx.data_mut().insert(LoggedIn(uid));
                ctx.reply(21, b"welcome")?;
                Ok::<(), netloom::BoxError>(())
            })
            .group([auth], |g| {
                g.route(20, move |ctx| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let uid = ctx.values().get::<UserId>().map(|u| u.0);
                    ctx.reply(20, format!("secret for {uid:?}"))
                })
            }),
    );
    let server = start(builder);

    // Not logged in: 401, then the server closes; the handler never ran.
    let mut anon = Client::connect(server.local_addr());
    // A login pipelined behind the refused request is dropped with it
    // ("messages already received but not yet handled are dropped").
    let mut wire = frame(20, b"");
    wire.extend_from_slice(&frame(21, &9u64.to_le_bytes()));
    anon.send_raw(&wire);
    assert_eq!(anon.recv(), (401, b"login first".to_vec()));
    assert_eof(&mut anon);
    assert!(matches!(
        closes.reason_for(local_addr(&anon)),
        CloseReason::Local
    ));
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert_eq!(logins.load(Ordering::SeqCst), 0, "pipelined login ran");

    // Logged in: the middleware's value reaches the handler.
    let mut user = Client::connect(server.local_addr());
    user.send(21, &7u64.to_le_bytes());
    assert_eq!(user.recv(), (21, b"welcome".to_vec()));
    user.send(20, b"");
    assert_eq!(user.recv(), (20, b"secret for Some(7)".to_vec()));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

/// Set by on_open: the client's port as the server sees it.
struct OpenedAs(u16);

#[test]
fn user_data_set_in_on_open_is_seen_by_handlers_and_on_close() {
    let (closed_tx, closed) = unbounded::<(SocketAddr, Option<u16>)>();
    let server = start(
        Server::builder()
            .event_loops(2)
            .on_open(|session| {
                let port = session.peer_addr().port();
                session.data_mut().insert(OpenedAs(port));
            })
            .on_close(move |session, _| {
                let _ = closed_tx.send((
                    session.peer_addr(),
                    session.data().get::<OpenedAs>().map(|d| d.0),
                ));
            })
            .route(30, |ctx| {
                let port = ctx.data().get::<OpenedAs>().map_or(0, |d| d.0);
                ctx.reply(30, port.to_le_bytes())
            }),
    );
    let mut clients: Vec<Client> = (0..4)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    for c in clients.iter_mut() {
        let port = local_addr(c).port();
        c.send(30, b"");
        assert_eq!(c.recv(), (30, port.to_le_bytes().to_vec()));
    }
    let mut expected: HashSet<SocketAddr> = clients.iter().map(local_addr).collect();
    drop(clients);
    while !expected.is_empty() {
        let (addr, data) = closed.recv_timeout(TIMEOUT).expect("on_close ran");
        assert!(expected.remove(&addr), "unexpected on_close for {addr}");
        assert_eq!(data, Some(addr.port()), "user data lost before on_close");
    }
}

// ---------------------------------------------------------------------------
// Unknown ids.
// ---------------------------------------------------------------------------

#[test]
fn unknown_id_is_dropped_by_default_and_the_connection_keeps_working() {
    let server = start(echo_builder(2));
    let mut c = Client::connect(server.local_addr());

    let mut wire = frame(77, b"nobody handles this");
    wire.extend_from_slice(&frame(1, b"known"));
    c.send_raw(&wire);
    assert_eq!(c.recv(), (1, b"known".to_vec()));
    wait_until("unknown_ids == 1", || server.stats().unknown_ids == 1);
    assert_echoes(&mut c, b"still open");
    assert_eq!(server.stats().unknown_ids, 1);
    assert_eq!(server.connection_count(), 1);
}

#[test]
fn unknown_id_close_policy_closes_with_the_id() {
    let (builder, mut closes) = track_closes(echo_builder(2).unknown_id(UnknownIdPolicy::Close));
    let server = start(builder);
    let mut good = Client::connect(server.local_addr());
    let mut bad = Client::connect(server.local_addr());

    // The known message behind the unknown one is not handled any more.
    let mut wire = frame(77, b"?");
    wire.extend_from_slice(&frame(1, b"after"));
    bad.send_raw(&wire);
    assert_eof(&mut bad);
    let reason = closes.reason_for(local_addr(&bad));
    assert!(
        matches!(reason, CloseReason::UnknownId(77)),
        "got {reason:?}"
    );
    assert_echoes(&mut good, b"unaffected");
    assert_eq!(server.stats().unknown_ids, 1);
    // The echo queued behind the unknown id was never handled (its reply
    // would have failed and been counted as a handler error).
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn fallback_handler_receives_unknown_ids() {
    let through_global = Arc::new(AtomicUsize::new(0));
    let counted = through_global.clone();
    let server = start(
        echo_builder(2)
            .middleware(move |ctx: &mut Context<'_>, next: Next<'_>| {
                counted.fetch_add(1, Ordering::SeqCst);
                next.run(ctx)
            })
            .fallback(|ctx| {
                let mut out = ctx.msg_id().to_le_bytes().to_vec();
                out.extend_from_slice(ctx.body());
                ctx.reply(999, out)
            }),
    );
    let mut c = Client::connect(server.local_addr());
    let mut wire = frame(77, b"x");
    wire.extend_from_slice(&frame(5000, b"sparse"));
    wire.extend_from_slice(&frame(1, b"routed"));
    c.send_raw(&wire);
    assert_eq!(c.recv(), (999, b"\x4d\x00\x00\x00x".to_vec()));
    assert_eq!(c.recv(), (999, b"\x88\x13\x00\x00sparse".to_vec()));
    assert_eq!(c.recv(), (1, b"routed".to_vec()));
    // The fallback runs after the global middleware, like any route.
    assert_eq!(through_global.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------
// Peers that break the protocol, handlers that panic.
// ---------------------------------------------------------------------------

#[test]
fn body_over_max_length_closes_only_that_connection() {
    let (builder, mut closes) = track_closes(echo_builder(2).max_body_length(1024));
    let server = start(builder);
    let mut good = Client::connect(server.local_addr());
    assert_echoes(&mut good, b"before");

    // Header only, declaring 1025 bytes: rejected on the header alone.
    let mut over = Client::connect(server.local_addr());
    over.send_raw(b"\x01\x04\x00\x00\x01\x00\x00\x00");
    assert_eof(&mut over);
    let reason = closes.reason_for(local_addr(&over));
    assert!(
        matches!(
            reason,
            CloseReason::Protocol(PackError::TooLong {
                len: 1025,
                max: 1024
            })
        ),
        "got {reason:?}"
    );

    // u32::MAX likewise, with nothing allocated for it.
    let mut huge = Client::connect(server.local_addr());
    huge.send_raw(b"\xff\xff\xff\xff\x01\x00\x00\x00");
    assert_eof(&mut huge);
    let reason = closes.reason_for(local_addr(&huge));
    assert!(
        matches!(
            reason,
            CloseReason::Protocol(PackError::TooLong { len, max: 1024 }) if len == u32::MAX as usize
        ),
        "got {reason:?}"
    );

    // The other connection never noticed; exactly the limit is fine.
    assert_echoes(&mut good, b"after");
    let max: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    assert_echoes(&mut good, &max);
    let mut fresh = Client::connect(server.local_addr());
    assert_echoes(&mut fresh, &max);
    assert_eq!(
        server
            .stats()
            .closed_by(&CloseReason::Protocol(PackError::Malformed(String::new()))),
        2
    );
}

#[test]
fn garbage_input_closes_that_connection_only() {
    let (builder, mut closes) = track_closes(echo_builder(2).max_body_length(64));
    let server = start(builder);
    let mut good = Client::connect(server.local_addr());
    assert_echoes(&mut good, b"before");

    const GARBAGE: u64 = 6;
    for seed in 1..=GARBAGE {
        let mut state = 0x2545_f491_4f6c_dd1d ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let garbage: Vec<u8> = (0..4096).map(|_| xorshift(&mut state) as u8).collect();
        let mut bad = Client::connect(server.local_addr());
        // The server may close (and reset) while we are still writing.
        let _ = bad.stream.write_all(&garbage);
        bad.expect_closed();
        let reason = closes.reason_for(local_addr(&bad));
        assert!(
            matches!(reason, CloseReason::Protocol(_)),
            "seed {seed}: got {reason:?}"
        );
        assert_echoes(&mut good, format!("after garbage {seed}").as_bytes());
    }

    let mut later = Client::connect(server.local_addr());
    assert_echoes(&mut later, b"server still accepts");
    let stats = server.stats();
    assert_eq!(
        stats.closed_by(&CloseReason::Protocol(PackError::Malformed(String::new()))),
        GARBAGE
    );
    assert_eq!(stats.closed_total(), GARBAGE);
}

#[test]
fn panicking_handler_closes_its_connection_only() {
    let (builder, mut closes) = track_closes(echo_builder(1).route(
        13,
        |_ctx: &mut Context<'_>| -> netloom::HandlerResult {
            panic!("handler bug (expected by this test)")
        },
    ));
    let server = start(builder);
    let mut victim = Client::connect(server.local_addr());
    let mut bystander = Client::connect(server.local_addr());
    assert_echoes(&mut bystander, b"before");
    assert_echoes(&mut victim, b"before");

    let mut wire = frame(13, b"boom");
    wire.extend_from_slice(&frame(1, b"not handled after the panic"));
    victim.send_raw(&wire);
    assert_eof(&mut victim);
    let reason = closes.reason_for(local_addr(&victim));
    assert!(
        matches!(reason, CloseReason::HandlerPanic),
        "got {reason:?}"
    );

    // Same (only) loop: still serving.
    assert_echoes(&mut bystander, b"after");
    let mut later = Client::connect(server.local_addr());
    assert_echoes(&mut later, b"new connection");
    assert_eq!(server.stats().closed_by(&CloseReason::HandlerPanic), 1);
    // The echo behind the panicking message was dropped, not handled.
    assert_eq!(server.stats().handler_errors, 0);
}

// ---------------------------------------------------------------------------
// Rejecting in on_open.
// ---------------------------------------------------------------------------

#[test]
fn on_open_rejection_closes_and_reports_rejected_once() {
    let reject = Arc::new(AtomicBool::new(true));
    let rejecting = reject.clone();
    // One loop: every on_close runs on it, in order, so a duplicate for
    // the rejected connection would show up before the next close.
    let (builder, mut closes) = track_closes(echo_builder(1).on_open(move |_session| {
        if rejecting.load(Ordering::SeqCst) {
            Err("full")
        } else {
            Ok(())
        }
    }));
    let server = start(builder);

    let mut turned_away = Client::connect(server.local_addr());
    assert_eof(&mut turned_away);
    let (addr, reason) = closes.next();
    assert_eq!(addr, local_addr(&turned_away));
    assert!(
        matches!(&reason, CloseReason::Rejected(why) if why == "full"),
        "got {reason:?}"
    );

    reject.store(false, Ordering::SeqCst);
    let mut welcome = Client::connect(server.local_addr());
    assert_echoes(&mut welcome, b"accepted");
    let welcome_addr = local_addr(&welcome);
    drop(welcome);
    let (addr, reason) = closes.next();
    assert_eq!(
        addr, welcome_addr,
        "on_close ran again for the rejected one"
    );
    assert!(matches!(reason, CloseReason::PeerClosed), "got {reason:?}");
    assert_eq!(
        server
            .stats()
            .closed_by(&CloseReason::Rejected(String::new())),
        1
    );
    assert!(closes.rx.is_empty());
}

#[test]
fn on_open_can_send_a_message_before_rejecting() {
    let (builder, mut closes) = track_closes(echo_builder(2).on_open(|session| {
        session.send(7, b"welcome, but we are full").unwrap();
        false
    }));
    let server = start(builder);
    for _ in 0..2 {
        let mut c = Client::connect(server.local_addr());
        assert_eq!(c.recv(), (7, b"welcome, but we are full".to_vec()));
        assert_eof(&mut c);
        let reason = closes.reason_for(local_addr(&c));
        assert!(matches!(reason, CloseReason::Rejected(_)), "got {reason:?}");
    }
}

// ---------------------------------------------------------------------------
// What a handler sees; ConnId uniqueness.
// ---------------------------------------------------------------------------

#[test]
fn handler_sees_msg_id_and_body_across_dense_and_sparse_ids() {
    let describe = |ctx: &mut Context<'_>| {
        let mut out = ctx.msg_id().to_le_bytes().to_vec();
        out.extend_from_slice(ctx.body());
        ctx.reply(500, out)
    };
    let ids = [0, 41, 1023, 1024, 65_536, u32::MAX];
    let mut builder = Server::builder().event_loops(2);
    for id in ids {
        builder = builder.route(id, describe);
    }
    let server = start(builder);
    let mut c = Client::connect(server.local_addr());
    let mut wire = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        wire.extend_from_slice(&frame(*id, format!("body {i}").as_bytes()));
    }
    c.send_raw(&wire);
    for (i, id) in ids.iter().enumerate() {
        let (reply_id, body) = c.recv();
        assert_eq!(reply_id, 500);
        assert_eq!(u32::from_le_bytes(body[..4].try_into().unwrap()), *id);
        assert_eq!(&body[4..], format!("body {i}").as_bytes());
    }
}

#[test]
fn conn_ids_are_unique_even_when_slots_are_reused() {
    const LOOPS: usize = 3;
    const PER_ROUND: usize = 60;
    let (ids_tx, ids_rx) = unbounded::<(ConnId, ConnId)>();
    let (builder, mut closes) =
        track_closes(Server::builder().event_loops(LOOPS).route(40, move |ctx| {
            let _ = ids_tx.send((ctx.id(), ctx.handle().id()));
            ctx.reply(40, ctx.id().to_string())
        }));
    let server = start(builder);

    let mut all = HashSet::new();
    let mut shown = HashSet::new();
    for round in 0..2 {
        let mut clients: Vec<Client> = (0..PER_ROUND)
            .map(|_| Client::connect(server.local_addr()))
            .collect();
        for c in clients.iter_mut() {
            c.send(40, b"");
        }
        for c in clients.iter_mut() {
            let (id, text) = c.recv();
            assert_eq!(id, 40);
            assert!(shown.insert(text), "round {round}: ConnId text repeated");
        }
        for _ in 0..PER_ROUND {
            let (ctx_id, handle_id) = ids_rx.recv_timeout(TIMEOUT).unwrap();
            assert_eq!(ctx_id, handle_id, "ctx.id() and ctx.handle().id() differ");
            assert!(ctx_id.loop_index() < LOOPS);
            assert!(
                all.insert(ctx_id),
                "round {round}: {ctx_id} handed out twice"
            );
        }
        // Close them all and wait, so the next round reuses the slots.
        drop(clients);
        for _ in 0..PER_ROUND {
            closes.next();
        }
    }
    assert_eq!(all.len(), 2 * PER_ROUND);
    let loops: HashSet<usize> = all.iter().map(ConnId::loop_index).collect();
    assert_eq!(loops.len(), LOOPS);
}

// ---------------------------------------------------------------------------
// A client nobody on the team wrote: CPython's socket + struct.
// ---------------------------------------------------------------------------

const PY_CLIENT: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.settimeout(5)

def recv_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            sys.exit("server closed the connection early")
        buf += chunk
    return buf

msgs = [(1, b"hello from cpython"), (2, b""), (3, bytes(range(256)) * 40)]
s.sendall(b"".join(struct.pack("<II", len(b), i) + b for i, b in msgs))
for i, b in msgs:
    length, mid = struct.unpack("<II", recv_exact(8))
    body = recv_exact(length)
    if (mid, body) != (i, b):
        sys.exit("mismatch: sent id %d (%d bytes), got id %d (%d bytes)" % (i, len(b), mid, len(body)))
s.close()
print("ok")
"#;

#[test]
fn python_client_gets_its_echoes() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let server = start(echo_builder(2));
    let port = server.local_addr().port().to_string();
    let child = Command::new(py)
        .args(["-c", PY_CLIENT, &port])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let pid = child.id();
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait for python3"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("python client did not finish within {TIMEOUT:?}");
        }
    };
    assert!(
        out.status.success(),
        "python client failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
