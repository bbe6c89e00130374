//! Typed messages at their limits (found by the review of the fixes for
//! issue 22; each failed before its fix): a recursive enum in MessagePack
//! nests no deeper than any other value, and `keepalived` leaves
//! WebSocket connections in packer mode alone.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use netloom::{Context, Server};

use crate::common::{run_bounded, start, Client, TIMEOUT};

// ---------------------------------------------------------------------
// MessagePack depth (src/dispatch/typed/msgpack.rs)
// ---------------------------------------------------------------------

/// A recursive enum, as an AST or a tree of commands would be.
#[cfg(feature = "msgpack")]
#[derive(Debug, serde::Deserialize, serde::Serialize)]
enum Expr {
    Lit(i64),
    Neg(Box<Expr>),
}

/// "MessagePack bodies nest at most 128 deep" (GUIDE, Typed messages).
/// rmp-serde counts depth in arrays, maps and ext values reached through
/// `deserialize_any`, but not in `deserialize_enum`: an externally tagged
/// enum nests as `{"Neg": {"Neg": ...}}` (one-entry maps) and each level
/// recurses without touching the bound. A body of 60 000 levels (300 KB,
/// under `max_body_length`) overflows the loop thread's stack: the whole
/// process aborts. Run in a child process.
#[cfg(feature = "msgpack")]
#[test]
fn msgpack_recursive_enum_is_bounded_too() {
    const CHILD: &str = "NETLOOM_REVIEW_MSGPACK_ENUM_CHILD";
    if std::env::var_os(CHILD).is_some() {
        msgpack_enum_child();
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD, "1").args([
        "--exact",
        "typed::limits::msgpack_recursive_enum_is_bounded_too",
        "--nocapture",
        "--test-threads=1",
    ]);
    let out = run_bounded(cmd, TIMEOUT * 3);
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: String = err.lines().rev().take(4).collect::<Vec<_>>().join("\n");
    assert!(
        out.status.success(),
        "the server process died: {:?}\n{tail}",
        out.status
    );
}

#[cfg(feature = "msgpack")]
fn msgpack_enum_child() {
    const DEPTH: usize = 60_000;
    let server = start(
        Server::builder()
            .bad_body(netloom::BadBody::Reply(99))
            .route_msgpack(11, |_ctx, _e: Expr| Ok::<_, netloom::BoxError>(true)),
    );
    // {"Neg": {"Neg": ... {"Lit": 1} ... }}
    let mut body = Vec::with_capacity(DEPTH * 5 + 8);
    for _ in 0..DEPTH {
        body.extend([0x81, 0xa3, b'N', b'e', b'g']);
    }
    body.extend([0x81, 0xa3, b'L', b'i', b't', 0x01]);
    let mut c = Client::connect(server.local_addr());
    c.send(11, &body);
    let (id, reply) = c.recv();
    assert_eq!(id, 99, "{}", String::from_utf8_lossy(&reply));
    server.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------
// keepalived's ping (src/reactor/event_loop/timers.rs, heartbeat)
// ---------------------------------------------------------------------

/// The fix sends `keepalived`'s envelope ping to connections whose layer
/// is WebSocket, and none to the server's other connections, because
/// those do not speak the envelope (a plain TCP listener got an unknown
/// message id 1 with JSON in it). A WebSocket listener in
/// `WsMode::Packer` does not speak the envelope either (a text message
/// closes it with 1003): it still gets the ping, as a binary message
/// carrying a packer frame of id 1 (`ws::TEXT`) with the JSON as body:
/// the same unsolicited message the fix removed from TCP peers.
#[cfg(all(feature = "json", feature = "ws"))]
#[test]
fn keepalived_does_not_send_the_envelope_into_packer_mode_websockets() {
    use crate::ws_raw::RawWs;
    crate::common::init_logs();
    let server = Server::builder()
        .ws_mode(netloom::ws::WsMode::Packer)
        .keepalived(Duration::from_millis(100), Duration::from_secs(10))
        .route(7, |ctx: &mut Context<'_>| ctx.reply(7, ctx.body()))
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut ws = RawWs::connect(server.local_addr(), "/");
    // Ten of the keepalive's intervals: what arrives meanwhile.
    ws.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut chunk = [0u8; 4096];
    let got = match ws.stream.read(&mut chunk) {
        Ok(n) => chunk[..n].to_vec(),
        Err(_) => Vec::new(),
    };
    drop(ws);
    let _ = server.shutdown(Duration::from_millis(200));
    // A binary data frame (0x82) whose payload is a packer frame.
    let data_frame = got.first() == Some(&0x82);
    println!(
        "a packer-mode WebSocket client got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        !data_frame,
        "a packer-mode WebSocket peer got the envelope ping as a packer message: {:?}",
        String::from_utf8_lossy(&got)
    );
}
