//! What a connection holds between reads: a stream of whole frames cut at
//! any points never leaves more held than the frame in progress plus one
//! read (issue 18: the budget must count only the unit unfinished).

use super::*;

proptest! {
    #[test]
    fn a_partial_frame_holds_at_most_its_frame_plus_one_read(
        sizes in proptest::collection::vec(0usize..150_000, 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        plain in any::<bool>(),
    ) {
        const READ: usize = 4096;
        let msgs: Vec<Message> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Message::new(i as u32, vec![i as u8; n]))
            .collect();
        let mut rig = Rig::new(length(), READ);
        let stream = wire(rig.packer.as_dyn(), &msgs);
        let mut ends = Vec::new();
        let mut at = 0;
        for m in &msgs {
            at += 8 + m.body.len();
            ends.push(at);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut partial = None;
        let mut from = 0;
        let mut got = 0;
        for p in points.into_iter().chain([stream.len()]) {
            got += rig.deliver(&mut partial, &stream[from..p], plain).unwrap().len();
            from = p;
            let start = ends.iter().copied().filter(|&e| e <= from).max().unwrap_or(0);
            let unit = ends.iter().copied().find(|&e| e > from).map_or(0, |e| e - start);
            let held = partial.as_ref().map_or(0, BytesMut::capacity);
            prop_assert!(
                held <= unit + READ,
                "after {from} of {} bytes: {held} held for a frame of {unit}",
                stream.len()
            );
        }
        prop_assert_eq!(got, msgs.len());
        prop_assert!(partial.is_none());
    }
}
