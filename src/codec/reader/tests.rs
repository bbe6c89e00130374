//! The frame reader alone: partial frames, many frames per read, the
//! large-frame path, connections sharing the reader, buffer recycling, and
//! a property test (any byte stream cut at any points gives the same
//! messages as one whole read) with peek packers and a decode packer, with
//! and without a layer in between.

use bytes::Buf;
use proptest::prelude::*;

use super::*;
use crate::codec::{LengthPacker, TlvPacker};

mod held;
mod large;
mod recycle;

const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    1,
));

/// A decode-only packer: every message is one `\n`-terminated line, id 0.
struct Lines;

impl Packer for Lines {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line = buf.split_to(end).freeze();
                buf.advance(1);
                Ok(Some(Message::new(0, line)))
            }
            None if buf.len() > 1 << 20 => Err(PackError::TooLong {
                len: buf.len(),
                max: 1 << 20,
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

/// One connection's state as the loop keeps it, and a reader shared by
/// every connection of a test.
struct Rig {
    reader: FrameReader,
    pool: RefCell<Pool>,
    packer: ServerPacker,
}

impl Rig {
    fn new(packer: ServerPacker, read_size: usize) -> Rig {
        Rig {
            reader: FrameReader::new(read_size),
            pool: RefCell::new(Pool::default()),
            packer,
        }
    }

    /// One read of `input` (as much as the landing takes) and its decode,
    /// the messages left in the reader's batch; `plain` as in
    /// [`deliver`](Self::deliver). Returns the bytes read and the result.
    fn read_once(
        &mut self,
        partial: &mut Option<BytesMut>,
        input: &[u8],
        plain: bool,
    ) -> (usize, Result<(), CloseReason>) {
        let (n, direct) = self.reader.landing(partial, plain).fill(input);
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
        (n, result)
    }

    /// Deliver `input` as a peer would, in reads of what each landing asks
    /// for; `plain`: no layer (else an identity layer through scratch).
    /// Returns the messages handled, or the close reason.
    fn deliver(
        &mut self,
        partial: &mut Option<BytesMut>,
        mut input: &[u8],
        plain: bool,
    ) -> Result<Vec<Message>, CloseReason> {
        let mut got = Vec::new();
        while !input.is_empty() {
            let (n, result) = self.read_once(partial, input, plain);
            input = &input[n..];
            let batch = self.reader.take_batch();
            got.extend(batch.iter().map(|(id, seq, body, _, _)| Message {
                id,
                seq,
                body: Bytes::copy_from_slice(body),
            }));
            self.reader.finish(batch, &self.pool);
            result?;
        }
        Ok(got)
    }
}

fn length() -> ServerPacker {
    ServerPacker::Length(LengthPacker::default())
}

fn wire(packer: &dyn Packer, msgs: &[Message]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for m in msgs {
        packer.encode(m.id, m.seq, &m.body, &mut out).unwrap();
    }
    out.to_vec()
}

fn msgs(n: u32, size: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message::new(i, vec![i as u8; size + i as usize % 3]))
        .collect()
}

#[test]
fn a_frame_fed_byte_by_byte_comes_out_once_whole() {
    for plain in [true, false] {
        let mut rig = Rig::new(length(), 1024);
        let sent = msgs(3, 10);
        let bytes = wire(rig.packer.as_dyn(), &sent);
        let mut partial = None;
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(rig.deliver(&mut partial, &[*b], plain).unwrap());
        }
        assert_eq!(got, sent, "plain={plain}");
        assert!(partial.is_none(), "nothing kept between frames");
    }
}

#[test]
fn many_frames_of_one_read_are_split_off_in_one_piece() {
    let mut rig = Rig::new(length(), 64 << 10);
    let sent = msgs(100, 20);
    let bytes = wire(rig.packer.as_dyn(), &sent);
    let mut partial = None;
    let landing = rig.reader.landing(&mut partial, true);
    let Landing::Spare { buf, .. } = landing else {
        panic!("plain TCP between frames reads into rx");
    };
    buf.extend_from_slice(&bytes);
    rig.reader
        .decode(
            &rig.packer,
            &mut partial,
            &rig.pool,
            bytes.len(),
            true,
            PEER,
            |_, _, _| unreachable!("no layer on plain TCP"),
        )
        .unwrap();
    let batch = rig.reader.take_batch();
    assert_eq!(batch.frames.len(), 100);
    assert!(batch.msgs.is_empty());
    assert_eq!(
        batch.bytes.len(),
        bytes.len(),
        "one split for the whole read"
    );
    let got: Vec<_> = batch
        .iter()
        .map(|(id, _, body, _, _)| (id, body.to_vec()))
        .collect();
    let want: Vec<_> = sent.iter().map(|m| (m.id, m.body.to_vec())).collect();
    assert_eq!(got, want);
    rig.reader.finish(batch, &rig.pool);
}

#[test]
fn connections_sharing_the_reader_keep_their_own_partial_frames() {
    // A connection that is not read for a while (paused, or just quiet)
    // keeps its partial frame while others' reads reuse the loop's buffer.
    let mut rig = Rig::new(length(), 1024);
    let a = wire(rig.packer.as_dyn(), &msgs(4, 300));
    let b = wire(rig.packer.as_dyn(), &msgs(9, 50));
    let (mut pa, mut pb) = (None, None);
    let mut got_a = rig.deliver(&mut pa, &a[..a.len() / 2 + 1], true).unwrap();
    let mut got_b = Vec::new();
    for chunk in b.chunks(7) {
        got_b.extend(rig.deliver(&mut pb, chunk, false).unwrap());
    }
    got_a.extend(rig.deliver(&mut pa, &a[a.len() / 2 + 1..], true).unwrap());
    assert_eq!(got_a, msgs(4, 300));
    assert_eq!(got_b, msgs(9, 50));
}

