//! Our client session (a dialed connection's) against our server session,
//! over memory: both ends of the handshake in reads of every size, data
//! queued during the handshake, what each end learns, and a refused name.

use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};

use super::*;

/// Our two ends, each one's bytes reaching the other in reads of `chunk`.
struct Ends {
    client: TlsSession,
    server: TlsSession,
    chunk: usize,
    /// What each end received: (client, server).
    plain: (BytesMut, BytesMut),
    info: (Option<TlsInfo>, Option<TlsInfo>),
}

/// Move what `from` has to write (with `queue`) into `to`; the first error
/// `to` reports stops it.
fn pass(
    from: &mut TlsSession,
    queue: Option<&mut WriteQueue>,
    to: &mut TlsSession,
    chunk: usize,
    plain: &mut BytesMut,
    info: &mut Option<TlsInfo>,
) -> std::result::Result<(), CloseReason> {
    let mut wire = Vec::new();
    assert!(!from.flush(queue, &mut wire).unwrap().blocked);
    for read in wire.chunks_mut(chunk) {
        let incoming = to.receive(read, plain)?;
        *info = incoming.tls_info.or(info.take());
    }
    Ok(())
}

impl Ends {
    fn new(connector: &TlsConnector, acceptor: &TlsAcceptor, chunk: usize) -> Ends {
        Ends {
            client: connector.session().unwrap(),
            server: acceptor.session().unwrap(),
            chunk,
            plain: Default::default(),
            info: Default::default(),
        }
    }

    fn client_sends(&mut self, queue: Option<&mut WriteQueue>) -> Result<(), CloseReason> {
        let (plain, info) = (&mut self.plain.1, &mut self.info.1);
        pass(
            &mut self.client,
            queue,
            &mut self.server,
            self.chunk,
            plain,
            info,
        )
    }

    fn server_sends(&mut self, queue: Option<&mut WriteQueue>) -> Result<(), CloseReason> {
        let (plain, info) = (&mut self.plain.0, &mut self.info.0);
        pass(
            &mut self.server,
            queue,
            &mut self.client,
            self.chunk,
            plain,
            info,
        )
    }

    /// Exchange flights until neither end has anything to say, sending
    /// `early` from the client's queue whenever the client flushes.
    fn handshake(&mut self, early: &mut WriteQueue) {
        for _ in 0..10 {
            self.client_sends(Some(early)).unwrap();
            self.server_sends(None).unwrap();
            let (c, s) = (&self.client, &self.server);
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }
}

fn connector(roots: &RootCertStore, version: &'static SupportedProtocolVersion) -> TlsConnector {
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::new(client_config(roots, version, None), name)
}

#[test]
fn the_client_speaks_first() {
    let (_, roots) = pki();
    let session = connector(&roots, &TLS13).session().unwrap();
    assert!(session.is_handshaking());
    assert!(session.wants_write(), "the ClientHello waits to be written");
    assert_eq!(session.outgoing.first(), Some(&0x16), "a handshake record");
}

#[test]
fn both_ends_handshake_and_talk_whatever_the_reads() {
    let (acceptor, roots) = pki();
    let message: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    for (version, name) in [(&TLS12, "TLSv1_2"), (&TLS13, "TLSv1_3")] {
        let connector = connector(&roots, version);
        for chunk in [1, 7, 5000, usize::MAX] {
            let mut ends = Ends::new(&connector, &acceptor, chunk);
            // Queued before the handshake is over: held, then sent.
            let mut early = WriteQueue::default();
            early.extend(b"queued early");
            ends.handshake(&mut early);
            ends.client_sends(Some(&mut early)).unwrap();
            assert!(early.is_empty());
            assert_eq!(&ends.plain.1[..], b"queued early", "{name} {chunk}");

            let client = ends.info.0.take().expect("the client's handshake_done");
            assert_eq!(client.version, name);
            assert_eq!(client.alpn.as_deref(), Some(&b"netloom/1"[..]));
            assert_eq!(client.sni, None, "SNI is the server's to report");
            let server = ends.info.1.take().expect("the server's handshake_done");
            assert_eq!(server.sni.as_deref(), Some("localhost"));

            let mut queue = WriteQueue::default();
            queue.extend(&message);
            ends.server_sends(Some(&mut queue)).unwrap();
            assert_eq!(ends.plain.0, message[..], "{name} {chunk}");
            assert_eq!(ends.client.incoming.capacity(), 0);
            assert_eq!(ends.client.outgoing.capacity(), 0);
        }
    }
}

#[test]
fn a_certificate_for_another_name_fails_the_clients_handshake_with_an_alert() {
    let (acceptor, roots) = pki();
    let name = ServerName::try_from("elsewhere.example").unwrap();
    let connector = TlsConnector::new(client_config(&roots, &TLS13, None), name);
    let mut ends = Ends::new(&connector, &acceptor, usize::MAX);
    ends.client_sends(None).unwrap();
    match ends.server_sends(None) {
        Err(CloseReason::TlsHandshake(msg)) => assert!(msg.contains("certificate"), "{msg}"),
        other => panic!("expected TlsHandshake, got {other:?}"),
    }
    // The client tells the server why.
    match ends.client_sends(None) {
        Err(CloseReason::TlsHandshake(msg)) => assert!(msg.contains("BadCertificate"), "{msg}"),
        other => panic!("expected the server to read an alert, got {other:?}"),
    }
}

#[test]
fn settings_rustls_cannot_start_with_are_refused_up_front() {
    let (_, roots) = pki();
    let name = ServerName::try_from("localhost").unwrap();
    let mut config = Arc::unwrap_or_clone(client_config(&roots, &TLS13, None));
    config.max_fragment_size = Some(1);
    let connector = TlsConnector::new(Arc::new(config), name);
    assert!(connector.check().is_err());
    assert!(matches!(
        connector.session(),
        Err(CloseReason::TlsHandshake(_))
    ));
}

#[test]
fn early_data_is_turned_off() {
    let (_, roots) = pki();
    let mut config = Arc::unwrap_or_clone(client_config(&roots, &TLS13, None));
    config.enable_early_data = true;
    let name = ServerName::try_from("localhost").unwrap();
    let connector = TlsConnector::new(Arc::new(config), name);
    assert!(!connector.config.enable_early_data);
}
