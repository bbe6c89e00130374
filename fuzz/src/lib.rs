//! What the fuzz targets share: reading their settings and cut points off
//! the front of the input, the packers they run, and reference decoding.

use netloom::bytes::BytesMut;
use netloom::{LengthPacker, Message, PackError, Packer, SeqPacker, TlvPacker};

/// A reader of settings off the front of the fuzzer's input.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// Cut points: a count (at most 15), then that many chunk lengths
    /// (0 means 1); the rest of the input is the payload. Returns the
    /// payload and the lengths of its chunks (the last takes the rest).
    pub fn cuts(mut self) -> (&'a [u8], Vec<usize>) {
        let n = self.byte() % 16;
        let steps: Vec<usize> = (0..n).map(|_| usize::from(self.byte()).max(1)).collect();
        let payload = self.data;
        let mut chunks = Vec::new();
        let mut left = payload.len();
        for s in steps {
            if left == 0 {
                break;
            }
            let s = s.min(left);
            chunks.push(s);
            left -= s;
        }
        if left > 0 {
            chunks.push(left);
        }
        (payload, chunks)
    }

    /// The rest of the input.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Split `payload` into chunks of the given lengths.
pub fn chunks<'a>(payload: &'a [u8], lengths: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    let mut at = 0;
    lengths.iter().map(move |&n| {
        let c = &payload[at..at + n];
        at += n;
        c
    })
}

/// A decode-only packer: every message is one `\n`-terminated line, id 0
/// (the reader's `decode` path; lines of at most 64 bytes).
pub struct Lines;

impl Packer for Lines {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) if end > 64 => Err(PackError::TooLong { len: end, max: 64 }),
            Some(end) => {
                let line = buf.split_to(end + 1).freeze().slice(..end);
                Ok(Some(Message::new(0, line)))
            }
            None if buf.len() > 64 => Err(PackError::TooLong {
                len: buf.len(),
                max: 64,
            }),
            None => Ok(None),
        }
    }

    fn encode(&self, _: u32, _: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        out.extend_from_slice(body);
        out.extend_from_slice(b"\n");
        Ok(())
    }
}

/// A packer picked by `choice`: `None` is the default `LengthPacker`
/// (the server's own fast path); small limits make `TooLong` reachable.
pub fn packer(choice: u8) -> (Option<Box<dyn Packer>>, Box<dyn Packer>) {
    fn both<P: Packer + Clone>(p: P) -> (Option<Box<dyn Packer>>, Box<dyn Packer>) {
        (Some(Box::new(p.clone())), Box::new(p))
    }
    match choice % 7 {
        0 => (None, Box::new(LengthPacker::default())),
        1 => both(LengthPacker::new(64)),
        2 => both(SeqPacker::default()),
        3 => both(SeqPacker::new(64)),
        4 => both(TlvPacker::default()),
        5 => both(TlvPacker::new(64)),
        _ => (Some(Box::new(Lines)), Box::new(Lines)),
    }
}

/// Decode `input` with `Packer::decode` alone, as a client would: the
/// messages, and whether it stopped on an error.
pub fn reference(packer: &dyn Packer, input: &[u8]) -> (Vec<Message>, bool) {
    let mut buf = BytesMut::from(input);
    let mut got = Vec::new();
    loop {
        match packer.decode(&mut buf) {
            Ok(Some(m)) => got.push(m),
            Ok(None) => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

/// Most a declared length may make `decode` reserve before its bytes
/// arrive: the packer's step (64 KiB) or what the buffer holds, with the
/// allocator's rounding.
const STEP: usize = 64 << 10;

/// The packer targets' invariants over one input: `decode` never panics;
/// `Ok(None)` and errors leave the bytes as they were and reserve only a
/// bounded step; `peek` agrees with `decode`; every decoded message
/// re-encodes (with `encode`, and with `encode_around` around its body) to
/// exactly the bytes it was decoded from, and decodes back to itself.
/// `seq`: whether the format carries the sequence number.
pub fn check_packer(p: &dyn Packer, input: &[u8], seq: bool) {
    let mut buf = BytesMut::from(input);
    loop {
        let before = buf.clone();
        let peeked = p.peek(&buf);
        match p.decode(&mut buf) {
            Ok(Some(m)) => {
                let used = before.len() - buf.len();
                assert!(used > 0, "a message without consuming input");
                assert_eq!(&before[used..], &buf[..], "decode changed what follows");
                let frame = &before[..used];
                if let Ok(netloom::Peek::Frame {
                    id,
                    seq: s,
                    body,
                    len,
                }) = peeked
                {
                    assert_eq!((id, s, &frame[body], len), (m.id, m.seq, &m.body[..], used));
                } else {
                    panic!("decode found a frame that peek did not: {peeked:?}");
                }
                if !seq {
                    assert_eq!(m.seq, 0, "a format without seq decoded one");
                }
                let mut out = BytesMut::new();
                p.encode(m.id, m.seq, &m.body, &mut out).expect("re-encode");
                assert_eq!(&out[..], frame, "encode(decode(x)) != x");
                let (mut head, mut tail) = (BytesMut::new(), BytesMut::new());
                let around = p
                    .encode_around(m.id, m.seq, m.body.len(), &mut head, &mut tail)
                    .expect("encode_around");
                if around {
                    let mut joined = head.to_vec();
                    joined.extend_from_slice(&m.body);
                    joined.extend_from_slice(&tail);
                    assert_eq!(&joined[..], frame, "encode_around != encode");
                }
                let again = p.decode(&mut out).expect("decode(encode(m))");
                assert_eq!(again.as_ref(), Some(&m));
                assert!(out.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf, before, "an incomplete frame was consumed");
                let bound = 2 * (before.len().max(STEP) + before.len()) + 64;
                assert!(
                    buf.capacity() <= bound.max(before.capacity()),
                    "{} bytes reserved for {} at hand",
                    buf.capacity(),
                    before.len()
                );
                assert!(
                    matches!(peeked, Ok(netloom::Peek::Incomplete { .. })),
                    "decode said incomplete, peek {peeked:?}"
                );
                if let Ok(netloom::Peek::Incomplete { frame_len: Some(f) }) = peeked {
                    assert!(
                        f > before.len(),
                        "incomplete frame of {f} with {} at hand",
                        before.len()
                    );
                }
                return;
            }
            Err(e) => {
                assert_eq!(buf, before, "a refused frame was consumed");
                assert!(
                    buf.capacity() <= before.capacity().max(before.len()),
                    "reserved on {e}"
                );
                assert_eq!(peeked.as_ref().err(), Some(&e), "peek and decode disagree");
                return;
            }
        }
    }
}
