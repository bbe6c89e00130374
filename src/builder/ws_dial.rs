//! The `Dial` methods for WebSocket dials (feature `ws`): `ws://` here,
//! `wss://` with the TLS settings in `builder/tls.rs`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::conn::dial::Dial;
use crate::error::Result;
use crate::transport::ws::{Target, WsDial, WsMode};

impl Dial {
    /// Dial the WebSocket server at `url` (`ws://host[:port]/path?query`)
    /// as a client, on the loops like any dial: the upgrade request
    /// (path, query, [`ws_header`](Self::ws_header)s,
    /// [`ws_protocols`](Self::ws_protocols)) goes out on every connect
    /// attempt with a fresh key, and the connection opens (`on_open`, then
    /// `on_reconnect` after a loss) once the server's answer checks out:
    /// status 101, `Sec-WebSocket-Accept`, a subprotocol among those
    /// offered. The answer is kept as the connection's data
    /// ([`WsResponse`](crate::ws::WsResponse)). A refused upgrade closes
    /// the attempt with [`CloseReason::UpgradeRejected`](crate::CloseReason::UpgradeRejected)
    /// (the status), a broken one with `BadUpgrade`; both reconnect with
    /// the dial's policy.
    ///
    /// Messages reach the dial's routes as on a WebSocket listener
    /// ([`WsMode`]): `ws::TEXT` and `ws::BINARY` messages, or packer frames
    /// in binary messages with [`ws_mode`](Self::ws_mode)`(WsMode::Packer)`
    /// (which carry sequence numbers, for requests). Every frame sent is
    /// masked with a fresh random key. The heartbeat pings with WebSocket
    /// ping frames. A host name is resolved on every attempt, as with
    /// [`host`](Self::host).
    ///
    /// ```
    /// use netloom::Dial;
    ///
    /// let dial = Dial::ws("ws://127.0.0.1:9001/feed?room=7")?
    ///     .ws_header("Authorization", "Bearer 0xfeed")?
    ///     .ws_protocols(["feed.v2", "feed.v1"]);
    /// # drop(dial);
    /// # Ok::<(), netloom::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for a URL that is not
    /// `ws://` or `wss://` with a host. A `wss://` URL needs
    /// [`Dial::wss`] (feature `tls`): `Hub::dial` refuses it without TLS.
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws(url: &str) -> Result<Dial> {
        let (ws, Target { host, port, secure }) = WsDial::parse(url)?;
        let mut dial = match host.parse::<IpAddr>() {
            Ok(ip) => Dial::new(SocketAddr::new(ip, port)),
            Err(_) => Dial::host(host, port),
        };
        dial.ws = Some((Arc::new(ws), secure));
        Ok(dial)
    }

    /// Send header `name: value` with the upgrade request (an
    /// `Authorization`, an `Origin`, a cookie). No effect on a dial that
    /// is not [`ws`](Self::ws).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for a name or value HTTP
    /// does not allow, or one the handshake sets itself (`Host`,
    /// `Connection`, `Upgrade`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version`).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_header(mut self, name: &str, value: &str) -> Result<Dial> {
        if let Some((ws, _)) = &mut self.ws {
            Arc::make_mut(ws).header(name, value)?;
        }
        Ok(self)
    }

    /// Offer these subprotocols (`Sec-WebSocket-Protocol`), most preferred
    /// first; the server's choice is
    /// [`WsResponse::protocol`](crate::ws::WsResponse::protocol). An answer
    /// choosing another fails the attempt (`BadUpgrade`).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_protocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Dial {
        if let Some((ws, _)) = &mut self.ws {
            Arc::make_mut(ws).protocols(protocols.into_iter().map(Into::into).collect());
        }
        self
    }

    /// How this dial's messages map (default
    /// [`WsMode::Messages`](crate::ws::WsMode::Messages)); independent of
    /// the server's [`Builder::ws_mode`](crate::Builder::ws_mode).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_mode(mut self, mode: WsMode) -> Dial {
        if let Some((ws, _)) = &mut self.ws {
            Arc::make_mut(ws).mode = mode;
        }
        self
    }

    /// The largest message this dial accepts (default: the server's
    /// `max_body_length`, plus room for the packer's header in packer
    /// mode); a larger one closes the connection with 1009. Frames are
    /// bounded by [`ws_max_frame`](Self::ws_max_frame).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_max_message(mut self, bytes: usize) -> Dial {
        if let Some((ws, _)) = &mut self.ws {
            Arc::make_mut(ws).max_message = Some(bytes);
        }
        self
    }

    /// The largest frame this dial accepts (default: its largest message).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_max_frame(mut self, bytes: usize) -> Dial {
        if let Some((ws, _)) = &mut self.ws {
            Arc::make_mut(ws).max_frame = Some(bytes);
        }
        self
    }
}
