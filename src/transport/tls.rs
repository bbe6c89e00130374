//! TLS with rustls, sans-I/O: the reactor reads ciphertext into its own
//! buffer and hands it here; we hand back plaintext, and encrypt queued
//! plaintext into records the reactor writes. The only module that names
//! rustls.
//!
//! The buffered `ServerConnection` API is driven as its docs prescribe:
//! `read_tls` → `process_new_packets` → drain `reader()`; `writer()` →
//! `write_tls`. Plaintext is moved into rustls only while it has no records
//! waiting, so what rustls buffers stays within one batch (see
//! [`TLS_BATCH`]) and the write queue's high-water mark keeps its meaning.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use crate::conn::write::WriteQueue;
use crate::error::{CloseReason, Error, Result};
use crate::server::Builder;

/// Most plaintext bytes handed to rustls per flush round.
pub(crate) const TLS_BATCH: usize = 64 << 10;

/// The server's TLS settings, shared by all loops.
#[derive(Clone)]
pub(crate) struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl TlsAcceptor {
    pub(crate) fn session(&self) -> std::result::Result<TlsSession, CloseReason> {
        ServerConnection::new(self.config.clone())
            .map(|conn| TlsSession {
                conn,
                notified: false,
            })
            .map_err(|e| CloseReason::TlsHandshake(e.to_string()))
    }
}

/// What the TLS handshake settled, stored as connection data once the
/// handshake completes: read it with `session.data::<TlsInfo>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The ALPN protocol agreed on, if any.
    pub alpn: Option<Vec<u8>>,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<String>,
    /// The TLS version, e.g. "TLSv1_3".
    pub version: String,
}

/// One connection's TLS state.
pub(crate) struct TlsSession {
    conn: ServerConnection,
    /// close_notify queued.
    notified: bool,
}

/// What one batch of ciphertext produced, besides plaintext.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// The peer sent close_notify.
    pub(crate) peer_closed: bool,
    /// The handshake completed during this batch.
    pub(crate) handshake_done: Option<TlsInfo>,
}

impl TlsSession {
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Decrypt `input` (ciphertext just read), appending plaintext to `out`.
    pub(crate) fn receive(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
    ) -> std::result::Result<Received, CloseReason> {
        let was_handshaking = self.conn.is_handshaking();
        let mut received = Received::default();
        while !input.is_empty() && !received.peer_closed {
            match self.conn.read_tls(&mut input) {
                Ok(0) => received.peer_closed = true,
                Ok(_) => {}
                Err(e) => return Err(self.failure(e.to_string())),
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => return Err(self.failure(e.to_string())),
            };
            received.peer_closed |= state.peer_has_closed();
            let mut reader = self.conn.reader();
            loop {
                match reader.fill_buf() {
                    Ok([]) => break,
                    Ok(chunk) => {
                        let n = chunk.len();
                        out.extend_from_slice(chunk);
                        reader.consume(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(self.failure(e.to_string())),
                }
            }
        }
        if was_handshaking && !self.conn.is_handshaking() {
            received.handshake_done = Some(TlsInfo {
                alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
                sni: self.conn.server_name().map(str::to_owned),
                version: self
                    .conn
                    .protocol_version()
                    .map_or_else(String::new, |v| format!("{v:?}")),
            });
        }
        Ok(received)
    }

    fn failure(&self, message: String) -> CloseReason {
        if self.conn.is_handshaking() {
            CloseReason::TlsHandshake(message)
        } else {
            CloseReason::Tls(message)
        }
    }

    /// Records (handshake, data or alerts) wait to be written.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queue close_notify (once).
    pub(crate) fn close_notify(&mut self) {
        if !self.notified {
            self.notified = true;
            self.conn.send_close_notify();
        }
    }

    /// Encrypt queued plaintext and write records to `w` until everything is
    /// written or `w` would block. Returns bytes written; `Ok` with
    /// `*blocked == true` when the socket is full.
    pub(crate) fn flush(
        &mut self,
        queue: Option<&mut WriteQueue>,
        w: &mut dyn Write,
        blocked: &mut bool,
    ) -> io::Result<usize> {
        let mut queue = queue;
        let mut written = 0;
        loop {
            if !self.conn.wants_write() && !self.conn.is_handshaking() {
                let Some(q) = queue.as_deref_mut().filter(|q| !q.is_empty()) else {
                    return Ok(written);
                };
                let mut writer = self.conn.writer();
                q.drain_into(TLS_BATCH, |chunk| writer.write(chunk).unwrap_or(0));
            }
            if !self.conn.wants_write() {
                return Ok(written);
            }
            match self.conn.write_tls(w) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *blocked = true;
                    return Ok(written);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Builder {
    /// Serve TLS on every listener of this server with a rustls
    /// configuration (certificates, ALPN, client auth, versions: all set
    /// there). The negotiated ALPN protocol and SNI name are available as
    /// [`TlsInfo`] connection data once the handshake completes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn config() -> std::sync::Arc<rustls::ServerConfig> { unimplemented!() }
    /// let server = netloom::Server::builder()
    ///     .tls(config())
    ///     .route(0, |ctx| ctx.reply(0, ctx.body()))
    ///     .bind("127.0.0.1:6565")?
    ///     .start()?;
    /// server.join();
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.layers.tls = Some(TlsAcceptor { config });
        self
    }

    /// Serve TLS with a certificate chain and private key read from PEM
    /// files, TLS 1.2 and 1.3, no client authentication; ALPN as given
    /// (may be empty).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a file cannot be read or parsed, or the key
    /// does not match the certificate.
    pub fn tls_pem_files(
        self,
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
        alpn: &[&[u8]],
    ) -> Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert_chain.as_ref())
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| Error::Config(format!("{}: {e}", cert_chain.as_ref().display())))?;
        let key = PrivateKeyDer::from_pem_file(private_key.as_ref())
            .map_err(|e| Error::Config(format!("{}: {e}", private_key.as_ref().display())))?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Config(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| Error::Config(format!("certificate and key: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(self.tls(Arc::new(config)))
    }
}

/// A blocking TLS client stream (for [`Client`](crate::client::Client)).
pub(crate) fn client_stream(
    tcp: std::net::TcpStream,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<Box<dyn crate::client::Stream>> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| Error::Config(format!("server name {server_name:?}: {e}")))?;
    let conn = ClientConnection::new(config, name).map_err(|e| Error::Io(io::Error::other(e)))?;
    let mut stream = StreamOwned::new(conn, tcp);
    // Finish the handshake now so errors surface from `connect`.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Box::new(ClientTls(stream)))
}

struct ClientTls(StreamOwned<ClientConnection, std::net::TcpStream>);

impl io::Read for ClientTls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl io::Write for ClientTls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl crate::client::Stream for ClientTls {
    fn tcp(&self) -> &std::net::TcpStream {
        &self.0.sock
    }
    fn close(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
    }
}
