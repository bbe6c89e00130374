//! Custom packers through the server: one with `decode` only, a `peek`
//! that misbehaves, and one that cannot decode at all.

use bytes::{Buf, BytesMut};
use netloom::{
    CloseReason, Context, Error, LengthPacker, Message, PackError, Packer, Peek, Server,
};

use super::{assert_echoes, local_addr, read_raw, xorshift};
use crate::common::{echo, frame, start_tracked, Client};

/// Lines of at most 64 bytes, id 0: a packer with `decode` only (no `peek`).
struct Lines;

impl Packer for Lines {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) if end <= 64 => {
                let line = buf.split_to(end).freeze();
                buf.advance(1);
                Ok(Some(Message::new(0, line)))
            }
            Some(end) => Err(PackError::TooLong { len: end, max: 64 }),
            None if buf.len() > 64 => Err(PackError::TooLong {
                len: buf.len(),
                max: 64,
            }),
            None => Ok(None),
        }
    }

    fn encode(
        &self,
        _id: u32,
        _seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), PackError> {
        out.extend_from_slice(body);
        out.extend_from_slice(b"\n");
        Ok(())
    }
}

/// A packer that implements only `decode` (no `peek`) frames every message
/// through it: lines split across writes come back in order, and an
/// over-long line closes only its connection.
#[test]
fn a_packer_with_only_decode_serves_split_lines_in_order() {
    let (server, mut closes) = start_tracked(Server::builder().event_loops(1).packer(Lines).route(
        0,
        |ctx: &mut Context<'_>| {
            // The body stays borrowed while the context is changed.
            let line = ctx.body();
            ctx.values_mut().insert(line.len());
            ctx.reply(0, line.to_ascii_uppercase())
        },
    ));
    let mut c = Client::connect(server.local_addr());
    let text: String = (0..200).map(|i| format!("line {i} of many\n")).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let n = (1 + xorshift(&mut seed) as usize % 40).min(rest.len());
        c.send_raw(&rest[..n]);
        rest = &rest[n..];
    }
    let got = read_raw(&mut c, text.len());
    assert_eq!(String::from_utf8(got).unwrap(), text.to_uppercase());

    let mut bad = Client::connect(server.local_addr());
    bad.send_raw(&[b'x'; 100]);
    bad.expect_closed();
    let reason = closes.reason_for(local_addr(&bad));
    assert!(
        matches!(reason, CloseReason::Protocol(PackError::TooLong { .. })),
        "got {reason:?}"
    );
    c.send_raw(b"still here\n");
    assert_eq!(read_raw(&mut c, 11), b"STILL HERE\n");
}

/// The default wire format, except that a frame whose id is 13 makes
/// `peek` misbehave as its first body byte says: `p` panics, `r` reports a
/// body outside the frame, `z` reports an empty frame, `i` reports a frame
/// that is there as incomplete, `h` declares a frame of `usize::MAX` bytes
/// (a packer that forgot its limit).
struct Moody;

impl Packer for Moody {
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        let peeked = LengthPacker::default().peek(buf)?;
        match (&peeked, buf.get(8)) {
            (Peek::Frame { id: 13, .. }, Some(b'p')) => panic!("moody packer"),
            (Peek::Frame { id: 13, len, .. }, Some(b'r')) => Ok(Peek::Frame {
                id: 13,
                seq: 0,
                body: 8..len + 1,
                len: *len,
            }),
            (Peek::Frame { id: 13, .. }, Some(b'z')) => Ok(Peek::Frame {
                id: 13,
                seq: 0,
                body: 0..0,
                len: 0,
            }),
            (Peek::Frame { id: 13, .. }, Some(b'i')) => Ok(Peek::Incomplete { frame_len: Some(1) }),
            (Peek::Frame { id: 13, .. }, Some(b'h')) => Ok(Peek::Incomplete {
                frame_len: Some(usize::MAX),
            }),
            _ => Ok(peeked),
        }
    }

    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        LengthPacker::default().encode(id, seq, body, out)
    }
}

/// A `peek` that panics or reports an impossible frame closes only its
/// connection, with a typed reason, after the frames before it were
/// handled; the server keeps serving everyone else.
#[test]
fn a_misbehaving_peek_closes_only_its_connection() {
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .packer(Moody)
            .route(1, echo)
            .route(13, echo),
    );
    let mut good = Client::connect(server.local_addr());
    assert_echoes(&mut good, b"before");
    for (mood, expected) in [
        (b'p', "panic"),
        (b'r', "range"),
        (b'z', "empty"),
        (b'i', "incomplete"),
    ] {
        let mut bad = Client::connect(server.local_addr());
        // A good frame, then the bad one, in one write: the good one is
        // still answered.
        let mut wire = frame(1, b"first");
        wire.extend_from_slice(&frame(13, &[mood]));
        bad.send_raw(&wire);
        assert_eq!(bad.recv(), (1, b"first".to_vec()), "{expected}");
        bad.expect_closed();
        let reason = closes.reason_for(local_addr(&bad));
        match expected {
            "panic" => assert!(matches!(reason, CloseReason::HandlerPanic), "{reason:?}"),
            _ => assert!(
                matches!(reason, CloseReason::Protocol(PackError::Malformed(_))),
                "{expected}: {reason:?}"
            ),
        }
        assert_echoes(&mut good, expected.as_bytes());
    }

    // A declared length the packer did not check reserves at most
    // max_body_length plus one read up front (no capacity-overflow panic
    // on the loop): the connection just waits for its frame, and every
    // connection on that loop carries on.
    let mut waiting = Client::connect(server.local_addr());
    let mut wire = frame(1, b"first");
    wire.extend_from_slice(&frame(13, b"h"));
    waiting.send_raw(&wire);
    assert_eq!(waiting.recv(), (1, b"first".to_vec()));
    assert_echoes(&mut good, b"after a huge declared length");
    let mut later = Client::connect(server.local_addr());
    assert_echoes(&mut later, b"the loop still accepts");
    assert_eq!(server.stats().connections, 3, "{}", server.stats());
}

/// A packer that implements neither `peek` nor `decode` is refused when
/// the server starts, not found out on every connection's first byte.
#[test]
fn a_packer_that_cannot_decode_is_a_config_error() {
    struct EncodeOnly;
    impl Packer for EncodeOnly {
        fn encode(
            &self,
            id: u32,
            seq: u32,
            body: &[u8],
            out: &mut BytesMut,
        ) -> Result<(), PackError> {
            LengthPacker::default().encode(id, seq, body, out)
        }
    }
    let started = Server::builder()
        .packer(EncodeOnly)
        .route(1, echo)
        .bind("127.0.0.1:0")
        .expect("bind")
        .start();
    match started {
        Err(Error::Config(why)) => assert!(why.contains("neither"), "{why}"),
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("a packer that cannot decode was accepted"),
    }
}
