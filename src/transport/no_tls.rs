//! TLS compiled out (feature `tls` off): the same interface as `tls/`, with
//! uninhabited types, so no TLS session or acceptor can exist.

use std::io::{self, Write};

use bytes::BytesMut;

use super::Incoming;
use crate::buf::queue::WriteQueue;
use crate::buf::Flushed;
use crate::error::CloseReason;

/// No TLS settings exist without the `tls` feature.
#[derive(Clone)]
pub(crate) enum TlsAcceptor {}

/// No TLS session exists without the `tls` feature.
pub(crate) enum TlsSession {}

/// No dialed connection speaks TLS without the `tls` feature.
#[derive(Debug, Clone)]
pub(crate) enum TlsConnector {}

/// What a TLS handshake settled; never made without the `tls` feature.
#[derive(Debug)]
pub(crate) enum TlsInfo {}

impl TlsAcceptor {
    pub(crate) fn session(&self) -> Result<TlsSession, CloseReason> {
        match *self {}
    }
}

impl TlsConnector {
    pub(crate) fn check(&self) -> Result<(), String> {
        match *self {}
    }

    pub(crate) fn session(&self) -> Result<TlsSession, CloseReason> {
        match *self {}
    }
}

impl TlsSession {
    pub(crate) fn is_handshaking(&self) -> bool {
        match *self {}
    }

    pub(crate) fn receive(
        &mut self,
        _input: &mut [u8],
        _out: &mut BytesMut,
    ) -> Result<Incoming, CloseReason> {
        match *self {}
    }

    pub(crate) fn wants_write(&self) -> bool {
        match *self {}
    }

    pub(crate) fn close_notify(&mut self) {
        match *self {}
    }

    pub(crate) fn said_goodbye(&self) -> bool {
        match *self {}
    }

    pub(crate) fn owes_goodbye(&self) -> bool {
        match *self {}
    }

    pub(crate) fn in_unit(&self) -> bool {
        match *self {}
    }

    pub(crate) fn held(&self) -> usize {
        match *self {}
    }

    pub(crate) fn answer_peer_close(&mut self) -> bool {
        match *self {}
    }

    pub(crate) fn flush(
        &mut self,
        _queue: Option<&mut WriteQueue>,
        _w: &mut dyn Write,
    ) -> io::Result<Flushed> {
        match *self {}
    }
}
