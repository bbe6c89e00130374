//! [`WsSession`]: one connection's WebSocket state, from the upgrade
//! request to the close handshake, driving tungstenite's
//! `WebSocketContext` over an in-memory adapter.

use std::io;

use bytes::Bytes;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketContext};
use tungstenite::Message as WsMessage;

use super::close::{close_frame_for, fail, failure_code, peer_close, waits_for_peer_close};
use super::handshake;
use super::io::Io;
use super::tracker::{FrameTracker, Limits};
use super::{WsMode, WsSettings, BINARY, TEXT};
use crate::buf::LazyQueue;
use crate::codec::Message;
use crate::error::CloseReason;
use crate::transport::{Goodbye, Incoming, Sink};

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

impl WsSession {
    pub(super) fn new(mode: WsMode) -> WsSession {
        WsSession {
            mode,
            state: State::Request(Vec::new()),
        }
    }

    /// The upgrade is not complete yet (no frames flow; the write queue is
    /// held back).
    pub(crate) fn is_upgrading(&self) -> bool {
        matches!(self.state, State::Request(_) | State::Deciding { .. })
    }

    /// Inside a frame or a fragmented message.
    pub(crate) fn in_unit(&self) -> bool {
        matches!(&self.state, State::Open { frames, .. } if frames.in_unit())
    }

    /// Bytes held for what is not complete yet: the upgrade request so
    /// far, or the frame and message in progress (see `FrameTracker::held`).
    pub(crate) fn held(&self) -> usize {
        match &self.state {
            State::Request(head) => head.capacity(),
            State::Deciding { response, rest } => response.capacity() + rest.capacity(),
            State::Open { frames, .. } => frames.held(),
            State::Done => 0,
        }
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
        match handshake::parse(head) {
            Ok(None) => Ok(Incoming::default()),
            Ok(Some(upgrade)) => {
                let rest = head[upgrade.size..].to_vec();
                self.state = State::Deciding {
                    response: upgrade.response,
                    rest,
                };
                Ok(Incoming {
                    upgrade: Some(Box::new(upgrade.request)),
                    ..Incoming::default()
                })
            }
            Err(refusal) => Err(self.refuse(refusal, &mut sink.out)),
        }
    }

    /// Answer the upgrade request with an HTTP error and stop. Anything
    /// queued meanwhile is dropped: it was meant for a WebSocket.
    fn refuse(&mut self, refusal: handshake::Refusal, out: &mut LazyQueue<'_>) -> CloseReason {
        out.discard();
        out.get()
            .extend(&handshake::refusal_response(refusal.status));
        self.state = State::Done;
        refusal.reason()
    }

    /// The application's verdict: answer 101 and start framing, or refuse.
    pub(crate) fn finish_upgrade(
        &mut self,
        settings: &WsSettings,
        verdict: std::result::Result<(), u16>,
        mut out: LazyQueue<'_>,
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
                // What came behind the request is walked on the next
                // receive (the reactor makes one at once).
                let ctx = WebSocketContext::new(Role::Server, Some(settings.config));
                self.state = State::Open {
                    ctx: Box::new(ctx),
                    closing: false,
                    frames: FrameTracker::with_pending(rest),
                };
                Ok(())
            }
            Err(status) => {
                let status = if (400..=599).contains(&status) {
                    status
                } else {
                    403
                };
                let refusal = handshake::Refusal {
                    status,
                    why: String::new(),
                };
                Err(self.refuse(refusal, &mut out))
            }
        }
    }

    /// Hand tungstenite the whole frames `input` completes (after what
    /// came behind the upgrade request), keeping a trailing partial frame.
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
        let config = ctx.get_config();
        let limit = |n: Option<usize>| n.map_or(u64::MAX, |n| n as u64);
        let limits = Limits {
            max_frame: limit(config.max_frame_size),
            max_message: limit(config.max_message_size),
            closing: *closing,
        };
        let mut wants_write = false;
        let mut stop = None;
        let pending = frames.take_pending();
        for bytes in [&pending[..], input] {
            if stop.is_some() {
                break;
            }
            let walked = frames.walk(bytes, limits, &mut |run| match feed(
                ctx,
                run,
                mode,
                limits.closing,
                sink,
                &mut wants_write,
            ) {
                Fed::More => true,
                other => {
                    stop = Some(other);
                    false
                }
            });
            if let Err((code, why)) = walked {
                let mut io = Io {
                    input: &[],
                    out: &mut sink.out,
                    wrote: false,
                };
                stop = Some(Fed::Failed(fail(ctx, &mut io, code, why)));
                wants_write |= io.wrote;
            }
        }
        let outcome = match stop {
            None | Some(Fed::More) => Ok(()),
            Some(Fed::Finished) => Err(None),
            Some(Fed::Closed(frame)) => Err(Some(peer_close(frame, frames.close_code()))),
            Some(Fed::Failed(reason)) => Err(Some(reason)),
        };
        if outcome.is_err() {
            self.state = State::Done;
        } else if frames.retained > 0 && frames.tungstenite_idle() && ctx.can_write() {
            // tungstenite holds no frame (it is only handed whole ones),
            // no message and no pending pong: start afresh to free the
            // buffer a large frame grew, even while the next frame is
            // partly kept in ours (a client streaming large messages has
            // one almost always; the buffer would double what it holds).
            let config = *ctx.get_config();
            **ctx = WebSocketContext::new(Role::Server, Some(config));
            frames.retained = 0;
        }
        match outcome {
            Ok(()) | Err(None) => Ok(Incoming {
                wants_write,
                ..Incoming::default()
            }),
            Err(Some(reason)) => Err(reason),
        }
    }

    /// The connection starts closing: queue our close frame after what is
    /// queued, or drop what can never be sent.
    pub(crate) fn begin_close(
        &mut self,
        reason: &CloseReason,
        goodbye: Option<&Goodbye>,
        mut out: LazyQueue<'_>,
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
                    Ok(()) if waits_for_peer_close(reason) => *closing = true,
                    // Closed for what it held or failed to do: no wait for
                    // its close frame (its context, and whatever message
                    // it buffers, go at once).
                    Ok(()) | Err(_) => self.state = State::Done,
                }
            }
            State::Open { .. } | State::Done => {}
        }
    }

    /// Heartbeat: a ping frame (nothing before the upgrade or while
    /// closing).
    pub(crate) fn ping(&mut self, mut out: LazyQueue<'_>) {
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

/// What tungstenite made of a run of whole frames.
enum Fed {
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
fn feed(
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
