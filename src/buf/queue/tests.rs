//! The write queue's unit tests: order across coalesced and shared
//! chunks, failing or panicking encoders, and frame boundaries kept for a
//! reconnect.

use super::*;

/// A writer that accepts at most `limit` bytes per call.
struct Trickle {
    out: Vec<u8>,
    limit: usize,
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.limit);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn keeps_order_across_coalesced_and_shared_chunks() {
    let mut q = WriteQueue::default();
    q.encode_with(|b| {
        b.extend_from_slice(b"ab");
        Ok::<_, ()>(())
    })
    .unwrap();
    q.push_frame(&SharedFrame {
        head: Bytes::from_static(b"cde"),
        ..SharedFrame::default()
    });
    q.encode_with(|b| {
        b.extend_from_slice(b"f");
        Ok::<_, ()>(())
    })
    .unwrap();
    assert!(q
        .encode_with(|b| {
            b.extend_from_slice(b"XX");
            Err(())
        })
        .is_err());
    assert_eq!(q.len(), 6);
    let mut w = Trickle {
        out: Vec::new(),
        limit: 2,
    };
    while !q.is_empty() {
        q.write_to(&mut w).unwrap();
    }
    assert_eq!(w.out, b"abcdef");
}

#[test]
fn a_panicking_encoder_leaves_nothing_behind() {
    let mut q = WriteQueue::default();
    q.extend(b"ok");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.encode_with(|b| -> Result<(), ()> {
            b.extend_from_slice(b"half");
            panic!("encoder bug")
        })
    }));
    assert!(panicked.is_err());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.encode_around(
            Bytes::from_static(b"body"),
            |before, _| -> Result<bool, ()> {
                before.extend_from_slice(b"head");
                panic!("encoder bug")
            },
        )
    }));
    assert!(panicked.is_err());
    assert_eq!(q.len(), 2);
    let mut out = Vec::new();
    while !q.is_empty() {
        q.write_to(&mut out).unwrap();
    }
    assert_eq!(out, b"ok");
}

#[test]
fn encode_around_queues_the_body_by_reference_in_order() {
    let mut q = WriteQueue::default();
    q.extend(b"<");
    let body = Bytes::from(vec![b'b'; 3]);
    let queued = q
        .encode_around(body.clone(), |before, after| {
            before.extend_from_slice(b"H");
            after.extend_from_slice(b"T");
            Ok::<_, ()>(true)
        })
        .unwrap();
    assert!(queued);
    // Declined or failed: nothing of it stays queued.
    let declined = q.encode_around(body.clone(), |before, _| {
        before.extend_from_slice(b"XX");
        Ok::<_, ()>(false)
    });
    assert_eq!(declined, Ok(false));
    assert!(q
        .encode_around(body, |before, _| {
            before.extend_from_slice(b"XX");
            Err(())
        })
        .is_err());
    q.extend(b">");
    assert_eq!(q.len(), 7);
    let mut w = Trickle {
        out: Vec::new(),
        limit: 3,
    };
    while !q.is_empty() {
        q.write_to(&mut w).unwrap();
    }
    assert_eq!(w.out, b"<HbbbT>");
}

/// Queue `body` as one frame of the kind `how` picks: coalesced, shared
/// pieces, or a body by reference between a head and a tail.
fn queue_frame(q: &mut WriteQueue, how: u8, body: &[u8]) {
    match how % 3 {
        0 => q
            .encode_with(|b| {
                b.extend_from_slice(body);
                Ok::<_, ()>(())
            })
            .unwrap(),
        1 => {
            let (head, rest) = body.split_at(body.len() / 2);
            q.push_frame(&SharedFrame {
                head: Bytes::copy_from_slice(head),
                body: Bytes::copy_from_slice(rest),
                tail: Bytes::new(),
            });
        }
        _ => {
            let (head, rest) = body.split_at(body.len().min(1));
            let queued = q
                .encode_around(Bytes::copy_from_slice(rest), |before, _| {
                    before.extend_from_slice(head);
                    Ok::<_, ()>(true)
                })
                .unwrap();
            assert!(queued);
        }
    }
}

