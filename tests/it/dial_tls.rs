//! TLS on dialed connections (`Dial::tls`): a netloom TLS server and
//! Python's `ssl` module as the peers, requests both ways, what the
//! handshake settled, refused certificates (with and without a reconnect
//! policy), a peer that never answers the ClientHello, and a reconnect
//! that makes a fresh handshake with a server started again on the same
//! port.
//!
//! Every wait is bounded (channels with `recv_timeout`, a child's output
//! with a deadline); nothing sleeps to synchronise. python3 is found by
//! `crate::common::peers` (a missing one fails with how to install it, or
//! is skipped and counted under `NETLOOM_SKIP_MISSING_PEERS=1`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{
    Builder, CloseReason, ConnHandle, Context, Dial, Disconnect, Error, Reconnect, SeqPacker,
    Server, ServerHandle, TlsInfo,
};
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};

use crate::common::peers::{require, Peer};
use crate::common::{init_logs, track_closes, TIMEOUT};
use crate::tls_support::{
    client_config, client_config_versions, server_config, test_cert, Proc, TempFile, TestCert, ALPN,
};

/// Answered by the TLS server: the body reversed.
const REVERSE: u32 = 1;
/// Answered by the dialing side: the body upper-cased.
const UPPER: u32 = 2;

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// A netloom TLS server (TLS 1.2 and 1.3) on `addr` with the sequence
/// packer, answering [`REVERSE`]; it hands out a handle to each
/// connection it accepts.
fn tls_server(cert: &TestCert, addr: SocketAddr) -> (ServerHandle, Receiver<ConnHandle>) {
    init_logs();
    let (accepted_tx, accepted) = unbounded();
    let server = Server::builder()
        .tls(Arc::new(server_config(cert, rustls::ALL_VERSIONS)))
        .packer(SeqPacker::default())
        .on_open(move |s| {
            let _ = accepted_tx.send(s.handle());
        })
        .route(REVERSE, |ctx: &mut Context<'_>| {
            let mut body = ctx.body().to_vec();
            body.reverse();
            ctx.reply(REVERSE, body)
        })
        .bind(addr)
        .expect("bind")
        .start()
        .expect("start the TLS server");
    (server, accepted)
}

/// A server that only dials, answering [`UPPER`], and reporting the
/// `TlsInfo` its connections have when `on_open` runs.
fn dialer(builder: Builder) -> (ServerHandle, Receiver<Option<TlsInfo>>) {
    init_logs();
    let (opened_tx, opened) = unbounded();
    let server = builder
        .packer(SeqPacker::default())
        .on_open(move |s| {
            let _ = opened_tx.send(s.data().get::<TlsInfo>().cloned());
        })
        .route(UPPER, |ctx: &mut Context<'_>| {
            ctx.reply(UPPER, ctx.body().to_ascii_uppercase())
        })
        .start()
        .expect("start the dialer");
    (server, opened)
}

