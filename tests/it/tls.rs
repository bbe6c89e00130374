//! TLS over real loopback sockets: our client, a raw rustls client that
//! counts TLS records on the wire, `openssl s_client` and Python's `ssl`
//! module against the server.
//!
//! Certificates are generated at test time with rcgen; the PEM files that
//! openssl and Python need are written under the system temp directory with
//! unique names and removed afterwards. Frames are assembled by hand
//! (`crate::common::frame`), never with netloom's encoder. Nothing sleeps to
//! synchronise: tests wait on channels fed by hooks and handlers, on reads
//! with timeouts, or on a child's output, always with a bound.
//!
//! openssl and python3 are installed by `scripts/test`; a test whose peer
//! is missing fails with how to install it, or is skipped and listed under
//! `NETLOOM_SKIP_MISSING_PEERS=1` (`crate::common::peers`).

#[allow(dead_code)]
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::client::Client;
use netloom::{
    Builder, CloseReason, ConnHandle, Context, Error, HandlerResult, Next, Server, TlsInfo,
};
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};
use rustls::ClientConnection;

use crate::common::peers::{require, Peer};
use crate::common::{echo, frame, start, track_closes, TIMEOUT};
use crate::tls_support::{
    assert_only_alerts, client_config, client_config_versions, read_until_fin, run_python,
    server_config, test_cert, Proc, TempFile, TestCert, TlsPeer, ALPN, ECHO,
};

/// Replies with "version alpn sni" from the connection's [`TlsInfo`].
const INFO: u32 = 9;

/// Reply with what the handshake settled, as "version alpn sni".
fn info(ctx: &mut Context<'_>) -> netloom::Result<()> {
    let text = match ctx.data().get::<TlsInfo>() {
        Some(i) => format!(
            "{} {} {}",
            i.version,
            i.alpn
                .as_deref()
                .map_or("-".into(), String::from_utf8_lossy),
            i.sni.as_deref().unwrap_or("-")
        ),
        None => "no TlsInfo".into(),
    };
    ctx.reply(INFO, text)
}

/// A TLS server (TLS 1.2 and 1.3) on two loops with [`ECHO`] and [`INFO`].
fn tls_builder(c: &TestCert) -> Builder {
    Server::builder()
        .event_loops(2)
        .tls(Arc::new(server_config(c, rustls::ALL_VERSIONS)))
        .route(ECHO, echo)
        .route(INFO, info)
}

// ---------------------------------------------------------------------------
// Our client; ALPN, SNI, version; PEM files.
// ---------------------------------------------------------------------------

