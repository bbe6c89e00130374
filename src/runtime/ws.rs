//! WebSocket shorthands on the handles (feature `ws`).

use super::{ConnHandle, Hub};
use crate::error::Result;
use crate::transport::ws::{BINARY, TEXT};

impl ConnHandle {
    /// Send a text message from any thread: `send(ws::TEXT, text)`.
    ///
    /// # Errors
    ///
    /// As [`send`](ConnHandle::send).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn send_text(&self, text: &str) -> Result<()> {
        self.send(TEXT, text)
    }

    /// Send a binary message from any thread: `send(ws::BINARY, data)`.
    ///
    /// # Errors
    ///
    /// As [`send`](ConnHandle::send).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn send_binary(&self, data: impl AsRef<[u8]>) -> Result<()> {
        self.send(BINARY, data)
    }
}

impl Hub {
    /// Broadcast a text message: `broadcast(ws::TEXT, text)`.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Hub::broadcast).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn broadcast_text(&self, text: &str) -> Result<()> {
        self.broadcast(TEXT, text)
    }

    /// Broadcast a binary message: `broadcast(ws::BINARY, data)`.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Hub::broadcast).
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn broadcast_binary(&self, data: impl AsRef<[u8]>) -> Result<()> {
        self.broadcast(BINARY, data)
    }
}
