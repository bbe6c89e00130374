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

/// An upgrade answer; never received without the `ws` feature.
#[derive(Debug)]
pub(crate) enum WsResponse {}

/// A WebSocket dial; never made without the `ws` feature.
#[derive(Debug, Clone)]
pub(crate) enum WsDial {}

impl WsDial {
    pub(crate) fn carries_seq(&self) -> bool {
        match *self {}
    }

    pub(crate) fn settle(&mut self, _config: &Config) -> Result<()> {
        match *self {}
    }
}

/// No WebSocket dial's frames exist without the `ws` feature.
pub(crate) fn encode_client(
    _packer_mode: bool,
    _packer: &ServerPacker,
    _msg: (u32, u32),
    _body: &[u8],
    _out: &mut BytesMut,
) -> std::result::Result<(), PackError> {
    Err(PackError::Malformed("WebSocket is compiled out".into()))
}

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
    pub(crate) fn dialing(
        dial: &std::sync::Arc<WsDial>,
    ) -> std::result::Result<WsSession, CloseReason> {
        match **dial {}
    }

    pub(crate) fn down(dial: &std::sync::Arc<WsDial>) -> WsSession {
        match **dial {}
    }

    pub(crate) fn request_to_write(&mut self) -> Option<&mut crate::buf::queue::WriteQueue> {
        match *self {}
    }

    pub(crate) fn request_written(&mut self) {
        match *self {}
    }

    pub(crate) fn owes_request(&self) -> bool {
        match *self {}
    }

    pub(crate) fn is_client(&self) -> bool {
        match *self {}
    }

    pub(crate) fn packer_mode(&self) -> bool {
        match *self {}
    }

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
