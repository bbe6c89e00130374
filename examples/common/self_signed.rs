//! A self-signed certificate for "localhost" made in-process (rcgen), a
//! rustls server configuration that serves it and a client configuration
//! that trusts only it (aws-lc-rs provider, as netloom's default). Included
//! with `#[path = ".../common/self_signed.rs"]`.

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Both sides' configurations for one fresh certificate.
pub struct SelfSigned {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

/// Make a certificate for "localhost" and both configurations.
pub fn self_signed() -> Result<SelfSigned, Box<dyn std::error::Error>> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone())?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(SelfSigned {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}
