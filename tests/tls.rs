//! TLS over real loopback sockets: our client, openssl s_client and
//! Python's ssl module against the server.
#![cfg(feature = "tls")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use netloom::client::Client;
use netloom::Server;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for "localhost", made at test time.
struct TestCert {
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn test_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    TestCert {
        cert_der: ck.cert.der().clone(),
        key_der: ck.signing_key.serialize_der(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(c: &TestCert, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.cert_der.clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn client_config(c: &TestCert, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.cert_der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[test]
fn our_client_echoes_over_tls_and_sees_alpn_and_sni() {
    let cert = test_cert();
    let (tx, rx) = crossbeam_channel::unbounded();
    let server = common::start(
        Server::builder()
            .event_loops(2)
            .tls(server_config(&cert, &[b"netloom/1"]))
            .route(1, |ctx| ctx.reply(1, ctx.body()))
            .route(2, move |ctx| {
                let info = ctx.data::<netloom::TlsInfo>().cloned();
                tx.send(info).unwrap();
                ctx.reply(2, b"")
            }),
    );
    let mut client = Client::connect_tls(
        server.local_addr(),
        "localhost",
        client_config(&cert, &[b"netloom/1"]),
    )
    .expect("tls connect");
    client.set_timeout(Some(common::TIMEOUT)).unwrap();
    for body in [&b""[..], b"hello", &vec![7u8; 1 << 20][..]] {
        client.send(1, body).unwrap();
        let m = client.recv().unwrap();
        assert_eq!((m.id, &m.body[..]), (1, body));
    }
    client.send(2, b"").unwrap();
    client.recv().unwrap();
    let info = rx.recv_timeout(common::TIMEOUT).unwrap().expect("TlsInfo");
    assert_eq!(info.alpn.as_deref(), Some(&b"netloom/1"[..]));
    assert_eq!(info.sni.as_deref(), Some("localhost"));
    server.shutdown(Duration::from_secs(5)).unwrap();
}
