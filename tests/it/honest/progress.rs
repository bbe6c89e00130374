//! The frame deadline measures progress, not snapshots (issue 25, items 9
//! and 10): a client whose reads always end mid-frame while whole frames
//! complete is making progress; a connection the server stopped reading
//! (backpressure) is not blamed for the frame it was cut off in.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use netloom::{CloseReason, Server};

use super::{limits, FRAME_WINDOW};
use crate::common::{echo, frame, start_tracked, Client, TIMEOUT};
use crate::tls_support::{client_config_versions, server_config, test_cert, TlsPeer};

/// How long the slow-but-steady clients run: several frame windows.
const RUN: Duration = Duration::from_millis(3500);

/// 48-byte frames at 100 a second, written so that every write (and so
/// every read of the server) ends in the middle of a frame: the first
/// write is half a frame, each later one the end of a frame and the start
/// of the next. 4.8 KB/s, far above the 500 B/s minimum. `write` sends
/// one piece, `read_echo` reads one echoed frame.
fn half_frames(
    mut write: impl FnMut(&[u8]),
    mut read_echo: impl FnMut() -> (u32, Vec<u8>),
) -> usize {
    let body = [7u8; 40];
    let f = frame(1, &body);
    assert_eq!(f.len(), 48);
    let stream: Vec<u8> = f.iter().chain(f.iter()).copied().collect();
    write(&f[..24]);
    let start = Instant::now();
    let mut echoed = 0;
    let mut tick = start;
    while start.elapsed() < RUN {
        // The end of one frame and the start of the next: 48 bytes.
        write(&stream[24..72]);
        let (id, got) = read_echo();
        assert_eq!((id, &got[..]), (1, &body[..]), "echo {echoed}");
        echoed += 1;
        // The pace under test (100 frames a second), not a wait for an event.
        tick += Duration::from_millis(10);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    echoed
}

#[test]
fn tcp_frames_whose_reads_end_mid_frame_are_progress() {
    let (server, mut closes) =
        start_tracked(limits(Server::builder().event_loops(2), 1 << 20).route(1, echo));
    let mut c = Client::connect(server.local_addr());
    let echoed = {
        let c = std::cell::RefCell::new(&mut c);
        half_frames(|b| c.borrow_mut().send_raw(b), || c.borrow_mut().recv())
    };
    assert!(echoed >= 300, "{echoed} echoes in {RUN:?}");
    c.send_raw(&frame(1, &[7; 40])[24..]);
    assert_eq!(c.recv().0, 1, "still open after {RUN:?}");
    drop(c);
    assert!(matches!(closes.next().1, CloseReason::PeerClosed));
    assert_eq!(server.stats().closed_by(&CloseReason::FrameTimeout), 0);
}

#[test]
fn tls_12_and_13_frames_whose_reads_end_mid_frame_are_progress() {
    let cert = test_cert();
    let versions: [&[&rustls::SupportedProtocolVersion]; 2] =
        [&[&rustls::version::TLS12], &[&rustls::version::TLS13]];
    std::thread::scope(|s| {
        for v in versions {
            let cert = &cert;
            s.spawn(move || {
                let config = std::sync::Arc::new(server_config(cert, rustls::ALL_VERSIONS));
                let builder = limits(Server::builder().event_loops(2), 1 << 20)
                    .tls(config)
                    .route(1, echo);
                let (server, mut closes) = start_tracked(builder);
                let mut c = TlsPeer::connect(server.local_addr(), client_config_versions(cert, v));
                let echoed = {
                    let c = std::cell::RefCell::new(&mut c);
                    half_frames(|b| c.borrow_mut().send_raw(b), || c.borrow_mut().recv())
                };
                assert!(echoed >= 300, "{v:?}: {echoed} echoes in {RUN:?}");
                drop(c);
                let reason = closes.next().1;
                assert!(
                    !matches!(reason, CloseReason::FrameTimeout),
                    "{v:?}: closed {reason}"
                );
                assert_eq!(server.stats().closed_by(&CloseReason::FrameTimeout), 0);
            });
        }
    });
}

/// A client asks for a reply larger than the kernel's socket buffers can
/// take, asks again (refused: the queue is over its mark, and the server
/// stops reading it), and sends half a frame in the same write. The
/// server, not the client, holds that frame up: after several windows the
/// connection is still open, and once the client reads, the server reads
/// again, the frame completes and is answered.
#[test]
fn a_connection_paused_mid_frame_is_not_closed_for_its_frame() {
    const HUGE: usize = 32 << 20;
    let builder = Server::builder()
        .event_loops(2)
        .frame_timeout(FRAME_WINDOW, 500)
        .write_high_water(64 << 10)
        .max_body_length(HUGE)
        .route(2, |ctx| ctx.reply(2, vec![9u8; HUGE]))
        .route(1, echo);
    let (server, mut closes) = start_tracked(builder);
    let mut c = Client::connect(server.local_addr());
    let half = frame(1, b"finish me");
    let mut first = frame(2, b"");
    first.extend(frame(2, b""));
    first.extend_from_slice(&half[..6]);
    c.send_raw(&first);
    let deadline = Instant::now() + TIMEOUT;
    while server.stats().slow_peer_events == 0 {
        assert!(
            Instant::now() < deadline,
            "never paused: {}",
            server.stats()
        );
        std::thread::yield_now();
    }
    // Several frame windows pass (the time under test, not a wait).
    std::thread::sleep(3 * FRAME_WINDOW);
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::FrameTimeout), 0, "{stats}");
    assert_eq!(stats.bytes_in as usize, first.len(), "{stats}");
    // Read what the server queued: it resumes, reads, completes the frame.
    let reader = c.stream.try_clone().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut buf = vec![0u8; 1 << 16];
        let mut tail = Vec::new();
        let mut total = 0;
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            total += n;
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(9).any(|w| w == b"finish me") {
                let _ = tx.send(total);
                return;
            }
            let keep = tail.len().saturating_sub(8);
            tail.drain(..keep);
        }
    });
    c.stream.write_all(&half[6..]).unwrap();
    let total = rx
        .recv_timeout(2 * TIMEOUT)
        .expect("the frame was answered");
    assert!(total >= HUGE, "{total} bytes before the echo");
    drop(c);
    let reason = closes.next().1;
    assert!(
        matches!(reason, CloseReason::PeerClosed),
        "closed: {reason}"
    );
}

