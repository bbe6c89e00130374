//! WebSocket shorthands on a [`Session`] (feature `ws`).

use super::context::Session;
use crate::buf::Payload;
use crate::error::Result;
use crate::transport::ws::{WsRequest, BINARY, TEXT};

impl Session<'_> {
    /// Send a text message: `send(ws::TEXT, text)`. On a WebSocket
    /// connection in message mode this is a text frame.
    ///
    /// # Errors
    ///
    /// As [`send`](Session::send).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn send_text(&self, text: &str) -> Result<()> {
        self.send_payload(TEXT, 0, Payload::Slice(text.as_bytes()))
    }

    /// Send a binary message: `send(ws::BINARY, data)`. On a WebSocket
    /// connection in message mode this is a binary frame.
    ///
    /// # Errors
    ///
    /// As [`send`](Session::send).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn send_binary(&self, data: impl AsRef<[u8]>) -> Result<()> {
        self.send_payload(BINARY, 0, Payload::Slice(data.as_ref()))
    }

    /// The WebSocket upgrade request of this connection (`None` for raw
    /// TCP connections, or before the upgrade).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn ws_request(&self) -> Option<&WsRequest> {
        self.data().get()
    }
}