/// Loopback, a port the kernel picks when binding.
fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn request(conn: &ConnHandle, id: u32, body: &[u8]) -> Vec<u8> {
    let reply = conn.request(id, body, TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(reply.id, id);
    reply.body.to_vec()
}

#[test]
fn a_dialed_tls_connection_requests_both_ways_and_opens_after_its_handshake() {
    let cert = test_cert();
    for (versions, name) in [(&[&TLS12][..], "TLSv1_2"), (&[&TLS13][..], "TLSv1_3")] {
        let (server, accepted) = tls_server(&cert, any_port());
        let (client, opened) = dialer(Server::builder());
        let config = client_config_versions(&cert, versions);
        let dial = Dial::new(server.local_addr()).tls(config, localhost());
        let conn = client.hub().dial(dial).unwrap();
        // Sent at once: held until the handshake is done, then encrypted.
        let early = conn.request(REVERSE, b"early", TIMEOUT).unwrap();

        let info = opened.recv_timeout(TIMEOUT).unwrap();
        let info = info.expect("on_open runs with TlsInfo in the connection's data");
        assert_eq!(info.version, name);
        assert_eq!(info.alpn.as_deref(), Some(ALPN));
        assert_eq!(info.sni, None);
        assert_eq!(&early.wait().unwrap().body[..], b"ylrae");

        // Our side asks, the server answers; then the server asks us.
        assert_eq!(request(&conn, REVERSE, b"abc"), b"cba");
        let big: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut want = big.clone();
        want.reverse();
        assert!(
            request(&conn, REVERSE, &big) == want,
            "100 kB reply differs"
        );
        let back = accepted.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(
            request(&back, UPPER, b"from the server"),
            b"FROM THE SERVER"
        );

        let stats = client.stats();
        assert_eq!((stats.connects, stats.connect_failures), (1, 0), "{stats}");
        client.shutdown(TIMEOUT).unwrap();
        server.shutdown(TIMEOUT).unwrap();
    }
}

/// A TLS echo server in Python's `ssl` module: it prints its port, then
/// what the handshake settled, then echoes every byte (so a sequence
/// packer request comes back as its own reply).
const PY_TLS_ECHO: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.set_alpn_protocols(["netloom/1"])
if sys.argv[3] == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
else:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
seen = []
ctx.sni_callback = lambda sock, name, c: seen.append(name)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
raw, _ = srv.accept()
raw.settimeout(10)
conn = ctx.wrap_socket(raw, server_side=True)
print(seen[0] if seen else "-", conn.version(), conn.selected_alpn_protocol(), flush=True)
n = 0
try:
    while True:
        data = conn.recv(65536)
        if not data:
            break
        n += len(data)
        conn.sendall(data)
except (ssl.SSLError, OSError) as e:
    print("error", e, flush=True)
print("echoed", n, flush=True)
"#;

#[test]
fn python_ssl_echoes_our_requests_back_as_their_replies() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let cert = test_cert();
    let cert_pem = TempFile::new("cert.pem", &cert.cert_pem);
    let key_pem = TempFile::new("key.pem", &cert.key_pem);
    for (version, rustls_name, py_name) in
        [("1.2", "TLSv1_2", "TLSv1.2"), ("1.3", "TLSv1_3", "TLSv1.3")]
    {
        let mut python = Proc::spawn(
            "python3 ssl echo",
            Command::new(&py).args(["-c", PY_TLS_ECHO]).args([
                cert_pem.arg(),
                key_pem.arg(),
                version,
            ]),
        );
        let port: u16 = python.read_line().trim().parse().expect("a port");
        let (client, opened) = dialer(Server::builder());
        let dial = Dial::new(SocketAddr::from(([127, 0, 0, 1], port)))
            .tls(client_config(&cert), localhost());
        let conn = client.hub().dial(dial).unwrap();
        let info = opened.recv_timeout(TIMEOUT).unwrap().expect("TlsInfo");
        assert_eq!(
            (info.version.as_str(), info.alpn.as_deref()),
            (rustls_name, Some(ALPN))
        );
        assert_eq!(
            python.read_line(),
            format!("localhost {py_name} netloom/1"),
            "Python saw our SNI, version and ALPN"
        );

        // Several in flight at once; each echo is matched by its seq.
        let bodies: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1 + 5000 * i as usize]).collect();
        let pending: Vec<_> = bodies
            .iter()
            .map(|b| conn.request(9, b, TIMEOUT).unwrap())
            .collect();
        let mut sent = 0;
        for (body, p) in bodies.iter().zip(pending) {
            let reply = p.wait().unwrap();
            assert_eq!(reply.id, 9);
            assert!(
                reply.body == body[..],
                "the echo of {} bytes differs",
                body.len()
            );
            sent += 12 + body.len();
        }
        client.shutdown(TIMEOUT).unwrap();
        assert_eq!(python.read_line(), format!("echoed {sent}"));
        let (status, _) = python.finish();
        assert!(status.success(), "python3: {status}\n{}", python.stderr());
    }
}

