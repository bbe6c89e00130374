//! Drivers for the fuzz targets in `fuzz/`: the inbound frame reader and
//! the UDP datagram path, each run as the event loop runs it, over memory.
//! The WebSocket and TLS layers' drivers are in [`ws`] and [`tls`].

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use crate::buf::pool::Pool;
use crate::codec::reader::{Batch, FrameReader};
use crate::codec::{LengthPacker, Message, Packer, ServerPacker};
use crate::error::CloseReason;
use crate::transport::udp;

#[cfg(feature = "tls")]
pub(super) mod tls;
#[cfg(feature = "ws")]
pub(super) mod ws;

/// The peer every driver reports (it appears only in logs).
const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    1,
));

/// The default packer, or the application's.
fn server_packer(packer: Option<Box<dyn Packer>>) -> ServerPacker {
    match packer {
        None => ServerPacker::Length(LengthPacker::default()),
        Some(p) => ServerPacker::Custom(p),
    }
}

/// Copy a batch's messages out and hand it back to the reader.
fn drain(reader: &mut FrameReader, pool: &RefCell<Pool>, got: &mut Vec<Message>) {
    let batch = reader.take_batch();
    got.extend(batch.iter().map(|(id, seq, body, _, _)| Message {
        id,
        seq,
        body: Bytes::copy_from_slice(body),
    }));
    reader.finish(batch, pool);
}

/// Connections' inbound path: the loop's frame reader and pool, shared by
/// the connections, and each connection's partial frame, fed the bytes of
/// each read.
pub struct Reader {
    reader: FrameReader,
    pool: RefCell<Pool>,
    packer: ServerPacker,
    partials: Vec<Option<BytesMut>>,
    plain: bool,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("conns", &self.partials.len())
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader whose reads ask for `read_size` bytes (at least 1), with
    /// `packer` (`None`: the default [`LengthPacker`]), for `conns`
    /// connections (at least 1). `plain`: the bytes land straight in the
    /// stream (plain TCP); else they pass through an identity layer via
    /// the scratch buffer, as TLS and WebSocket do.
    pub fn new(
        packer: Option<Box<dyn Packer>>,
        read_size: usize,
        plain: bool,
        conns: usize,
    ) -> Self {
        Reader {
            reader: FrameReader::new(read_size.max(1)),
            pool: RefCell::new(Pool::default()),
            packer: server_packer(packer),
            partials: vec![None; conns.max(1)],
            plain,
        }
    }

    /// Bytes connection `conn` holds as its partial frame.
    ///
    /// # Panics
    ///
    /// For a connection that does not exist.
    pub fn partial_len(&self, conn: usize) -> usize {
        self.partials[conn].as_ref().map_or(0, BytesMut::len)
    }

    /// The allocation its partial frame keeps (what it counts as held).
    ///
    /// # Panics
    ///
    /// For a connection that does not exist.
    pub fn partial_capacity(&self, conn: usize) -> usize {
        self.partials[conn].as_ref().map_or(0, BytesMut::capacity)
    }

    /// Deliver `input`, which arrived together on connection `conn`, in
    /// reads of at most what each landing asks for; append the messages
    /// handled to `got`.
    ///
    /// # Errors
    ///
    /// The close reason; the messages before it are in `got`.
    ///
    /// # Panics
    ///
    /// For a connection that does not exist; if a read would grow its
    /// buffer or a landing offers no room (the reader's own invariants).
    pub fn feed(
        &mut self,
        conn: usize,
        mut input: &[u8],
        got: &mut Vec<Message>,
    ) -> Result<(), CloseReason> {
        let partial = &mut self.partials[conn];
        while !input.is_empty() {
            let (n, direct) = self.reader.landing(partial, self.plain).fill(input);
            input = &input[n..];
            let result = self.reader.decode(
                &self.packer,
                partial,
                &self.pool,
                n,
                direct,
                PEER,
                |bytes, stream, _| {
                    stream.extend_from_slice(bytes);
                    Ok(())
                },
            );
            drain(&mut self.reader, &self.pool, got);
            result?;
        }
        Ok(())
    }
}

/// The UDP datagram path: every frame of a datagram, or none.
pub struct Datagrams {
    packer: ServerPacker,
    batch: Batch,
}

impl fmt::Debug for Datagrams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagrams").finish_non_exhaustive()
    }
}

impl Datagrams {
    /// With `packer` (`None`: the default [`LengthPacker`]).
    pub fn new(packer: Option<Box<dyn Packer>>) -> Self {
        Datagrams {
            packer: server_packer(packer),
            batch: Batch::default(),
        }
    }

    /// Decode one datagram as a UDP listener does: the messages left for
    /// handling (none when it is dropped) and, if it was dropped, why.
    pub fn decode(&mut self, datagram: &[u8]) -> (Vec<Message>, Result<(), CloseReason>) {
        self.batch.clear();
        let datagram = BytesMut::from(datagram);
        let result = udp::decode_datagram(&self.packer, datagram, &mut self.batch, PEER);
        let got = self
            .batch
            .iter()
            .map(|(id, seq, body, _, _)| Message {
                id,
                seq,
                body: Bytes::copy_from_slice(body),
            })
            .collect();
        (got, result.map_err(|udp::Malformed(reason)| reason))
    }
}
