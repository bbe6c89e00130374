//! The session against rustls' own client over memory: reads of every
//! size, fragmented handshakes, resumption, KeyUpdate, close_notify, alerts
//! and a full socket; and no ciphertext buffer left once nothing is in
//! flight.

use std::io::Read;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig,
    SupportedProtocolVersion,
};

use super::*;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server acceptor for "localhost" and a root store trusting it.
fn pki() -> (TlsAcceptor, RootCertStore) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"netloom/1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    (TlsAcceptor::new(Arc::new(config)), roots)
}

/// A client of one version; with `fragment`, its records carry at most
/// that many bytes (so every handshake message spans several).
fn client_config(
    roots: &RootCertStore,
    version: &'static SupportedProtocolVersion,
    fragment: Option<usize>,
) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"netloom/1".to_vec()];
    config.max_fragment_size = fragment;
    Arc::new(config)
}

fn client(config: Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap()
}

/// A rustls client and a session over memory: the client's bytes reach
/// the session in reads of `chunk` bytes.
struct Pair {
    client: ClientConnection,
    server: TlsSession,
    chunk: usize,
    /// Plaintext the session received.
    plain: BytesMut,
    info: Option<TlsInfo>,
    peer_closed: bool,
}

impl Pair {
    fn new(acceptor: &TlsAcceptor, config: Arc<ClientConfig>, chunk: usize) -> Pair {
        Pair {
            client: client(config),
            server: acceptor.session().unwrap(),
            chunk,
            plain: BytesMut::new(),
            info: None,
            peer_closed: false,
        }
    }

