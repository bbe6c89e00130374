//! Close codes: the close frame the server sends for each way a connection
//! ends, and for each WebSocket failure.

use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::WebSocketContext;

use super::io::Io;
use crate::error::{CloseReason, PackError};
use crate::transport::Goodbye;

/// Send a close frame for a failure and stop; the reason for `on_close`.
pub(super) fn fail(
    ctx: &mut WebSocketContext,
    io: &mut Io<'_, '_>,
    code: CloseCode,
    why: String,
) -> CloseReason {
    let short = match code {
        CloseCode::Size => "message too big",
        CloseCode::Invalid => "invalid UTF-8",
        CloseCode::Protocol => "protocol error",
        CloseCode::Unsupported => "unsupported data",
        _ => "internal error",
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(short),
    };
    let _ = ctx.close(io, Some(frame));
    CloseReason::WsProtocol {
        code: code.into(),
        message: why,
    }
}

/// Why the connection ends after the peer's close frame (which
/// tungstenite answered): `WsClosed` with the peer's code and reason, or,
/// for a code a peer may not send (RFC 6455 7.4: below 1000, 1004-1006,
/// 1015, 1016-2999, 5000 and up), a protocol error. tungstenite answers
/// such a frame with 1002 and hands back its own frame, so the code the
/// peer really sent is `sent` (read by the frame tracker).
pub(super) fn peer_close(frame: Option<CloseFrame>, sent: Option<u16>) -> CloseReason {
    match (frame, sent) {
        (_, Some(code)) if !CloseCode::from(code).is_allowed() => CloseReason::WsProtocol {
            code: 1002,
            message: format!("the peer's close frame carries code {code}, which may not be sent"),
        },
        (Some(f), _) => CloseReason::WsClosed {
            code: u16::from(f.code),
            reason: f.reason.as_str().to_owned(),
        },
        (None, _) => CloseReason::WsClosed {
            code: 1005,
            reason: String::new(),
        },
    }
}

/// The close code for a tungstenite read error.
pub(super) fn failure_code(e: &WsError) -> CloseCode {
    match e {
        WsError::Capacity(_) => CloseCode::Size,
        WsError::Utf8(_) => CloseCode::Invalid,
        WsError::Protocol(_) => CloseCode::Protocol,
        _ => CloseCode::Error,
    }
}

/// The close frame the server sends when it closes for `reason`; `None`
/// when no frame can or need be sent.
pub(super) fn close_frame_for(
    reason: &CloseReason,
    goodbye: Option<&Goodbye>,
) -> Option<(CloseCode, String)> {
    let (code, text): (u16, &str) = match reason {
        CloseReason::Local => match goodbye {
            Some(g) => return Some(sanitize(g)),
            None => (1000, ""),
        },
        CloseReason::Shutdown => (1001, "going away"),
        CloseReason::IdleTimeout => (1000, "idle timeout"),
        CloseReason::RequestTimeouts(_) | CloseReason::HealthCheckFailed(_) => {
            (1001, "peer unresponsive")
        }
        CloseReason::SlowPeer => (1008, "slow peer"),
        CloseReason::FrameTimeout => (1008, "message too slow"),
        CloseReason::MemoryLimit => (1013, "try again later"),
        CloseReason::HandlerPanic | CloseReason::Backlog => (1011, "internal error"),
        CloseReason::BadBody(_) => (1007, "invalid message"),
        CloseReason::UnknownId(_) => (1003, "unsupported message"),
        CloseReason::Rejected(_) => (1008, "rejected"),
        CloseReason::Protocol(PackError::TooLong { .. }) => (1009, "message too big"),
        CloseReason::Protocol(_) => (1002, "protocol error"),
        CloseReason::PeerClosed
        | CloseReason::Io(_)
        | CloseReason::ConnectFailed(_)
        | CloseReason::ConnectTimeout
        | CloseReason::ResolveFailed(_)
        | CloseReason::TlsHandshake(_)
        | CloseReason::Tls(_)
        | CloseReason::HandshakeTimeout
        | CloseReason::WsClosed { .. }
        | CloseReason::WsProtocol { .. }
        | CloseReason::UpgradeRejected(_)
        | CloseReason::BadUpgrade(_) => return None,
    };
    Some((CloseCode::from(code), text.to_owned()))
}

/// Whether the server, closing for `reason`, waits (within
/// `close_linger`) for the peer's close frame: not when the peer is closed
/// for what it held (`MemoryLimit`), for stalling (`FrameTimeout`) or for
/// not reading (`SlowPeer`): its memory goes at once; nor when it was
/// taken for dead (`Ending::Unresponsive`: heartbeat, health check,
/// request timeouts), which is not waited for at all: the close frame and
/// TLS close_notify go out at once, without its answer.
pub(super) fn waits_for_peer_close(reason: &CloseReason) -> bool {
    !matches!(
        reason,
        CloseReason::MemoryLimit | CloseReason::FrameTimeout | CloseReason::SlowPeer
    ) && reason.ending() != crate::error::Ending::Unresponsive
}

/// An application close frame with a code a peer accepts and a reason that
/// fits a control frame (123 bytes).
pub(super) fn sanitize(g: &Goodbye) -> (CloseCode, String) {
    let code = CloseCode::from(g.code);
    let code = if code.is_allowed() {
        code
    } else {
        log::warn!("close code {} may not be sent; sending 1000", g.code);
        CloseCode::Normal
    };
    let mut end = g.reason.len().min(123);
    while !g.reason.is_char_boundary(end) {
        end -= 1;
    }
    (code, g.reason[..end].to_owned())
}
