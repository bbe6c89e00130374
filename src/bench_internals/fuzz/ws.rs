//! The WebSocket layer over its in-memory adapter, server and client side,
//! driven as the loop drives it (an upgrade accepted as soon as it is
//! complete; the frames behind it read at once).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;

use crate::buf::pool::Pool;
use crate::buf::queue::WriteQueue;
use crate::buf::LazyQueue;
use crate::codec::Message;
use crate::config::Config;
use crate::error::CloseReason;
use crate::transport::ws::{WsDial, WsMode, WsSession, WsSettings};
use crate::transport::Sink;

/// What a session's peer gets back, and what it delivered upwards.
#[derive(Default)]
struct Ends {
    queue: Option<Box<WriteQueue>>,
    pool: RefCell<Pool>,
    stream: BytesMut,
    plain: BytesMut,
}

impl Ends {
    fn out(&mut self) -> LazyQueue<'_> {
        LazyQueue {
            queue: &mut self.queue,
            pool: &self.pool,
            track: false,
        }
    }

    /// Empty the write queue into a vector.
    fn output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(q) = self.queue.as_mut() {
            while !q.is_empty() {
                if q.write_to(&mut out).is_err() {
                    break;
                }
            }
        }
        out
    }
}

fn settings(packer: bool, max_message: usize) -> Result<WsSettings, crate::Error> {
    let mut settings = WsSettings::default();
    if packer {
        settings.mode = WsMode::Packer;
    }
    settings.max_message = Some(max_message);
    settings.validate(&Config::default())?;
    Ok(settings)
}

/// A server's WebSocket session, from the upgrade request on.
pub struct WsServer {
    settings: WsSettings,
    session: WsSession,
    ends: Ends,
}

impl fmt::Debug for WsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer").finish_non_exhaustive()
    }
}

impl WsServer {
    /// A session in message mode, or with `packer` carrying packer frames
    /// in binary messages; messages of at most `max_message` bytes.
    ///
    /// # Errors
    ///
    /// `Error::Config` for a limit of 0.
    pub fn new(packer: bool, max_message: usize) -> crate::Result<Self> {
        let settings = settings(packer, max_message)?;
        Ok(WsServer {
            session: settings.session(),
            settings,
            ends: Ends::default(),
        })
    }

    /// Feed received bytes; accept an upgrade when one completes. Whole
    /// messages (message mode) are appended to `got`.
    ///
    /// # Errors
    ///
    /// The close reason.
    pub fn feed(&mut self, input: &[u8], got: &mut Vec<Message>) -> Result<(), CloseReason> {
        let ends = &mut self.ends;
        let mut sink = Sink {
            stream: &mut ends.stream,
            messages: got,
            out: LazyQueue {
                queue: &mut ends.queue,
                pool: &ends.pool,
                track: false,
            },
            plain: &mut ends.plain,
        };
        let incoming = self.session.receive(input, &mut sink)?;
        if incoming.upgrade.is_some() {
            self.session
                .finish_upgrade(&self.settings, Ok(()), self.ends.out())?;
            return self.feed(&[], got);
        }
        Ok(())
    }

    /// The packer stream so far (packer mode), taken.
    pub fn take_stream(&mut self) -> BytesMut {
        std::mem::take(&mut self.ends.stream)
    }

    /// What the session queued for the peer (101, pongs, close frames),
    /// taken.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.ends.output()
    }

    /// Bytes held for what is not complete yet (the upgrade head so far,
    /// or the frame and message in progress).
    pub fn held(&self) -> usize {
        self.session.held()
    }
}

/// A dial's WebSocket session (`Dial::ws("ws://localhost/")`), from its
/// upgrade request on.
pub struct WsClient {
    session: WsSession,
    ends: Ends,
}

impl fmt::Debug for WsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsClient").finish_non_exhaustive()
    }
}

impl WsClient {
    /// A dial in message mode, or with `packer` in packer mode.
    ///
    /// # Errors
    ///
    /// `Error::Config` if the dial does not settle.
    pub fn new(packer: bool) -> crate::Result<Self> {
        let (mut dial, _) = WsDial::parse("ws://localhost/")?;
        if packer {
            dial.mode = WsMode::Packer;
        }
        dial.settle(&Config::default())?;
        let session =
            WsSession::dialing(&Arc::new(dial)).map_err(|e| crate::Error::Config(e.to_string()))?;
        Ok(WsClient {
            session,
            ends: Ends::default(),
        })
    }

    /// The upgrade request to send (with its fresh key); marks it written.
    pub fn take_request(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(q) = self.session.request_to_write() {
            while !q.is_empty() {
                if q.write_to(&mut out).is_err() {
                    break;
                }
            }
        }
        self.session.request_written();
        out
    }

    /// Feed the server's bytes: its answer, then frames (read at once
    /// once the answer opened the session). Whole messages (message mode)
    /// are appended to `got`.
    ///
    /// # Errors
    ///
    /// The close reason.
    pub fn feed(&mut self, input: &[u8], got: &mut Vec<Message>) -> Result<(), CloseReason> {
        let ends = &mut self.ends;
        let mut sink = Sink {
            stream: &mut ends.stream,
            messages: got,
            out: LazyQueue {
                queue: &mut ends.queue,
                pool: &ends.pool,
                track: false,
            },
            plain: &mut ends.plain,
        };
        let incoming = self.session.receive(input, &mut sink)?;
        if incoming.ws_response.is_some() {
            return self.feed(&[], got);
        }
        Ok(())
    }

    /// The packer stream so far (packer mode), taken.
    pub fn take_stream(&mut self) -> BytesMut {
        std::mem::take(&mut self.ends.stream)
    }

    /// What the session queued for the server (pongs, close frames), taken.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.ends.output()
    }

    /// Bytes held for what is not complete yet (the upgrade head so far,
    /// or the frame and message in progress).
    pub fn held(&self) -> usize {
        self.session.held()
    }
}
