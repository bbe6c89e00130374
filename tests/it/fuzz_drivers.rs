//! The drivers the fuzz targets run (`bench_internals`, `fuzz/`), checked
//! on valid input: each must reach the state a real connection reaches,
//! or the fuzzers would be exploring an empty room. Inputs the fuzzers
//! found to crash go here too, as regression tests (none so far; see
//! docs/FUZZING.md).

use std::sync::Arc;

use netloom::bench_internals::{Datagrams, Reader, TlsServer, WsClient, WsServer};
use netloom::bytes::BytesMut;
use netloom::{LengthPacker, Message, Packer, TlvPacker};

fn frames(p: &dyn Packer, msgs: &[Message]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for m in msgs {
        p.encode(m.id, m.seq, &m.body, &mut out).unwrap();
    }
    out.to_vec()
}

fn sample() -> Vec<Message> {
    vec![
        Message {
            id: 1,
            seq: 5,
            body: "hello".into(),
        },
        Message {
            id: 2,
            seq: 6,
            body: "".into(),
        },
        Message {
            id: 3,
            seq: 7,
            body: vec![7u8; 300].into(),
        },
    ]
}

#[test]
fn the_reader_driver_gives_every_frame_byte_by_byte_and_through_a_layer() {
    let want: Vec<Message> = sample()
        .into_iter()
        .map(|m| Message { seq: 0, ..m })
        .collect();
    let wire = frames(&LengthPacker::default(), &want);
    for plain in [true, false] {
        let mut reader = Reader::new(None, 7, plain, 1);
        let mut got = Vec::new();
        for b in &wire {
            reader.feed(0, std::slice::from_ref(b), &mut got).unwrap();
        }
        assert_eq!(got, want);
        assert_eq!(reader.partial_len(0), 0);
    }
    let tlv = frames(&TlvPacker::default(), &sample());
    let mut reader = Reader::new(Some(Box::new(TlvPacker::default())), 64, true, 1);
    let mut got = Vec::new();
    reader.feed(0, &tlv[..tlv.len() - 1], &mut got).unwrap();
    assert_eq!(got, sample()[..2]);
    // The first two frames: 12-byte header, data, 2-byte trailer.
    assert_eq!(reader.partial_len(0), tlv.len() - 1 - (19 + 14));
}

#[test]
fn the_datagram_driver_takes_whole_datagrams_and_drops_cut_ones() {
    let wire = frames(&TlvPacker::default(), &sample());
    let mut udp = Datagrams::new(Some(Box::new(TlvPacker::default())));
    let (got, result) = udp.decode(&wire);
    assert!(result.is_ok());
    assert_eq!(got, sample());
    let (got, result) = udp.decode(&wire[..wire.len() - 1]);
    assert!(result.is_err());
    assert!(got.is_empty());
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![
        first,
        payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
    ];
    let mask = mask.map_or([0; 4], |m| {
        f.extend_from_slice(&m);
        m
    });
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn the_websocket_server_driver_upgrades_and_delivers() {
    let mut ws = WsServer::new(false, 1 << 20).unwrap();
    let mut input = REQUEST.to_vec();
    input.extend(frame(0x81, b"text", Some([1, 2, 3, 4])));
    input.extend(frame(0x89, b"ping", Some([5, 6, 7, 8])));
    let mut got = Vec::new();
    ws.feed(&input, &mut got).unwrap();
    assert_eq!(got, vec![Message::new(netloom::ws::TEXT, "text")]);
    let out = ws.take_output();
    assert!(
        out.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(out.ends_with(&frame(0x8a, b"ping", None)), "the pong");
}

#[test]
fn the_websocket_client_driver_opens_on_a_valid_answer_and_delivers() {
    let mut ws = WsClient::new(true).unwrap();
    let request = String::from_utf8(ws.take_request()).unwrap();
    let key = request
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then_some(value)
        })
        .unwrap();
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let mut input = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    let packed = frames(&LengthPacker::default(), &[Message::new(9, "hi")]);
    input.extend(frame(0x82, &packed, None));
    let mut got = Vec::new();
    ws.feed(&input, &mut got).unwrap();
    assert!(got.is_empty(), "packer mode: the stream, not messages");
    assert_eq!(&ws.take_stream()[..], &packed[..]);
}

