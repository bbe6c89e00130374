//! The blocking TLS client stream behind `Client::connect_tls`.

use std::io::{self, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::{Error, Result};

/// A blocking TLS client stream (for [`Client`](crate::client::Client)).
pub(crate) struct ClientTls(StreamOwned<ClientConnection, std::net::TcpStream>);

impl ClientTls {
    /// Run the handshake over `tcp` now, so errors surface from `connect`.
    pub(crate) fn connect(
        tcp: std::net::TcpStream,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> Result<ClientTls> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| Error::Config(format!("server name {server_name:?}: {e}")))?;
        let conn =
            ClientConnection::new(config, name).map_err(|e| Error::Io(io::Error::other(e)))?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(ClientTls(stream))
    }

    /// The TCP socket under the TLS session.
    pub(crate) fn tcp(&self) -> &std::net::TcpStream {
        &self.0.sock
    }

    /// Send close_notify (best effort).
    pub(crate) fn close(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
    }
}

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