#[test]
fn after_a_loss_only_unstarted_unbound_frames_stay_in_order() {
    let mut q = WriteQueue::default();
    q.track_frames();
    queue_frame(&mut q, 0, b"first");
    queue_frame(&mut q, 1, b"second");
    queue_frame(&mut q, 2, b"request");
    q.bind_last();
    queue_frame(&mut q, 0, b"third");
    // Nothing written, nothing bound but the request: it alone goes.
    let mut w = Trickle {
        out: Vec::new(),
        limit: 3,
    };
    q.write_to(&mut w).unwrap(); // "fir": the first frame is cut
    assert_eq!(q.keep_unstarted(), 2 + 7);
    let mut out = Vec::new();
    while !q.is_empty() {
        q.write_to(&mut out).unwrap();
    }
    assert_eq!(out, b"secondthird");
    // Whole frames written: nothing more to drop; an empty queue stays so.
    q.track_frames();
    assert_eq!(q.keep_unstarted(), 0);
    queue_frame(&mut q, 0, b"ab");
    q.write_to(&mut out).unwrap();
    assert_eq!(q.keep_unstarted(), 0);
    assert!(q.is_empty());
}

proptest::proptest! {
    /// Any frames, any kinds, some bound, written in pieces of any size
    /// (or handed to TLS), then cut: what stays is exactly the frames not
    /// started and not bound, in order, and the queue's length agrees.
    #[test]
    fn keep_unstarted_matches_a_model(
        frames in proptest::collection::vec((1usize..40, 0u8..3, proptest::bool::ANY), 0..20),
        limit in 1usize..64,
        writes in 0usize..6,
        tls in proptest::bool::ANY,
    ) {
        let mut q = WriteQueue::default();
        q.track_frames();
        let mut model = Vec::new();
        for (i, &(len, how, bound)) in frames.iter().enumerate() {
            let body = vec![i as u8; len];
            queue_frame(&mut q, how, &body);
            if bound {
                q.bind_last();
            }
            model.push((body, bound));
        }
        let mut written = 0;
        for _ in 0..writes {
            if tls {
                q.drain_into(limit, |b| {
                    written += b.len();
                    b.len()
                });
            } else {
                let mut w = Trickle { out: Vec::new(), limit };
                if !q.is_empty() {
                    written += q.write_to(&mut w).unwrap();
                }
            }
        }
        let mut want = Vec::new();
        let mut at = 0;
        for (body, bound) in &model {
            if at >= written && !bound {
                want.extend_from_slice(body);
            }
            at += body.len();
        }
        let before = q.len();
        let dropped = q.keep_unstarted();
        proptest::prop_assert_eq!(q.len(), before - dropped);
        proptest::prop_assert_eq!(q.len(), want.len());
        let mut out = Vec::new();
        while !q.is_empty() {
            q.write_to(&mut out).unwrap();
        }
        proptest::prop_assert_eq!(out, want);
        proptest::prop_assert_eq!(q.keep_unstarted(), 0);
    }
}

#[test]
fn datagrams_come_out_frame_by_frame_whatever_pieces_they_lie_in() {
    let mut q = WriteQueue::default();
    q.track_frames();
    q.encode_with(|b| {
        b.extend_from_slice(b"one");
        Ok::<_, ()>(())
    })
    .unwrap();
    q.push_frame(&SharedFrame {
        head: Bytes::from_static(b"tw"),
        body: Bytes::from_static(b"o-"),
        tail: Bytes::from_static(b"shared"),
    });
    q.encode_with(|b| {
        b.extend_from_slice(b"three");
        Ok::<_, ()>(())
    })
    .unwrap();
    let mut scratch = Vec::new();
    let mut got = Vec::new();
    while let Some(frame) = q.with_front_frame(&mut scratch, |f| f.to_vec()) {
        assert_eq!(q.pop_frame(), frame.len());
        got.push(frame);
    }
    assert_eq!(got, [&b"one"[..], b"two-shared", b"three"]);
    assert!(q.is_empty());
    assert_eq!(q.pop_frame(), 0);
}

proptest::proptest! {
    #[test]
    fn datagrams_are_the_frames_queued(
        frames in proptest::collection::vec(
            (proptest::collection::vec(proptest::num::u8::ANY, 1..40), proptest::bool::ANY),
            0..20,
        )
    ) {
        let mut q = WriteQueue::default();
        q.track_frames();
        for (body, shared) in &frames {
            if *shared {
                q.push_frame(&SharedFrame {
                    head: Bytes::copy_from_slice(&body[..body.len() / 2]),
                    body: Bytes::copy_from_slice(&body[body.len() / 2..]),
                    tail: Bytes::new(),
                });
            } else {
                q.encode_with(|b| {
                    b.extend_from_slice(body);
                    Ok::<_, ()>(())
                })
                .unwrap();
            }
        }
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        while let Some(frame) = q.with_front_frame(&mut scratch, |f| f.to_vec()) {
            proptest::prop_assert_eq!(q.pop_frame(), frame.len());
            got.push(frame);
        }
        let want: Vec<Vec<u8>> = frames.into_iter().map(|(b, _)| b).collect();
        proptest::prop_assert_eq!(got, want);
        proptest::prop_assert_eq!(q.len(), 0);
    }
}
