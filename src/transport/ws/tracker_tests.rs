//! The frame tracker alone: whole frames out whatever the split, what it
//! holds, header refusals, and dropping data while closing.

use proptest::prelude::*;

use super::*;
use crate::transport::ws::tests::client_frame;

const OPEN: Limits = Limits {
    max_frame: 1 << 20,
    max_message: 1 << 20,
    closing: false,
    client: false,
};

/// Walk `wire` cut at `points`; returns what was fed, and the tracker.
fn walk_cut(wire: &[u8], points: &[usize], limits: Limits) -> (Vec<u8>, FrameTracker) {
    let mut t = FrameTracker::default();
    let mut fed = Vec::new();
    let mut from = 0;
    for &p in points.iter().chain([&wire.len()]) {
        t.walk(&wire[from..p], limits, &mut |run| {
            fed.extend_from_slice(run);
            true
        })
        .unwrap();
        from = p;
    }
    (fed, t)
}

proptest! {
    /// Any split of a stream of whole frames hands tungstenite exactly the
    /// stream, frame by frame, and after every read what the tracker holds
    /// is at most the unfinished frame (plus a header's room), or, inside
    /// a fragmented message, what tungstenite's doubling message buffer
    /// holds for the fragments so far: never more, however many reads
    /// ended mid-frame before (the count of issue 18 grew without bound).
    #[test]
    fn any_split_feeds_the_stream_and_holds_only_the_unfinished_unit(
        frames in proptest::collection::vec((any::<bool>(), 0u8..3, 0usize..20000), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut wire = Vec::new();
        let mut ends = Vec::new();
        for (fin, opcode, len) in &frames {
            wire.extend(client_frame((u8::from(*fin) << 7) | opcode, &vec![7; *len], [1, 2, 3, 4]));
            ends.push(wire.len());
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut t = FrameTracker::default();
        let mut fed = Vec::new();
        let mut from = 0;
        for &p in points.iter().chain([&wire.len()]) {
            t.walk(&wire[from..p], OPEN, &mut |run| {
                fed.extend_from_slice(run);
                true
            }).unwrap();
            from = p;
            // Fed runs always end on a frame boundary.
            prop_assert!(fed.is_empty() || ends.contains(&fed.len()), "fed {} bytes", fed.len());
            let unit_end = ends.iter().copied().find(|&e| e > fed.len()).unwrap_or(fed.len());
            let frame_part = t.kept.capacity() as u64;
            prop_assert!(frame_part <= (unit_end - fed.len()) as u64 + 16, "kept {frame_part}");
            prop_assert!(t.message_room <= 2 * t.message + 8);
        }
        prop_assert_eq!(&fed, &wire);
        let fragmented = frames.last().is_some_and(|f| !f.0);
        prop_assert_eq!(t.at_boundary(), !fragmented);
        prop_assert!(t.kept.capacity() == 0, "nothing kept between frames");
    }

    /// The first close frame's code, wherever the reads end.
    #[test]
    fn the_first_close_code_at_any_split(cut in any::<prop::sample::Index>()) {
        let mut payload = 4999u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"why");
        let mut wire = client_frame(0x81, b"text first", [9, 8, 7, 6]);
        wire.extend(client_frame(0x88, &payload, [0xaa, 0x55, 0x0f, 0xf0]));
        // A second close frame (code 1005, which may not be sent) is not
        // the one tungstenite acts on.
        wire.extend(client_frame(0x88, &1005u16.to_be_bytes(), [1, 1, 1, 1]));
        let at = cut.index(wire.len() + 1);
        let (fed, t) = walk_cut(&wire, &[at], OPEN);
        prop_assert_eq!(fed, wire);
        prop_assert_eq!(t.close_code(), Some(4999));
    }
}

#[test]
fn a_close_frame_without_a_code_has_none() {
    let (_, t) = walk_cut(&client_frame(0x88, b"", [1, 2, 3, 4]), &[1], OPEN);
    assert_eq!(t.close_code(), None);
}

#[test]
fn a_declared_megabyte_holds_only_what_arrived() {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&1_000_000u64.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let mut t = FrameTracker::default();
    let mut fed = 0;
    t.walk(&header, OPEN, &mut |run| {
        fed += run.len();
        true
    })
    .unwrap();
    assert_eq!(
        fed, 0,
        "nothing reaches tungstenite before the frame is whole"
    );
    assert!(t.held() <= 64, "held {} for a 14-byte header", t.held());
    assert!(t.in_unit());
    // A few kilobytes more: still only about what arrived.
    t.walk(&[0; 4000], OPEN, &mut |_| true).unwrap();
    assert!(t.held() <= 2 * 4014, "held {}", t.held());
}

#[test]
fn headers_that_tungstenite_would_refuse_late_are_refused_at_once() {
    let limits = Limits {
        max_frame: 1000,
        max_message: 1500,
        closing: false,
        client: false,
    };
    let refused = |wire: &[u8]| {
        let mut t = FrameTracker::default();
        t.walk(wire, limits, &mut |_| true)
            .err()
            .map(|(code, _)| code)
    };
    let mut msb = vec![0x82, 0xff];
    msb.extend_from_slice(&(1u64 << 63).to_be_bytes());
    msb.extend_from_slice(&[0; 4]);
    assert_eq!(refused(&msb), Some(CloseCode::Protocol));
    assert_eq!(
        refused(&[0x82, 0x05]),
        Some(CloseCode::Protocol),
        "unmasked"
    );
    assert_eq!(
        refused(&[0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4]),
        Some(CloseCode::Protocol),
        "a ping of 200 bytes"
    );
    assert_eq!(
        refused(&[0x82, 0x80 | 126, 0x03, 0xe9, 1, 2, 3, 4]),
        Some(CloseCode::Size),
        "1001 bytes in one frame"
    );
    // Two fragments of 800: the second takes the message over 1500.
    let mut two = client_frame(0x02, &[0; 800], [1, 2, 3, 4]);
    two.extend_from_slice(&[0x80, 0x80 | 126, 0x03, 0x20, 1, 2, 3, 4]);
    assert_eq!(refused(&two), Some(CloseCode::Size));
    assert_eq!(refused(&client_frame(0x82, &[0; 1000], [0; 4])), None);
}

#[test]
fn while_closing_data_frames_are_dropped_and_control_frames_fed() {
    let closing = Limits {
        closing: true,
        ..OPEN
    };
    let mut wire = client_frame(0x82, &[5; 3000], [1, 2, 3, 4]);
    let ping = client_frame(0x89, b"p", [1, 2, 3, 4]);
    wire.extend_from_slice(&ping);
    let close = client_frame(0x88, &1000u16.to_be_bytes(), [1, 2, 3, 4]);
    wire.extend_from_slice(&close);
    for cut in [0, 1, 5, 100, 3007, 3008, 3010, wire.len()] {
        let (fed, t) = walk_cut(&wire, &[cut], closing);
        let mut expected = ping.clone();
        expected.extend_from_slice(&close);
        assert_eq!(fed, expected, "cut at {cut}");
        assert!(t.at_boundary());
        assert_eq!(t.close_code(), Some(1000));
    }
    // Mid-data-frame when the close begins: the rest is dropped.
    let mut t = FrameTracker::default();
    t.walk(&wire[..1000], OPEN, &mut |_| true).unwrap();
    assert!(t.held() >= 990);
    let mut fed = Vec::new();
    t.walk(&wire[1000..], closing, &mut |run| {
        fed.extend_from_slice(run);
        true
    })
    .unwrap();
    assert_eq!(t.kept.capacity(), 0);
    assert_eq!(fed.len(), ping.len() + close.len());
}
