//! What a hostile or unlucky peer, or an application, can do to the typed
//! routes, the bad-body policy, hotpot's envelope and `keepalived` (found
//! by the review of issue 22; each failed before its fix). Each test
//! states what the contract (docs/GUIDE.md, "Typed messages") says.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::{BadBody, CloseReason, Context, Exec, HandlerResult, Server};
use serde::{Deserialize, Serialize};

use crate::common::{run_bounded, start, start_tracked, Client, TIMEOUT};
use crate::ws_raw::RawWs;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Point {
    x: i32,
    y: i32,
    name: String,
}

fn sum(_ctx: &mut Context<'_>, p: Point) -> Result<Point, netloom::BoxError> {
    Ok(Point {
        x: p.x + p.y,
        y: 0,
        name: p.name,
    })
}

/// Every other hook (`on_open`, `on_close`, …) runs under
/// `catch_unwind`; `on_bad_body` does not (src/dispatch/typed/mod.rs,
/// `BadBodies::handle`, called after `handle`'s `catch_unwind` in
/// src/dispatch/mod.rs). A panicking hook unwinds through the event
/// loop: every connection of that loop is gone.
#[test]
fn a_panicking_bad_body_hook_closes_only_its_connection() {
    let server = start(
        Server::builder()
            .event_loops(1)
            .route_json(10, sum)
            .on_bad_body(|_, _| panic!("on_bad_body hook bug")),
    );
    let mut bystander = Client::connect(server.local_addr());
    let good = serde_json::to_vec(&Point {
        x: 1,
        y: 2,
        name: "a".into(),
    })
    .unwrap();
    bystander.send(10, &good);
    assert_eq!(bystander.recv().0, 10);
    let mut bad = Client::connect(server.local_addr());
    bad.send(10, b"{nope");
    // The bad one may be closed (HandlerPanic, as for a panicking
    // handler); the bystander on the same loop must still be served.
    bystander.send(10, &good);
    let got = bystander.try_recv();
    assert!(
        got.is_ok(),
        "the bystander lost its server after another connection's bad body: {got:?}"
    );
    let mut late = Client::connect(server.local_addr());
    late.send(10, &good);
    let got = late.try_recv();
    assert!(
        got.is_ok(),
        "a new connection is not served after a bad body: {got:?}"
    );
}

/// A MessagePack body nested 1 000 arrays deep in a field the struct does
/// not have: rmp-serde allows a depth of 1 024 and skips the value
/// recursively (`IgnoredAny`). Run in a child process: if the loop's
/// stack overflows, the whole process aborts.
#[test]
fn deep_msgpack_is_a_bad_body_not_a_stack_overflow() {
    const CHILD: &str = "NETLOOM_DEEP_MSGPACK_CHILD";
    if std::env::var_os(CHILD).is_some() {
        deep_msgpack_child();
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD, "1").args([
        "--exact",
        "typed::hostile::deep_msgpack_is_a_bad_body_not_a_stack_overflow",
        "--nocapture",
        "--test-threads=1",
    ]);
    let out = run_bounded(cmd, TIMEOUT * 3);
    let err = String::from_utf8_lossy(&out.stderr);
    let stderr_tail: String = err.lines().rev().take(5).collect::<Vec<_>>().join("\n");
    assert!(
        out.status.success(),
        "the server process died: {:?}\n{stderr_tail}",
        out.status
    );
}

