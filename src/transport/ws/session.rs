//! [`WsSession`]: one connection's WebSocket state, from the upgrade
//! request to the close handshake, driving tungstenite's
//! `WebSocketContext` over an in-memory adapter.

use std::sync::Arc;

use bytes::Bytes;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketContext};
use tungstenite::Message as WsMessage;

use super::client::WsDial;
use super::close::{close_frame_for, fail, peer_close, waits_for_peer_close};
use super::feed::{feed, Fed};
use super::handshake;
use super::io::Io;
use super::tracker::{FrameTracker, Limits};
use super::{WsMode, WsSettings};
use crate::buf::queue::WriteQueue;
use crate::buf::LazyQueue;
use crate::error::CloseReason;
use crate::transport::{Goodbye, Incoming, Sink};

/// One connection's WebSocket state.
pub(crate) struct WsSession {
    mode: WsMode,
    /// The client's end (a dial): masks what it sends, expects the
    /// server's frames unmasked.
    role: Role,
    state: State,
}

enum State {
    /// A dial's upgrade: the request (while not all written), the
    /// `Sec-WebSocket-Accept` the answer must carry, and the answer so far.
    Dialing {
        request: Option<Box<WriteQueue>>,
        accept: String,
        head: Vec<u8>,
        dial: Arc<WsDial>,
    },
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
            role: Role::Server,
            state: State::Request(Vec::new()),
        }
    }

    /// A WebSocket dial between connections: its frames' kind, no traffic.
    pub(crate) fn down(dial: &Arc<WsDial>) -> WsSession {
        WsSession {
            mode: dial.mode,
            role: Role::Client,
            state: State::Done,
        }
    }

    /// One connect attempt of a WebSocket dial: its upgrade request waits
    /// to be written (ahead of the write queue, which is held back until
    /// the server's answer).
    ///
    /// # Errors
    ///
    /// `BadUpgrade` if the request does not build.
    pub(crate) fn dialing(dial: &Arc<WsDial>) -> Result<WsSession, CloseReason> {
        let (request, accept) = dial
            .request()
            .map_err(|e| CloseReason::BadUpgrade(e.to_string()))?;
        let mut queue = Box::<WriteQueue>::default();
        queue.push_front(Bytes::from(request));
        Ok(WsSession {
            mode: dial.mode,
            role: Role::Client,
            state: State::Dialing {
                request: Some(queue),
                accept,
                head: Vec::new(),
                dial: dial.clone(),
            },
        })
    }

    /// A dial's upgrade request not yet written in full.
    pub(crate) fn request_to_write(&mut self) -> Option<&mut WriteQueue> {
        match &mut self.state {
            State::Dialing { request, .. } => request.as_deref_mut(),
            _ => None,
        }
    }

    /// A dial's upgrade request waits to be written.
    pub(crate) fn owes_request(&self) -> bool {
        matches!(
            &self.state,
            State::Dialing {
                request: Some(_),
                ..
            }
        )
    }

    /// The request was written: drop its queue.
    pub(crate) fn request_written(&mut self) {
        if let State::Dialing { request, .. } = &mut self.state {
            if request.as_ref().is_some_and(|q| q.is_empty()) {
                *request = None;
            }
        }
    }

    /// This end is a dial's (frames it sends are masked).
    pub(crate) fn is_client(&self) -> bool {
        self.role == Role::Client
    }

    /// Binary messages carry packer frames.
    pub(crate) fn packer_mode(&self) -> bool {
        self.mode == WsMode::Packer
    }

    /// The upgrade is not complete yet (no frames flow; the write queue is
    /// held back).
    pub(crate) fn is_upgrading(&self) -> bool {
        matches!(
            self.state,
            State::Request(_) | State::Deciding { .. } | State::Dialing { .. }
        )
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
            State::Dialing { head, .. } => head.capacity(),
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
            State::Dialing { head, .. } => {
                head.extend_from_slice(input);
                self.parse_answer(sink)
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

    /// A dial's upgrade: the server's answer so far. Once it is whole and
    /// sound the session opens; the frames behind it wait in the tracker
    /// for the reactor's next decode (after `on_open`).
    fn parse_answer(&mut self, _sink: &mut Sink<'_>) -> Result<Incoming, CloseReason> {
        let State::Dialing {
            accept, head, dial, ..
        } = &mut self.state
        else {
            return Ok(Incoming::default());
        };
        let answer = dial.answer(head, accept);
        let (response, size) = match answer {
            Ok(Some(answer)) => answer,
            Ok(None) => return Ok(Incoming::default()),
            Err(reason) => {
                // Still an attempt that failed in its handshake (counted
                // so); what it received is let go.
                *head = Vec::new();
                return Err(reason);
            }
        };
        let rest = head[size..].to_vec();
        let config = dial.config;
        self.state = State::Open {
            ctx: Box::new(WebSocketContext::new(Role::Client, Some(config))),
            closing: false,
            frames: FrameTracker::with_pending(rest),
        };
        Ok(Incoming {
            ws_response: Some(Box::new(response)),
            // What was queued while the upgrade was under way goes now.
            wants_write: true,
            ..Incoming::default()
        })
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
            client: self.role == Role::Client,
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
            **ctx = WebSocketContext::new(self.role, Some(config));
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
            // A dial's queue is its application's: held back (still
            // upgrading: it must not go to this socket) and kept for the
            // next attempt, or counted unflushed if there is none.
            State::Dialing { .. } => {}
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
