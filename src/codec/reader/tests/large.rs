//! Large frames: room that grows with the bytes that arrive, never
//! reserved for a declared length at once, and a completed frame's buffer
//! of the frame's size.

use super::*;

#[test]
fn the_rest_of_a_large_frame_is_read_straight_into_room_that_grows_with_it() {
    let mut rig = Rig::new(length(), 4096);
    let body = vec![7u8; 200_000];
    let bytes = wire(rig.packer.as_dyn(), &[Message::new(5, body.clone())]);
    let mut partial = None;
    // The first read: the header and some body. The buffer makes room for
    // more reads, not for the whole frame at once.
    assert!(rig
        .deliver(&mut partial, &bytes[..4096], true)
        .unwrap()
        .is_empty());
    let kept = partial.as_ref().expect("a large frame keeps its buffer");
    assert!(
        kept.capacity() >= 2 * 4096,
        "room for at least one more read"
    );
    assert!(
        kept.capacity() <= 4096 + 4 * 4096,
        "{} reserved",
        kept.capacity()
    );
    // Each next read lands in that buffer, directly.
    let mut reads = 0;
    let mut from = 4096;
    let mut got = Vec::new();
    while from < bytes.len() {
        let landing = rig.reader.landing(&mut partial, true);
        assert!(landing.is_direct());
        let n = landing.asked().min(bytes.len() - from);
        got.extend(
            rig.deliver(&mut partial, &bytes[from..from + n], true)
                .unwrap(),
        );
        from += n;
        reads += 1;
    }
    assert_eq!(got, [Message::new(5, body)]);
    assert!(partial.is_none());
    // Room grows geometrically: a handful of reads, not one per 4 KiB.
    assert!(reads <= 12, "{reads} reads");
}

/// A header may declare any length up to the limit: the buffer grows only
/// as the bytes arrive (issue 14: a declared 4 GiB cost a 4 GiB
/// reservation at once).
#[test]
fn a_declared_length_costs_nothing_until_its_bytes_arrive() {
    let mut rig = Rig::new(
        ServerPacker::Length(LengthPacker::new(u32::MAX as usize)),
        4096,
    );
    let mut partial = None;
    let mut head = b"\xff\xff\xff\xff\x01\x00\x00\x00".to_vec();
    head.extend_from_slice(&[0; 100]);
    assert!(rig.deliver(&mut partial, &head, true).unwrap().is_empty());
    let cap = partial.as_ref().unwrap().capacity();
    assert!(
        cap <= 108 + 4 * 4096,
        "{cap} bytes reserved for a declared 4 GiB"
    );
}

/// A completed large frame's buffer is no larger than the frame, so a
/// body kept from it pins about its own size.
#[test]
fn a_large_frame_completes_in_a_buffer_of_its_size() {
    let mut rig = Rig::new(length(), 4096);
    let bytes = wire(rig.packer.as_dyn(), &[Message::new(1, vec![3u8; 300_000])]);
    let mut partial = None;
    let mut from = 0;
    let mut alloc = 0;
    while from < bytes.len() {
        let landing = rig.reader.landing(&mut partial, true);
        let n = landing.asked().min(bytes.len() - from);
        let (direct, buf_n) = match landing {
            Landing::Spare { buf, .. } => {
                buf.extend_from_slice(&bytes[from..from + n]);
                (true, n)
            }
            Landing::Scratch(s) => {
                let n = n.min(s.len());
                s[..n].copy_from_slice(&bytes[from..from + n]);
                (false, n)
            }
        };
        from += buf_n;
        rig.reader
            .decode(
                &rig.packer,
                &mut partial,
                &rig.pool,
                buf_n,
                direct,
                PEER,
                |b, s, _| {
                    s.extend_from_slice(b);
                    Ok(())
                },
            )
            .unwrap();
        let batch = rig.reader.take_batch();
        if batch.len() > 0 {
            alloc = batch.iter().next().unwrap().4;
        }
        rig.reader.finish(batch, &rig.pool);
    }
    assert!(
        alloc >= bytes.len() && alloc <= bytes.len() + 64,
        "{alloc} for {}",
        bytes.len()
    );
}

#[test]
fn room_ahead_is_capped_at_the_body_limit_plus_one_read() {
    // A custom packer declaring a huge frame gets room for at most
    // max_body_length + one read; the buffer grows as the bytes arrive.
    struct Liar;
    impl Packer for Liar {
        fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
            Ok(Peek::Incomplete {
                frame_len: Some(buf.len() + (usize::MAX >> 2)),
            })
        }
        fn encode(&self, _: u32, _: u32, _: &[u8], _: &mut BytesMut) -> Result<(), PackError> {
            Ok(())
        }
    }
    let mut rig = Rig::new(ServerPacker::Custom(Box::new(Liar)), 1024);
    let mut partial = None;
    rig.deliver(&mut partial, &[1; 100], true).unwrap();
    let cap = partial.as_ref().unwrap().capacity();
    assert!(cap <= (1 << 20) + 1024 + 100 + 64, "reserved {cap}");
}

/// Every read of a large frame, not only its first, keeps the room
/// following the bytes that arrived: the buffer is kept and grown step by
/// step, never swapped for one of the whole declared length.
#[test]
fn later_reads_of_a_large_frame_keep_room_following_the_bytes() {
    let mut rig = Rig::new(ServerPacker::Length(LengthPacker::new(4 << 20)), 4096);
    let bytes = wire(rig.packer.as_dyn(), &[Message::new(1, vec![3u8; 1 << 20])]);
    let mut partial = None;
    let mut from = 0;
    for _ in 0..4 {
        let n = rig.reader.landing(&mut partial, true).asked();
        assert!(rig
            .deliver(&mut partial, &bytes[from..from + n], true)
            .unwrap()
            .is_empty());
        from += n;
        let kept = partial.as_ref().expect("a large frame keeps a buffer");
        assert_eq!(kept.len(), from);
        assert!(
            kept.capacity() <= 2 * from + 4 * 4096,
            "{} reserved for {from} bytes of a 1 MiB frame",
            kept.capacity()
        );
    }
}
