use std::cell::RefCell;

use proptest::prelude::*;

use bytes::Bytes;
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::Request;

use super::close::sanitize;
use super::encode::encode;
use super::request::form_decode;
use super::*;
use crate::buf::pool::Pool;
use crate::buf::queue::WriteQueue;
use crate::buf::LazyQueue;
use crate::codec::{LengthPacker, Message, Packer};
use crate::error::CloseReason;
use crate::transport::{Goodbye, Sink};

fn length() -> ServerPacker {
    ServerPacker::Length(LengthPacker::default())
}

/// One WebSocket session driven as the event loop drives it: bytes in,
/// messages and queued output out.
struct Harness {
    settings: WsSettings,
    session: WsSession,
    queue: Option<Box<WriteQueue>>,
    pool: RefCell<Pool>,
    stream: BytesMut,
    msgs: Vec<Message>,
    plain: BytesMut,
}

impl Harness {
    fn new(mode: WsMode, max_message: usize) -> Harness {
        let mut settings = WsSettings {
            mode,
            max_message: Some(max_message),
            ..WsSettings::default()
        };
        settings.validate(&Config::default()).unwrap();
        Harness {
            session: settings.session(),
            settings,
            queue: None,
            pool: RefCell::new(Pool::default()),
            stream: BytesMut::new(),
            msgs: Vec::new(),
            plain: BytesMut::new(),
        }
    }

    /// Feed bytes; accept an upgrade when one completes (as the loop
    /// does when the hook says yes).
    fn feed(&mut self, input: &[u8]) -> std::result::Result<(), CloseReason> {
        let mut sink = Sink {
            stream: &mut self.stream,
            messages: &mut self.msgs,
            out: LazyQueue {
                queue: &mut self.queue,
                pool: &self.pool,
                track: false,
            },
            plain: &mut self.plain,
        };
        let incoming = self.session.receive(input, &mut sink)?;
        if incoming.upgrade.is_some() {
            let out = LazyQueue {
                queue: &mut self.queue,
                pool: &self.pool,
                track: false,
            };
            self.session.finish_upgrade(&self.settings, Ok(()), out)?;
            return self.feed(&[]);
        }
        Ok(())
    }

    fn output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(q) = self.queue.as_mut() {
            while !q.is_empty() {
                q.write_to(&mut out).unwrap();
            }
        }
        out
    }
}

const REQUEST: &[u8] = b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame.
pub(super) fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

