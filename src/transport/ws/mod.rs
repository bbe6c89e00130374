//! WebSocket (RFC 6455) as a layer: the HTTP upgrade ([`handshake`]), then
//! tungstenite's `WebSocketContext` over an in-memory adapter
//! ([`session`], [`feed`]): its `Read` returns `WouldBlock` when the bytes of this
//! read are used up, its `Write` appends to the connection's write queue.
//! tungstenite never sees the socket and nothing here blocks or waits.
//! Outgoing data frames are formatted straight into the write queue
//! ([`encode`]); [`close`] holds the close codes; [`request`] the upgrade
//! request kept for the application. The only module that names
//! tungstenite. The public face is `netloom::ws`.

mod client;
mod close;
mod encode;
mod feed;
mod handshake;
mod io;
mod request;
mod session;
mod tracker;

pub use client::WsResponse;
pub(crate) use client::{Target, WsDial};
pub use request::WsRequest;
pub(crate) use session::WsSession;

use bytes::BytesMut;
use tungstenite::protocol::WebSocketConfig;

use crate::codec::ServerPacker;
use crate::config::Config;
use crate::error::{Error, PackError, Result};

/// Message id of a WebSocket text message (message mode).
pub const TEXT: u32 = 1;
/// Message id of a WebSocket binary message (message mode).
pub const BINARY: u32 = 2;
/// Largest upgrade request (request line and headers) accepted; a longer
/// one is answered with `431` and closed.
pub const MAX_REQUEST_HEAD: usize = 8 << 10;

/// tungstenite's read buffer per open connection. Small, because it is
/// allocated for the connection's lifetime (the idle-memory budget); it
/// only sets the chunk size in which tungstenite copies from our buffer
/// (measured: 64 bytes reads a 1 MiB frame in ~0.11 ms; 0 would take
/// ~0.6 ms and save 64 bytes per connection).
const READ_BUFFER: usize = 64;
/// A context that parsed a frame with a payload at least this big is
/// replaced by a fresh one once it holds no partial frame or message, so an
/// idle connection does not keep the buffer its largest frame needed.
const SHRINK_AFTER: u64 = 512;
/// Room for the packer's header when the default message limit is derived
/// from `max_body_length` in packer mode.
const PACKER_HEADROOM: usize = 1 << 10;
/// Packer overhead assumed when reserving a frame header in packer mode
/// (a wrong guess costs one `memmove`, never a wrong frame).
const PACKER_GUESS: usize = 16;

/// How WebSocket messages map to netloom messages; see the
/// [`ws` module](crate::ws).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WsMode {
    /// Each whole message is a [`Message`](crate::Message) with id [`TEXT`]
    /// or [`BINARY`].
    #[default]
    Messages,
    /// Binary messages carry the server's packer frames.
    Packer,
}

/// The server's WebSocket settings.
#[derive(Default)]
pub(crate) struct WsSettings {
    pub(crate) mode: WsMode,
    pub(crate) max_message: Option<usize>,
    pub(crate) max_frame: Option<usize>,
    /// tungstenite's configuration, settled by `validate`.
    config: WebSocketConfig,
}

impl WsSettings {
    /// Resolve the default limits and check them.
    pub(crate) fn validate(&mut self, config: &Config) -> Result<()> {
        let default = match self.mode {
            WsMode::Messages => config.max_body_length,
            WsMode::Packer => config.max_body_length.saturating_add(PACKER_HEADROOM),
        };
        let max_message = self.max_message.unwrap_or(default);
        let max_frame = self.max_frame.unwrap_or(max_message);
        if max_message == 0 || max_frame == 0 {
            return Err(Error::Config(
                "ws_max_message and ws_max_frame must be at least 1 byte".into(),
            ));
        }
        self.config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_frame))
            .accept_unmasked_frames(false);
        Ok(())
    }

    /// The state of a newly accepted connection: waiting for its upgrade
    /// request.
    pub(crate) fn session(&self) -> WsSession {
        WsSession::new(self.mode)
    }

    /// Whether a message keeps its sequence number on these connections:
    /// only when binary messages carry packer frames (message mode carries
    /// bodies alone).
    pub(crate) fn carries_seq(&self) -> bool {
        self.mode == WsMode::Packer
    }

    /// Encode one outgoing message as a server (unmasked) data frame.
    pub(crate) fn encode(
        &self,
        packer: &ServerPacker,
        id: u32,
        seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> std::result::Result<(), PackError> {
        encode::encode(self.mode, packer, (id, seq), body, out, false)
    }
}

/// Encode one outgoing message of a dial (`Dial::ws`) as a masked data
/// frame: a whole message, or with `packer` one packer frame.
pub(crate) fn encode_client(
    packer_mode: bool,
    packer: &ServerPacker,
    (id, seq): (u32, u32),
    body: &[u8],
    out: &mut BytesMut,
) -> std::result::Result<(), PackError> {
    let mode = if packer_mode {
        WsMode::Packer
    } else {
        WsMode::Messages
    };
    encode::encode(mode, packer, (id, seq), body, out, true)
}

#[cfg(test)]
mod tests;
