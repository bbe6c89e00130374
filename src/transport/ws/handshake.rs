//! The HTTP upgrade: parse and check the client's request with
//! tungstenite's handshake code, and write the answers (101, or an HTTP
//! error).

use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::http::StatusCode;

use super::{WsRequest, MAX_REQUEST_HEAD};
use crate::error::CloseReason;

/// A complete, valid upgrade request.
pub(super) struct Upgrade {
    /// Bytes of the request head (what follows it is frames).
    pub(super) size: usize,
    /// The `101 Switching Protocols` answer.
    pub(super) response: Vec<u8>,
    pub(super) request: WsRequest,
}

/// Why an upgrade request is refused: the HTTP status to answer and what
/// was wrong.
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) why: String,
}

impl Refusal {
    fn new(status: u16, why: impl Into<String>) -> Refusal {
        Refusal {
            status,
            why: why.into(),
        }
    }

    /// The reason the connection closes with: a bad request (400, 431) or
    /// the application's refusal.
    pub(super) fn reason(self) -> CloseReason {
        if matches!(self.status, 400 | 431) {
            CloseReason::BadUpgrade(self.why)
        } else {
            CloseReason::UpgradeRejected(self.status)
        }
    }
}

/// Parse the request head received so far: `Ok(None)` while incomplete.
pub(super) fn parse(head: &[u8]) -> Result<Option<Upgrade>, Refusal> {
    let (size, request) = match <Request as TryParse>::try_parse(head) {
        Ok(Some((size, _))) if size > MAX_REQUEST_HEAD => {
            return Err(Refusal::new(431, "upgrade request too long"))
        }
        Ok(Some(parsed)) => parsed,
        Ok(None) if head.len() > MAX_REQUEST_HEAD => {
            return Err(Refusal::new(431, "upgrade request too long"))
        }
        Ok(None) => return Ok(None),
        Err(e) => return Err(Refusal::new(400, format!("bad HTTP request: {e}"))),
    };
    // RFC 6455 4.2.2: a version the server does not speak is refused with
    // the version it does (the header every refusal carries).
    let version = request.headers().get("sec-websocket-version");
    if let Some(v) = version.filter(|v| v.as_bytes() != b"13") {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        return Err(Refusal::new(
            400,
            format!("WebSocket version {v:?} (13 is spoken)"),
        ));
    }
    let mut response = Vec::with_capacity(160);
    let written = create_response(&request).and_then(|r| write_response(&mut response, &r));
    if let Err(e) = written {
        return Err(Refusal::new(400, format!("not a WebSocket upgrade: {e}")));
    }
    Ok(Some(Upgrade {
        size,
        response,
        request: WsRequest::from_http(&request),
    }))
}

/// The HTTP answer to a refused upgrade (a status outside 400–599 becomes
/// 403).
pub(super) fn refusal_response(status: u16) -> Vec<u8> {
    let code = StatusCode::from_u16(status)
        .ok()
        .filter(|c| c.is_client_error() || c.is_server_error())
        .unwrap_or(StatusCode::FORBIDDEN);
    let text = code.canonical_reason().unwrap_or("Error");
    let body = format!("{} {text}\n", code.as_u16());
    // Every refusal names the version spoken: RFC 6455 4.2.2 requires it
    // for a version the server does not speak, and it is harmless with any
    // other refusal.
    format!(
        "HTTP/1.1 {} {text}\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        code.as_u16(),
        body.len()
    )
    .into_bytes()
}
