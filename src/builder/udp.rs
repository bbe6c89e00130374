//! The builder's UDP settings: datagram sockets on the same loops, routes
//! and middleware as the TCP listeners.

use std::net::ToSocketAddrs;

use super::Builder;
use crate::config::UdpConfig;
use crate::error::{Error, Result};

impl Builder {
    /// Receive UDP datagrams on `addr` (any number of times for several
    /// addresses; port 0 picks a free port: read it back with
    /// [`ServerHandle::udp_addrs`](crate::ServerHandle::udp_addrs)).
    ///
    /// Each datagram carries one or more whole packer frames; its messages
    /// go through the same middleware and routes as those of TCP
    /// connections, and [`Context::reply`](crate::Context::reply) answers
    /// the sender's address. Each peer address is a virtual session, a
    /// connection like an accepted one: `on_open` runs on its first
    /// datagram (and may refuse it), it has user data, a
    /// [`ConnHandle`](crate::ConnHandle), timers, and it closes (running
    /// `on_close`) when it goes quiet (`UdpConfig::idle_timeout`, or the
    /// server's heartbeat), when the application closes it, or at
    /// shutdown. Nothing is said to the peer on open or close: UDP has no
    /// connection. Every message sent to a session is one datagram. See
    /// [`UdpConfig`] for the limits, and the guide's UDP section.
    ///
    /// The address must be a specific one (`127.0.0.1:6566`,
    /// `10.0.0.5:6566`), not the wildcard (`0.0.0.0`, `[::]`): a reply
    /// leaves from the socket's address, and on a wildcard socket the
    /// kernel would pick one by its routes, not necessarily the one the
    /// peer sent to, which a connected client socket drops. Bind each
    /// address you serve.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `addr` does not resolve, [`Error::Config`] if it
    /// resolves to no address or to a wildcard one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let server = netloom::Server::builder()
    ///     .route(1, |ctx| ctx.reply(1, ctx.body()))
    ///     .bind_udp("127.0.0.1:6566")?
    ///     .start()?;
    /// println!("UDP on {:?}", server.udp_addrs());
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn bind_udp(mut self, addr: impl ToSocketAddrs) -> Result<Self> {
        let before = self.udp_addrs.len();
        self.udp_addrs.extend(addr.to_socket_addrs()?);
        if self.udp_addrs.len() == before {
            return Err(Error::Config(
                "bind_udp: address resolved to nothing".into(),
            ));
        }
        if let Some(wild) = self.udp_addrs[before..]
            .iter()
            .find(|a| a.ip().is_unspecified())
        {
            return Err(Error::Config(format!(
                "bind_udp: {wild} is a wildcard address: replies could leave from \
                 another address than the peer sent to; bind each address to serve"
            )));
        }
        self.config.udp_bound = true;
        Ok(self)
    }

    /// The UDP sockets' and sessions' settings (see [`UdpConfig`]).
    ///
    /// ```
    /// let mut udp = netloom::UdpConfig::default();
    /// udp.max_sessions = 10_000;
    /// udp.max_datagram = 1_200;
    /// let builder = netloom::Server::builder().udp(udp);
    /// # drop(builder);
    /// ```
    pub fn udp(mut self, config: UdpConfig) -> Self {
        self.config.udp = config;
        self
    }
}
