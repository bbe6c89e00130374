//! Our client and a raw rustls client that counts records: ALPN, SNI and
//! the negotiated version, TLS 1.3 key updates, PEM files, and frames
//! split across (or packed into) TLS records.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use netloom::client::Client;
use netloom::{Error, Server};
use rustls::version::{TLS12, TLS13};

use super::{info, tls_builder, INFO};
use crate::common::{echo, frame, start, TIMEOUT};
use crate::tls_support::{
    client_config, client_config_versions, test_cert, TempFile, TlsPeer, ALPN, ECHO,
};

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
