//! The `Builder` methods for WebSocket listeners (feature `ws`).

use std::net::ToSocketAddrs;

use super::Builder;
use crate::dispatch::context::Session;
use crate::error::Result;
use crate::transport::ws::{WsMode, WsRequest, WsSettings};
use crate::transport::Protocol;

impl Builder {
    /// Listen for WebSocket connections on `addr` (`ws://`; `wss://` when
    /// the server has `tls(...)`, feature `tls`). Same routes, middleware and
    /// hooks as [`bind`](Builder::bind) listeners; see [`WsMode`](crate::ws::WsMode) for how
    /// messages map.
    ///
    /// # Errors
    ///
    /// As [`bind`](Builder::bind).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn bind_ws(mut self, addr: impl ToSocketAddrs) -> Result<Self> {
        self.ws_settings();
        self.bind_protocol(addr, Protocol::WebSocket)
    }

    /// How WebSocket messages map to netloom messages. Default:
    /// [`WsMode::Messages`](crate::ws::WsMode::Messages).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_mode(mut self, mode: WsMode) -> Self {
        self.ws_settings().mode = mode;
        self
    }

    /// Run when a WebSocket upgrade request has been read and checked, on
    /// the loop thread, after `on_open` (which runs at TCP accept). Return
    /// `Err(status)` to refuse: the client gets that HTTP status (400–599;
    /// other values become 403), the connection closes with
    /// [`CloseReason::UpgradeRejected`](crate::CloseReason::UpgradeRejected) and `on_close` runs. The request is
    /// kept as connection data either way.
    ///
    /// ```no_run
    /// let _server = netloom::Server::builder()
    ///     .ws_on_upgrade(|session, req| match req.query("token") {
    ///         Some(t) if t == "secret" => {
    ///             session.data_mut().insert(String::from("authenticated"));
    ///             Ok(())
    ///         }
    ///         _ => Err(401),
    ///     })
    ///     .bind_ws("127.0.0.1:6568")?
    ///     .start()?;
    /// # Ok::<(), netloom::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_on_upgrade<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut Session<'_>, &WsRequest) -> std::result::Result<(), u16> + Send + Sync + 'static,
    {
        self.hooks.on_upgrade = Some(Box::new(hook));
        self
    }

    /// Largest incoming WebSocket message (after reassembling fragments);
    /// over it the connection is closed with 1009. Default:
    /// `max_body_length` in message mode, `max_body_length` + 1 KiB in
    /// packer mode (1 MiB and 1 MiB + 1 KiB with default settings).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_max_message(mut self, bytes: usize) -> Self {
        self.ws_settings().max_message = Some(bytes);
        self
    }

    /// Largest incoming WebSocket frame payload; over it the connection is
    /// closed with 1009. Default: the message limit.
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_max_frame(mut self, bytes: usize) -> Self {
        self.ws_settings().max_frame = Some(bytes);
        self
    }

    /// The WebSocket settings, made on first use.
    fn ws_settings(&mut self) -> &mut WsSettings {
        self.ws.get_or_insert_with(WsSettings::default)
    }
}
