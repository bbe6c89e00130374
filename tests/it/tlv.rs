//! The TLV packer of `examples/tlv` (`seq | kind | len | data | "\r\n"`,
//! little-endian): unit tests of the packer from literal bytes, a property
//! test over arbitrary splits of the stream, and a real server over
//! loopback checking that replies carry their request's `seq`.
//!
//! Frames are written as literal bytes, never with the packer under test.

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;

use bytes::BytesMut;
use netloom::{Builder, CloseReason, ConnHandle, Message, PackError, Packer, Server, TlvPacker};
use proptest::prelude::*;

use crate::common::{Client, TIMEOUT};

/// seq 7, kind 1, data "hi".
const HI: &[u8] = b"\x07\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00hi\r\n";

fn decode_all(packer: &TlvPacker, buf: &mut BytesMut) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(msg) = packer.decode(buf).expect("valid frames") {
        out.push(msg);
    }
    out
}

fn malformed(r: Result<Option<Message>, PackError>) -> bool {
    matches!(r, Err(PackError::Malformed(_)))
}

// ---------------------------------------------------------------- packer

#[test]
fn decode_literal_frame() {
    let mut buf = BytesMut::from(HI);
    buf.extend_from_slice(b"\x08\x00"); // the start of the next frame
    let msg = TlvPacker::default().decode(&mut buf).unwrap().unwrap();
    assert_eq!((msg.seq, msg.id, &msg.body[..]), (7, 1, &b"hi"[..]));
    assert_eq!(&buf[..], b"\x08\x00");
}

#[test]
fn decode_empty_data_and_extreme_values() {
    let mut buf = BytesMut::from(
        &b"\xff\xff\xff\xff\x04\x03\x02\x01\x00\x00\x00\x00\r\n\
           \x00\x00\x00\x00\xff\xff\xff\xff\x01\x00\x00\x00\r\r\n"[..],
    );
    let got = decode_all(&TlvPacker::default(), &mut buf);
    let want = [
        Message {
            id: 0x0102_0304,
            seq: u32::MAX,
            body: "".into(),
        },
        Message {
            id: u32::MAX,
            seq: 0,
            body: "\r".into(),
        },
    ];
    assert_eq!(got, want);
    assert!(buf.is_empty());
}

#[test]
fn encode_around_writes_what_encode_writes_around_the_data() {
    let p = TlvPacker::default();
    let (mut before, mut after) = (BytesMut::new(), BytesMut::new());
    assert!(p.encode_around(1, 7, 2, &mut before, &mut after).unwrap());
    before.extend_from_slice(b"hi");
    before.extend_from_slice(&after);
    assert_eq!(&before[..], HI);
}

#[test]
fn the_tlv_packer_carries_a_sequence_number() {
    // Requests on it find their replies (on a packer that says no they
    // fail at once with `Error::NoSeq`).
    assert!(TlvPacker::default().carries_seq());
}

#[test]
fn encoding_reserves_the_frame_not_more() {
    let mut out = BytesMut::new();
    TlvPacker::default()
        .encode(1, 7, &[0; 1000], &mut out)
        .unwrap();
    assert_eq!(out.len(), 1000 + 14);
    // One reservation of the frame's size: neither short of it (a second,
    // doubling one) nor a multiple of it.
    assert!(
        out.capacity() < out.len() + 8,
        "{} reserved",
        out.capacity()
    );
}

#[test]
fn encode_literal_bytes() {
    let mut out = BytesMut::from(&b"keep"[..]);
    TlvPacker::default().encode(1, 7, b"hi", &mut out).unwrap();
    assert_eq!(&out[..4], b"keep");
    assert_eq!(&out[4..], HI);
}

