//! What mutation testing found untested in the reader: buffers a read
//! outgrew return to the pool once the batch is finished, a `peek` that
//! stops answering mid-read is an error, as is a `decode` that returns a
//! message without consuming input, room a `decode` made is kept, and two
//! decodes before one dispatch keep the first one's frames.

use super::*;

#[test]
fn buffers_a_large_frame_outgrew_go_back_to_the_pool_when_each_batch_is_finished() {
    let mut rig = Rig::new(length(), 4096);
    let body = vec![9u8; 100_000];
    let bytes = wire(rig.packer.as_dyn(), &[Message::new(3, body.clone())]);
    let mut partial = None;
    let mut got = Vec::new();
    let mut from = 0;
    while from < bytes.len() {
        let n = rig
            .reader
            .landing(&mut partial, true)
            .asked()
            .min(bytes.len() - from);
        got.extend(
            rig.deliver(&mut partial, &bytes[from..from + n], true)
                .unwrap(),
        );
        from += n;
        assert!(
            rig.reader.spent.is_empty(),
            "after {from} bytes: {} buffers not given back",
            rig.reader.spent.len()
        );
    }
    assert_eq!(got, [Message::new(3, body)]);
    assert!(rig.pool.borrow().pooled_reads() >= 1, "none pooled");
}

/// A packer whose `peek` finds a frame, then answers `Unsupported` for
/// the bytes after it.
struct Fickle;

impl Packer for Fickle {
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        match buf.first() {
            Some(1) if buf.len() >= 4 => Ok(Peek::Frame {
                id: 1,
                seq: 0,
                body: 1..4,
                len: 4,
            }),
            Some(1) => Ok(Peek::Incomplete { frame_len: Some(4) }),
            _ => Ok(Peek::Unsupported),
        }
    }

    fn encode(&self, _: u32, _: u32, _: &[u8], _: &mut BytesMut) -> Result<(), PackError> {
        Ok(())
    }
}

#[test]
fn a_peek_that_turns_unsupported_after_a_frame_is_a_protocol_error() {
    for plain in [true, false] {
        let mut rig = Rig::new(ServerPacker::Custom(Box::new(Fickle)), 1024);
        let mut partial = None;
        let got = rig.deliver(&mut partial, &[1, 7, 7, 7, 2, 8, 8, 8], plain);
        assert!(
            matches!(got, Err(CloseReason::Protocol(PackError::Malformed(_)))),
            "plain={plain}: {got:?}"
        );
    }
}

/// A decode-only packer that, seeing a frame's 4-byte length, makes room
/// for the whole frame in the buffer before it has arrived.
struct Reserving;

