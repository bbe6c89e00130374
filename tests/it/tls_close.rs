//! A peer that ends its TLS session with close_notify gets close_notify
//! back: Python's `SSLSocket.unwrap()` (OpenSSL's bidirectional shutdown)
//! then succeeds (with a bare FIN it failed with
//! `UNEXPECTED_EOF_WHILE_READING`). In TLS 1.2 (RFC 5246 7.2.1) nothing
//! follows the peer's close_notify: replies still queued, or to requests
//! that came with it, are dropped (sent, they made OpenSSL fail with
//! `APPLICATION_DATA_AFTER_CLOSE_NOTIFY`). TLS 1.3 closes one direction
//! only (RFC 8446 6.1): those replies go first, then close_notify.
//!
//! `openssl s_client` shuts down one way only (it sends close_notify and
//! exits without reading), so it cannot see the answer; Python's `ssl` is
//! OpenSSL's shutdown driven to the end.

use std::sync::Arc;
use std::time::Duration;

use netloom::{CloseReason, Server};

use crate::common::peers::{require, Peer};
use crate::common::{echo, start_tracked};
use crate::tls_support::{run_python, server_config, test_cert, TempFile};

/// Connect with one TLS version, then either echo once and `unwrap()`
/// ("after-echo"), or send a request and close_notify in one write
/// ("with-request"), then read what comes before the server's
/// close_notify: the reply in TLS 1.3, nothing in TLS 1.2.
const PY_UNWRAP: &str = r#"
import socket, ssl, struct, sys
from tls_peer import Bio, context
port, cafile, version, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = context(cafile, version)
frame = struct.pack("<II", 2, 1) + b"hi"

def after_echo(i):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.settimeout(10)
    s.sendall(frame)
    got = b""
    while len(got) < len(frame):
        chunk = s.recv(len(frame) - len(got))
        if not chunk:
            sys.exit("closed before the echo")
        got += chunk
    assert got == frame, got
    s.unwrap().close()

def with_request(i):
    # The request's record and close_notify leave in one write, so the
    # server reads them together: its reply must not follow its
    # close_notify.
    bio = Bio(port, ctx)
    bio.write_and_close_notify(frame)
    # TLS 1.3 closes one direction only: the reply to the request comes,
    # then the server's close_notify. TLS 1.2: close_notify alone.
    got = bio.until_close_notify()
    want = frame if version == "1.3" else b""
    if got != want:
        sys.exit("TLS %s: got %r after our close_notify, want %r" % (version, got, want))
    bio.close()

for i in range(20):
    try:
        (after_echo if mode == "after-echo" else with_request)(i)
    except ssl.SSLError as e:
        sys.exit("unwrap %d failed: %s" % (i, e))
print("unwrapped")
"#;

fn unwrap_succeeds(version: &str, mode: &str) {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let cert = test_cert();
    let ca = TempFile::new("ca.pem", &cert.cert_pem);
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route(1, echo),
    );
    let port = server.local_addr().port().to_string();
    let out = run_python(&py, PY_UNWRAP, &[&port, ca.arg(), version, mode]);
    assert_eq!(out.trim(), "unwrapped", "TLS {version} {mode}");
    for _ in 0..20 {
        let (_, reason) = closes.next();
        assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    }
    // Nothing was left to the close linger (TLS 1.2 dropped the replies
    // at once; TLS 1.3 sent them).
    assert_eq!(server.stats().unflushed_closes, 0);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_unwrap_after_an_echo_gets_close_notify_tls12() {
    unwrap_succeeds("1.2", "after-echo");
}

#[test]
fn python_unwrap_after_an_echo_gets_close_notify_tls13() {
    unwrap_succeeds("1.3", "after-echo");
}

#[test]
fn python_close_notify_with_a_request_gets_no_reply_tls12() {
    unwrap_succeeds("1.2", "with-request");
}

#[test]
fn python_close_notify_with_a_request_gets_the_reply_first_tls13() {
    unwrap_succeeds("1.3", "with-request");
}