#[test]
fn byte_by_byte_needs_more_and_consumes_nothing() {
    let packer = TlvPacker::default();
    let mut buf = BytesMut::new();
    for (i, &byte) in HI.iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        let got = packer.decode(&mut buf).unwrap();
        if i + 1 < HI.len() {
            assert_eq!(got, None, "decoded early at byte {i}");
            assert_eq!(buf.len(), i + 1, "consumed part of a frame");
        } else {
            let msg = got.expect("whole frame");
            assert_eq!((msg.seq, msg.id, &msg.body[..]), (7, 1, &b"hi"[..]));
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn wrong_trailer_is_malformed_as_soon_as_it_arrives() {
    let packer = TlvPacker::default();
    let head = &HI[..TlvPacker::HEADER_LEN + 2]; // header and data, no trailer
    for bad in [&b"\n"[..], b"\n\r", b"\rX", b"\r\r", b"X\r\n", b"\x08\x00"] {
        let mut buf = BytesMut::from(head);
        buf.extend_from_slice(bad);
        assert!(
            malformed(packer.decode(&mut buf)),
            "accepted trailer {bad:?}"
        );
    }
    // A correct first byte alone is just incomplete.
    let mut buf = BytesMut::from(head);
    buf.extend_from_slice(b"\r");
    assert_eq!(packer.decode(&mut buf), Ok(None));
}

#[test]
fn over_long_len_is_rejected_before_allocating() {
    let packer = TlvPacker::new(16);
    assert_eq!(packer.max_data_len(), 16);
    let mut buf = BytesMut::with_capacity(TlvPacker::HEADER_LEN);
    buf.extend_from_slice(b"\x01\x00\x00\x00\x01\x00\x00\x00\xff\xff\xff\xff");
    let capacity = buf.capacity();
    assert_eq!(
        packer.decode(&mut buf),
        Err(PackError::TooLong {
            len: u32::MAX as usize,
            max: 16
        })
    );
    assert_eq!(buf.capacity(), capacity, "reserved memory for the data");

    // The limit is inclusive.
    let mut buf = BytesMut::from(&b"\x01\x00\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00"[..]);
    assert_eq!(packer.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"0123456789abcdef\r\n");
    assert_eq!(packer.decode(&mut buf).unwrap().unwrap().body.len(), 16);
    let mut buf = BytesMut::from(&b"\x01\x00\x00\x00\x01\x00\x00\x00\x11\x00\x00\x00"[..]);
    assert_eq!(
        packer.decode(&mut buf),
        Err(PackError::TooLong { len: 17, max: 16 })
    );
}

#[test]
fn encode_over_limit_appends_nothing() {
    let packer = TlvPacker::new(4);
    let mut out = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        packer.encode(1, 2, b"12345", &mut out),
        Err(PackError::TooLong { len: 5, max: 4 })
    );
    assert_eq!(&out[..], b"keep");
    assert_eq!(
        TlvPacker::default().max_data_len(),
        TlvPacker::DEFAULT_MAX_DATA_LEN
    );
}

proptest! {
    /// Whatever the byte stream's split into reads, decoding gives back
    /// exactly what was encoded, in order, and leaves nothing behind.
    #[test]
    fn roundtrip_under_any_split(
        msgs in prop::collection::vec(
            (any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..48)),
            0..12,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let packer = TlvPacker::new(48);
        let mut wire = BytesMut::new();
        for (seq, kind, data) in &msgs {
            packer.encode(*kind, *seq, data, &mut wire).unwrap();
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();

        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in points {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            got.extend(decode_all(&packer, &mut buf));
        }
        prop_assert!(buf.is_empty());
        let want: Vec<Message> = msgs
            .into_iter()
            .map(|(seq, id, data)| Message { id, seq, body: data.into() })
            .collect();
        prop_assert_eq!(got, want);
    }

    /// Peer bytes (valid frames with one byte overwritten) never make the
    /// decoder panic, consume part of a frame, or overrun the limit.
    #[test]
    fn corrupted_streams_fail_cleanly(
        datas in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let packer = TlvPacker::new(16);
        let mut wire = BytesMut::new();
        for (i, data) in datas.iter().enumerate() {
            // Some of these are over the limit: encode them by hand.
            wire.extend_from_slice(&(i as u32).to_le_bytes());
            wire.extend_from_slice(&1u32.to_le_bytes());
            wire.extend_from_slice(&(data.len() as u32).to_le_bytes());
            wire.extend_from_slice(data);
            wire.extend_from_slice(TlvPacker::TRAILER);
        }
        let at = at % wire.len();
        wire[at] = byte;
        loop {
            let before = wire.len();
            match packer.decode(&mut wire) {
                Ok(Some(m)) => {
                    prop_assert!(m.body.len() <= 16);
                    prop_assert_eq!(before - wire.len(), TlvPacker::HEADER_LEN + m.body.len() + TlvPacker::TRAILER.len());
                }
                Ok(None) => {
                    prop_assert_eq!(wire.len(), before);
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

// ---------------------------------------------------------------- server

/// A server with the example's routes (kind 1 echo, kind 2 upper case) and
/// a channel receiving every `on_close` reason.
fn builder(packer: TlvPacker) -> (Builder, mpsc::Receiver<CloseReason>) {
    let (tx, rx) = mpsc::channel();
    let builder = Server::builder()
        .event_loops(2)
        .packer(packer)
        .on_close(move |_, reason| {
            let _ = tx.send(reason.clone());
        })
        .route(1, |ctx| ctx.reply(1, ctx.body()))
        .route(2, |ctx| ctx.reply(2, ctx.body().to_ascii_uppercase()));
    (builder, rx)
}

/// Read one TLV frame: (seq, kind, data). Panics on timeout or close.
fn read_frame(stream: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let mut head = [0u8; TlvPacker::HEADER_LEN];
    stream.read_exact(&mut head).expect("read header");
    let field = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap());
    let (seq, kind, len) = (field(0), field(4), field(8) as usize);
    let mut rest = vec![0u8; len + TlvPacker::TRAILER.len()];
    stream.read_exact(&mut rest).expect("read data and trailer");
    assert_eq!(&rest[len..], TlvPacker::TRAILER, "reply without trailer");
    rest.truncate(len);
    (seq, kind, rest)
}

fn recv_close(rx: &mpsc::Receiver<CloseReason>) -> CloseReason {
    rx.recv_timeout(TIMEOUT)
        .expect("on_close within the timeout")
}

#[test]
fn pipelined_replies_carry_their_requests_seq_in_order() {
    let (builder, _closes) = builder(TlvPacker::default());
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());

    // One write, five requests; kind 9 has no route and is dropped.
    client.send_raw(
        b"\x07\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00hi\r\n\
          \x03\x00\x00\x00\x02\x00\x00\x00\x05\x00\x00\x00hello\r\n\
          \x2a\x00\x00\x00\x09\x00\x00\x00\x01\x00\x00\x00?\r\n\
          \xef\xbe\xad\xde\x01\x00\x00\x00\x00\x00\x00\x00\r\n\
          \x00\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00a\r\nb\r\n",
    );
    let want: [(u32, u32, &[u8]); 4] = [
        (7, 1, b"hi"),
        (3, 2, b"HELLO"),
        (0xdead_beef, 1, b""),
        (0, 2, b"A\r\nB"),
    ];
    for (seq, kind, data) in want {
        assert_eq!(read_frame(&mut client.stream), (seq, kind, data.to_vec()));
    }

    // The connection is still usable after the unknown kind.
    client.send_raw(HI);
    assert_eq!(read_frame(&mut client.stream), (7, 1, b"hi".to_vec()));
    assert_eq!(server.stats().unknown_ids, 1);
    server.shutdown(TIMEOUT).expect("clean shutdown");
}

/// Large data is echoed by reference (the packer's `encode_around`): the
/// header before it and the trailer after it, with the request's seq.
#[test]
fn large_data_replies_keep_header_and_trailer() {
    let (builder, _closes) = builder(TlvPacker::default());
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());
    let mut packer_out = BytesMut::new();
    let big: Vec<u8> = (0..TlvPacker::DEFAULT_MAX_DATA_LEN)
        .map(|i| (i % 251) as u8)
        .collect();
    for (seq, len) in [
        (1u32, 20_000usize),
        (2, TlvPacker::DEFAULT_MAX_DATA_LEN),
        (3, 17),
    ] {
        TlvPacker::default()
            .encode(1, seq, &big[..len], &mut packer_out)
            .unwrap();
    }
    client.send_raw(&packer_out);
    for (seq, len) in [
        (1u32, 20_000usize),
        (2, TlvPacker::DEFAULT_MAX_DATA_LEN),
        (3, 17),
    ] {
        assert_eq!(
            read_frame(&mut client.stream),
            (seq, 1, big[..len].to_vec())
        );
    }
    server.shutdown(TIMEOUT).expect("clean shutdown");
}

#[test]
fn bad_trailer_closes_with_a_protocol_error() {
    let (builder, closes) = builder(TlvPacker::default());
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());

    // A good request, then one whose trailer is "\n\r".
    client.send_raw(
        b"\x05\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00ok\r\n\
          \x06\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00no\n\r",
    );
    // Messages before the bad frame are still answered.
    assert_eq!(read_frame(&mut client.stream), (5, 1, b"ok".to_vec()));
    client.expect_closed();
    match recv_close(&closes) {
        CloseReason::Protocol(PackError::Malformed(_)) => {}
        other => panic!("closed with {other}, want a malformed-frame error"),
    }
    server.shutdown(TIMEOUT).expect("clean shutdown");
}

#[test]
fn over_long_len_closes_on_the_header_alone() {
    let (builder, closes) = builder(TlvPacker::new(16));
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());

    // Only the header, declaring 4 GiB - 1 of data: the server must not
    // wait for (or reserve room for) any of it.
    client.send_raw(b"\x01\x00\x00\x00\x01\x00\x00\x00\xff\xff\xff\xff");
    client.expect_closed();
    match recv_close(&closes) {
        CloseReason::Protocol(PackError::TooLong { len, max: 16 }) => {
            assert_eq!(len, u32::MAX as usize)
        }
        other => panic!("closed with {other}, want a too-long error"),
    }
    assert_eq!(server.stats().bytes_in, TlvPacker::HEADER_LEN as u64);
    server.shutdown(TIMEOUT).expect("clean shutdown");
}

#[test]
fn send_seq_from_another_thread_reaches_the_peer() {
    let (builder, _closes) = builder(TlvPacker::default());
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let server = crate::common::start(builder.on_open(move |conn| {
        let _ = handles_tx.send(conn.handle());
    }));
    let mut client = Client::connect(server.local_addr());
    let handle = handles.recv_timeout(TIMEOUT).expect("on_open ran");

    // This test thread is no loop thread: the frame is encoded here and
    // handed to the connection's loop.
    handle.send_seq(2, 99, b"pushed").unwrap();
    assert_eq!(read_frame(&mut client.stream), (99, 2, b"pushed".to_vec()));
    server.shutdown(TIMEOUT).expect("clean shutdown");
}
