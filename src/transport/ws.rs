//! WebSocket (RFC 6455) listeners: `ws://`, and `wss://` with TLS, on the
//! same event loops, routes and middleware as the raw TCP listeners.
//!
//! ```no_run
//! use netloom::{ws, Server};
//!
//! let server = Server::builder()
//!     .ws_on_upgrade(|_session, req| {
//!         // Reject before the upgrade with an HTTP status.
//!         if req.path() != "/chat" { Err(404) } else { Ok(()) }
//!     })
//!     .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
//!     .route(ws::BINARY, |ctx| ctx.send_binary(ctx.body()))
//!     .bind_ws("127.0.0.1:6568")?
//!     .start()?;
//! server.join();
//! # Ok::<(), netloom::Error>(())
//! ```
//!
//! # How it works
//!
//! The reactor reads the socket as for any connection and hands the bytes
//! to this layer. It accumulates the HTTP upgrade request (at most
//! [`MAX_REQUEST_HEAD`] bytes), parses and checks it with tungstenite's
//! handshake code and asks the application
//! ([`Builder::ws_on_upgrade`]); then it answers `101 Switching Protocols`
//! and drives a tungstenite `WebSocketContext` over an in-memory adapter
//! (its `Read` returns `WouldBlock` when the bytes of this read are used
//! up, its `Write` appends to the connection's write queue). tungstenite
//! never sees the socket and nothing here blocks or waits. Outgoing data
//! frames are formatted straight into the write queue (one copy, as for a
//! packer frame).
//!
//! # Modes ([`WsMode`])
//!
//! * [`WsMode::Messages`] (default): every whole message (fragments
//!   reassembled) is dispatched as a [`Message`] with id [`TEXT`] or
//!   [`BINARY`] and `seq` 0, through the global and group middleware to
//!   `.route(ws::TEXT, ..)` / `.route(ws::BINARY, ..)`. Sending with id
//!   [`TEXT`] makes a text frame (the body must be UTF-8), any other id a
//!   binary frame.
//! * [`WsMode::Packer`]: binary messages carry the server's packer frames
//!   (one per message is usual; any split is tolerated) and every message
//!   sent is one packer frame in one binary message, so the same routes
//!   serve TCP and browser clients. A text message closes the connection
//!   with 1003.
//!
//! # Protocol duties
//!
//! Pings are answered with pongs; with a heartbeat, `ping_before_kick`
//! sends a WebSocket ping (the pong, like any byte, counts as traffic).
//! Close codes sent by the server:
//!
//! | why | code |
//! | --- | --- |
//! | `close()` / `ConnHandle::close()` | 1000 |
//! | [`Session::close_with`] | yours |
//! | server shutdown | 1001 "going away" |
//! | idle timeout | 1000 "idle timeout" |
//! | protocol violation, unmasked client frame | 1002 |
//! | text message in packer mode, unknown id with `UnknownIdPolicy::Close` | 1003 |
//! | invalid UTF-8 in a text message | 1007 |
//! | slow peer (`SlowPeerPolicy::Close`) | 1008 |
//! | message or frame over the limit, packer frame over `max_body_length` | 1009 |
//! | handler panic | 1011 |
//!
//! After a close it initiates, the server waits (at most `close_linger`)
//! for the peer's close frame before it closes the TCP connection; after
//! a protocol failure it closes at once. A close frame from the peer is
//! answered and the connection closes with
//! [`CloseReason::WsClosed`](crate::CloseReason::WsClosed). Requests that
//! are not WebSocket upgrades get `400 Bad Request`
//! ([`CloseReason::BadUpgrade`](crate::CloseReason::BadUpgrade)); the
//! handshake timeout covers TLS and the upgrade.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::error::Error as WsError;
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::http::StatusCode;
use tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tungstenite::protocol::frame::{CloseFrame, FrameHeader, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message as WsMessage;

use super::{Goodbye, Incoming, Protocol, QueueRef, Sink};
use crate::config::Config;
use crate::context::Session;
use crate::error::{CloseReason, Error, PackError, Result};
use crate::handle::{ConnHandle, Hub};
use crate::packer::{Message, Packer};
use crate::reactor::{self, Command};
use crate::server::Builder;

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

/// How WebSocket messages map to netloom messages; see the [module
/// docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WsMode {
    /// Each whole message is a [`Message`] with id [`TEXT`] or [`BINARY`].
    #[default]
    Messages,
    /// Binary messages carry the server's packer frames.
    Packer,
}

