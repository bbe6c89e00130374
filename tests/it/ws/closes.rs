//! Which close frame counts, and TLS's close_notify under a WebSocket
//! close handshake (issue 25, item 13).

use std::sync::Arc;

use netloom::{ws, CloseReason, Server};

use crate::common::peers::{require, Peer};
use crate::tls_support::{run_python, server_config, test_cert, TempFile};
use crate::ws_raw::RawWs;

/// A masked client close frame with `code` (mask key 0).
fn close_frame(code: u16) -> Vec<u8> {
    let mut f = vec![0x88, 0x82, 0, 0, 0, 0];
    f.extend_from_slice(&code.to_be_bytes());
    f
}

/// Two close frames in one write: tungstenite answers the first, and the
/// reason reported is the first's (it was the second's: "WsProtocol 1002,
/// carries code 1005" after answering 1000).
#[test]
fn the_first_of_two_close_frames_is_the_one_reported() {
    crate::common::init_logs();
    let (server, mut closes) = {
        let builder = Server::builder()
            .event_loops(2)
            .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()));
        let (builder, closes) = crate::common::track_closes(builder);
        let server = builder.bind_ws("127.0.0.1:0").unwrap().start().unwrap();
        (server, closes)
    };
    let mut ws = RawWs::connect(server.local_addr(), "/");
    let mut both = close_frame(1000);
    both.extend(close_frame(1005));
    ws.write(&both);
    while ws.fill() > 0 {}
    assert_eq!(
        ws.buf,
        [0x88, 0x02, 0x03, 0xe8],
        "the echo of the first, then the end"
    );
    let (_, reason) = closes.next();
    assert!(
        matches!(&reason, CloseReason::WsClosed { code: 1000, .. }),
        "closed: {reason}"
    );
}

/// A `wss://` client sends its close frame and close_notify in one write
/// (Python's `ssl` over a memory BIO, as tests/it/tls_close.rs does): in
/// TLS 1.2 nothing may follow close_notify, so the server answers with
/// close_notify alone, dropping its close frame echo; in TLS 1.3 the echo
/// goes first. It was sent after the peer's close_notify in TLS 1.2 too:
/// the WebSocket layer's close hid what TLS had seen.
const PY_CLOSE: &str = r#"
import sys
from tls_peer import Bio, context
port, cafile, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
bio = Bio(port, context(cafile, version))
bio.obj.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
bio.flush()
head = b""
while b"\r\n\r\n" not in head:
    head += bio.read()
assert head.startswith(b"HTTP/1.1 101"), head
# Our close frame (code 1000) and close_notify in one write.
bio.write_and_close_notify(b"\x88\x82\x00\x00\x00\x00\x03\xe8")
got = head[head.index(b"\r\n\r\n") + 4:] + bio.until_close_notify()
want = b"\x88\x02\x03\xe8" if version == "1.3" else b""
if got != want:
    sys.exit("TLS %s: got %r before the server's close_notify, want %r" % (version, got, want))
print("closed")
"#;

fn close_notify_with_the_close_frame(version: &str) {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let cert = test_cert();
    let ca = TempFile::new("ca.pem", &cert.cert_pem);
    let builder = Server::builder()
        .event_loops(2)
        .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)));
    let (builder, mut closes) = crate::common::track_closes(builder);
    crate::common::init_logs();
    let server = builder.bind_ws("127.0.0.1:0").unwrap().start().unwrap();
    let port = server.local_addr().port().to_string();
    let out = run_python(&py, PY_CLOSE, &[&port, ca.arg(), version]);
    assert_eq!(out.trim(), "closed", "TLS {version}");
    let (_, reason) = closes.next();
    assert!(
        matches!(&reason, CloseReason::WsClosed { code: 1000, .. }),
        "TLS {version}: {reason}"
    );
}

#[test]
fn tls12_close_notify_with_the_close_frame_gets_close_notify_alone() {
    close_notify_with_the_close_frame("1.2");
}

#[test]
fn tls13_close_notify_with_the_close_frame_gets_the_echo_then_close_notify() {
    close_notify_with_the_close_frame("1.3");
}
