//! [`feed`]: tungstenite run over a run of whole frames, delivering the
//! messages it makes (or packer bytes) and what it says of the connection.

use std::io;

use bytes::Bytes;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketContext;
use tungstenite::Message as WsMessage;

use super::close::{fail, failure_code};
use super::io::Io;
use super::{WsMode, BINARY, TEXT};
use crate::codec::Message;
use crate::error::CloseReason;
use crate::transport::Sink;

/// What tungstenite made of a run of whole frames.
pub(super) enum Fed {
    /// It needs more.
    More,
    /// The close handshake is over (we closed first, and the peer answered).
    Finished,
    /// The peer's close frame (tungstenite queued its echo).
    Closed(Option<CloseFrame>),
    /// The peer broke the protocol (our close frame is queued).
    Failed(CloseReason),
}

/// Run tungstenite over a run of whole frames, delivering what it makes.
pub(super) fn feed(
    ctx: &mut WebSocketContext,
    run: &[u8],
    mode: WsMode,
    closing: bool,
    sink: &mut Sink<'_>,
    wants_write: &mut bool,
) -> Fed {
    let mut io = Io {
        input: run,
        out: &mut sink.out,
        wrote: false,
    };
    let fed = loop {
        let message = match ctx.read(&mut io) {
            Ok(m) => m,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break Fed::More,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => break Fed::Finished,
            Err(e) => break Fed::Failed(fail(ctx, &mut io, failure_code(&e), e.to_string())),
        };
        match message {
            // After our close frame, data is no longer delivered.
            WsMessage::Text(_) | WsMessage::Binary(_) if closing => {}
            WsMessage::Text(text) => match mode {
                WsMode::Messages => sink.messages.push(Message::new(TEXT, Bytes::from(text))),
                WsMode::Packer => {
                    let why = "text messages are not accepted".to_string();
                    break Fed::Failed(fail(ctx, &mut io, CloseCode::Unsupported, why));
                }
            },
            WsMessage::Binary(data) => match mode {
                WsMode::Messages => sink.messages.push(Message::new(BINARY, data)),
                WsMode::Packer => sink.stream.extend_from_slice(&data),
            },
            WsMessage::Close(_) if closing => break Fed::Finished,
            WsMessage::Close(frame) => {
                // Write tungstenite's echo of the close frame; it then
                // reports the connection closed.
                let _ = ctx.flush(&mut io);
                break Fed::Closed(frame);
            }
            // Pongs to pings are queued by tungstenite and written on its
            // next call.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
        }
    };
    *wants_write |= io.wrote;
    fed
}