#[test]
fn an_untrusted_or_misnamed_certificate_fails_the_handshake_on_our_side() {
    let cert = test_cert();
    let stranger = test_cert(); // a different self-signed certificate
    let (server, server_closes) =
        track_closes(Server::builder().tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS))));
    init_logs();
    let server = server.bind("127.0.0.1:0").unwrap().start().unwrap();
    let mut server_closes = server_closes;
    let (builder, mut closes) = track_closes(Server::builder());
    let (client, opened) = dialer(builder);
    // rcgen gives every self-signed certificate the same subject, so
    // rustls finds the stranger's as the issuer and rejects the signature.
    let cases = [
        (client_config(&stranger), localhost(), "BadSignature"),
        (
            client_config(&cert),
            ServerName::try_from("elsewhere.example").unwrap(),
            "not valid for name",
        ),
    ];
    for (n, (config, name, why)) in cases.into_iter().enumerate() {
        let conn = client
            .hub()
            .dial(Dial::new(server.local_addr()).tls(config, name))
            .unwrap();
        match closes.reason_for(server.local_addr()) {
            CloseReason::TlsHandshake(msg) => assert!(msg.contains(why), "{msg}"),
            other => panic!("expected TlsHandshake ({why}), got {other:?}"),
        }
        assert_eq!(client.hub().connection_count(), 0, "closed for good");
        drop(conn);
        // Our alert told the server why.
        match server_closes.next().1 {
            CloseReason::TlsHandshake(msg) => assert!(msg.contains("alert"), "{msg}"),
            other => panic!("the server saw {other:?}"),
        }
        assert_eq!(client.stats().connect_failures, n as u64 + 1);
    }
    assert!(
        opened.try_recv().is_err(),
        "on_open ran for a failed handshake"
    );
    client.shutdown(TIMEOUT).unwrap();
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn settings_rustls_refuses_are_an_error_from_dial() {
    let cert = test_cert();
    let mut config = Arc::unwrap_or_clone(client_config(&cert));
    config.max_fragment_size = Some(1);
    let (client, _) = dialer(Server::builder());
    // Refused before anything is dialed.
    let dial = Dial::new(any_port()).tls(Arc::new(config), localhost());
    match client.hub().dial(dial) {
        Err(Error::Config(msg)) => assert!(msg.contains("Dial::tls"), "{msg}"),
        other => panic!("expected Error::Config, got {other:?}"),
    }
    client.shutdown(TIMEOUT).unwrap();
}

/// A quick reconnect schedule: 40 ms, then 80 ms.
fn quick(max_attempts: Option<u32>) -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(40),
        factor: 2.0,
        max: Duration::from_millis(80),
        jitter: 0.0,
        max_attempts,
    }
}

/// A dialer reporting `on_disconnect` and `on_reconnect`.
fn reconnecting_dialer(
    builder: Builder,
) -> (
    ServerHandle,
    Receiver<Option<TlsInfo>>,
    Receiver<Disconnect>,
    Receiver<u32>,
) {
    let (down_tx, downs) = unbounded();
    let (up_tx, ups) = unbounded();
    let builder = builder
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.clone());
        })
        .on_reconnect(move |_s, attempts| {
            let _ = up_tx.send(attempts);
        });
    let (server, opened) = dialer(builder);
    (server, opened, downs, ups)
}

