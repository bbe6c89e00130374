//! TLS features that had no test: a failed ALPN negotiation, and a
//! certificate chosen per SNI name by the application's rustls resolver.

use std::net::TcpStream;
use std::sync::Arc;

use netloom::client::Client;
use netloom::{CloseReason, Context, Error, Server, TlsInfo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ResolvesServerCertUsingSni;
use rustls::sign::CertifiedKey;

use crate::common::{echo, start_tracked, TIMEOUT};
use crate::tls_support::{
    alpn_and_sni, client_config, provider, server_config, test_cert, TlsPeer, ALPN, ECHO,
};

/// Replies with the connection's negotiated ALPN protocol and SNI name, as
/// "alpn sni" ("-" for none).
const INFO: u32 = 9;

fn info(ctx: &mut Context<'_>) -> netloom::Result<()> {
    let text = match ctx.data().get::<TlsInfo>() {
        Some(i) => alpn_and_sni(i),
        None => "no TlsInfo".into(),
    };
    ctx.reply(INFO, text)
}

/// A client that offers only a protocol the server does not have fails its
/// handshake; the server closes it with `TlsHandshake` (rustls' "no
/// application protocol" error), counted per reason. Clients offering the
/// server's protocol, or none, are served. A server that ignored ALPN would
/// complete the first handshake.
#[test]
fn an_alpn_mismatch_fails_the_handshake_with_a_typed_reason() {
    let cert = test_cert();
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route(ECHO, echo)
            .route(INFO, info),
    );
    let addr = server.local_addr();
    let offering = |protocols: &[&[u8]]| {
        let mut config = (*client_config(&cert)).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    };

    match Client::connect_tls(addr, "localhost", offering(&[b"other/9"])) {
        Err(Error::Io(e)) => assert!(
            e.to_string().contains("NoApplicationProtocol"),
            "client-side error: {e}"
        ),
        Err(e) => panic!("expected Error::Io, got {e}"),
        Ok(_) => panic!("the handshake succeeded without a common ALPN protocol"),
    }
    match closes.next().1 {
        CloseReason::TlsHandshake(msg) => {
            assert!(msg.contains("protocol"), "server-side reason: {msg}")
        }
        other => panic!("expected TlsHandshake, got {other:?}"),
    }

    for (offer, expected) in [
        (
            &[b"other/9", ALPN][..],
            format!("{} localhost", String::from_utf8_lossy(ALPN)),
        ),
        (&[][..], "- localhost".to_string()),
    ] {
        let mut c = Client::connect_tls(addr, "localhost", offering(offer)).expect("handshake");
        c.set_timeout(Some(TIMEOUT)).unwrap();
        let reply = c.round_trip(INFO, b"").expect("info");
        assert_eq!(&reply.body[..], expected.as_bytes());
        c.close();
    }
    let stats = server.stats();
    assert_eq!(
        stats.closed_by(&CloseReason::TlsHandshake(String::new())),
        1,
        "{stats}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// With a rustls `ResolvesServerCertUsingSni` holding two names, each
/// client gets the certificate of the name it asked for (checked byte for
/// byte, and by the client's verifier), `TlsInfo::sni` holds that name, and
/// an unknown name fails the handshake. A server that replaced or bypassed
/// the application's resolver would present the wrong certificate.
#[test]
fn a_certificate_is_chosen_per_sni_name() {
    let names = ["alpha.test", "beta.test"];
    let certs: Vec<rcgen::CertifiedKey<rcgen::KeyPair>> = names
        .iter()
        .map(|n| rcgen::generate_simple_self_signed(vec![n.to_string()]).expect("rcgen"))
        .collect();
    let provider = provider();
    let mut resolver = ResolvesServerCertUsingSni::new();
    let mut roots = rustls::RootCertStore::empty();
    for (name, ck) in names.iter().zip(&certs) {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let certified = CertifiedKey::from_der(vec![ck.cert.der().clone()], key, &provider)
            .expect("certificate and key");
        resolver.add(name, certified).expect("add to the resolver");
        roots.add(ck.cert.der().clone()).unwrap();
    }
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    let client_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .tls(Arc::new(server_config))
            .route(ECHO, echo)
            .route(INFO, info),
    );
    let addr = server.local_addr();

    for round in 0..2 {
        for (name, ck) in names.iter().zip(&certs) {
            let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
            let mut peer = TlsPeer::named(tcp, client_config.clone(), name);
            let presented: &CertificateDer<'_> = &peer.s.conn.peer_certificates().unwrap()[0];
            assert!(
                presented == ck.cert.der(),
                "round {round}: {name} got another name's certificate"
            );
            peer.send(INFO, b"");
            assert_eq!(peer.recv(), (INFO, format!("- {name}").into_bytes()));
            peer.assert_echoes(name.as_bytes());
        }
    }

    match Client::connect_tls(addr, "gamma.test", client_config) {
        Err(Error::Io(_)) => {}
        Err(e) => panic!("unknown name: expected Error::Io, got {e}"),
        Ok(_) => panic!("unknown name: the handshake succeeded"),
    }
    // The four good connections were dropped (PeerClosed); then the
    // unknown name's handshake failure.
    let mut failed = 0;
    for _ in 0..5 {
        match closes.next().1 {
            CloseReason::PeerClosed => {}
            CloseReason::TlsHandshake(msg) => {
                assert!(!msg.is_empty());
                failed += 1;
            }
            other => panic!("unexpected close: {other:?}"),
        }
    }
    assert_eq!(failed, 1);
    server.shutdown(TIMEOUT).unwrap();
}