/// The upgrade hook.
type UpgradeHook = Arc<dyn Fn(&mut Session<'_>, &WsRequest) -> Result<(), u16> + Send + Sync>;

/// The server's WebSocket settings.
#[derive(Default)]
pub(crate) struct WsSettings {
    pub(crate) mode: WsMode,
    max_message: Option<usize>,
    max_frame: Option<usize>,
    on_upgrade: Option<UpgradeHook>,
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

    pub(crate) fn session(&self) -> WsSession {
        WsSession {
            mode: self.mode,
            state: State::Request(Vec::new()),
        }
    }

    /// Run the hook; keep the request as connection data either way.
    pub(crate) fn decide(
        &self,
        request: Box<WsRequest>,
        session: &mut Session<'_>,
    ) -> std::result::Result<(), u16> {
        let verdict = match &self.on_upgrade {
            Some(hook) => hook(session, &request),
            None => Ok(()),
        };
        session.set_data(*request);
        verdict
    }
}

/// One connection's WebSocket state.
pub(crate) struct WsSession {
    mode: WsMode,
    state: State,
}

enum State {
    /// Reading the HTTP upgrade request: the bytes so far.
    Request(Vec<u8>),
    /// The request is valid; the application decides. `response` is the
    /// 101 answer, `rest` what the client sent after the request.
    Deciding { response: Vec<u8>, rest: Vec<u8> },
    /// Upgraded. `closing`: we sent a close frame and wait for the peer's.
    Open {
        ctx: Box<WebSocketContext>,
        closing: bool,
        frames: FrameTracker,
    },
    /// No WebSocket traffic any more (rejected, failed, closed).
    Done,
}

/// The in-memory stream tungstenite runs over: reads the bytes of this
/// batch, then says `WouldBlock`; writes append to the write queue.
struct Io<'a, 'b> {
    input: &'a [u8],
    out: &'a mut QueueRef<'b>,
    wrote: bool,
}

impl Read for Io<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Io<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.out.get().extend(buf);
            self.wrote = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WsSession {
    /// The upgrade is not complete yet (no frames flow; the write queue is
    /// held back).
    pub(crate) fn is_upgrading(&self) -> bool {
        matches!(self.state, State::Request(_) | State::Deciding { .. })
    }

    pub(crate) fn awaits_peer_close(&self) -> bool {
        matches!(self.state, State::Open { closing: true, .. })
    }

    pub(crate) fn peer_gone(&mut self) {
        self.state = State::Done;
    }

    /// Bytes received (after TLS): the upgrade request, then frames.
    pub(crate) fn receive(
        &mut self,
        input: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<Incoming, CloseReason> {
        match &mut self.state {
            State::Request(head) => {
                head.extend_from_slice(input);
                self.parse_request(sink)
            }
            // The verdict comes before the next read; keep order anyway.
            State::Deciding { rest, .. } => {
                rest.extend_from_slice(input);
                Ok(Incoming::default())
            }
            State::Open { .. } => self.read_frames(input, sink),
            State::Done => Ok(Incoming::default()),
        }
    }

    fn parse_request(&mut self, sink: &mut Sink<'_>) -> Result<Incoming, CloseReason> {
        let State::Request(head) = &self.state else {
            return Ok(Incoming::default());
        };
        let (size, request) = match <Request as TryParse>::try_parse(head) {
            Ok(Some((size, _))) if size > MAX_REQUEST_HEAD => {
                return Err(self.refuse(431, "upgrade request too long".into(), &mut sink.out))
            }
            Ok(Some(parsed)) => parsed,
            Ok(None) if head.len() > MAX_REQUEST_HEAD => {
                return Err(self.refuse(431, "upgrade request too long".into(), &mut sink.out))
            }
            Ok(None) => return Ok(Incoming::default()),
            Err(e) => {
                let why = format!("bad HTTP request: {e}");
                return Err(self.refuse(400, why, &mut sink.out));
            }
        };
        let mut response = Vec::with_capacity(160);
        let written = create_response(&request).and_then(|r| write_response(&mut response, &r));
        if let Err(e) = written {
            let why = format!("not a WebSocket upgrade: {e}");
            return Err(self.refuse(400, why, &mut sink.out));
        }
        let rest = head[size..].to_vec();
        let request = WsRequest::from_http(&request);
        self.state = State::Deciding { response, rest };
        Ok(Incoming {
            upgrade: Some(Box::new(request)),
            ..Incoming::default()
        })
    }

    /// Answer the upgrade request with an HTTP error and stop. Anything
    /// queued meanwhile is dropped: it was meant for a WebSocket.
    fn refuse(&mut self, status: u16, why: String, out: &mut QueueRef<'_>) -> CloseReason {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let text = code.canonical_reason().unwrap_or("Error");
        let body = format!("{} {text}\n", code.as_u16());
        let head = format!(
            "HTTP/1.1 {} {text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            code.as_u16(),
            body.len()
        );
        out.discard();
        let q = out.get();
        q.extend(head.as_bytes());
        q.extend(body.as_bytes());
        self.state = State::Done;
        if status == 400 || status == 431 {
            CloseReason::BadUpgrade(why)
        } else {
            CloseReason::UpgradeRejected(status)
        }
    }

    /// The application's verdict: answer 101 and start framing, or refuse.
    pub(crate) fn finish_upgrade(
        &mut self,
        settings: &WsSettings,
        verdict: std::result::Result<(), u16>,
        mut out: QueueRef<'_>,
    ) -> Result<(), CloseReason> {
        let (response, rest) = match std::mem::replace(&mut self.state, State::Done) {
            State::Deciding { response, rest } => (response, rest),
            // Closed meanwhile (by the hook itself): nothing to answer.
            other => {
                self.state = other;
                return Ok(());
            }
        };
        match verdict {
            Ok(()) => {
                // Frames queued before the upgrade completed go after it.
                out.get().push_front(Bytes::from(response));
                let mut frames = FrameTracker::default();
                frames.feed(&rest);
                let ctx = WebSocketContext::from_partially_read(
                    rest,
                    Role::Server,
                    Some(settings.config),
                );
                self.state = State::Open {
                    ctx: Box::new(ctx),
                    closing: false,
                    frames,
                };
                Ok(())
            }
            Err(status) => {
                let status = if (400..=599).contains(&status) {
                    status
                } else {
                    403
                };
                Err(self.refuse(status, String::new(), &mut out))
            }
        }
    }

    /// Run tungstenite over `input` until it needs more bytes.
    fn read_frames(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<Incoming, CloseReason> {
        let mode = self.mode;
        let State::Open {
            ctx,
            closing,
            frames,
        } = &mut self.state
        else {
            return Ok(Incoming::default());
        };
        frames.feed(input);
        let mut io = Io {
            input,
            out: &mut sink.out,
            wrote: false,
        };
        let mut finished = false;
        let mut outcome = Ok(());
        loop {
            let message = match ctx.read(&mut io) {
                Ok(m) => m,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    finished = true;
                    break;
                }
                Err(e) => {
                    outcome = Err(fail(ctx, &mut io, failure_code(&e), e.to_string()));
                    break;
                }
            };
            match message {
                // After our close frame, data is no longer delivered.
                WsMessage::Text(_) | WsMessage::Binary(_) if *closing => {}
                WsMessage::Text(text) => match mode {
                    WsMode::Messages => sink.messages.push(Message::new(TEXT, Bytes::from(text))),
                    WsMode::Packer => {
                        let why = "text messages are not accepted".to_string();
                        outcome = Err(fail(ctx, &mut io, CloseCode::Unsupported, why));
                        break;
                    }
                },
                WsMessage::Binary(data) => match mode {
                    WsMode::Messages => sink.messages.push(Message::new(BINARY, data)),
                    WsMode::Packer => sink.stream.extend_from_slice(&data),
                },
                WsMessage::Close(frame) => {
                    finished = true;
                    if !*closing {
                        // Write tungstenite's echo of the close frame; it
                        // then reports the connection closed.
                        let _ = ctx.flush(&mut io);
                        let (code, reason) = frame.map_or((1005, String::new()), |f| {
                            (u16::from(f.code), f.reason.as_str().to_owned())
                        });
                        outcome = Err(CloseReason::WsClosed { code, reason });
                    }
                    break;
                }
                // Pongs to pings are queued by tungstenite and written on
                // its next call.
                WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
            }
        }
        let wants_write = io.wrote;
        if finished || outcome.is_err() {
            self.state = State::Done;
        } else if frames.big && frames.at_boundary() && ctx.can_write() {
            // tungstenite has parsed every byte (its read said WouldBlock)
            // and holds no frame, message or pending pong: start afresh to
            // free the buffer the big frame grew.
            let config = *ctx.get_config();
            **ctx = WebSocketContext::new(Role::Server, Some(config));
            frames.big = false;
        }
        outcome.map(|()| Incoming {
            wants_write,
            ..Incoming::default()
        })
    }

    /// The connection starts closing: queue our close frame after what is
    /// queued, or drop what can never be sent.
    pub(crate) fn begin_close(
        &mut self,
        reason: &CloseReason,
        goodbye: Option<&Goodbye>,
        mut out: QueueRef<'_>,
    ) {
        match &mut self.state {
            State::Request(_) | State::Deciding { .. } => {
                out.discard();
                self.state = State::Done;
            }
            State::Open { ctx, closing, .. } if !*closing => {
                let Some((code, text)) = close_frame_for(reason, goodbye) else {
                    self.state = State::Done;
                    return;
                };
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from(text),
                };
                let mut io = Io {
                    input: &[],
                    out: &mut out,
                    wrote: false,
                };
                match ctx.close(&mut io, Some(frame)) {
                    Ok(()) => *closing = true,
                    Err(_) => self.state = State::Done,
                }
            }
            State::Open { .. } | State::Done => {}
        }
    }

    /// Heartbeat: a ping frame (nothing before the upgrade or while
    /// closing).
    pub(crate) fn ping(&mut self, mut out: QueueRef<'_>) {
        if let State::Open {
            ctx,
            closing: false,
            ..
        } = &mut self.state
        {
            let mut io = Io {
                input: &[],
                out: &mut out,
                wrote: false,
            };
            let _ = ctx.write(&mut io, WsMessage::Ping(Bytes::new()));
        }
    }
}

/// Follows the client's byte stream frame by frame (headers only), to know
/// when tungstenite holds no partial frame or fragmented message.
#[derive(Default)]
struct FrameTracker {
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// The current frame header, as far as received.
    head: [u8; 14],
    have: u8,
    /// Inside a fragmented data message.
    fragmented: bool,
    /// A frame of at least `SHRINK_AFTER` bytes was seen.
    big: bool,
}

impl FrameTracker {
    /// Header length announced by its second byte (mask and length bits).
    fn header_len(second: u8) -> usize {
        let extra = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + extra + if second & 0x80 != 0 { 4 } else { 0 }
    }

    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            if self.left > 0 {
                let take = self.left.min(input.len() as u64);
                self.left -= take;
                input = &input[take as usize..];
                continue;
            }
            let have = usize::from(self.have);
            let need = if have < 2 {
                2
            } else {
                Self::header_len(self.head[1])
            };
            let take = (need - have).min(input.len());
            self.head[have..have + take].copy_from_slice(&input[..take]);
            self.have += take as u8;
            input = &input[take..];
            let have = usize::from(self.have);
            if have < 2 || have < Self::header_len(self.head[1]) {
                continue;
            }
            let h = &self.head;
            let len = match h[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                n => u64::from(n),
            };
            // Data frames (opcodes 0-7) open or close a fragmented message;
            // control frames may come between fragments.
            if h[0] & 0x08 == 0 {
                self.fragmented = h[0] & 0x80 == 0;
            }
            self.big |= len >= SHRINK_AFTER;
            self.left = len;
            self.have = 0;
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0 && !self.fragmented
    }
}