#[test]
fn a_tls_server_started_again_on_the_same_port_gets_a_fresh_handshake() {
    let cert = test_cert();
    let (server, accepted) = tls_server(&cert, any_port());
    // The port is ours until the server stops, and taken again at once.
    let addr = server.local_addr();
    let (client, opened, downs, ups) = reconnecting_dialer(Server::builder());
    let dial = Dial::new(addr)
        .tls(client_config(&cert), localhost())
        .reconnect(quick(None));
    let conn = client.hub().dial(dial).unwrap();
    assert!(opened.recv_timeout(TIMEOUT).unwrap().is_some());
    assert_eq!(request(&conn, REVERSE, b"before"), b"erofeb");
    accepted.recv_timeout(TIMEOUT).unwrap();

    server.shutdown(TIMEOUT).unwrap();
    let down = downs.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(down.attempt, 1, "{:?}", down.reason);
    let (server, accepted) = tls_server(&cert, addr);
    // on_reconnect runs once the new handshake is done.
    let attempts = ups.recv_timeout(TIMEOUT).unwrap();
    assert!(attempts >= 1);
    let back = accepted.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(request(&conn, REVERSE, b"after"), b"retfa");
    assert_eq!(request(&back, UPPER, b"again"), b"AGAIN");
    assert!(
        opened.try_recv().is_err(),
        "on_open runs only the first time"
    );
    assert_eq!(client.stats().connects, 2);
    client.shutdown(TIMEOUT).unwrap();
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_refused_certificate_is_retried_on_schedule_then_given_up() {
    let cert = test_cert();
    let stranger = test_cert();
    let (server, _accepted) = tls_server(&cert, any_port());
    let (builder, mut closes) = track_closes(Server::builder());
    let (client, opened, downs, _ups) = reconnecting_dialer(builder);
    let dial = Dial::new(server.local_addr())
        .tls(client_config(&stranger), localhost())
        .reconnect(quick(Some(2)));
    client.hub().dial(dial).unwrap();
    // Each TCP connect succeeds and each handshake fails: the attempts
    // still count up (the backoff is not reset by the TCP connect).
    for attempt in 1..=2 {
        let down = downs.recv_timeout(TIMEOUT).unwrap();
        assert!(
            matches!(down.reason, CloseReason::TlsHandshake(_)),
            "{:?}",
            down.reason
        );
        assert_eq!(down.attempt, attempt);
    }
    // The third failure uses up the attempts: closed for good.
    let reason = closes.reason_for(server.local_addr());
    assert!(matches!(reason, CloseReason::TlsHandshake(_)), "{reason:?}");
    assert!(downs.try_recv().is_err());
    assert!(opened.try_recv().is_err());
    assert_eq!(client.stats().connect_failures, 3);
    client.shutdown(TIMEOUT).unwrap();
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_peer_that_never_answers_the_client_hello_times_the_handshake_out() {
    // A listener that accepts and reads, and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (hello_tx, hello) = unbounded();
    std::thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else {
            return;
        };
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut head = [0u8; 3];
        let _ = hello_tx.send(socket.read_exact(&mut head).map(|()| head).ok());
        // Take the rest, and hold the socket until the dialer gives up.
        while let Ok(1..) = socket.read(&mut [0u8; 4096]) {}
    });
    let cert = test_cert();
    let handshake_timeout = Duration::from_millis(300);
    let (builder, mut closes) =
        track_closes(Server::builder().handshake_timeout(handshake_timeout));
    let (client, _) = dialer(builder);
    let started = Instant::now();
    client
        .hub()
        .dial(Dial::new(addr).tls(client_config(&cert), localhost()))
        .unwrap();
    // The client speaks first: a handshake record, TLS 1.x, unprompted.
    let head = hello.recv_timeout(TIMEOUT).unwrap().expect("a ClientHello");
    assert_eq!(head, [0x16, 0x03, 0x01]);
    let reason = closes.reason_for(addr);
    assert!(
        matches!(reason, CloseReason::HandshakeTimeout),
        "{reason:?}"
    );
    // At the configured deadline, not the 5 s default.
    let took = started.elapsed();
    assert!(
        took >= handshake_timeout && took < handshake_timeout + Duration::from_secs(1),
        "handshake timed out after {took:?}"
    );
    assert_eq!(client.stats().connect_failures, 1);
    client.shutdown(TIMEOUT).unwrap();
}
