//! Connections the server ends: peers that break the protocol, handlers
//! that panic, and `on_open` rejecting (or sending first, then rejecting).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use netloom::{CloseReason, Context, PackError};

use super::{assert_echoes, assert_eof, echo_builder, local_addr, xorshift};
use crate::common::{frame, start_tracked, Client};

#[test]
fn body_over_max_length_closes_only_that_connection() {
    let (server, mut closes) = start_tracked(echo_builder(2).max_body_length(1024));
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
    let (server, mut closes) = start_tracked(echo_builder(2).max_body_length(64));
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
    let (server, mut closes) = start_tracked(echo_builder(1).route(
        13,
        |_ctx: &mut Context<'_>| -> netloom::HandlerResult {
            panic!("handler bug (expected by this test)")
        },
    ));
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
    let (server, mut closes) = start_tracked(echo_builder(1).on_open(move |_session| {
        if rejecting.load(Ordering::SeqCst) {
            Err("full")
        } else {
            Ok(())
        }
    }));

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
    let (server, mut closes) = start_tracked(echo_builder(2).on_open(|session| {
        session.send(7, b"welcome, but we are full").unwrap();
        false
    }));
    for _ in 0..2 {
        let mut c = Client::connect(server.local_addr());
        assert_eq!(c.recv(), (7, b"welcome, but we are full".to_vec()));
        assert_eof(&mut c);
        let reason = closes.reason_for(local_addr(&c));
        assert!(matches!(reason, CloseReason::Rejected(_)), "got {reason:?}");
    }
}