impl Packer for Reserving {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
        let Some(head) = buf.get(..4) else {
            return Ok(None);
        };
        let len = 4 + u32::from_le_bytes(head.try_into().unwrap()) as usize;
        if buf.len() < len {
            buf.reserve(len - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(len).freeze();
        frame.advance(4);
        Ok(Some(Message::new(0, frame)))
    }

    fn encode(&self, _: u32, _: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        Ok(())
    }
}

/// The room a packer's `decode` made for a large frame is kept with the
/// partial frame: the connection keeps that buffer (the rest lands in
/// it), it is not copied into a buffer of the bytes at hand.
#[test]
fn room_a_decode_packer_made_for_a_large_frame_is_kept() {
    // A frame of 100 KB, and one whose room ahead (1.5 KB) is more than
    // a read but less than a read plus the bytes at hand.
    for (plain, size) in [
        (true, 100_000),
        (false, 100_000),
        (true, 2_496),
        (false, 2_496),
    ] {
        let mut rig = Rig::new(ServerPacker::Custom(Box::new(Reserving)), 1024);
        let body = vec![4u8; size];
        let bytes = wire(rig.packer.as_dyn(), &[Message::new(0, body.clone())]);
        let mut partial = None;
        assert!(rig
            .deliver(&mut partial, &bytes[..1000], plain)
            .unwrap()
            .is_empty());
        let kept = partial.as_ref().expect("a partial frame");
        assert!(
            kept.capacity() >= bytes.len(),
            "plain={plain}: {} kept of the {} the packer made room for",
            kept.capacity(),
            bytes.len()
        );
        let got = rig.deliver(&mut partial, &bytes[1000..], plain).unwrap();
        assert_eq!(got, [Message::new(0, body.clone())], "plain={plain}");
    }
}

/// Decoded twice before one dispatch (a WebSocket upgrade, then what
/// came behind it): the first read's frames keep their bodies and come
/// before the second's, each still telling the allocation it pins.
#[test]
fn frames_of_two_decodes_before_one_dispatch_keep_their_bodies_and_order() {
    let mut rig = Rig::new(length(), 1024);
    let first = msgs(3, 10);
    let second = vec![
        Message::new(7, vec![1u8; 20]),
        Message::new(8, vec![2u8; 5]),
    ];
    let mut partial = None;
    for sent in [&first, &second] {
        let bytes = wire(rig.packer.as_dyn(), sent);
        let (n, result) = rig.read_once(&mut partial, &bytes, true);
        assert_eq!(n, bytes.len(), "one read");
        result.unwrap();
    }
    let batch = rig.reader.take_batch();
    let got: Vec<_> = batch
        .iter()
        .map(|(id, seq, body, _, alloc)| {
            assert_eq!(seq, 0);
            (Message::new(id, body.to_vec()), alloc)
        })
        .collect();
    let want: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(got.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(), want);
    for (m, alloc) in &got {
        assert!(
            *alloc >= 1024,
            "message {} pins {alloc}, not its read's buffer",
            m.id
        );
    }
    rig.reader.finish(batch, &rig.pool);
}

/// Whole frames split off a partial frame's buffer leave a small tail:
/// it moves to a buffer of its own, not left sitting right behind the
/// frames, in the allocation their bodies share (which it would pin).
#[test]
fn a_small_tail_left_behind_split_frames_moves_out_of_their_buffer() {
    let mut rig = Rig::new(length(), 1024);
    let a = wire(rig.packer.as_dyn(), &[Message::new(1, vec![5u8; 292])]);
    let b = wire(rig.packer.as_dyn(), &[Message::new(2, vec![6u8; 280])]);
    let mut partial = None;
    assert!(rig
        .deliver(&mut partial, &a[..200], false)
        .unwrap()
        .is_empty());
    // The rest of frame 1 and the header and 12 bytes of frame 2 (the
    // tail: 20 bytes, 268 missing), in one read through the layer.
    let mut input = a[200..].to_vec();
    input.extend_from_slice(&b[..20]);
    let (n, result) = rig.read_once(&mut partial, &input, false);
    assert_eq!(n, input.len(), "one read");
    result.unwrap();
    let batch = rig.reader.take_batch();
    assert_eq!(batch.frames.len(), 1);
    let tail = partial.as_ref().expect("frame 2's start");
    assert_eq!(tail.len(), 20);
    let frames_end = batch.bytes.as_ptr_range().end;
    assert_ne!(
        tail.as_ptr(),
        frames_end,
        "the tail sits behind the frames, in their buffer"
    );
    rig.reader.finish(batch, &rig.pool);
}

/// A decode-only packer that returns its first message without taking
/// its bytes from the buffer, then behaves.
struct Lazy(std::sync::atomic::AtomicBool);

impl Packer for Lazy {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
        if !self.0.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return Ok(Some(Message::new(1, Bytes::new())));
        }
        Lines.decode(buf)
    }

    fn encode(&self, _: u32, _: u32, _: &[u8], _: &mut BytesMut) -> Result<(), PackError> {
        Ok(())
    }
}

#[test]
fn a_decode_that_returns_a_message_without_consuming_input_is_a_protocol_error() {
    let lazy = Lazy(std::sync::atomic::AtomicBool::new(false));
    let mut rig = Rig::new(ServerPacker::Custom(Box::new(lazy)), 1024);
    let mut partial = None;
    let got = rig.deliver(&mut partial, b"one\ntwo\n", true);
    assert!(
        matches!(got, Err(CloseReason::Protocol(PackError::Malformed(_)))),
        "{got:?}"
    );
}