    /// Everything the client has to send, to the session.
    fn client_sends(&mut self) {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).unwrap();
        }
        for read in wire.chunks_mut(self.chunk) {
            let received = self.server.receive(read, &mut self.plain).unwrap();
            self.info = received.tls_info.or(self.info.take());
            self.peer_closed |= received.peer_closed;
        }
    }

    /// Flush the session (with `queue`) into the client; returns the
    /// plaintext the client read.
    fn server_sends(&mut self, queue: Option<&mut WriteQueue>) -> Vec<u8> {
        let mut wire = Vec::new();
        let flushed = self.server.flush(queue, &mut wire).unwrap();
        assert!(!flushed.blocked);
        let mut wire = &wire[..];
        let mut got = Vec::new();
        while !wire.is_empty() {
            self.client.read_tls(&mut wire).unwrap();
            self.client.process_new_packets().unwrap();
            let mut buf = [0; 4096];
            loop {
                match self.client.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client read: {e}"),
                }
            }
        }
        got
    }

    fn handshake(&mut self) {
        for _ in 0..10 {
            self.client_sends();
            self.server_sends(None);
            if !self.client.is_handshaking()
                && !self.server.is_handshaking()
                && !self.client.wants_write()
                && !self.server.wants_write()
            {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    /// Nothing in flight: the session owns no ciphertext buffer.
    fn assert_idle(&self) {
        assert_eq!(self.server.incoming.capacity(), 0);
        assert_eq!(self.server.outgoing.capacity(), 0);
    }
}

#[test]
fn handshakes_and_echoes_whatever_the_reads_and_records() {
    let (acceptor, roots) = pki();
    let message: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    for (version, name) in [(&TLS12, "TLSv1_2"), (&TLS13, "TLSv1_3")] {
        for fragment in [None, Some(64)] {
            for chunk in [1, 3, 100, 5000, usize::MAX] {
                let config = client_config(&roots, version, fragment);
                let mut pair = Pair::new(&acceptor, config, chunk);
                pair.handshake();
                let info = pair.info.take().expect("handshake_done");
                assert_eq!(info.sni.as_deref(), Some("localhost"));
                assert_eq!(info.alpn.as_deref(), Some(&b"netloom/1"[..]));
                assert_eq!(info.version, name);
                pair.assert_idle();

                pair.client.writer().write_all(&message).unwrap();
                pair.client_sends();
                assert_eq!(pair.plain, message[..], "{name} {fragment:?} {chunk}");
                pair.assert_idle();

                let mut queue = WriteQueue::default();
                queue.extend(&message);
                assert_eq!(pair.server_sends(Some(&mut queue)), message);
                assert!(queue.is_empty());
                pair.assert_idle();
            }
        }
    }
}

#[test]
fn a_partial_record_is_kept_until_completed_then_freed() {
    let (acceptor, roots) = pki();
    let mut pair = Pair::new(&acceptor, client_config(&roots, &TLS13, None), usize::MAX);
    pair.handshake();
    pair.client.writer().write_all(b"hello").unwrap();
    let mut wire = Vec::new();
    pair.client.write_tls(&mut wire).unwrap();
    let (head, tail) = wire.split_at_mut(10);
    pair.server.receive(head, &mut pair.plain).unwrap();
    assert_eq!(pair.server.incoming, head);
    assert!(pair.plain.is_empty());
    pair.server.receive(tail, &mut pair.plain).unwrap();
    assert_eq!(&pair.plain[..], b"hello");
    pair.assert_idle();
}

#[test]
fn resumed_handshakes_report_the_sni_too() {
    let (acceptor, roots) = pki();
    for version in [&TLS12, &TLS13] {
        let config = client_config(&roots, version, None);
        let mut first = Pair::new(&acceptor, config.clone(), usize::MAX);
        first.handshake();
        assert_eq!(first.client.handshake_kind(), Some(HandshakeKind::Full));
        let mut second = Pair::new(&acceptor, config, usize::MAX);
        second.handshake();
        assert_eq!(second.client.handshake_kind(), Some(HandshakeKind::Resumed));
        let info = second.info.expect("handshake_done");
        assert_eq!(info.sni.as_deref(), Some("localhost"));
    }
}

/// Records in `wire` (whole records only).
fn records(mut wire: &[u8]) -> usize {
    let mut n = 0;
    while wire.len() >= HEADER {
        wire = &wire[HEADER + usize::from(u16::from_be_bytes([wire[3], wire[4]]))..];
        n += 1;
    }
    n
}

#[test]
fn key_updates_from_the_client_are_answered() {
    let (acceptor, roots) = pki();
    let mut pair = Pair::new(&acceptor, client_config(&roots, &TLS13, None), 7);
    pair.handshake();
    for round in 0..3u8 {
        pair.client.refresh_traffic_keys().unwrap();
        pair.client.writer().write_all(&[round; 3]).unwrap();
        pair.client_sends();
        // rustls answers with its own KeyUpdate before the next data.
        let mut queue = WriteQueue::default();
        queue.extend(&[round; 2]);
        let mut wire = Vec::new();
        pair.server.flush(Some(&mut queue), &mut wire).unwrap();
        assert_eq!(records(&wire), 2);
        pair.client.read_tls(&mut &wire[..]).unwrap();
        pair.client.process_new_packets().unwrap();
        let mut reply = [0; 2];
        pair.client.reader().read_exact(&mut reply).unwrap();
        assert_eq!(reply, [round; 2]);
        pair.assert_idle();
    }
    assert_eq!(&pair.plain[..], [0, 0, 0, 1, 1, 1, 2, 2, 2]);
}

#[test]
fn close_notify_both_ways() {
    let (acceptor, roots) = pki();
    for version in [&TLS12, &TLS13] {
        // While handshaking there is none to send.
        let mut pair = Pair::new(&acceptor, client_config(&roots, version, None), 1);
        pair.server.close_notify();
        assert!(!pair.server.wants_write());

        let mut pair = Pair::new(&acceptor, client_config(&roots, version, None), 1);
        pair.handshake();
        pair.server.close_notify();
        pair.server.close_notify();
        assert!(pair.server.wants_write());
        pair.server_sends(None);
        assert!(pair.client.process_new_packets().unwrap().peer_has_closed());
        pair.assert_idle();

        pair.client.writer().write_all(b"last").unwrap();
        pair.client.send_close_notify();
        pair.client_sends();
        assert!(pair.peer_closed);
        assert_eq!(&pair.plain[..], b"last");
        pair.assert_idle();
    }
}

#[test]
fn junk_is_a_handshake_error_answered_with_an_alert() {
    let (acceptor, roots) = pki();
    // The first record of a ClientHello split into 64-byte records: the
    // junk after it comes while rustls holds part of a message.
    let mut hello = Vec::new();
    client(client_config(&roots, &TLS13, Some(64)))
        .write_tls(&mut hello)
        .unwrap();
    let first = HEADER + usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    let after_fragment = [&hello[..first], &[0xff; 8][..]].concat();
    for input in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), after_fragment] {
        let mut session = acceptor.session().unwrap();
        let mut input = input;
        match session.receive(&mut input, &mut BytesMut::new()) {
            Err(CloseReason::TlsHandshake(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected TlsHandshake, got {other:?}"),
        }
        assert_eq!(session.incoming.capacity(), 0);
        let mut wire = Vec::new();
        session.flush(None, &mut wire).unwrap();
        assert_eq!(wire.first(), Some(&0x15), "an alert record");
        assert_eq!(session.outgoing.capacity(), 0);
    }
}

/// A socket that takes nothing.
struct Full;

impl Write for Full {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_socket_holds_back_all_but_one_batch() {
    let (acceptor, roots) = pki();
    let mut pair = Pair::new(&acceptor, client_config(&roots, &TLS13, None), usize::MAX);
    pair.handshake();
    let message = vec![9; 4 * TLS_BATCH];
    let mut queue = WriteQueue::default();
    queue.extend(&message);
    for _ in 0..2 {
        let flushed = pair.server.flush(Some(&mut queue), &mut Full).unwrap();
        assert_eq!(flushed.written, 0);
        assert!(flushed.blocked);
        assert!(pair.server.wants_write());
        assert_eq!(queue.len(), 3 * TLS_BATCH);
    }
    assert_eq!(pair.server_sends(Some(&mut queue)), message);
    pair.assert_idle();
}

#[test]
fn a_handshake_message_in_tiny_records_is_refused_at_the_buffer_limit() {
    let (acceptor, _) = pki();
    // A ClientHello that says it is 65,535 bytes long, sent one byte per
    // record: six bytes on the wire per byte of message, 393 KB in all.
    // rustls joins the fragments in our buffer and only judges the message
    // once it is whole, so the buffer's own limit must stop it first.
    let record = |byte: u8| [0x16, 0x03, 0x01, 0x00, 0x01, byte];
    let mut wire: Vec<u8> = [0x01, 0x00, 0xff, 0xff]
        .into_iter()
        .flat_map(record)
        .collect();
    wire.extend((0..0xffff).flat_map(|i| record(i as u8)));
    let mut session = acceptor.session().unwrap();
    let mut fed = 0;
    let failed = wire.chunks(4096).find_map(|chunk| {
        fed += chunk.len();
        let result = session.receive(&mut chunk.to_vec(), &mut BytesMut::new());
        assert!(session.incoming.len() <= MAX_INCOMING);
        result.err()
    });
    match failed {
        Some(CloseReason::TlsHandshake(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected TlsHandshake, got {other:?}"),
    }
    assert!(fed <= MAX_INCOMING + 4096, "refused after {fed} bytes");
    assert_eq!(session.incoming.capacity(), 0);
}

mod client;
mod held;