#[test]
fn our_client_echoes_over_tls_and_sees_alpn_and_sni() {
    let cert = test_cert();
    let server = start(tls_builder(&cert));
    let mut client =
        Client::connect_tls(server.local_addr(), "localhost", client_config(&cert)).unwrap();
    client.set_timeout(Some(TIMEOUT)).unwrap();
    for body in [&b""[..], b"hello", &vec![7u8; 1 << 20][..]] {
        client.send(ECHO, body).unwrap();
        let m = client.recv().unwrap();
        assert_eq!((m.id, &m.body[..]), (ECHO, body));
    }
    let m = client.round_trip(INFO, b"").unwrap();
    assert_eq!(&m.body[..], b"TLSv1_3 netloom/1 localhost");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn tls12_and_tls13_are_negotiated_as_configured() {
    let cert = test_cert();
    let server = start(tls_builder(&cert));
    for (versions, want) in [(&[&TLS12][..], "TLSv1_2"), (&[&TLS13][..], "TLSv1_3")] {
        let mut peer =
            TlsPeer::connect(server.local_addr(), client_config_versions(&cert, versions));
        peer.assert_echoes(b"hello");
        peer.send(INFO, b"");
        let (_, text) = peer.recv();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            format!("{want} netloom/1 localhost")
        );
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn tls13_key_updates_from_the_client_are_answered() {
    let cert = test_cert();
    let server = start(tls_builder(&cert));
    let mut peer = TlsPeer::connect(
        server.local_addr(),
        client_config_versions(&cert, &[&TLS13]),
    );
    peer.assert_echoes(b"old keys");
    for round in 0..3u8 {
        // Asks the server to update its keys too (update_requested).
        peer.s.conn.refresh_traffic_keys().unwrap();
        peer.assert_echoes(&[round; 3000]);
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn tls_info_without_sni_or_alpn() {
    let cert = test_cert();
    let server = start(tls_builder(&cert));
    // No ALPN offered; an IP address as the name, so no SNI.
    let mut config = (*client_config(&cert)).clone();
    config.alpn_protocols.clear();
    let tcp = TcpStream::connect_timeout(&server.local_addr(), TIMEOUT).unwrap();
    let mut peer = TlsPeer::named(tcp, Arc::new(config), "127.0.0.1");
    peer.send(INFO, b"");
    assert_eq!(peer.recv(), (INFO, b"TLSv1_3 - -".to_vec()));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn tls_pem_files_serve_and_bad_files_are_config_errors() {
    let cert = test_cert();
    let cert_file = TempFile::new("cert.pem", &cert.cert_pem);
    let key_file = TempFile::new("key.pem", &cert.key_pem);
    let builder = Server::builder()
        .event_loops(1)
        .tls_pem_files(cert_file.arg(), key_file.arg(), &[ALPN])
        .expect("PEM files load")
        .route(ECHO, echo)
        .route(INFO, info);
    let server = start(builder);
    let mut client =
        Client::connect_tls(server.local_addr(), "localhost", client_config(&cert)).unwrap();
    client.set_timeout(Some(TIMEOUT)).unwrap();
    let m = client.round_trip(ECHO, b"from PEM files").unwrap();
    assert_eq!(&m.body[..], b"from PEM files");
    let m = client.round_trip(INFO, b"").unwrap();
    assert_eq!(&m.body[..], b"TLSv1_3 netloom/1 localhost");
    server.shutdown(Duration::from_secs(5)).unwrap();

    let missing = std::env::temp_dir().join("netloom-tls-test-no-such-file.pem");
    let garbage = TempFile::new("garbage.pem", "not a PEM file\n");
    let other = test_cert();
    let other_key = TempFile::new("other-key.pem", &other.key_pem);
    for (what, cert_path, key_path) in [
        (
            "missing certificate",
            missing.to_str().unwrap(),
            key_file.arg(),
        ),
        ("missing key", cert_file.arg(), missing.to_str().unwrap()),
        ("garbage key", cert_file.arg(), garbage.arg()),
        (
            "key of another certificate",
            cert_file.arg(),
            other_key.arg(),
        ),
    ] {
        match Server::builder().tls_pem_files(cert_path, key_path, &[]) {
            Err(Error::Config(msg)) => assert!(!msg.is_empty(), "{what}"),
            Err(e) => panic!("{what}: expected Error::Config, got {e}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }
}

// ---------------------------------------------------------------------------
// Third-party peers: openssl s_client and Python's ssl module.
// ---------------------------------------------------------------------------

/// `openssl s_client` completes a handshake with `version_flag`, sends raw
/// frame bytes from its stdin and prints our replies on stdout; killing it
/// (no close_notify) closes the connection as `PeerClosed`.
fn s_client_exchanges_framed_echo(version_flag: &str, version: &str) {
    let Some(openssl) = require(Peer::Openssl) else {
        return;
    };
    let cert = test_cert();
    let ca = TempFile::new("ca.pem", &cert.cert_pem);
    let (builder, mut closes) = track_closes(tls_builder(&cert));
    let server = start(builder);
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
port, cafile, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(cafile)
ctx.minimum_version = v
ctx.maximum_version = v
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
    let cert = test_cert();
    let ca = TempFile::new("ca.pem", &cert.cert_pem);
    let (builder, mut closes) = track_closes(tls_builder(&cert));
    let server = start(builder);
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
port, cafile, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(cafile)
ctx.minimum_version = v
ctx.maximum_version = v
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
        let (builder, mut closes) = track_closes(tls_builder(&cert));
        let server = start(builder);
        let port = server.local_addr().port().to_string();
        let mut py = Proc::spawn(
            "python3",
            Command::new(&py).args(["-c", PY_WAIT_FOR_CLOSE, &port, ca.arg(), version]),
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

// ---------------------------------------------------------------------------
// Records: large frames, many small frames.
// ---------------------------------------------------------------------------

#[test]
fn one_mib_frames_are_split_across_many_records_both_ways() {
    let cert = test_cert();
    let server = start(tls_builder(&cert));
    let mut peer = TlsPeer::connect(server.local_addr(), client_config(&cert));
    peer.assert_echoes(b"warm up"); // session tickets arrive before this
    for round in 0..2u8 {
        let body: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8 ^ round).collect();
        let (rx0, tx0) = peer.records();
        peer.assert_echoes(&body);
        let (rx1, tx1) = peer.records();
        // A TLS record carries at most 16 KiB of plaintext: 1 MiB + 8 needs 65.
        assert!(tx1 - tx0 >= 65, "sent in {} records", tx1 - tx0);
        assert!(rx1 - rx0 >= 65, "received in {} records", rx1 - rx0);
    }
    // Two 1 MiB frames in one write, then a small one behind them.
    let body = vec![0xa5; 1 << 20];
    let mut bytes = frame(ECHO, &body);
    bytes.extend(frame(ECHO, &body));
    bytes.extend(frame(ECHO, b"behind"));
    peer.send_raw(&bytes);
    for want in [&body[..], &body[..], b"behind"] {
        let (id, got) = peer.recv();
        assert!(id == ECHO && got == want, "frame differs");
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn many_small_frames_travel_in_one_record_each_way() {
    let cert = test_cert();
    let server = start(tls_builder(&cert));
    let mut peer = TlsPeer::connect(server.local_addr(), client_config(&cert));
    peer.assert_echoes(b"warm up"); // session tickets arrive before this
    let frames: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| frame(ECHO, &i.to_le_bytes()[..(i % 5) as usize]))
        .collect();
    let bytes = frames.concat();
    assert!(bytes.len() < 16 << 10, "must fit one record");
    let (rx0, tx0) = peer.records();
    peer.send_raw(&bytes);
    for f in &frames {
        let (id, body) = peer.recv();
        assert_eq!((id, &body[..]), (ECHO, &f[8..]));
    }
    let (rx1, tx1) = peer.records();
    assert_eq!(tx1 - tx0, 1, "1000 frames were sent in one record");
    // The server decodes them all from one record in one loop turn and
    // coalesces the replies: one record, two at most if the turn split.
    assert!(rx1 - rx0 <= 2, "1000 replies came in {} records", rx1 - rx0);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

// ---------------------------------------------------------------------------
// Ends: no close_notify, handshake timeout, plaintext, failed handshakes.
// ---------------------------------------------------------------------------

#[test]
fn a_request_followed_by_close_notify_is_answered_as_its_tls_version_says() {
    let cert = test_cert();
    let (builder, mut closes) = track_closes(tls_builder(&cert));
    let server = start(builder);
    for versions in [&[&TLS12][..], &[&TLS13][..]] {
        let mut peer =
            TlsPeer::connect(server.local_addr(), client_config_versions(&cert, versions));
        let addr = peer.local_addr();
        // The request and close_notify leave in one write.
        peer.s
            .conn
            .writer()
            .write_all(&frame(ECHO, b"last request"))
            .unwrap();
        peer.s.conn.send_close_notify();
        peer.flush_in_one_write();
        if versions[0] == &TLS13 {
            // TLS 1.3 closes one direction: the reply still comes.
            assert_eq!(peer.recv(), (ECHO, b"last request".to_vec()));
        }
        // Then the server's close_notify (TLS 1.2: at once, nothing before
        // it), and the end of the stream.
        let mut rest = Vec::new();
        let end = io::Read::read_to_end(&mut peer.s, &mut rest);
        assert!(end.is_ok(), "TLS {:?}: {end:?}", versions[0].version);
        assert!(
            rest.is_empty(),
            "TLS {:?}: data after close_notify: {rest:?}",
            versions[0].version
        );
        assert!(matches!(closes.reason_for(addr), CloseReason::PeerClosed));
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn clients_closing_without_close_notify_are_peer_closed() {
    let cert = test_cert();
    let (builder, mut closes) = track_closes(tls_builder(&cert));
    let server = start(builder);
    let addr = server.local_addr();
    let mut bystander = TlsPeer::connect(addr, client_config(&cert));
    bystander.assert_echoes(b"before");

    // TCP shutdown after an exchange, no close_notify.
    let mut abrupt = TlsPeer::connect(addr, client_config(&cert));
    abrupt.assert_echoes(b"exchange");
    let a = abrupt.local_addr();
    abrupt.s.sock.tcp.shutdown(Shutdown::Both).unwrap();
    assert!(matches!(closes.reason_for(a), CloseReason::PeerClosed));

    // The stream ends in the middle of a record.
    let mut truncated = TlsPeer::connect(addr, client_config(&cert));
    truncated.assert_echoes(b"exchange");
    let t = truncated.local_addr();
    truncated
        .s
        .conn
        .writer()
        .write_all(&frame(ECHO, &[1; 4000]))
        .unwrap();
    let mut record = Vec::new();
    truncated.s.conn.write_tls(&mut record).unwrap();
    let tcp = &mut truncated.s.sock.tcp;
    tcp.write_all(&record[..record.len() / 2]).unwrap();
    tcp.shutdown(Shutdown::Both).unwrap();
    assert!(matches!(closes.reason_for(t), CloseReason::PeerClosed));

    // close_notify, then the TCP end: the same reason.
    let mut polite = TlsPeer::connect(addr, client_config(&cert));
    polite.assert_echoes(b"bye");
    let p = polite.local_addr();
    polite.s.conn.send_close_notify();
    polite.s.flush().unwrap();
    polite.s.sock.tcp.shutdown(Shutdown::Write).unwrap();
    assert!(matches!(closes.reason_for(p), CloseReason::PeerClosed));
    // The server ends the stream without sending anything more.
    match polite.read_to_end() {
        Ok(rest) => assert!(rest.is_empty(), "{} bytes after close", rest.len()),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}"),
    }

    bystander.assert_echoes(b"still served");
    drop(bystander);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn silent_and_stalled_handshakes_time_out() {
    const LIMIT: Duration = Duration::from_millis(200);
    let cert = test_cert();
    let (builder, mut closes) = track_closes(tls_builder(&cert).handshake_timeout(LIMIT));
    let server = start(builder);
    let addr = server.local_addr();
    // A client that finished its handshake is not affected by the timer.
    let mut done = TlsPeer::connect(addr, client_config(&cert));
    done.assert_echoes(b"in time");

    // TCP only: never a byte.
    let started = Instant::now();
    let mut silent = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let s = silent.local_addr().unwrap();
    assert_only_alerts(&read_until_fin(&mut silent));
    let waited = started.elapsed();
    assert!(
        waited >= LIMIT - Duration::from_millis(10),
        "closed after {waited:?}, before the handshake timeout"
    );
    assert!(
        waited < LIMIT + Duration::from_secs(2),
        "closed only after {waited:?}"
    );
    assert!(matches!(
        closes.reason_for(s),
        CloseReason::HandshakeTimeout
    ));

    // Half a ClientHello, then nothing.
    let mut hello = Vec::new();
    let mut conn = ClientConnection::new(
        client_config(&cert),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    conn.write_tls(&mut hello).unwrap();
    let mut stalled = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let st = stalled.local_addr().unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    assert_only_alerts(&read_until_fin(&mut stalled));
    assert!(matches!(
        closes.reason_for(st),
        CloseReason::HandshakeTimeout
    ));

    // Well past the timeout, the finished connection still works.
    done.assert_echoes(b"still fine");
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::HandshakeTimeout), 2);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn plaintext_clients_on_a_tls_port_are_closed_cleanly() {
    let cert = test_cert();
    let (builder, mut closes) = track_closes(tls_builder(&cert));
    let server = start(builder);
    let addr = server.local_addr();
    let mut tls = TlsPeer::connect(addr, client_config(&cert));
    tls.assert_echoes(b"before");
    let requests: [&[u8]; 3] = [
        // A frame of our own protocol, in clear.
        b"\x05\x00\x00\x00\x01\x00\x00\x00hello",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        // Looks like a handshake record, but is not one.
        b"\x16\x03\x01\x00\x05hello",
    ];
    for bytes in requests {
        let mut plain = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        let p = plain.local_addr().unwrap();
        plain.write_all(bytes).unwrap();
        // An alert at most, then FIN (not a reset).
        assert_only_alerts(&read_until_fin(&mut plain));
        match closes.reason_for(p) {
            CloseReason::TlsHandshake(msg) => assert!(!msg.is_empty()),
            other => panic!("{bytes:?}: expected TlsHandshake, got {other:?}"),
        }
    }
    tls.assert_echoes(b"after");
    assert_eq!(
        server
            .stats()
            .closed_by(&CloseReason::TlsHandshake(String::new())),
        3
    );
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_handshake_message_trickled_in_tiny_records_is_cut_off() {
    let cert = test_cert();
    let (builder, mut closes) = track_closes(tls_builder(&cert));
    let server = start(builder);
    let addr = server.local_addr();
    let mut tls = TlsPeer::connect(addr, client_config(&cert));
    tls.assert_echoes(b"before");
    // A ClientHello that says it is 65,535 bytes long, one byte per
    // record (6 bytes on the wire each). Send 150 KB of it: past the
    // server's 82 KiB cap on unfinished records, far from the end of the
    // message. Without the cap the server would keep it all and wait for
    // the rest until the handshake timeout.
    let record = |byte: u8| [0x16, 0x03, 0x01, 0x00, 0x01, byte];
    let wire: Vec<u8> = [0x01, 0x00, 0xff, 0xff]
        .into_iter()
        .chain((0..25_000).map(|i| i as u8))
        .flat_map(record)
        .collect();
    let mut peer = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let p = peer.local_addr().unwrap();
    // The server may close (and reset) before the last bytes are written.
    let _ = peer.write_all(&wire);
    match closes.reason_for(p) {
        CloseReason::TlsHandshake(msg) => assert!(!msg.is_empty()),
        other => panic!("expected TlsHandshake, got {other:?}"),
    }
    tls.assert_echoes(b"after");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn failed_client_handshakes_are_errors_on_both_sides() {
    let cert = test_cert();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(1)
            .tls(Arc::new(server_config(&cert, &[&TLS13])))
            .route(ECHO, echo),
    );
    let server = start(builder);
    let addr = server.local_addr();
    let stranger = test_cert();
    let cases = [
        (
            "wrong server name",
            "not-localhost.example",
            client_config(&cert),
        ),
        (
            "untrusted certificate",
            "localhost",
            client_config(&stranger),
        ),
        (
            "no common version",
            "localhost",
            client_config_versions(&cert, &[&TLS12]),
        ),
    ];
    for (what, name, config) in cases {
        match Client::connect_tls(addr, name, config) {
            Err(Error::Io(_)) => {}
            Err(e) => panic!("{what}: expected Error::Io, got {e}"),
            Ok(_) => panic!("{what}: the handshake succeeded"),
        }
        match closes.next().1 {
            CloseReason::TlsHandshake(msg) => assert!(!msg.is_empty(), "{what}"),
            other => panic!("{what}: expected TlsHandshake, got {other:?}"),
        }
    }
    // An invalid name never reaches the network.
    match Client::connect_tls(addr, "not a name!", client_config(&cert)) {
        Err(Error::Config(_)) => {}
        other => panic!("invalid name: expected Error::Config, got {other:?}"),
    }
    assert!(matches!(closes.next().1, CloseReason::PeerClosed));
    let mut good = Client::connect_tls(addr, "localhost", client_config(&cert)).unwrap();
    good.set_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(&good.round_trip(ECHO, b"ok").unwrap().body[..], b"ok");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

// ---------------------------------------------------------------------------
// The core over TLS: backpressure, heartbeat, handles, broadcast, hooks,
// middleware, a custom packer, shutdown.
// ---------------------------------------------------------------------------

#[test]
fn backpressure_with_a_never_reading_tls_peer() {
    const CHUNK: usize = 16 << 10;
    const HIGH_WATER: usize = 64 << 10;
    const REGISTER: u32 = 7;
    const PUMP: u32 = 6;
    const FLOOD: u32 = 8;
    let cert = test_cert();
    let slow_slot: Arc<Mutex<Option<ConnHandle>>> = Arc::default();
    let (registered_tx, registered) = unbounded();
    let slot = slow_slot.clone();
    let seq = Arc::new(AtomicU32::new(0));
    // One loop: the pump handler (on the fast client's connection) sends to
    // the slow connection on the same thread, so each send reports
    // BufferFull at once.
    let server = start(
        Server::builder()
            .event_loops(1)
            .write_high_water(HIGH_WATER)
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route(ECHO, echo)
            .route(REGISTER, move |ctx| {
                *slot.lock().unwrap() = Some(ctx.handle());
                registered_tx.send(()).unwrap();
                ctx.reply(REGISTER, b"")
            })
            // Flood the slow peer until its queue is over the high-water
            // mark; answer how many messages went in.
            .route(PUMP, move |ctx| {
                let slow = slow_slot.lock().unwrap().clone().expect("registered");
                let mut sent = 0u32;
                loop {
                    let n = seq.load(Ordering::Relaxed);
                    let mut body = vec![(n % 251) as u8; CHUNK];
                    body[..4].copy_from_slice(&n.to_le_bytes());
                    match slow.send(FLOOD, &body) {
                        Ok(()) => {
                            seq.store(n + 1, Ordering::Relaxed);
                            sent += 1;
                        }
                        Err(Error::BufferFull) => break,
                        Err(e) => return Err(e),
                    }
                }
                ctx.reply(PUMP, sent.to_le_bytes())
            }),
    );
    let addr = server.local_addr();
    let mut slow = TlsPeer::connect(addr, client_config(&cert));
    slow.send(REGISTER, b"");
    registered
        .recv_timeout(TIMEOUT)
        .expect("slow peer registered");
    let mut fast = Client::connect_tls(addr, "localhost", client_config(&cert)).unwrap();
    fast.set_timeout(Some(TIMEOUT)).unwrap();

    // Pump until a pump finds the slow queue still over the mark after a
    // whole loop turn: the kernel buffers are full and rustls holds records.
    let mut total = 0u64;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let m = fast.round_trip(PUMP, b"").unwrap();
        let sent = u32::from_le_bytes(m.body[..4].try_into().unwrap());
        if sent == 0 {
            break;
        }
        total += u64::from(sent);
        assert!(
            Instant::now() < deadline && total < 100_000,
            "the slow peer never filled up ({total} messages)"
        );
    }
    assert!(total as usize * CHUNK > HIGH_WATER);
    assert!(server.stats().slow_peer_events > 0);
    // The loop still serves everyone else.
    for i in 0..10u8 {
        let m = fast.round_trip(ECHO, [i; 100]).unwrap();
        assert_eq!(&m.body[..], &[i; 100]);
    }
    // The slow peer asks for an echo; the server is not reading it now.
    slow.send(ECHO, b"after the flood");

    // The slow peer reads: everything that was accepted, in order.
    assert_eq!(slow.recv(), (REGISTER, Vec::new()));
    for n in 0..total as u32 {
        let (id, body) = slow.recv();
        assert_eq!(id, FLOOD);
        assert_eq!(body.len(), CHUNK);
        assert_eq!(u32::from_le_bytes(body[..4].try_into().unwrap()), n);
        assert!(body[4..].iter().all(|&b| b == (n % 251) as u8));
    }
    assert_eq!(slow.recv(), (ECHO, b"after the flood".to_vec()));
    slow.assert_echoes(b"served again");
    let m = fast.round_trip(PUMP, b"").unwrap();
    assert!(u32::from_le_bytes(m.body[..4].try_into().unwrap()) > 0);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn heartbeat_pings_then_kicks_an_idle_tls_peer_with_close_notify() {
    const PING: u32 = 99;
    let cert = test_cert();
    let (builder, mut closes) = track_closes(
        tls_builder(&cert)
            .heartbeat(Duration::from_millis(20), Duration::from_millis(400))
            .ping_before_kick(Duration::from_millis(150), PING),
    );
    let server = start(builder);
    let mut peer = TlsPeer::connect(server.local_addr(), client_config(&cert));
    let addr = peer.local_addr();
    peer.assert_echoes(b"then silence");
    assert_eq!(peer.recv(), (PING, Vec::new()));
    // No answer: kicked, and the stream ends with close_notify.
    let rest = peer.read_to_end().expect("a clean TLS end (close_notify)");
    assert!(rest.is_empty(), "{} unexpected bytes", rest.len());
    assert!(matches!(closes.reason_for(addr), CloseReason::IdleTimeout));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn handles_and_broadcast_reach_tls_peers_from_other_threads() {
    let cert = test_cert();
    let (opened_tx, opened) = unbounded();
    let server = start(tls_builder(&cert).on_open(move |conn| {
        opened_tx.send((conn.peer_addr(), conn.handle())).unwrap();
    }));
    let addr = server.local_addr();
    let mut peers: Vec<TlsPeer> = (0..4)
        .map(|_| TlsPeer::connect(addr, client_config(&cert)))
        .collect();
    let mut handles = Vec::new();
    for _ in 0..peers.len() {
        handles.push(opened.recv_timeout(TIMEOUT).expect("on_open"));
    }
    for (i, peer) in peers.iter_mut().enumerate() {
        let (_, handle) = handles
            .iter()
            .find(|(a, _)| *a == peer.local_addr())
            .expect("a handle per peer");
        handle.send(5, format!("direct {i}")).unwrap();
        assert_eq!(peer.recv(), (5, format!("direct {i}").into_bytes()));
    }
    server.hub().broadcast(6, b"to everyone").unwrap();
    for peer in &mut peers {
        assert_eq!(peer.recv(), (6, b"to everyone".to_vec()));
        // Exactly once: the next frame is the echo.
        peer.assert_echoes(b"after broadcast");
    }
    // Sent before the handshake even starts: queued, then written once it
    // completes (with or without TLS 1.3 session tickets to flush).
    for tickets in [2, 0] {
        let mut config = server_config(&cert, rustls::ALL_VERSIONS);
        config.send_tls13_tickets = tickets;
        let (opened_tx, opened) = unbounded();
        let early = start(
            Server::builder()
                .event_loops(1)
                .tls(Arc::new(config))
                .route(ECHO, echo)
                .on_open(move |conn| opened_tx.send(conn.handle()).unwrap()),
        );
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            let tcp = TcpStream::connect_timeout(&early.local_addr(), TIMEOUT).unwrap();
            let handle = opened.recv_timeout(TIMEOUT).expect("on_open");
            handle.send(5, b"early").unwrap();
            let mut peer = TlsPeer::over(tcp, client_config_versions(&cert, versions));
            assert_eq!(peer.recv(), (5, b"early".to_vec()), "tickets {tickets}");
            peer.assert_echoes(b"then as usual");
        }
        early.shutdown(Duration::from_secs(5)).unwrap();
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// Tags the request so the handler can prove the middleware ran.
fn tag(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
    ctx.values_mut().insert(String::from("tagged"));
    next.run(ctx)
}

#[test]
fn hooks_middleware_and_a_custom_packer_work_unchanged_over_tls() {
    struct Visits(u32);
    let cert = test_cert();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .packer(netloom::TlvPacker::default())
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .on_open(|conn| {
                conn.data_mut().insert(Visits(0));
            })
            .middleware(tag)
            .route(3, |ctx| {
                let visits = {
                    let v = ctx.data_mut().get_mut::<Visits>().expect("set in on_open");
                    v.0 += 1;
                    v.0
                };
                let body = format!(
                    "{} {} {}",
                    ctx.values()
                        .get::<String>()
                        .map_or("untagged", String::as_str),
                    visits,
                    String::from_utf8_lossy(ctx.body())
                );
                ctx.reply(3, body)
            }),
    );
    let server = start(builder);
    let mut client = Client::connect_tls(server.local_addr(), "localhost", client_config(&cert))
        .unwrap()
        .with_packer(netloom::TlvPacker::default());
    client.set_timeout(Some(TIMEOUT)).unwrap();
    for seq in [7u32, 8, 1000] {
        client.send_seq(3, seq, format!("seq {seq}")).unwrap();
    }
    for (visit, seq) in [7u32, 8, 1000].into_iter().enumerate() {
        let m = client.recv().unwrap();
        assert_eq!(m.seq, seq);
        assert_eq!(
            String::from_utf8_lossy(&m.body),
            format!("tagged {} seq {seq}", visit + 1)
        );
    }
    client.close();
    assert!(matches!(closes.next().1, CloseReason::PeerClosed));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn shutdown_sends_close_notify() {
    let cert = test_cert();
    let (opened_tx, opened) = unbounded();
    let (builder, mut closes) = track_closes(tls_builder(&cert).on_open(move |conn| {
        opened_tx.send((conn.peer_addr(), conn.handle())).unwrap();
    }));
    let server = start(builder);
    let addr = server.local_addr();
    let mut ours = Client::connect_tls(addr, "localhost", client_config(&cert)).unwrap();
    ours.set_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(&ours.round_trip(ECHO, b"hi").unwrap().body[..], b"hi");
    let mut raw: Vec<TlsPeer> = [&[&TLS12][..], &[&TLS13][..]]
        .into_iter()
        .map(|versions| {
            let mut peer = TlsPeer::connect(addr, client_config_versions(&cert, versions));
            peer.assert_echoes(b"hi");
            peer
        })
        .collect();
    let handles: Vec<(SocketAddr, ConnHandle)> = (0..3)
        .map(|_| opened.recv_timeout(TIMEOUT).expect("on_open"))
        .collect();
    // Queued just before shutdown (the loop's inbox is FIFO): written in
    // full before close_notify.
    let big = vec![0x3c; 600 << 10];
    for peer in &raw {
        let (_, handle) = handles
            .iter()
            .find(|(a, _)| *a == peer.local_addr())
            .unwrap();
        handle.send(5, b"last words").unwrap();
        handle.send(5, &big).unwrap();
    }

    server.shutdown(Duration::from_secs(5)).unwrap();
    match ours.recv() {
        Err(Error::Closed) => {}
        other => panic!("expected Error::Closed, got {other:?}"),
    }
    for peer in &mut raw {
        assert_eq!(peer.recv(), (5, b"last words".to_vec()));
        assert!(peer.recv() == (5, big.clone()), "600 kB message differs");
        // rustls reports a TCP end without close_notify as UnexpectedEof.
        let rest = peer.read_to_end().expect("a clean TLS end (close_notify)");
        assert!(rest.is_empty());
    }
    for _ in 0..3 {
        assert!(matches!(closes.next().1, CloseReason::Shutdown));
    }
}
