//! WebSocket compiled out (feature `ws` off): the same interface as `ws/`,
//! with uninhabited types, so no WebSocket session or setting can exist.

use bytes::BytesMut;

use crate::buf::LazyQueue;
use crate::codec::ServerPacker;
use crate::config::Config;
use crate::error::{CloseReason, PackError, Result};
use crate::transport::{Goodbye, Incoming, Sink};

/// No WebSocket settings exist without the `ws` feature.
pub(crate) enum WsSettings {}

/// No WebSocket session exists without the `ws` feature.
pub(crate) enum WsSession {}

/// An upgrade request; never made without the `ws` feature.
#[derive(Debug)]
pub(crate) enum WsRequest {}

impl WsSettings {
    pub(crate) fn validate(&mut self, _config: &Config) -> Result<()> {
        match *self {}
    }

    pub(crate) fn session(&self) -> WsSession {
        match *self {}
    }

    pub(crate) fn carries_seq(&self) -> bool {
        match *self {}
    }

    pub(crate) fn encode(
        &self,
        _packer: &ServerPacker,
        _id: u32,
        _seq: u32,
        _body: &[u8],
        _out: &mut BytesMut,
    ) -> std::result::Result<(), PackError> {
        match *self {}
    }
}

impl WsSession {
    pub(crate) fn is_upgrading(&self) -> bool {
        match *self {}
    }

    pub(crate) fn awaits_peer_close(&self) -> bool {
        match *self {}
    }

    pub(crate) fn in_unit(&self) -> bool {
        match *self {}
    }

    pub(crate) fn held(&self) -> usize {
        match *self {}
    }

    pub(crate) fn peer_gone(&mut self) {
        match *self {}
    }

    pub(crate) fn receive(
        &mut self,
        _input: &[u8],
        _sink: &mut Sink<'_>,
    ) -> std::result::Result<Incoming, CloseReason> {
        match *self {}
    }

    pub(crate) fn finish_upgrade(
        &mut self,
        _settings: &WsSettings,
        _verdict: std::result::Result<(), u16>,
        _out: LazyQueue<'_>,
    ) -> std::result::Result<(), CloseReason> {
        match *self {}
    }

    pub(crate) fn begin_close(
        &mut self,
        _reason: &CloseReason,
        _goodbye: Option<&Goodbye>,
        _out: LazyQueue<'_>,
    ) {
        match *self {}
    }

    pub(crate) fn ping(&mut self, _out: LazyQueue<'_>) {
        match *self {}
    }
}