/// A frame that begins late in the window of an earlier frame gets a
/// window of its own: when the earlier window's timer fires, the new
/// frame's few bytes so far are not judged (the window restarts). Frame
/// 1 opens the window and completes at once; frame 2 begins 600 ms into
/// the 1 s window with its 8-byte header (far under the 500 bytes a
/// window asks) and completes 900 ms later, after that timer. Had the
/// timer judged frame 2 by the earlier window, it would have closed the
/// connection with `FrameTimeout` at 1 s.
#[test]
fn a_frame_begun_late_in_an_earlier_frames_window_gets_a_window_of_its_own() {
    let (server, mut closes) =
        start_tracked(limits(Server::builder().event_loops(2), 1 << 20).route(1, echo));
    let mut c = Client::connect(server.local_addr());
    let body = [5u8; 40];
    let f = frame(1, &body);
    // Frame 1 in two reads: its first half opens the window.
    c.send_raw(&f[..24]);
    crate::common::wait_until("the first half read", || server.stats().bytes_in == 24);
    let opened = Instant::now();
    c.send_raw(&f[24..]);
    assert_eq!(c.recv(), (1, body.to_vec()));
    // The pace under test, not a wait for an event: frame 2 starts late
    // in window 1 and ends after window 1's timer.
    std::thread::sleep((FRAME_WINDOW * 6 / 10).saturating_sub(opened.elapsed()));
    c.send_raw(&f[..8]);
    std::thread::sleep((FRAME_WINDOW * 15 / 10).saturating_sub(opened.elapsed()));
    c.send_raw(&f[8..]);
    assert_eq!(c.recv(), (1, body.to_vec()), "frame 2 answered");
    drop(c);
    let reason = closes.next().1;
    assert!(
        matches!(reason, CloseReason::PeerClosed),
        "closed: {reason}"
    );
    assert_eq!(server.stats().closed_by(&CloseReason::FrameTimeout), 0);
}

