//! Third-party peers: `openssl s_client` and Python's `ssl` module.

use std::process::Command;
use std::time::Duration;

use netloom::{CloseReason, ServerHandle};

use super::{tls_builder, INFO};
use crate::common::peers::{require, Peer};
use crate::common::{frame, start_tracked, Closes};
use crate::tls_support::{python, run_python, test_cert, Proc, TempFile, ECHO};

/// A TLS server (see [`tls_builder`]) with its closes tracked, and its
/// certificate in a PEM file for a peer to trust as its CA.
fn server_and_ca_file() -> (ServerHandle, Closes, TempFile) {
    let cert = test_cert();
    let ca = TempFile::new("ca.pem", &cert.cert_pem);
    let (server, closes) = start_tracked(tls_builder(&cert));
    (server, closes, ca)
}

/// `openssl s_client` completes a handshake with `version_flag`, sends raw
/// frame bytes from its stdin and prints our replies on stdout; killing it
/// (no close_notify) closes the connection as `PeerClosed`.
fn s_client_exchanges_framed_echo(version_flag: &str, version: &str) {
    let Some(openssl) = require(Peer::Openssl) else {
        return;
    };
    let (server, mut closes, ca) = server_and_ca_file();
    let mut s_client = Proc::spawn(
        "openssl s_client",
        Command::new(openssl).args([
            "s_client",
            "-connect",
            &server.local_addr().to_string(),
            "-servername",
            "localhost",
            "-CAfile",
            ca.arg(),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-alpn",
            "netloom/1",
            "-quiet",
            version_flag,
        ]),
    );
    let binary: Vec<u8> = (0..=255).collect();
    let big = vec![0x5a; 100_000];
    let mut input = frame(ECHO, b"framed echo through openssl s_client");
    input.extend(frame(ECHO, &binary));
    input.extend(frame(ECHO, b""));
    input.extend(frame(ECHO, &big));
    input.extend(frame(INFO, b""));
    s_client.write(&input);
    assert_eq!(
        s_client.read_frame(),
        (ECHO, b"framed echo through openssl s_client".to_vec())
    );
    assert_eq!(s_client.read_frame(), (ECHO, binary));
    assert_eq!(s_client.read_frame(), (ECHO, Vec::new()));
    assert!(s_client.read_frame() == (ECHO, big), "100 kB echo differs");
    let (id, text) = s_client.read_frame();
    assert_eq!(
        (id, String::from_utf8(text).unwrap()),
        (INFO, format!("{version} netloom/1 localhost"))
    );
    drop(s_client); // SIGKILL: the socket closes without close_notify
    assert!(matches!(closes.next().1, CloseReason::PeerClosed));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn openssl_s_client_tls13_handshake_and_framed_echo() {
    s_client_exchanges_framed_echo("-tls1_3", "TLSv1_3");
}

#[test]
fn openssl_s_client_tls12_handshake_and_framed_echo() {
    s_client_exchanges_framed_echo("-tls1_2", "TLSv1_2");
}

/// Python's ssl module with one pinned version: handshake, ALPN, echoes up
/// to 1 MiB, and what the server saw. Prints the server's INFO text.
const PY_ECHO: &str = r#"
import socket, ssl, struct, sys
from tls_peer import context
port, cafile, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = context(cafile, version)
ctx.set_alpn_protocols(["netloom/1"])
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
s.settimeout(10)
if s.version() != "TLSv" + version:
    sys.exit("negotiated %s, wanted TLSv%s" % (s.version(), version))
if s.selected_alpn_protocol() != "netloom/1":
    sys.exit("ALPN: %r" % s.selected_alpn_protocol())

def recv_exact(n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            sys.exit("server closed the connection early")
        buf += chunk
    return bytes(buf)

def recv_frame():
    length, mid = struct.unpack("<II", recv_exact(8))
    return mid, recv_exact(length)

msgs = [(1, b"hello from cpython ssl"), (1, b""), (1, bytes(range(256)) * 4096)]
s.sendall(b"".join(struct.pack("<II", len(b), i) + b for i, b in msgs))
for i, b in msgs:
    mid, body = recv_frame()
    if (mid, body) != (i, b):
        sys.exit("mismatch: sent id %d (%d bytes), got id %d (%d bytes)" % (i, len(b), mid, len(body)))
s.sendall(struct.pack("<II", 0, 9))
mid, body = recv_frame()
print(body.decode())
s.close()
"#;

fn python_ssl_echoes(version: &str, want: &str) {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let (server, mut closes, ca) = server_and_ca_file();
    let port = server.local_addr().port().to_string();
    let out = run_python(&py, PY_ECHO, &[&port, ca.arg(), version]);
    assert_eq!(out.trim(), format!("{want} netloom/1 localhost"));
    // Python closed its socket without close_notify.
    assert!(matches!(closes.next().1, CloseReason::PeerClosed));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn python_ssl_tls12_echoes_up_to_one_mib() {
    python_ssl_echoes("1.2", "TLSv1_2");
}

#[test]
fn python_ssl_tls13_echoes_up_to_one_mib() {
    python_ssl_echoes("1.3", "TLSv1_3");
}

/// Python connects, echoes once, says "ready", then waits for the server to
/// end the stream: with `suppress_ragged_eofs=False` an end without
/// close_notify raises `SSLEOFError`; a clean one reads `b''`.
const PY_WAIT_FOR_CLOSE: &str = r#"
import socket, ssl, struct, sys
from tls_peer import context
port, cafile, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = context(cafile, version)
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
s.settimeout(10)
s.sendall(struct.pack("<II", 2, 1) + b"hi")
got = b""
while len(got) < 10:
    chunk = s.recv(10 - len(got))
    if not chunk:
        sys.exit("closed before the echo")
    got += chunk
if got != struct.pack("<II", 2, 1) + b"hi":
    sys.exit("bad echo %r" % got)
print("ready", flush=True)
try:
    data = s.recv(100)
except ssl.SSLEOFError as e:
    sys.exit("no close_notify: %s" % e)
if data != b"":
    sys.exit("expected the end of the stream, got %r" % data)
print("clean eof")
"#;

#[test]
fn python_ssl_reads_a_clean_end_after_shutdown_close_notify() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let cert = test_cert();
    let ca = TempFile::new("ca.pem", &cert.cert_pem);
    for version in ["1.2", "1.3"] {
        let (server, mut closes) = start_tracked(tls_builder(&cert));
        let port = server.local_addr().port().to_string();
        let mut py = Proc::spawn(
            "python3",
            python(&py).args(["-c", PY_WAIT_FOR_CLOSE, &port, ca.arg(), version]),
        );
        assert_eq!(py.read_line(), "ready");
        server.shutdown(Duration::from_secs(5)).unwrap();
        let (status, out) = py.finish();
        assert!(
            status.success(),
            "TLS {version}: python3 failed ({status}): {}",
            py.stderr()
        );
        assert_eq!(out.trim(), "clean eof", "TLS {version}");
        assert!(matches!(closes.next().1, CloseReason::Shutdown));
    }
}