fn deep_msgpack_child() {
    const DEPTH: usize = 1000;
    // Route 11 a struct (the deep value is an unknown field, skipped
    // recursively); route 12 free-form (the deep value is built).
    let server = start(
        Server::builder()
            .bad_body(BadBody::Reply(99))
            .route_msgpack(11, sum)
            .route_msgpack(12, |_ctx, v: serde_json::Value| {
                Ok::<_, netloom::BoxError>(v.is_array())
            }),
    );
    // {"x": 1, "y": 2, "name": "n", "z": [[[[ ... nil ... ]]]]}
    let mut body = vec![0x84];
    for (k, v) in [("x", 1u8), ("y", 2)] {
        body.extend([0xa1, k.as_bytes()[0], v]);
    }
    body.extend([0xa4, b'n', b'a', b'm', b'e', 0xa1, b'n']);
    body.extend([0xa1, b'z']);
    body.extend(std::iter::repeat_n(0x91, DEPTH));
    body.push(0xc0);
    let mut c = Client::connect(server.local_addr());
    for route in [11, 12] {
        c.send(route, &body);
        let (id, reply) = c.recv();
        assert_eq!(id, 99, "route {route}: {}", String::from_utf8_lossy(&reply));
        assert!(
            String::from_utf8_lossy(&reply).contains("deep"),
            "route {route}"
        );
    }
    server.shutdown(TIMEOUT).unwrap();
}