/// Send a close frame for a failure and stop; the reason for `on_close`.
fn fail(
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

/// The close code for a tungstenite read error.
fn failure_code(e: &WsError) -> CloseCode {
    match e {
        WsError::Capacity(_) => CloseCode::Size,
        WsError::Utf8(_) => CloseCode::Invalid,
        WsError::Protocol(_) => CloseCode::Protocol,
        _ => CloseCode::Error,
    }
}

/// The close frame the server sends when it closes for `reason`; `None`
/// when no frame can or need be sent.
fn close_frame_for(reason: &CloseReason, goodbye: Option<&Goodbye>) -> Option<(CloseCode, String)> {
    let (code, text): (u16, &str) = match reason {
        CloseReason::Local => match goodbye {
            Some(g) => return Some(sanitize(g)),
            None => (1000, ""),
        },
        CloseReason::Shutdown => (1001, "going away"),
        CloseReason::IdleTimeout => (1000, "idle timeout"),
        CloseReason::SlowPeer => (1008, "slow peer"),
        CloseReason::HandlerPanic => (1011, "internal error"),
        CloseReason::UnknownId(_) => (1003, "unsupported message"),
        CloseReason::Rejected(_) => (1008, "rejected"),
        CloseReason::Protocol(PackError::TooLong { .. }) => (1009, "message too big"),
        CloseReason::Protocol(_) => (1002, "protocol error"),
        CloseReason::PeerClosed
        | CloseReason::Io(_)
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

/// An application close frame with a code a peer accepts and a reason that
/// fits a control frame (123 bytes).
fn sanitize(g: &Goodbye) -> (CloseCode, String) {
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

/// Encode one outgoing message as a server (unmasked) data frame.
pub(crate) fn encode(
    mode: WsMode,
    packer: &dyn Packer,
    id: u32,
    seq: u32,
    body: &[u8],
    out: &mut BytesMut,
) -> std::result::Result<(), PackError> {
    match mode {
        WsMode::Messages => {
            let opcode = if id == TEXT {
                if std::str::from_utf8(body).is_err() {
                    return Err(PackError::Malformed(
                        "text message is not valid UTF-8".into(),
                    ));
                }
                OpData::Text
            } else {
                OpData::Binary
            };
            let header = data_header(opcode);
            header
                .format(body.len() as u64, &mut out.writer())
                .map_err(|e| PackError::Malformed(e.to_string()))?;
            out.extend_from_slice(body);
            Ok(())
        }
        WsMode::Packer => {
            // Reserve the header, let the packer write the payload after
            // it, then fill the header in (moving the payload only if the
            // guess of the header's size was wrong).
            let header = data_header(OpData::Binary);
            let start = out.len();
            let guess = header.len((body.len() + PACKER_GUESS) as u64);
            out.put_bytes(0, guess);
            packer.encode(id, seq, body, out)?;
            let len = out.len() - start - guess;
            let need = header.len(len as u64);
            if need > guess {
                out.put_bytes(0, need - guess);
                out.copy_within(start + guess..start + guess + len, start + need);
            } else if need < guess {
                out.copy_within(start + guess..start + guess + len, start + need);
                out.truncate(start + need + len);
            }
            let mut slot: &mut [u8] = &mut out[start..start + need];
            header
                .format(len as u64, &mut slot)
                .map_err(|e| PackError::Malformed(e.to_string()))
        }
    }
}

fn data_header(opcode: OpData) -> FrameHeader {
    FrameHeader {
        is_final: true,
        opcode: OpCode::Data(opcode),
        ..FrameHeader::default()
    }
}

/// The WebSocket upgrade request: path, query parameters and headers.
///
/// Handed to [`Builder::ws_on_upgrade`] and then kept as connection data:
/// read it from any handler with `ctx.data::<WsRequest>()` (or
/// [`Session::ws_request`]). Stored compactly (one string plus offsets);
/// remove it with `remove_data::<WsRequest>()` if the memory matters.
#[derive(Clone)]
pub struct WsRequest {
    text: Box<str>,
    path: Span,
    query: Option<Span>,
    params: Box<[(Span, Span)]>,
    headers: Box<[(Span, Span)]>,
}

#[derive(Clone, Copy)]
struct Span(u32, u32);

impl WsRequest {
    fn from_http(request: &Request) -> WsRequest {
        let mut text = String::new();
        let mut push = |s: &str| {
            let start = text.len() as u32;
            text.push_str(s);
            Span(start, text.len() as u32)
        };
        let uri = request.uri();
        let path = push(uri.path());
        let query = uri.query().map(&mut push);
        let params = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (push(&form_decode(k)), push(&form_decode(v)))
            })
            .collect();
        // The handshake's own headers are spent once the 101 is written;
        // not keeping them saves ~150 bytes per connection.
        let spent = [
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
        ];
        let headers = request
            .headers()
            .iter()
            .filter(|(k, _)| !spent.contains(&k.as_str()))
            .map(|(k, v)| {
                (
                    push(k.as_str()),
                    push(&String::from_utf8_lossy(v.as_bytes())),
                )
            })
            .collect();
        WsRequest {
            text: text.into_boxed_str(),
            path,
            query,
            params,
            headers,
        }
    }

    fn get(&self, span: Span) -> &str {
        self.text
            .get(span.0 as usize..span.1 as usize)
            .unwrap_or("")
    }

    /// The request path as sent (percent-encoded), without the query, e.g.
    /// `/chat`.
    pub fn path(&self) -> &str {
        self.get(self.path)
    }

    /// The raw query string (after `?`), if any.
    pub fn query_string(&self) -> Option<&str> {
        self.query.map(|s| self.get(s))
    }

    /// The first value of query parameter `name` (decoded: `%XX` and `+`).
    ///
    /// ```
    /// let builder = netloom::Server::builder().ws_on_upgrade(|_session, req| {
    ///     let room = req.query("room").unwrap_or("lobby");
    ///     if room.len() > 32 { Err(400) } else { Ok(()) }
    /// });
    /// # drop(builder);
    /// ```
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_pairs().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Every query parameter in order, decoded (a key without `=` has an
    /// empty value).
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.params
            .iter()
            .map(|(k, v)| (self.get(*k), self.get(*v)))
    }

    /// The first value of header `name` (case-insensitive); see
    /// [`headers`](Self::headers) for the ones not kept.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header in order; names in lowercase. The handshake's own
    /// headers (`Upgrade`, `Connection`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version`) are not kept.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers
            .iter()
            .map(|(k, v)| (self.get(*k), self.get(*v)))
    }
}

impl fmt::Debug for WsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsRequest")
            .field("path", &self.path())
            .field("query", &self.query_string())
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; malformed escapes stay as they are, invalid UTF-8 becomes U+FFFD.
fn form_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Builder {
    /// Listen for WebSocket connections on `addr` (`ws://`; `wss://` when
    /// the server has `tls(...)`, feature `tls`). Same routes, middleware and
    /// hooks as [`bind`](Builder::bind) listeners; see [`WsMode`] for how
    /// messages map.
    ///
    /// # Errors
    ///
    /// As [`bind`](Builder::bind).
    pub fn bind_ws(self, addr: impl ToSocketAddrs) -> Result<Self> {
        self.bind_protocol(addr, Protocol::WebSocket)
    }

    /// How WebSocket messages map to netloom messages. Default:
    /// [`WsMode::Messages`].
    pub fn ws_mode(mut self, mode: WsMode) -> Self {
        self.layers.ws.mode = mode;
        self
    }

    /// Run when a WebSocket upgrade request has been read and checked, on
    /// the loop thread, after `on_open` (which runs at TCP accept). Return
    /// `Err(status)` to refuse: the client gets that HTTP status (400–599;
    /// other values become 403), the connection closes with
    /// [`CloseReason::UpgradeRejected`] and `on_close` runs. The request is
    /// kept as connection data either way.
    ///
    /// ```no_run
    /// let _server = netloom::Server::builder()
    ///     .ws_on_upgrade(|session, req| match req.query("token") {
    ///         Some(t) if t == "secret" => {
    ///             session.set_data(String::from("authenticated"));
    ///             Ok(())
    ///         }
    ///         _ => Err(401),
    ///     })
    ///     .bind_ws("127.0.0.1:6568")?
    ///     .start()?;
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn ws_on_upgrade<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut Session<'_>, &WsRequest) -> std::result::Result<(), u16> + Send + Sync + 'static,
    {
        self.layers.ws.on_upgrade = Some(Arc::new(hook));
        self
    }

    /// Largest incoming WebSocket message (after reassembling fragments);
    /// over it the connection is closed with 1009. Default:
    /// `max_body_length` in message mode, `max_body_length` + 1 KiB in
    /// packer mode (1 MiB and 1 MiB + 1 KiB with default settings).
    pub fn ws_max_message(mut self, bytes: usize) -> Self {
        self.layers.ws.max_message = Some(bytes);
        self
    }

    /// Largest incoming WebSocket frame payload; over it the connection is
    /// closed with 1009. Default: the message limit.
    pub fn ws_max_frame(mut self, bytes: usize) -> Self {
        self.layers.ws.max_frame = Some(bytes);
        self
    }
}

impl Session<'_> {
    /// Send a text message: `send(ws::TEXT, text)`. On a WebSocket
    /// connection in message mode this is a text frame.
    ///
    /// # Errors
    ///
    /// As [`send`](Session::send).
    pub fn send_text(&self, text: &str) -> Result<()> {
        let id = self.id;
        self.core
            .send(id.key as usize, id.generation, TEXT, 0, text.as_bytes())
    }

    /// Send a binary message: `send(ws::BINARY, data)`. On a WebSocket
    /// connection in message mode this is a binary frame.
    ///
    /// # Errors
    ///
    /// As [`send`](Session::send).
    pub fn send_binary(&self, data: impl AsRef<[u8]>) -> Result<()> {
        let id = self.id;
        self.core
            .send(id.key as usize, id.generation, BINARY, 0, data.as_ref())
    }

    /// Close with a WebSocket close frame carrying `code` and `reason`
    /// (at most 123 bytes; a code that may not be sent becomes 1000), after
    /// what is queued; `on_close` gets [`CloseReason::Local`]. On other
    /// connections the same as [`close`](Session::close).
    pub fn close_with(&self, code: u16, reason: &str) {
        let goodbye = Goodbye {
            code,
            reason: reason.into(),
        };
        self.core.close_with(
            self.id.key as usize,
            self.id.generation,
            CloseReason::Local,
            Some(&goodbye),
        );
    }

    /// The WebSocket upgrade request of this connection (`None` for raw
    /// TCP connections, or before the upgrade).
    pub fn ws_request(&self) -> Option<&WsRequest> {
        self.data()
    }
}