/// A WebSocket client streaming 4000-byte messages in 3000-byte writes:
/// every read of the server ends in the middle of a frame, and no read
/// ends on a message boundary for millions of bytes. It holds one frame
/// unfinished at a time, never more (issue 18: the count of bytes since
/// the last boundary at the end of a read grew until the 256 KiB budget
/// closed the client). Over `s`, a socket or a TLS stream; returns the
/// messages echoed.
fn ws_stream_cut_mid_frame<S: Read + Write>(s: &mut S, total: usize) -> usize {
    const WINDOW: usize = 16; // messages unanswered at most
    s.write_all(crate::ws_raw::upgrade_request("/").as_bytes())
        .unwrap();
    s.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let body: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let mask = [1u8, 2, 3, 4];
    let mut msg = vec![0x82, 0x80 | 126, 0x0f, 0xa0];
    msg.extend_from_slice(&mask);
    msg.extend(body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let (mut sent, mut echoed) = (0usize, 0usize);
    let mut echo = vec![0u8; 4 + body.len()];
    let mut read_echo = |s: &mut S, echoed: &mut usize| {
        s.read_exact(&mut echo).expect("echo");
        assert_eq!(&echo[..4], &[0x82, 126, 0x0f, 0xa0], "echo {echoed}");
        assert!(echo[4..] == body[..], "echo {echoed} differs");
        *echoed += 1;
    };
    while sent < total {
        let at = sent % msg.len();
        let piece: Vec<u8> = msg[at..]
            .iter()
            .chain(msg.iter())
            .take(3000)
            .copied()
            .collect();
        s.write_all(&piece).unwrap();
        s.flush().unwrap();
        sent += piece.len();
        while sent / msg.len() > echoed + WINDOW {
            read_echo(s, &mut echoed);
        }
    }
    let rest = (msg.len() - sent % msg.len()) % msg.len();
    s.write_all(&msg[msg.len() - rest..]).unwrap();
    s.flush().unwrap();
    sent += rest;
    while echoed < sent / msg.len() {
        read_echo(s, &mut echoed);
    }
    echoed
}

fn ws_cut_server(
    tls: bool,
) -> (
    netloom::ServerHandle,
    crate::common::Closes,
    Option<crate::tls_support::TestCert>,
) {
    let cert = tls.then(test_cert);
    let mut builder = limits(Server::builder().event_loops(2), 256 << 10)
        .route(netloom::ws::BINARY, |ctx| {
            ctx.reply(netloom::ws::BINARY, ctx.body())
        });
    if let Some(c) = &cert {
        builder = builder.tls(std::sync::Arc::new(server_config(c, rustls::ALL_VERSIONS)));
    }
    let (builder, closes) = crate::common::track_closes(builder);
    crate::common::init_logs();
    let server = builder.bind_ws("127.0.0.1:0").unwrap().start().unwrap();
    (server, closes, cert)
}

#[test]
fn ws_messages_whose_reads_never_end_on_a_boundary_hold_one_frame() {
    let (server, _closes, _) = ws_cut_server(false);
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    let echoed = ws_stream_cut_mid_frame(&mut s, 32 << 20);
    assert!(echoed * 4008 >= 32 << 20, "{echoed}");
    super::assert_no_limit_event(&server.stats(), super::Transport::Ws);
}

#[test]
fn wss_messages_whose_reads_never_end_on_a_boundary_hold_one_frame() {
    let (server, _closes, cert) = ws_cut_server(true);
    let cert = cert.expect("a certificate");
    let mut peer = TlsPeer::connect(
        server.local_addr(),
        client_config_versions(&cert, rustls::ALL_VERSIONS),
    );
    let echoed = ws_stream_cut_mid_frame(&mut peer.s, 16 << 20);
    assert!(echoed * 4008 >= 16 << 20, "{echoed}");
    super::assert_no_limit_event(&server.stats(), super::Transport::Wss);
}
