//! Typed messages (issue 22): JSON, MessagePack and Protocol Buffers
//! routes round-trip, borrow from the body where serde can, and hand a
//! body that does not decode to the hook and the policy (drop, reply,
//! close) without harming other connections; a JSON route answers
//! Python's `json` over TCP and TLS.

use std::process::Command;
use std::sync::Arc;

use crossbeam_channel::unbounded;
use netloom::{BadBody, CloseReason, Context, Exec, HandlerResult, Server};
use serde::{Deserialize, Serialize};

use crate::common::peers::{require, Peer};
use crate::common::{run_bounded, start, start_tracked, Client, TIMEOUT};
use crate::tls_support::{server_config, test_cert, TempFile};

#[cfg(feature = "ws")]
mod hostile;
mod limits;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Point {
    x: i32,
    y: i32,
    name: String,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Sum {
    sum: i32,
    name: String,
}

fn sum(_ctx: &mut Context<'_>, p: Point) -> Result<Sum, netloom::BoxError> {
    Ok(Sum {
        sum: p.x + p.y,
        name: p.name,
    })
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbPoint {
    #[prost(int32, tag = "1")]
    x: i32,
    #[prost(int32, tag = "2")]
    y: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbSum {
    #[prost(int32, tag = "1")]
    sum: i32,
}

fn typed_server(policy: BadBody) -> (netloom::ServerHandle, crate::common::Closes) {
    start_tracked(
        Server::builder()
            .event_loops(2)
            .bad_body(policy)
            .route_json(10, sum)
            .route_msgpack(11, sum)
            .route_protobuf(12, |_ctx, p: PbPoint| {
                Ok::<_, netloom::BoxError>(PbSum { sum: p.x + p.y })
            })
            // Borrowing: the name is a slice of the receive buffer.
            .route(13, |ctx: &mut Context<'_>| -> HandlerResult {
                #[derive(Deserialize)]
                struct Named<'a> {
                    name: &'a str,
                }
                let n: Named<'_> = ctx.json()?;
                ctx.reply(13, n.name.to_uppercase())?;
                Ok(())
            }),
    )
}

#[test]
fn each_format_round_trips() {
    let (server, _closes) = typed_server(BadBody::Drop);
    let mut c = Client::connect(server.local_addr());
    let p = Point {
        x: 2,
        y: 40,
        name: "ann".into(),
    };
    let want = Sum {
        sum: 42,
        name: "ann".into(),
    };
    c.send(10, &serde_json::to_vec(&p).unwrap());
    let (id, body) = c.recv();
    assert_eq!(
        (id, serde_json::from_slice::<Sum>(&body).unwrap()),
        (10, want)
    );
    c.send(11, &rmp_serde::to_vec_named(&p).unwrap());
    let (id, body) = c.recv();
    let got: Sum = rmp_serde::from_slice(&body).unwrap();
    assert_eq!((id, got.sum, got.name.as_str()), (11, 42, "ann"));
    c.send(12, &prost::Message::encode_to_vec(&PbPoint { x: 2, y: 40 }));
    let (id, body) = c.recv();
    let got: PbSum = prost::Message::decode(&body[..]).unwrap();
    assert_eq!((id, got.sum), (12, 42));
    c.send(13, br#"{"name": "bob"}"#);
    assert_eq!(c.recv(), (13, b"BOB".to_vec()));
    assert_eq!(server.stats().bad_bodies, 0);
    server.shutdown(TIMEOUT).unwrap();
}

/// A push outside any handler in each format: `on_open` sends them
/// (found by mutation testing: `Session::send_msgpack` sending nothing
/// passed).
#[test]
fn a_session_pushes_each_format() {
    let server = start(Server::builder().on_open(|s| {
        let sum = Sum {
            sum: 7,
            name: "hi".into(),
        };
        s.send_json(20, &sum).is_ok()
            && s.send_msgpack(21, &sum).is_ok()
            && s.send_protobuf(22, &PbSum { sum: 7 }).is_ok()
    }));
    let mut c = Client::connect(server.local_addr());
    let (id, body) = c.recv();
    let json: Sum = serde_json::from_slice(&body).unwrap();
    assert_eq!((id, json.sum, json.name.as_str()), (20, 7, "hi"));
    let (id, body) = c.recv();
    let msgpack: Sum = rmp_serde::from_slice(&body).unwrap();
    assert_eq!((id, msgpack.sum, msgpack.name.as_str()), (21, 7, "hi"));
    let (id, body) = c.recv();
    let protobuf: PbSum = prost::Message::decode(&body[..]).unwrap();
    assert_eq!((id, protobuf.sum), (22, 7));
    server.shutdown(TIMEOUT).unwrap();
}

/// Garbage for each format, under each policy: dropped (the connection
/// goes on), answered with the error, or the connection closed; other
/// connections never notice.
#[test]
fn bodies_that_do_not_decode_follow_the_policy() {
    let garbage: [(u32, &[u8]); 4] = [
        (10, b"{not json"),
        (11, b"\xc1\xc1\xc1"),
        (12, b"\xff\xff\xff\xff"),
        (13, b"[1, 2]"),
    ];
    for policy in [BadBody::Drop, BadBody::Reply(99), BadBody::Close] {
        let (server, mut closes) = typed_server(policy);
        let mut bystander = Client::connect(server.local_addr());
        for (id, body) in garbage {
            let mut c = Client::connect(server.local_addr());
            c.send(id, body);
            match policy {
                BadBody::Drop => {
                    // Still served: the next good message is answered.
                    c.send(13, br#"{"name": "ok"}"#);
                    assert_eq!(c.recv(), (13, b"OK".to_vec()), "{policy:?} {id}");
                }
                BadBody::Reply(r) => {
                    let (got, text) = c.recv();
                    let text = String::from_utf8(text).unwrap();
                    assert_eq!(got, r, "{policy:?} {id}: {text}");
                    assert!(text.contains(&format!("message {id}")), "{text}");
                }
                _ => {
                    c.expect_closed();
                    let reason = closes.reason_for(c.stream.local_addr().unwrap());
                    assert!(matches!(reason, CloseReason::BadBody(_)), "{reason:?}");
                }
            }
            bystander.send(13, br#"{"name": "fine"}"#);
            assert_eq!(bystander.recv(), (13, b"FINE".to_vec()));
        }
        assert_eq!(
            server.stats().bad_bodies,
            garbage.len() as u64,
            "{policy:?}"
        );
        server.shutdown(TIMEOUT).unwrap();
    }
}

#[test]
fn the_hook_sees_each_bad_body_on_the_pool_too() {
    let (tx, rx) = unbounded();
    let server = start(
        Server::builder()
            .exec(Exec::Pool(2))
            .route_json(10, sum)
            .on_bad_body(move |s, e| {
                let _ = tx.send((s.id(), e.format, e.msg_id));
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(10, b"nope");
    c.send(10, br#"{"x": 1, "y": 1, "name": "z"}"#);
    let (id, body) = c.recv();
    assert_eq!(
        (id, serde_json::from_slice::<Sum>(&body).unwrap().sum),
        (10, 2)
    );
    let (_, format, msg_id) = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!((format, msg_id), ("json", 10));
    server.shutdown(TIMEOUT).unwrap();
}

/// Python's `json` over a plain socket and over `ssl`.
#[test]
fn a_json_route_answers_pythons_json_over_tcp_and_tls() {
    let Some(python) = require(Peer::Python3) else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/typed_peer.py");
    let expect = r#"10 {"name": "ann", "sum": 3}"#;
    // TCP.
    let (server, _c) = typed_server(BadBody::Close);
    let addr = server.local_addr();
    let mut py = Command::new(&python);
    py.args([script, &addr.ip().to_string(), &addr.port().to_string()]);
    let out = run_bounded(py, TIMEOUT * 2);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.trim(), expect);
    server.shutdown(TIMEOUT).unwrap();
    // TLS.
    let cert = test_cert();
    let ca = TempFile::new("typed-ca.pem", &cert.cert_pem);
    let server = start(
        Server::builder()
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route_json(10, sum),
    );
    let addr = server.local_addr();
    let mut py = Command::new(&python);
    py.args([
        script,
        &addr.ip().to_string(),
        &addr.port().to_string(),
        ca.arg(),
    ]);
    let out = run_bounded(py, TIMEOUT * 2);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.trim(), expect);
    server.shutdown(TIMEOUT).unwrap();
}