#[test]
fn the_tls_driver_answers_the_seed_client_hellos() {
    let cert = crate::tls_support::test_cert();
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let config = Arc::new(crate::tls_support::server_config(&cert, &versions));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/tls_server/");
    for seed in ["seed-tls13", "seed-tls12"] {
        let bytes = std::fs::read(format!("{dir}{seed}")).unwrap();
        // The first byte is the target's cut count (0: one read).
        assert_eq!(bytes[0], 0);
        let mut tls = TlsServer::new(config.clone()).unwrap();
        let out = tls.feed(&bytes[1..]).unwrap();
        // A handshake record (0x16) of TLS 1.x: the ServerHello.
        assert_eq!(&out[..2], &[0x16, 0x03], "{seed}: {out:02x?}");
        assert_eq!(tls.held(), 0);
    }
}

/// `fuzz/src/lib.rs`'s decode-only packer: `\n`-terminated lines of at
/// most 64 bytes, id 0.
struct Lines;

impl Packer for Lines {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, netloom::PackError> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) if end > 64 => Err(netloom::PackError::TooLong { len: end, max: 64 }),
            Some(end) => {
                let line = buf.split_to(end + 1).freeze().slice(..end);
                Ok(Some(Message::new(0, line)))
            }
            None if buf.len() > 64 => Err(netloom::PackError::TooLong {
                len: buf.len(),
                max: 64,
            }),
            None => Ok(None),
        }
    }

    fn encode(
        &self,
        _: u32,
        _: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), netloom::PackError> {
        out.extend_from_slice(body);
        out.extend_from_slice(b"\n");
        Ok(())
    }
}

/// Found by `fuzz/fuzz_targets/frame_reader.rs` (input
/// `fuzz/corpus/frame_reader/seed-finding-partial-capacity`): plain TCP,
/// reads of 2 bytes, a decode-only packer (`Lines`), the whole stream
/// arriving at once. The connection was left with a partial line of 4
/// bytes in a 128-byte allocation (32 times its bytes, 64 reads' worth),
/// where the reader's docs promise a partial frame's memory follows the
/// bytes that arrived (at most doubling) plus about a read: the tail left
/// after lines were split off stayed in their buffer, and the next read
/// reclaimed the whole allocation for it.
#[test]
fn a_small_partial_frame_keeps_no_large_buffer() {
    let stream: &[u8] = b"\
        \xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\
        \xa7\xa7\x01\x0d\x0a\x29\x0a\x0d\x0a\x0a\x0d\x01\x65\xcc\x00\x00\
        \x09\x00\x00\x01\x0a\x00\xff\xff\xff\xff\xff\xff\xff\x0c\xa7\xa7\
        \xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\
        \xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\
        \xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\xa7\x0d\x01\x00\x00\x0a\
        \x0d\x0a\x22\x74\x68\x72\x74\x62\x6f\x0a\x0a\x8d\x8d\x8d\x8d\x0d\
        \x00\x00\x01\x0a\x8d\x8d\x8d\x8d\x8d\x0a\x0d\x0d\x0a\x0d\x0a\x0a\
        \x0d\x0a\x0d\x30\x0a\x0d\x0a\x0d\x0a\x0d\x0a\x0d\x0a\x0d\x0a\x22\
        \x74\x68\x72\x74\x62\x6f\x0a\x0a\x8d\x8d\x8d\x8d";
    let mut reader = Reader::new(Some(Box::new(Lines)), 2, true, 1);
    let mut got = Vec::new();
    reader.feed(0, stream, &mut got).unwrap();
    let (len, cap) = (reader.partial_len(0), reader.partial_capacity(0));
    assert_eq!(len, 4);
    assert!(
        cap <= 2 * len + 5 * 2 + 64,
        "{cap} bytes kept for a partial frame of {len}"
    );
}