/// The error's text is the decoder's, and serde quotes a string it did
/// not expect with `{:?}`, which escapes every unassigned or
/// non-printable character: U+0378 (2 bytes of UTF-8) becomes `\u{378}`
/// (7 bytes). A JSON string of 100 000 of them where a number belongs
/// gets a `BadBody::Reply` 3.5 times the request (and the same text in
/// the warn log line and in `CloseReason::BadBody`). The envelope's
/// "no handler for type {:?}" does the same with the type name.
#[test]
fn a_bad_body_reply_is_cut_not_amplified() {
    let server = start(
        Server::builder()
            .bad_body(BadBody::Reply(99))
            .route_json(10, sum),
    );
    let n = 100_000usize;
    let body = format!(r#"{{"x":"{}","y":1,"name":"n"}}"#, "\u{378}".repeat(n));
    let mut c = Client::connect(server.local_addr());
    c.send(10, body.as_bytes());
    let (id, reply) = c.recv();
    eprintln!(
        "request {} bytes -> reply id {id}, {} bytes: {}…",
        body.len(),
        reply.len(),
        String::from_utf8_lossy(&reply[..reply.len().min(80)])
    );
    assert!(
        reply.len() <= body.len(),
        "a {}-byte bad body got a {}-byte answer",
        body.len(),
        reply.len()
    );
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn the_envelope_unknown_type_reply_is_cut() {
    crate::common::init_logs();
    let server = Server::builder()
        .bad_body(BadBody::Reply(netloom::ws::TEXT))
        .route_envelope("Echo", |_ctx, v: serde_json::Value| {
            Ok::<_, netloom::BoxError>(v)
        })
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut ws = RawWs::connect(server.local_addr(), "/");
    let text = format!(r#"{{"type":"{}"}}"#, "\u{378}".repeat(100_000));
    ws.send_frame(0x81, text.as_bytes(), true);
    let (_, reply) = ws.recv().expect("an answer");
    eprintln!(
        "envelope: request {} bytes -> reply {} bytes: {}…",
        text.len(),
        reply.len(),
        String::from_utf8_lossy(&reply[..reply.len().min(80)])
    );
    drop(ws);
    server.shutdown(TIMEOUT).unwrap();
    assert!(
        reply.len() <= text.len(),
        "{} -> {}",
        text.len(),
        reply.len()
    );
}

/// `BadBody::Close` then more messages in the same read: none of them is
/// handled, on each execution model.
#[test]
fn the_close_policy_stops_the_rest_of_the_read() {
    for exec in [Exec::Inline, Exec::Pool(2), Exec::Single] {
        let (tx, rx) = unbounded();
        let (server, mut closes) = start_tracked(
            Server::builder()
                .exec(exec)
                .bad_body(BadBody::Close)
                .route_json(10, move |_ctx, p: Point| {
                    let _ = tx.send(p.name.clone());
                    Ok::<_, netloom::BoxError>(p)
                }),
        );
        let mut c = Client::connect(server.local_addr());
        let good = br#"{"x":1,"y":2,"name":"after"}"#;
        let mut wire = crate::common::frame(10, b"{bad");
        for _ in 0..5 {
            wire.extend(crate::common::frame(10, good));
        }
        c.send_raw(&wire);
        c.expect_closed();
        let reason = closes.reason_for(c.stream.local_addr().unwrap());
        assert!(matches!(reason, CloseReason::BadBody(_)), "{reason:?}");
        assert!(
            rx.try_recv().is_err(),
            "{exec:?}: a message after the bad body was handled"
        );
        server.shutdown(TIMEOUT).unwrap();
    }
}

/// Hostile declared lengths: a MessagePack str32/array32 claiming 4 GiB,
/// a protobuf string claiming 2^62 bytes. Each is a bad body; the
/// connection goes on.
#[test]
fn huge_declared_lengths_are_bad_bodies() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Pb {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(int32, repeated, tag = "2")]
        v: Vec<i32>,
    }
    #[derive(Deserialize, Serialize)]
    struct Many {
        v: Vec<u64>,
        name: String,
    }
    let server = start(
        Server::builder()
            .bad_body(BadBody::Reply(99))
            .route_msgpack(11, |_ctx, m: Many| Ok::<_, netloom::BoxError>(m.v.len()))
            .route_protobuf(12, |_ctx, p: Pb| Ok::<_, netloom::BoxError>(p)),
    );
    let mut c = Client::connect(server.local_addr());
    let cases: [(u32, Vec<u8>); 4] = [
        // {"v": array32 of 0xffffffff elements, then 3 of them}
        (
            11,
            vec![0x81, 0xa1, b'v', 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        ),
        // {"name": str32 of 0xffffffff bytes}
        (
            11,
            vec![
                0x81, 0xa4, b'n', b'a', b'm', b'e', 0xdb, 0xff, 0xff, 0xff, 0xff, b'a',
            ],
        ),
        // field 1, length 2^62
        (
            12,
            vec![
                0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, b'a',
            ],
        ),
        // field 2 packed, length 2^62
        (
            12,
            vec![
                0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1,
            ],
        ),
    ];
    for (id, body) in cases {
        c.send(id, &body);
        let (got, text) = c.recv();
        assert_eq!(got, 99, "{}", String::from_utf8_lossy(&text));
    }
    assert_eq!(server.stats().bad_bodies, 4);
    server.shutdown(TIMEOUT).unwrap();
}

/// And on a plain TCP listener of the same server: the keepalive's ping
/// goes out through the packer as message id 1 (`ws::TEXT`) with the
/// JSON text as body; nothing in the docs says `keepalived` pings plain
/// TCP peers, and `start` accepts it silently.
#[test]
fn keepalived_does_not_ping_plain_tcp_peers() {
    let server = start(
        Server::builder()
            .keepalived(Duration::from_millis(100), Duration::from_secs(10))
            .route_envelope("Echo", |_ctx, v: serde_json::Value| {
                Ok::<_, netloom::BoxError>(v)
            }),
    );
    let mut c = Client::connect(server.local_addr());
    // Ten of the keepalive's intervals.
    c.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let got = c.try_recv();
    match got {
        Ok((id, body)) => panic!(
            "a plain TCP peer got message {id}: {}",
            String::from_utf8_lossy(&body)
        ),
        Err(e) => eprintln!("no ping on TCP: {e}"),
    }
}

/// hotpot's envelope: `"data": null` is handed to the handler as `{}`
/// (src/dispatch/typed/envelope.rs: `Option<&RawValue>` reads `null` as
/// `None`, then `map_or("{}", …)`), so a handler of `Option<T>` or
/// `serde_json::Value` cannot tell `null` from `{}`, and one of `()`
/// rejects a `null` it should accept.
#[test]
fn envelope_data_null_is_null() {
    crate::common::init_logs();
    let server = Server::builder()
        .bad_body(BadBody::Reply(netloom::ws::TEXT))
        .route_envelope("V", |_ctx, v: serde_json::Value| {
            Ok::<_, netloom::BoxError>(v)
        })
        .route_envelope("U", |_ctx, (): ()| Ok::<_, netloom::BoxError>("unit"))
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut ws = RawWs::connect(server.local_addr(), "/");
    let mut exchange = |text: &str| {
        ws.send_frame(0x81, text.as_bytes(), true);
        let (_, body) = ws.recv().expect("an answer");
        String::from_utf8(body).unwrap()
    };
    let v = exchange(r#"{"type":"V","data":null}"#);
    let u = exchange(r#"{"type":"U","data":null}"#);
    assert_eq!(
        (v.as_str(), u.as_str()),
        (
            r#"{"type":"V","data":null}"#,
            r#"{"type":"U","data":"unit"}"#
        )
    );
    drop(ws);
    server.shutdown(TIMEOUT).unwrap();
}

/// Envelope corner cases that work: a type name with JSON escapes is
/// routed by its value; the user's own `Ping` route wins over the
/// built-in answer; `reply_envelope` from a pool worker.
#[test]
fn envelope_corners_on_the_pool() {
    crate::common::init_logs();
    let server = Server::builder()
        .exec(Exec::Pool(2))
        .bad_body(BadBody::Reply(netloom::ws::TEXT))
        .route_envelope("Echo", |_ctx, v: serde_json::Value| {
            Ok::<_, netloom::BoxError>(v)
        })
        .route_envelope("Ping", |_ctx, _v: serde_json::Value| {
            Ok::<_, netloom::BoxError>("mine")
        })
        .route(
            netloom::ws::BINARY,
            |ctx: &mut Context<'_>| -> HandlerResult {
                ctx.reply_envelope("Pushed", &[1, 2, 3])?;
                Ok(())
            },
        )
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut ws = RawWs::connect(server.local_addr(), "/");
    for (send, want) in [
        (
            r#"{"type":"Ec\u0068o","data":[1]}"#,
            r#"{"type":"Echo","data":[1]}"#,
        ),
        (
            r#"{"type":"Ping","data":{}}"#,
            r#"{"type":"Ping","data":"mine"}"#,
        ),
    ] {
        ws.send_frame(0x81, send.as_bytes(), true);
        let (_, body) = ws.recv().expect("an answer");
        assert_eq!(String::from_utf8(body).unwrap(), want);
    }
    ws.send_frame(0x82, b"x", true);
    let (first, body) = ws.recv().expect("an answer");
    assert_eq!(
        (first, String::from_utf8(body).unwrap().as_str()),
        (0x81, r#"{"type":"Pushed","data":[1,2,3]}"#)
    );
    // (A RawWs that never answers the close handshake holds shutdown for
    // close_linger: not this review's business.)
    drop(ws);
    server.shutdown(TIMEOUT).unwrap();
}

/// The scratch buffer is re-entered by a `Serialize` that sends: the
/// inner send falls back to a fresh buffer and both go out.
#[test]
fn scratch_reentrancy() {
    struct Sneaky<'a>(&'a netloom::ConnHandle);
    impl Serialize for Sneaky<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let _ = self.0.send(7, b"inner");
            s.serialize_str("outer")
        }
    }
    let server = start(
        Server::builder().route(1, |ctx: &mut Context<'_>| -> HandlerResult {
            let h = ctx.handle();
            ctx.send_json(2, &Sneaky(&h))?;
            Ok(())
        }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    let mut got = vec![c.recv(), c.recv()];
    got.sort();
    assert_eq!(
        got,
        vec![(2, br#""outer""#.to_vec()), (7, b"inner".to_vec())]
    );
    server.shutdown(TIMEOUT).unwrap();
    let _ = std::io::stdout().flush();
}