impl ConnHandle {
    /// Send a text message from any thread: `send(ws::TEXT, text)`.
    ///
    /// # Errors
    ///
    /// As [`send`](ConnHandle::send).
    pub fn send_text(&self, text: &str) -> Result<()> {
        self.send(TEXT, text)
    }

    /// Send a binary message from any thread: `send(ws::BINARY, data)`.
    ///
    /// # Errors
    ///
    /// As [`send`](ConnHandle::send).
    pub fn send_binary(&self, data: impl AsRef<[u8]>) -> Result<()> {
        self.send(BINARY, data)
    }

    /// Close with a WebSocket close frame; see [`Session::close_with`].
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] when the server is gone.
    pub fn close_with(&self, code: u16, reason: &str) -> Result<()> {
        let goodbye = Goodbye {
            code,
            reason: reason.into(),
        };
        let id = self.id;
        let local = reactor::with_current(&self.server, id.loop_index(), |core| {
            core.close_with(
                id.key as usize,
                id.generation,
                CloseReason::Local,
                Some(&goodbye),
            )
        });
        if local.is_some() {
            return Ok(());
        }
        self.server.push(
            id.loop_index(),
            0,
            Command::Close(id, Some(Box::new(goodbye))),
        )
    }
}

impl Hub {
    /// Broadcast a text message: `broadcast(ws::TEXT, text)`.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Hub::broadcast).
    pub fn broadcast_text(&self, text: &str) -> Result<()> {
        self.broadcast(TEXT, text)
    }

