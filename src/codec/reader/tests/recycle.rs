//! What the reader gives back and what it refuses, found by mutation
//! testing: buffers a read outgrew return to the pool once the batch is
//! finished, and a `peek` that stops answering mid-read is an error.

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