proptest! {
    /// Any split of a request and its frames gives the same messages.
    #[test]
    fn any_split_gives_the_same_messages(
        texts in proptest::collection::vec("\\PC{0,40}", 1..5),
        binary in proptest::collection::vec(any::<u8>(), 0..3000),
        mask in any::<[u8; 4]>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut wire = REQUEST.to_vec();
        for t in &texts {
            wire.extend(client_frame(0x81, t.as_bytes(), mask));
        }
        // The binary message in two fragments with a ping between.
        let half = binary.len() / 2;
        wire.extend(client_frame(0x02, &binary[..half], mask));
        wire.extend(client_frame(0x89, b"p", mask));
        wire.extend(client_frame(0x80, &binary[half..], mask));
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut h = Harness::new(WsMode::Messages, 1 << 20);
        let mut from = 0;
        for p in points.into_iter().chain([wire.len()]) {
            h.feed(&wire[from..p]).unwrap();
            from = p;
        }
        let mut expected: Vec<Message> =
            texts.iter().map(|t| Message::new(TEXT, Bytes::from(t.clone()))).collect();
        expected.push(Message::new(BINARY, Bytes::from(binary)));
        prop_assert_eq!(&h.msgs, &expected);
        let out = h.output();
        prop_assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        prop_assert!(out.ends_with(&[0x8a, 0x01, b'p']), "pong last");
    }

    /// Arbitrary bytes after the upgrade never panic; a failure always
    /// comes with a close frame.
    #[test]
    fn garbage_frames_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..600)) {
        for mode in [WsMode::Messages, WsMode::Packer] {
            let mut h = Harness::new(mode, 256);
            h.feed(REQUEST).unwrap();
            let head = h.output();
            prop_assert!(head.starts_with(b"HTTP/1.1 101"));
            match h.feed(&junk) {
                Ok(()) => {}
                Err(CloseReason::WsProtocol { code, .. }) => {
                    // Control frames only (pongs, then the close).
                    let out = h.output();
                    let mut at = 0;
                    let mut last = None;
                    while at + 2 <= out.len() {
                        last = Some(at);
                        at += 2 + usize::from(out[at + 1]);
                    }
                    prop_assert_eq!(at, out.len());
                    let last = last.unwrap_or(0);
                    prop_assert_eq!(out.get(last), Some(&0x88));
                    prop_assert_eq!(out.get(last + 2..last + 4), Some(&code.to_be_bytes()[..]));
                }
                Err(CloseReason::WsClosed { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    /// Arbitrary bytes as an upgrade request never panic: pending,
    /// upgraded, or refused with an HTTP status.
    #[test]
    fn garbage_requests_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut h = Harness::new(WsMode::Messages, 1024);
        match h.feed(&junk) {
            Ok(()) => {}
            Err(CloseReason::BadUpgrade(_)) => {
                prop_assert!(h.output().starts_with(b"HTTP/1.1 4"));
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn refused_upgrade_drops_frames_queued_meanwhile() {
    let mut h = Harness::new(WsMode::Messages, 1024);
    let mut sink = Sink {
        stream: &mut h.stream,
        messages: &mut h.msgs,
        out: LazyQueue {
            queue: &mut h.queue,
            pool: &h.pool,
            track: false,
        },
        plain: &mut h.plain,
    };
    let incoming = h.session.receive(REQUEST, &mut sink).unwrap();
    assert!(incoming.upgrade.is_some());
    let mut out = LazyQueue {
        queue: &mut h.queue,
        pool: &h.pool,
        track: false,
    };
    out.get().extend(b"a frame sent by on_open");
    let reason = h
        .session
        .finish_upgrade(&h.settings, Err(401), out)
        .unwrap_err();
    assert!(matches!(reason, CloseReason::UpgradeRejected(401)));
    let answer = String::from_utf8(h.output()).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("on_open"));
}

#[test]
fn frames_queued_while_upgrading_follow_the_101() {
    let mut h = Harness::new(WsMode::Messages, 1024);
    let mut out = LazyQueue {
        queue: &mut h.queue,
        pool: &h.pool,
        track: false,
    };
    out.get()
        .encode_with(|b| encode(WsMode::Messages, &length(), (TEXT, 0), b"hi", b, false))
        .unwrap();
    h.feed(REQUEST).unwrap();
    let out = h.output();
    assert!(out.starts_with(b"HTTP/1.1 101"));
    assert!(out.ends_with(b"\r\n\r\n\x81\x02hi"));
}

#[test]
fn rfc6455_accept_key() {
    // RFC 6455 section 1.3.
    let key = tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

fn frame(mode: WsMode, id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(mode, &length(), (id, 0), body, &mut out, false).unwrap();
    out.to_vec()
}

#[test]
fn server_frames_match_rfc6455_examples() {
    // RFC 6455 section 5.7: unmasked text "Hello".
    assert_eq!(
        frame(WsMode::Messages, TEXT, b"Hello"),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    // 256 bytes binary: 16-bit length; 65536 bytes: 64-bit length.
    let f = frame(WsMode::Messages, BINARY, &[7; 256]);
    assert_eq!(&f[..4], [0x82, 0x7e, 0x01, 0x00]);
    assert_eq!(f.len(), 4 + 256);
    let f = frame(WsMode::Messages, BINARY, &[7; 65536]);
    assert_eq!(&f[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f.len(), 10 + 65536);
}

#[test]
fn client_frames_are_masked_with_a_fresh_key_each_and_unmask_to_the_payload() {
    let mut keys = std::collections::HashSet::new();
    // Around each length format's edge, in both modes (packer mode guesses
    // the header's size before the packer writes).
    for len in [0, 1, 100, 125, 126, 127, 1000, 65_535, 65_536, 70_000] {
        for mode in [WsMode::Messages, WsMode::Packer] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = BytesMut::new();
            encode(mode, &length(), (BINARY, 0), &body, &mut out, true).unwrap();
            let mut cursor = std::io::Cursor::new(&out[..]);
            let (header, payload_len) =
                tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
                    .unwrap()
                    .expect("a whole header");
            let key = header.mask.expect("a client frame is masked");
            assert!(keys.insert(key), "mask key {key:?} used twice");
            let at = cursor.position() as usize;
            assert_eq!(out.len() - at, payload_len as usize);
            let mut payload = out[at..].to_vec();
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i & 3];
            }
            let want = match mode {
                WsMode::Messages => body.clone(),
                WsMode::Packer => {
                    let mut packed = BytesMut::new();
                    length().encode(BINARY, 0, &body, &mut packed).unwrap();
                    packed.to_vec()
                }
            };
            assert_eq!(payload, want, "{mode:?}, {len} bytes");
        }
    }
}

#[test]
fn text_must_be_utf8() {
    let mut out = BytesMut::new();
    let r = encode(
        WsMode::Messages,
        &length(),
        (TEXT, 0),
        b"\xff",
        &mut out,
        false,
    );
    assert!(matches!(r, Err(PackError::Malformed(_))));
}

#[test]
fn packer_mode_wraps_one_packer_frame_at_every_header_size() {
    // Around each header-size boundary, so guesses are right and wrong.
    for len in [
        0, 100, 109, 110, 117, 118, 125, 126, 65000, 65519, 65520, 65527, 65528, 70000,
    ] {
        let body = vec![9u8; len];
        let f = frame(WsMode::Packer, 5, &body);
        let payload = len + 8;
        let (head, rest) = match payload {
            0..=125 => (vec![0x82, payload as u8], &f[2..]),
            126..=65535 => {
                let mut h = vec![0x82, 126];
                h.extend_from_slice(&(payload as u16).to_be_bytes());
                (h, &f[4..])
            }
            _ => {
                let mut h = vec![0x82, 127];
                h.extend_from_slice(&(payload as u64).to_be_bytes());
                (h, &f[10..])
            }
        };
        assert_eq!(&f[..head.len()], &head[..], "len {len}");
        let mut packed = BytesMut::new();
        LengthPacker::default()
            .encode(5, 0, &body, &mut packed)
            .unwrap();
        assert_eq!(rest, &packed[..], "len {len}");
    }
}

#[test]
fn form_decoding() {
    assert_eq!(form_decode("a+b%20c%2Fd"), "a b c/d");
    assert_eq!(form_decode("100%"), "100%");
    assert_eq!(form_decode("%zz%4"), "%zz%4");
    assert_eq!(form_decode("%E2%82%AC"), "€");
    assert_eq!(form_decode("%FF"), "\u{fffd}");
}

#[test]
fn request_fields() {
    let raw = b"GET /chat/room?name=J%C3%B6rg&flag&x=1+2&x=3 HTTP/1.1\r\n\
        Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        X-Token: abc\r\n\r\n";
    let (size, req) = <Request as TryParse>::try_parse(raw).unwrap().unwrap();
    assert_eq!(size, raw.len());
    let r = WsRequest::from_http(&req);
    assert_eq!(r.path(), "/chat/room");
    assert_eq!(r.query_string(), Some("name=J%C3%B6rg&flag&x=1+2&x=3"));
    assert_eq!(r.query("name"), Some("Jörg"));
    assert_eq!(r.query("flag"), Some(""));
    assert_eq!(r.query("x"), Some("1 2"));
    assert_eq!(r.query_pairs().filter(|(k, _)| *k == "x").count(), 2);
    assert_eq!(r.query("missing"), None);
    assert_eq!(r.header("x-token"), Some("abc"));
    assert_eq!(r.header("HOST"), Some("localhost"));
    assert_eq!(r.headers().count(), 2, "handshake headers are not kept");
    assert_eq!(r.header("upgrade"), None);
}

#[test]
fn goodbye_is_sanitized() {
    let g = Goodbye {
        code: 1005,
        reason: "é".repeat(100).into(),
    };
    let (code, text) = sanitize(&g);
    assert_eq!(u16::from(code), 1000);
    assert!(text.len() <= 123 && text.len() % 2 == 0);
    let (code, _) = sanitize(&Goodbye {
        code: 4000,
        reason: "".into(),
    });
    assert_eq!(u16::from(code), 4000);
}
