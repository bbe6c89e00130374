//! The methods that turn TLS on (feature `tls`): on the server's listeners
//! (`Builder`) and on a connection it dials (`Dial`).

use std::path::Path;
use std::sync::Arc;

use super::Builder;
use crate::conn::dial::Dial;
use crate::error::Result;
use crate::transport::tls::{ClientConfig, ServerConfig, ServerName, TlsAcceptor, TlsConnector};

impl Builder {
    /// Serve TLS on every listener of this server with a rustls
    /// configuration (certificates, ALPN, client auth, versions: all set
    /// there). The negotiated ALPN protocol and SNI name are available as
    /// [`TlsInfo`](crate::TlsInfo) connection data once the handshake
    /// completes. TLS 1.3 early data (0-RTT) is not accepted, whatever
    /// `max_early_data_size` says: clients send after the handshake instead.
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
    /// server.join()?;
    /// # Ok::<(), netloom::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::new(config));
        self
    }

    /// Serve TLS with a certificate chain and private key read from PEM
    /// files, TLS 1.2 and 1.3, no client authentication; ALPN as given
    /// (may be empty).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if a file cannot be read or
    /// parsed, or the key does not match the certificate.
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_pem_files(
        mut self,
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
        alpn: &[&[u8]],
    ) -> Result<Self> {
        let acceptor =
            TlsAcceptor::from_pem_files(cert_chain.as_ref(), private_key.as_ref(), alpn)?;
        self.tls = Some(acceptor);
        Ok(self)
    }
}

impl Dial {
    /// Speak TLS on this connection, as the client: `config` says whom to
    /// trust (root certificates), what to offer (versions, ALPN) and which
    /// client certificate to show, if any; the server's certificate must be
    /// valid for `server_name`, which is also sent as SNI when it is a DNS
    /// name.
    ///
    /// Every connect attempt (the first, and each reconnect) makes a fresh
    /// client session and sends its ClientHello as soon as the TCP connect
    /// completes. The connection is open only once the handshake has
    /// completed: `on_open` (or `on_reconnect`) runs then, with
    /// [`TlsInfo`](crate::TlsInfo) (version, ALPN) already in the
    /// connection's data, and what was sent before goes out right after
    /// it, encrypted. A handshake that fails (an untrusted certificate, one
    /// for another name, no common version) closes the connection with
    /// [`CloseReason::TlsHandshake`](crate::CloseReason::TlsHandshake),
    /// one that does not complete within `Config::handshake_timeout` with
    /// [`HandshakeTimeout`](crate::CloseReason::HandshakeTimeout); with a
    /// [`Reconnect`](crate::Reconnect) policy either is a failed attempt
    /// instead, retried on the policy's schedule. TLS 1.3 early data is
    /// not sent, whatever `enable_early_data` says.
    ///
    /// [`Hub::dial`](crate::Hub::dial) refuses settings rustls cannot
    /// start a session with (say, a bad `max_fragment_size`) with
    /// [`Error::Config`](crate::Error::Config).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use netloom::{Dial, Server};
    /// use rustls::pki_types::ServerName;
    ///
    /// # fn roots() -> rustls::RootCertStore { unimplemented!() }
    /// let config = rustls::ClientConfig::builder_with_provider(Arc::new(
    ///     rustls::crypto::aws_lc_rs::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()
    /// .expect("aws-lc-rs supports TLS 1.2 and 1.3")
    /// .with_root_certificates(roots())
    /// .with_no_client_auth();
    /// let server = Server::builder().start()?;
    /// let backend = server.hub().dial(
    ///     Dial::new("10.0.0.7:7443".parse().unwrap())
    ///         .tls(Arc::new(config), ServerName::try_from("backend.internal").unwrap()),
    /// )?;
    /// backend.send(1, b"hello")?; // sent once the handshake is done
    /// # Ok::<(), netloom::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        self.tls = Some(TlsConnector::new(config, server_name));
        self
    }
}

#[cfg(feature = "ws")]
impl Dial {
    /// Dial the WebSocket server at `url` over TLS (`wss://host[:port]/…`,
    /// features `tls` and `ws`): as [`Dial::ws`], with TLS as the client
    /// (`config`), the certificate checked against the URL's host.
    ///
    /// # Errors
    ///
    /// As [`Dial::ws`]; also for a host that is not a valid server name.
    #[cfg_attr(docsrs, doc(cfg(all(feature = "tls", feature = "ws"))))]
    pub fn wss(url: &str, config: Arc<ClientConfig>) -> crate::Result<Self> {
        let dial = Dial::ws(url)?;
        let host = match dial.host_name() {
            Some((host, _)) => host.to_owned(),
            None => dial.addr().ip().to_string(),
        };
        let name = ServerName::try_from(host)
            .map_err(|e| crate::Error::Config(format!("WebSocket URL {url:?}: {e}")))?;
        let mut dial = dial.tls(config, name);
        if let Some((_, secure)) = &mut dial.ws {
            *secure = true;
        }
        Ok(dial)
    }
}
