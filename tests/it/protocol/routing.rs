//! Routing: unknown ids (dropped, closing, or sent to the fallback), what a
//! handler sees across dense and sparse ids, and `ConnId` uniqueness.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::unbounded;
use netloom::{CloseReason, ConnId, Context, Next, Server, UnknownIdPolicy};

use super::{assert_echoes, assert_eof, echo_builder, local_addr};
use crate::common::{frame, start, start_tracked, track_closes, wait_until, Client, TIMEOUT};

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
    let (server, mut closes) = start_tracked(echo_builder(2).unknown_id(UnknownIdPolicy::Close));
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
