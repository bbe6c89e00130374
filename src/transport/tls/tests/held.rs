//! What a session holds between reads: records of application data cut
//! at any points never leave more held than the record in progress
//! (issue 18: the budget counts only the unit unfinished).

use std::io::Write;

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn a_partial_record_holds_at_most_its_record(
        sizes in proptest::collection::vec(1usize..40_000, 1..5),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        tls13 in any::<bool>(),
    ) {
        let (acceptor, roots) = pki();
        let version = if tls13 { &TLS13 } else { &TLS12 };
        let mut pair = Pair::new(&acceptor, client_config(&roots, version, None), usize::MAX);
        pair.handshake();
        pair.client.set_buffer_limit(None);
        let mut sent = 0;
        for (i, &n) in sizes.iter().enumerate() {
            pair.client.writer().write_all(&vec![i as u8; n]).unwrap();
            sent += n;
        }
        let mut wire = Vec::new();
        while pair.client.wants_write() {
            pair.client.write_tls(&mut wire).unwrap();
        }
        // Where each record ends.
        let mut ends = Vec::new();
        let mut at = 0;
        while at + 5 <= wire.len() {
            at += 5 + usize::from(u16::from_be_bytes([wire[at + 3], wire[at + 4]]));
            ends.push(at);
        }
        prop_assert_eq!(at, wire.len());
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut from = 0;
        for p in points.into_iter().chain([wire.len()]) {
            pair.server.receive(&mut wire[from..p], &mut pair.plain).unwrap();
            from = p;
            let start = ends.iter().copied().filter(|&e| e <= from).max().unwrap_or(0);
            let unit = ends.iter().copied().find(|&e| e > from).map_or(0, |e| e - start);
            prop_assert!(
                pair.server.held() <= unit.max(16),
                "after {from} of {} bytes: {} held for a record of {unit}",
                wire.len(),
                pair.server.held()
            );
            prop_assert_eq!(pair.server.in_unit(), unit > 0 && start < from);
        }
        prop_assert_eq!(pair.plain.len(), sent);
        pair.assert_idle();
    }
}
