//! The TLS layer's input path: an accepted connection's session (rustls'
//! unbuffered server connection behind netloom's session) fed arbitrary
//! ciphertext, cut into reads anywhere, its records written out between
//! reads. Asserted: no panic; the bytes held for an incomplete record or
//! handshake message stay within one handshake message of the most
//! rustls accepts plus one record (`MAX_INCOMING`); whether the session
//! fails is the same however the bytes are cut.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use netloom::bench_internals::TlsServer;
use netloom_fuzz::{chunks, Input};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// `transport::tls::MAX_INCOMING`.
const MAX_INCOMING: usize = 0xffff + (16 << 10) + 2048 + 5;

fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![ck.cert.der().clone()], key)
                .unwrap();
            config.alpn_protocols = vec![b"netloom/1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

fn run(payload: &[u8], lengths: &[usize]) -> bool {
    let mut tls = TlsServer::new(config()).expect("session");
    for chunk in chunks(payload, lengths) {
        let result = tls.feed(chunk);
        assert!(tls.held() <= MAX_INCOMING, "{} bytes held", tls.held());
        if result.is_err() {
            return true;
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let (payload, lengths) = Input::new(data).cuts();
    let cut = run(payload, &lengths);
    let whole = run(payload, &[payload.len()]);
    assert_eq!(cut, whole, "cut points changed whether the session failed");
});
