//! An echo server over TLS (rustls), ALPN "netloom/1".
//!
//! ```text
//! cargo run --example tls_server                                # 127.0.0.1:6567, self-signed
//! cargo run --example tls_server -- 0.0.0.0:7000                # another address
//! cargo run --example tls_server -- 0.0.0.0:7000 cert.pem key.pem
//! ```
//!
//! With a certificate chain and a private key (PEM files) it serves those.
//! Without, it makes a self-signed certificate for "localhost" at start
//! (the key stays in memory) and writes the certificate to
//! `target/tls_server-cert.pem`, so that clients can trust it. It prints an
//! `openssl s_client` command that sends one frame (len=5, id=1,
//! body=hello) and shows the echo. Set `RUST_LOG=debug` to see every
//! handshake and close.
//!
//! Its limits and idle timeout come from `NETLOOM_*` environment variables
//! where set (`NETLOOM_IDLE_TIMEOUT=60`, `NETLOOM_MAX_BODY_LENGTH=65536`,
//! `NETLOOM_FRAME_TIMEOUT=10`, …: see `Builder::config_from_env`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netloom::{Server, TlsInfo};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const ALPN: &[u8] = b"netloom/1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().map_or("127.0.0.1:6567", String::as_str);
    let builder = Server::builder()
        .heartbeat(Duration::from_secs(30), Duration::from_secs(180))
        .handshake_timeout(Duration::from_secs(5))
        .on_close(|conn, reason| {
            // TlsInfo is there once the handshake completed.
            match conn.data().get::<TlsInfo>() {
                Some(tls) => log::debug!(
                    "close {} ({}, ALPN {:?}, SNI {:?}): {reason}",
                    conn.id(),
                    tls.version,
                    tls.alpn.as_deref().map(String::from_utf8_lossy),
                    tls.sni
                ),
                None => log::debug!("close {} before the handshake: {reason}", conn.id()),
            }
        })
        .fallback(|ctx| ctx.reply(ctx.msg_id(), ctx.body()));
    let (builder, ca_file) = match (args.get(1), args.get(2)) {
        (Some(cert), Some(key)) => (builder.tls_pem_files(cert, key, &[ALPN])?, None),
        (Some(_), None) => return Err("give both a certificate and a key file".into()),
        _ => {
            let (config, cert_pem) = self_signed()?;
            let path = target_dir().join("tls_server-cert.pem");
            std::fs::create_dir_all(target_dir())?;
            std::fs::write(&path, cert_pem)?;
            (builder.tls(config), Some(path))
        }
    };
    let server = builder.config_from_env()?.bind(addr)?.start()?;
    let addr = server.local_addr();
    println!("netloom TLS echo server listening on {addr}");
    let ca = match &ca_file {
        Some(path) => {
            println!(
                "self-signed certificate for \"localhost\": {}",
                path.display()
            );
            format!(" -CAfile {}", path.display())
        }
        None => String::new(),
    };
    println!("try it (frame: len=5, id=1, body=hello):");
    println!(
        "  (printf '\\x05\\x00\\x00\\x00\\x01\\x00\\x00\\x00hello'; sleep 1) | \
         openssl s_client -connect {addr} -servername localhost{ca} -alpn netloom/1 \
         -quiet -no_ign_eof | od -An -c"
    );
    println!("press Ctrl-C to stop");
    Ok(server.join()?)
}

/// A rustls configuration with a fresh self-signed certificate for
/// "localhost", and that certificate as PEM.
fn self_signed() -> Result<(Arc<rustls::ServerConfig>, String), Box<dyn std::error::Error>> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok((Arc::new(config), ck.cert.pem()))
}

/// Cargo's target directory (`CARGO_TARGET_DIR` if set).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}