#[test]
fn buffers_come_back_to_the_pool_once_no_body_shares_them() {
    let mut rig = Rig::new(length(), 1024);
    let sent = msgs(2, 600);
    let bytes = wire(rig.packer.as_dyn(), &sent);
    let mut partial = None;
    // A first read leaves a partial frame in a pooled buffer.
    rig.deliver(&mut partial, &bytes[..500], true).unwrap();
    assert!(partial.is_some());
    // The next read completes both frames; a handler keeps one body.
    let landing = rig.reader.landing(&mut partial, true);
    let n = match landing {
        Landing::Spare { .. } => unreachable!("a small partial reads through scratch"),
        Landing::Scratch(s) => {
            let rest = &bytes[500..];
            s[..rest.len()].copy_from_slice(rest);
            rest.len()
        }
    };
    rig.reader
        .decode(
            &rig.packer,
            &mut partial,
            &rig.pool,
            n,
            false,
            PEER,
            |b, s, _| {
                s.extend_from_slice(b);
                Ok(())
            },
        )
        .unwrap();
    let batch = rig.reader.take_batch();
    let kept: Vec<Bytes> = batch
        .iter()
        .map(|(_, _, b, src, _)| src.slice_ref(b))
        .collect();
    rig.reader.finish(batch, &rig.pool);
    assert!(partial.is_none());
    // The kept bodies pin their buffer: the pool did not take it.
    assert_eq!(rig.pool.borrow().pooled_reads(), 0);
    // Later reads do not disturb the kept bodies.
    let more = wire(rig.packer.as_dyn(), &msgs(5, 100));
    rig.deliver(&mut partial, &more, false).unwrap();
    assert_eq!(kept[0], sent[0].body);
    assert_eq!(kept[1], sent[1].body);
}

#[test]
fn a_bad_frame_closes_after_the_frames_before_it() {
    let mut rig = Rig::new(ServerPacker::Length(LengthPacker::new(100)), 1024);
    let mut bytes = wire(rig.packer.as_dyn(), &msgs(2, 10));
    bytes.extend_from_slice(b"\xff\x00\x00\x00\x01\x00\x00\x00");
    let mut partial = None;
    let landing = rig.reader.landing(&mut partial, true);
    let Landing::Spare { buf, .. } = landing else {
        unreachable!()
    };
    buf.extend_from_slice(&bytes);
    let r = rig.reader.decode(
        &rig.packer,
        &mut partial,
        &rig.pool,
        bytes.len(),
        true,
        PEER,
        |_, _, _| Ok(()),
    );
    assert!(matches!(
        r,
        Err(CloseReason::Protocol(PackError::TooLong {
            len: 255,
            max: 100
        }))
    ));
    assert_eq!(
        rig.reader.take_batch().len(),
        2,
        "the frames before it stay"
    );
    assert!(partial.is_none());
}

#[test]
fn a_layer_failure_keeps_the_messages_it_made() {
    let mut rig = Rig::new(length(), 1024);
    let mut partial = None;
    let Landing::Scratch(s) = rig.reader.landing(&mut partial, false) else {
        unreachable!()
    };
    s[0] = 1;
    let r = rig.reader.decode(
        &rig.packer,
        &mut partial,
        &rig.pool,
        1,
        false,
        PEER,
        |_, _, msgs| {
            msgs.push(Message::new(9, "whole"));
            Err(CloseReason::Tls("bad record".into()))
        },
    );
    assert!(matches!(r, Err(CloseReason::Tls(_))));
    assert_eq!(rig.reader.take_batch().len(), 1);
}

fn arb_msgs() -> impl Strategy<Value = Vec<Message>> {
    prop::collection::vec(
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..3000),
        ),
        0..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(id, seq, body)| Message {
                id,
                seq,
                body: body.into(),
            })
            .collect()
    })
}

fn cut_points(cuts: &[prop::sample::Index], len: usize) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
    points.push(len);
    points.sort_unstable();
    points
}

/// What a packer's format keeps of a message (no seq, or no id).
fn as_sent(packer: u8, m: &Message) -> Message {
    match packer {
        0 => Message::new(m.id, m.body.clone()),
        1 => m.clone(),
        _ => Message::new(0, m.body.clone()),
    }
}

proptest! {
    #[test]
    fn any_cut_gives_the_messages_of_one_whole_read(
        msgs in arb_msgs(),
        which in 0u8..3,
        plain in any::<bool>(),
        read_size in 64usize..5000,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let packer = match which {
            0 => length(),
            1 => ServerPacker::Custom(Box::new(TlvPacker::default())),
            _ => ServerPacker::Custom(Box::new(Lines)),
        };
        // Lines cannot carry a newline inside a body.
        let msgs: Vec<Message> = msgs
            .iter()
            .map(|m| match which {
                2 => Message::new(0, m.body.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect::<Vec<u8>>()),
                _ => as_sent(which, m),
            })
            .collect();
        let bytes = wire(packer.as_dyn(), &msgs);
        let mut whole = Rig::new(packer, 1 << 20);
        let mut p = None;
        let want = whole.deliver(&mut p, &bytes, true).unwrap();
        prop_assert_eq!(&want, &msgs);

        let packer = std::mem::replace(&mut whole.packer, length());
        let mut rig = Rig::new(packer, read_size);
        let mut partial = None;
        let mut got = Vec::new();
        let mut from = 0;
        for to in cut_points(&cuts, bytes.len()) {
            got.extend(rig.deliver(&mut partial, &bytes[from..to], plain).unwrap());
            from = to;
        }
        prop_assert_eq!(got, want);
        prop_assert!(partial.is_none());
    }
}