    /// Broadcast a binary message: `broadcast(ws::BINARY, data)`.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Hub::broadcast).
    pub fn broadcast_binary(&self, data: impl AsRef<[u8]>) -> Result<()> {
        self.broadcast(BINARY, data)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use proptest::prelude::*;

    use super::*;
    use crate::conn::pool::Pool;
    use crate::conn::write::WriteQueue;
    use crate::context::TypeMap;
    use crate::packer::LengthPacker;

    /// One WebSocket session driven as the event loop drives it: bytes in,
    /// messages and queued output out.
    struct Harness {
        settings: WsSettings,
        session: WsSession,
        queue: Option<Box<WriteQueue>>,
        pool: RefCell<Pool>,
        stream: BytesMut,
        msgs: Vec<Message>,
        data: TypeMap,
        plain: BytesMut,
    }

    impl Harness {
        fn new(mode: WsMode, max_message: usize) -> Harness {
            let mut settings = WsSettings {
                mode,
                max_message: Some(max_message),
                ..WsSettings::default()
            };
            settings.validate(&Config::default()).unwrap();
            Harness {
                session: settings.session(),
                settings,
                queue: None,
                pool: RefCell::new(Pool::default()),
                stream: BytesMut::new(),
                msgs: Vec::new(),
                data: TypeMap::default(),
                plain: BytesMut::new(),
            }
        }

        /// Feed bytes; accept an upgrade when one completes (as the loop
        /// does when the hook says yes).
        fn feed(&mut self, input: &[u8]) -> std::result::Result<(), CloseReason> {
            let mut sink = Sink {
                stream: &mut self.stream,
                messages: &mut self.msgs,
                data: &mut self.data,
                out: QueueRef {
                    queue: &mut self.queue,
                    pool: &self.pool,
                },
                plain: &mut self.plain,
            };
            let incoming = self.session.receive(input, &mut sink)?;
            if incoming.upgrade.is_some() {
                let out = QueueRef {
                    queue: &mut self.queue,
                    pool: &self.pool,
                };
                self.session.finish_upgrade(&self.settings, Ok(()), out)?;
                return self.feed(&[]);
            }
            Ok(())
        }

        fn output(&mut self) -> Vec<u8> {
            let mut out = Vec::new();
            if let Some(q) = self.queue.as_mut() {
                while !q.is_empty() {
                    q.write_to(&mut out).unwrap();
                }
            }
            out
        }
    }

    const REQUEST: &[u8] = b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    proptest! {
        /// Any split of a request and its frames gives the same messages.
        #[test]
        fn any_split_gives_the_same_messages(
            texts in proptest::collection::vec("\\PC{0,40}", 1..5),
            binary in proptest::collection::vec(any::<u8>(), 0..3000),
            mask in any::<[u8; 4]>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut wire = REQUEST.to_vec();
            for t in &texts {
                wire.extend(client_frame(0x81, t.as_bytes(), mask));
            }
            // The binary message in two fragments with a ping between.
            let half = binary.len() / 2;
            wire.extend(client_frame(0x02, &binary[..half], mask));
            wire.extend(client_frame(0x89, b"p", mask));
            wire.extend(client_frame(0x80, &binary[half..], mask));
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            points.sort_unstable();
            let mut h = Harness::new(WsMode::Messages, 1 << 20);
            let mut from = 0;
            for p in points.into_iter().chain([wire.len()]) {
                h.feed(&wire[from..p]).unwrap();
                from = p;
            }
            let mut expected: Vec<Message> =
                texts.iter().map(|t| Message::new(TEXT, Bytes::from(t.clone()))).collect();
            expected.push(Message::new(BINARY, Bytes::from(binary)));
            prop_assert_eq!(&h.msgs, &expected);
            let out = h.output();
            prop_assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            prop_assert!(out.ends_with(&[0x8a, 0x01, b'p']), "pong last");
        }

        /// The frame tracker finds the same boundaries whatever the split.
        #[test]
        fn frame_tracker_follows_any_split(
            frames in proptest::collection::vec(
                (any::<bool>(), 0u8..3, 0usize..70000, any::<bool>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = Vec::new();
            let mut fragmented = false;
            for (fin, opcode, len, masked) in &frames {
                let mut f = client_frame((u8::from(*fin) << 7) | opcode, &vec![0; *len], [1, 2, 3, 4]);
                if !masked {
                    // Drop the mask bit and key (the tracker must follow both).
                    f[1] &= 0x7f;
                    let at = match f[1] { 126 => 4, 127 => 10, _ => 2 };
                    f.drain(at..at + 4);
                }
                wire.extend(f);
                fragmented = !fin;
            }
            let at = cut.index(wire.len() + 1);
            let mut t = FrameTracker::default();
            t.feed(&wire[..at]);
            t.feed(&wire[at..]);
            prop_assert_eq!(t.at_boundary(), !fragmented);
            prop_assert_eq!(t.big, frames.iter().any(|f| f.2 as u64 >= SHRINK_AFTER));
            if at < wire.len() && at > 0 {
                let mut half = FrameTracker::default();
                half.feed(&wire[..at]);
                let inside = half.have != 0 || half.left != 0;
                prop_assert!(!(inside && half.at_boundary()));
            }
        }

        /// Arbitrary bytes after the upgrade never panic; a failure always
        /// comes with a close frame.
        #[test]
        fn garbage_frames_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..600)) {
            for mode in [WsMode::Messages, WsMode::Packer] {
                let mut h = Harness::new(mode, 256);
                h.feed(REQUEST).unwrap();
                let head = h.output();
                prop_assert!(head.starts_with(b"HTTP/1.1 101"));
                match h.feed(&junk) {
                    Ok(()) => {}
                    Err(CloseReason::WsProtocol { code, .. }) => {
                        // Control frames only (pongs, then the close).
                        let out = h.output();
                        let mut at = 0;
                        let mut last = None;
                        while at + 2 <= out.len() {
                            last = Some(at);
                            at += 2 + usize::from(out[at + 1]);
                        }
                        prop_assert_eq!(at, out.len());
                        let last = last.unwrap_or(0);
                        prop_assert_eq!(out.get(last), Some(&0x88));
                        prop_assert_eq!(out.get(last + 2..last + 4), Some(&code.to_be_bytes()[..]));
                    }
                    Err(CloseReason::WsClosed { .. }) => {}
                    Err(other) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }

        /// Arbitrary bytes as an upgrade request never panic: pending,
        /// upgraded, or refused with an HTTP status.
        #[test]
        fn garbage_requests_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut h = Harness::new(WsMode::Messages, 1024);
            match h.feed(&junk) {
                Ok(()) => {}
                Err(CloseReason::BadUpgrade(_)) => {
                    prop_assert!(h.output().starts_with(b"HTTP/1.1 4"));
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn refused_upgrade_drops_frames_queued_meanwhile() {
        let mut h = Harness::new(WsMode::Messages, 1024);
        let mut sink = Sink {
            stream: &mut h.stream,
            messages: &mut h.msgs,
            data: &mut h.data,
            out: QueueRef {
                queue: &mut h.queue,
                pool: &h.pool,
            },
            plain: &mut h.plain,
        };
        let incoming = h.session.receive(REQUEST, &mut sink).unwrap();
        assert!(incoming.upgrade.is_some());
        let mut out = QueueRef {
            queue: &mut h.queue,
            pool: &h.pool,
        };
        out.get().extend(b"a frame sent by on_open");
        let reason = h
            .session
            .finish_upgrade(&h.settings, Err(401), out)
            .unwrap_err();
        assert!(matches!(reason, CloseReason::UpgradeRejected(401)));
        let answer = String::from_utf8(h.output()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{answer}"
        );
        assert!(!answer.contains("on_open"));
    }

    #[test]
    fn frames_queued_while_upgrading_follow_the_101() {
        let mut h = Harness::new(WsMode::Messages, 1024);
        let mut out = QueueRef {
            queue: &mut h.queue,
            pool: &h.pool,
        };
        out.get()
            .encode_with(|b| {
                encode(
                    WsMode::Messages,
                    &LengthPacker::default(),
                    TEXT,
                    0,
                    b"hi",
                    b,
                )
            })
            .unwrap();
        h.feed(REQUEST).unwrap();
        let out = h.output();
        assert!(out.starts_with(b"HTTP/1.1 101"));
        assert!(out.ends_with(b"\r\n\r\n\x81\x02hi"));
    }

    #[test]
    fn rfc6455_accept_key() {
        // RFC 6455 section 1.3.
        let key = tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    fn frame(mode: WsMode, id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(mode, &LengthPacker::default(), id, 0, body, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn server_frames_match_rfc6455_examples() {
        // RFC 6455 section 5.7: unmasked text "Hello".
        assert_eq!(
            frame(WsMode::Messages, TEXT, b"Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        // 256 bytes binary: 16-bit length; 65536 bytes: 64-bit length.
        let f = frame(WsMode::Messages, BINARY, &[7; 256]);
        assert_eq!(&f[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(f.len(), 4 + 256);
        let f = frame(WsMode::Messages, BINARY, &[7; 65536]);
        assert_eq!(&f[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(f.len(), 10 + 65536);
    }

    #[test]
    fn text_must_be_utf8() {
        let mut out = BytesMut::new();
        let r = encode(
            WsMode::Messages,
            &LengthPacker::default(),
            TEXT,
            0,
            b"\xff",
            &mut out,
        );
        assert!(matches!(r, Err(PackError::Malformed(_))));
    }

    #[test]
    fn packer_mode_wraps_one_packer_frame_at_every_header_size() {
        // Around each header-size boundary, so guesses are right and wrong.
        for len in [
            0, 100, 109, 110, 117, 118, 125, 126, 65000, 65519, 65520, 65527, 65528, 70000,
        ] {
            let body = vec![9u8; len];
            let f = frame(WsMode::Packer, 5, &body);
            let payload = len + 8;
            let (head, rest) = match payload {
                0..=125 => (vec![0x82, payload as u8], &f[2..]),
                126..=65535 => {
                    let mut h = vec![0x82, 126];
                    h.extend_from_slice(&(payload as u16).to_be_bytes());
                    (h, &f[4..])
                }
                _ => {
                    let mut h = vec![0x82, 127];
                    h.extend_from_slice(&(payload as u64).to_be_bytes());
                    (h, &f[10..])
                }
            };
            assert_eq!(&f[..head.len()], &head[..], "len {len}");
            let mut packed = BytesMut::new();
            LengthPacker::default()
                .encode(5, 0, &body, &mut packed)
                .unwrap();
            assert_eq!(rest, &packed[..], "len {len}");
        }
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%20c%2Fd"), "a b c/d");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert_eq!(form_decode("%E2%82%AC"), "€");
        assert_eq!(form_decode("%FF"), "\u{fffd}");
    }

    #[test]
    fn request_fields() {
        let raw = b"GET /chat/room?name=J%C3%B6rg&flag&x=1+2&x=3 HTTP/1.1\r\n\
            Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
            X-Token: abc\r\n\r\n";
        let (size, req) = <Request as TryParse>::try_parse(raw).unwrap().unwrap();
        assert_eq!(size, raw.len());
        let r = WsRequest::from_http(&req);
        assert_eq!(r.path(), "/chat/room");
        assert_eq!(r.query_string(), Some("name=J%C3%B6rg&flag&x=1+2&x=3"));
        assert_eq!(r.query("name"), Some("Jörg"));
        assert_eq!(r.query("flag"), Some(""));
        assert_eq!(r.query("x"), Some("1 2"));
        assert_eq!(r.query_pairs().filter(|(k, _)| *k == "x").count(), 2);
        assert_eq!(r.query("missing"), None);
        assert_eq!(r.header("x-token"), Some("abc"));
        assert_eq!(r.header("HOST"), Some("localhost"));
        assert_eq!(r.headers().count(), 2, "handshake headers are not kept");
        assert_eq!(r.header("upgrade"), None);
    }

    #[test]
    fn goodbye_is_sanitized() {
        let g = Goodbye {
            code: 1005,
            reason: "é".repeat(100).into(),
        };
        let (code, text) = sanitize(&g);
        assert_eq!(u16::from(code), 1000);
        assert!(text.len() <= 123 && text.len() % 2 == 0);
        let (code, _) = sanitize(&Goodbye {
            code: 4000,
            reason: "".into(),
        });
        assert_eq!(u16::from(code), 4000);
    }
}
