//! A hashed timer wheel: heartbeat, idle-kick and close deadlines.
//!
//! Each event loop owns one. Time is counted in integer ticks since the
//! wheel's start; the reactor converts `Instant`s to ticks and feeds the
//! current tick to `TimerWheel::advance` once per loop turn, and uses
//! `TimerWheel::next_due` for its `poll` timeout so an idle loop sleeps
//! and a due timer is never late by a whole interval.
//!
//! An entry due at tick `at` lives in slot `at % slots`. Advancing visits
//! only the slots of the ticks passed (at most one round of them, skipping
//! empty slots through an occupancy bitmap) and fires the entries whose tick
//! has come; entries of a later round stay where they are. When every
//! timeout is shorter than one round, everything in a visited slot is due,
//! so a tick costs O(entries due), never O(all entries).

/// Bits per word of the occupancy bitmap.
const WORD_BITS: usize = u64::BITS as usize;

/// A hashed timer wheel holding values of type `T`, each due at a tick.
///
/// Removal is lazy: cancelling a timer is the owner's business (e.g. store a
/// generation in `T` and ignore stale values when they fire).
#[derive(Debug)]
pub(crate) struct TimerWheel<T> {
    /// `slots[at & mask]` holds `(at, value)` for every entry due at `at`.
    slots: Vec<Vec<(u64, T)>>,
    /// One bit per slot, set while the slot is non-empty.
    occupied: Vec<u64>,
    /// `slots.len() - 1`; `slots.len()` is a power of two.
    mask: u64,
    /// The tick the wheel has advanced to.
    current: u64,
    /// Number of entries across all slots.
    len: usize,
    /// An empty Vec swapped with a slot that keeps later-round entries, so
    /// neither loses its capacity.
    spare: Vec<(u64, T)>,
    /// Slots fired since creation, to check that a jump is bounded.
    #[cfg(test)]
    visits: usize,
}

impl<T> TimerWheel<T> {
    /// A wheel with `slots` slots, rounded up to a power of two (minimum 2).
    ///
    /// Size it so the longest timeout in ticks is below `slots`; then every
    /// entry in a fired slot is due and the cost per tick is O(entries due).
    pub(crate) fn new(slots: usize) -> Self {
        let n = slots.max(2).next_power_of_two();
        TimerWheel {
            slots: (0..n).map(|_| Vec::new()).collect(),
            occupied: vec![0; n.div_ceil(WORD_BITS)],
            mask: n as u64 - 1,
            current: 0,
            len: 0,
            spare: Vec::new(),
            #[cfg(test)]
            visits: 0,
        }
    }

    /// Schedule `value` to fire at tick `at`.
    ///
    /// An `at` at or before the current tick fires at the next advance.
    pub(crate) fn insert(&mut self, at: u64, value: T) {
        let at = at.max(self.current + 1);
        let idx = self.index(at);
        self.slots[idx].push((at, value));
        self.occupied[idx / WORD_BITS] |= 1 << (idx % WORD_BITS);
        self.len += 1;
    }

    /// The tick the wheel has advanced to (starts at 0).
    pub(crate) fn current(&self) -> u64 {
        self.current
    }

    /// Advance to tick `now`, appending every value whose tick is `<= now`
    /// to `due` (in any order).
    ///
    /// Visits at most `slots` slots however far `now` jumps; entries whose
    /// tick is in a later round stay in place. A `now` at or before
    /// [`current`](Self::current) does nothing.
    pub(crate) fn advance(&mut self, now: u64, due: &mut Vec<T>) {
        if now <= self.current {
            return;
        }
        // Ticks current+1 ..= now, but one round covers every slot.
        let mut from = self.current + 1;
        let end = from + (now - self.current).min(self.slots.len() as u64);
        while let Some(tick) = self.next_occupied(from, end - from) {
            self.fire(self.index(tick), now, due);
            from = tick + 1;
        }
        self.current = now;
    }

    /// Number of scheduled entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keep only the entries `keep` says to (the others' timers are gone
    /// before they came due: a sweep, for a wheel whose removal is lazy).
    /// Visits the occupied slots; a slot left with much spare room gives
    /// most of it back.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for word in 0..self.occupied.len() {
            let mut bits = self.occupied[word];
            while bits != 0 {
                let idx = word * WORD_BITS + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let slot = &mut self.slots[idx];
                let before = slot.len();
                slot.retain(|(_, value)| keep(value));
                self.len -= before - slot.len();
                if slot.is_empty() {
                    self.occupied[word] &= !(1 << (idx % WORD_BITS));
                }
                if slot.capacity() > 4 * slot.len().max(4) {
                    slot.shrink_to(slot.len() * 2);
                }
            }
        }
    }

    /// True when no entry is scheduled.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest tick at which [`advance`](Self::advance) could return
    /// something, or `None` if the wheel is empty.
    ///
    /// This is the tick of the next non-empty slot (found through the
    /// occupancy bitmap, O(slots / 64)). It is never later than the earliest
    /// entry's tick; it is earlier only when that slot holds just later-round
    /// entries, which cannot happen when the wheel is sized as
    /// [`new`](Self::new) advises.
    pub(crate) fn next_due(&self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        self.next_occupied(self.current + 1, self.slots.len() as u64)
    }

    /// The slot of tick `tick`.
    fn index(&self, tick: u64) -> usize {
        (tick & self.mask) as usize
    }

    /// The first tick in `from .. from + within` (at most one round) whose
    /// slot is non-empty.
    fn next_occupied(&self, from: u64, within: u64) -> Option<u64> {
        let within = within.min(self.slots.len() as u64);
        let mut offset = 0;
        while offset < within {
            let idx = self.index(from + offset);
            let bit = idx % WORD_BITS;
            // Bits past the last slot are never set, so a hit is a real slot.
            let word = self.occupied[idx / WORD_BITS] >> bit;
            if word != 0 {
                let hit = offset + u64::from(word.trailing_zeros());
                return (hit < within).then_some(from + hit);
            }
            // On to the next word, or wrap to slot 0 at the end of the wheel.
            offset += (WORD_BITS - bit).min(self.slots.len() - idx) as u64;
        }
        None
    }

    /// Move every entry of slot `idx` due by `now` into `due`.
    fn fire(&mut self, idx: usize, now: u64, due: &mut Vec<T>) {
        #[cfg(test)]
        {
            self.visits += 1;
        }
        let slot = &mut self.slots[idx];
        let before = slot.len();
        if slot.iter().all(|&(at, _)| at <= now) {
            // The common case: drain in place, keeping the slot's capacity.
            due.extend(slot.drain(..).map(|(_, value)| value));
        } else {
            // Some entries belong to a later round: refill the slot from a
            // swapped-out copy; both Vecs keep their capacity.
            std::mem::swap(slot, &mut self.spare);
            for (at, value) in self.spare.drain(..) {
                if at <= now {
                    due.push(value);
                } else {
                    slot.push((at, value));
                }
            }
        }
        self.len -= before - slot.len();
        if slot.is_empty() {
            self.occupied[idx / WORD_BITS] &= !(1 << (idx % WORD_BITS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn advance<T>(wheel: &mut TimerWheel<T>, now: u64) -> Vec<T> {
        let mut due = Vec::new();
        wheel.advance(now, &mut due);
        due
    }

    #[test]
    fn slots_round_up_to_a_power_of_two() {
        assert_eq!(TimerWheel::<()>::new(0).slots.len(), 2);
        assert_eq!(TimerWheel::<()>::new(1).slots.len(), 2);
        assert_eq!(TimerWheel::<()>::new(5).slots.len(), 8);
        assert_eq!(TimerWheel::<()>::new(64).slots.len(), 64);
        assert_eq!(TimerWheel::<()>::new(65).occupied.len(), 2);
    }

    #[test]
    fn fires_exactly_at_its_tick() {
        let mut wheel = TimerWheel::new(16);
        wheel.insert(5, "a");
        for now in 1..5 {
            assert!(advance(&mut wheel, now).is_empty(), "fired early at {now}");
        }
        assert_eq!(advance(&mut wheel, 5), ["a"]);
        assert!(advance(&mut wheel, 20).is_empty());
        assert_eq!(wheel.current(), 20);
    }

    #[test]
    fn later_rounds_stay_in_place() {
        let mut wheel = TimerWheel::new(4);
        wheel.insert(10, 'x');
        wheel.insert(2, 'y'); // same slot as 10
        assert_eq!(advance(&mut wheel, 6), ['y']);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advance(&mut wheel, 9), Vec::<char>::new());
        assert_eq!(advance(&mut wheel, 10), ['x']);
        assert!(wheel.is_empty());
    }

    #[test]
    fn big_jump_fires_all_due_and_visits_bounded_slots() {
        let mut wheel = TimerWheel::new(8);
        for at in [1, 3, 7, 8, 100, 999_999, 1_000_000] {
            wheel.insert(at, at);
        }
        wheel.insert(1_000_001, 1_000_001);
        wheel.insert(5_000_000, 5_000_000);
        let mut fired = advance(&mut wheel, 1_000_000);
        fired.sort_unstable();
        assert_eq!(fired, [1, 3, 7, 8, 100, 999_999, 1_000_000]);
        assert!(wheel.visits <= 8, "visited {} slots", wheel.visits);
        assert_eq!(wheel.len(), 2);
        assert_eq!(wheel.current(), 1_000_000);

        // A jump of 2^62 ticks is just as cheap.
        let mut fired = advance(&mut wheel, 1 << 62);
        fired.sort_unstable();
        assert_eq!(fired, [1_000_001, 5_000_000]);
        assert!(wheel.visits <= 16);
    }

    #[test]
    fn far_future_entries_stay_and_next_due_stays_within_a_round() {
        let mut wheel = TimerWheel::new(8);
        wheel.insert(u64::MAX, "never");
        wheel.insert(u64::MAX / 2, "much later");
        wheel.insert(3, "soon");
        assert_eq!(advance(&mut wheel, 3), ["soon"]);
        for now in [4, 11, 100, 1 << 40] {
            let next = wheel.next_due().expect("entries left");
            assert!(
                next > wheel.current() && next <= wheel.current() + 8,
                "{next}"
            );
            assert!(advance(&mut wheel, now).is_empty(), "fired early at {now}");
        }
        assert_eq!(wheel.len(), 2);
        assert_eq!(advance(&mut wheel, u64::MAX / 2), ["much later"]);
        assert_eq!(advance(&mut wheel, u64::MAX - 1), Vec::<&str>::new());
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn empty_slots_are_skipped() {
        let mut wheel = TimerWheel::new(1024);
        wheel.insert(700, ());
        assert_eq!(advance(&mut wheel, 1000).len(), 1);
        assert_eq!(wheel.visits, 1);
    }

    #[test]
    fn insert_in_the_past_fires_next_advance() {
        let mut wheel = TimerWheel::new(4);
        advance(&mut wheel, 50);
        wheel.insert(3, "late");
        wheel.insert(50, "now");
        assert_eq!(wheel.next_due(), Some(51));
        let mut fired = advance(&mut wheel, 51);
        fired.sort_unstable();
        assert_eq!(fired, ["late", "now"]);
    }

    #[test]
    fn len_and_is_empty_bookkeeping() {
        let mut wheel = TimerWheel::new(4);
        assert!(wheel.is_empty());
        assert_eq!(wheel.len(), 0);
        wheel.insert(1, 1);
        wheel.insert(1, 2);
        wheel.insert(6, 3);
        assert_eq!(wheel.len(), 3);
        assert!(!wheel.is_empty());
        assert_eq!(advance(&mut wheel, 1).len(), 2);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advance(&mut wheel, 6), [3]);
        assert_eq!(wheel.len(), 0);
        assert!(wheel.is_empty());
    }

    #[test]
    fn next_due_finds_the_next_occupied_slot() {
        let mut wheel = TimerWheel::new(256);
        assert_eq!(wheel.next_due(), None);
        wheel.insert(200, ());
        wheel.insert(130, ());
        assert_eq!(wheel.next_due(), Some(130));
        advance(&mut wheel, 130);
        assert_eq!(wheel.next_due(), Some(200));
        advance(&mut wheel, 250);
        assert_eq!(wheel.next_due(), None);
        // Wraps around the end of the wheel.
        wheel.insert(260, ());
        assert_eq!(wheel.next_due(), Some(260));
    }

    #[test]
    fn fired_slots_keep_their_capacity() {
        let mut wheel = TimerWheel::new(4);
        for i in 0..32 {
            wheel.insert(1, i);
        }
        advance(&mut wheel, 1);
        assert!(wheel.slots[1].capacity() >= 32);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert at `current + delta - 8` (saturating): some in the past.
        Insert(u64),
        /// Advance by this many ticks (0 is allowed).
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..80).prop_map(Op::Insert),
            2 => (0u64..40).prop_map(Op::Advance),
            1 => (0u64..2000).prop_map(Op::Advance),
        ]
    }

    #[test]
    fn retain_drops_the_entries_it_is_told_to_and_gives_room_back() {
        let mut wheel = TimerWheel::new(64);
        for at in 1..=1000u64 {
            wheel.insert(at % 50 + 1, at);
        }
        wheel.insert(10_000, 7); // a later round
        wheel.retain(|&v| v % 10 == 7);
        assert_eq!(wheel.len(), 101);
        let mut fired = advance(&mut wheel, 64);
        fired.sort_unstable();
        let want: Vec<u64> = (1..=1000).filter(|v| v % 10 == 7).collect();
        assert_eq!(fired, want);
        // Only the later round's slot (10_000 % 64 = 16) is still marked.
        assert_eq!(
            wheel.next_due(),
            Some(64 + 16),
            "emptied slots still marked"
        );
        wheel.retain(|_| false);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_due(), None);
        // A slot swept down to a few entries gives its room back.
        let mut wheel = TimerWheel::new(8);
        for v in 0..1000u64 {
            wheel.insert(5, v);
        }
        wheel.retain(|&v| v < 2);
        assert!(
            wheel.slots[5].capacity() <= 16,
            "{}",
            wheel.slots[5].capacity()
        );
        assert_eq!(advance(&mut wheel, 5), [0, 1]);
    }

    proptest! {
        #[test]
        fn matches_a_sorted_model(slots in 1usize..40, ops in prop::collection::vec(op(), 0..200)) {
            let mut wheel = TimerWheel::new(slots);
            // effective tick -> ids not yet fired
            let mut model: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            let mut requested = Vec::new();
            let mut fired = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(delta) => {
                        let at = (wheel.current() + delta).saturating_sub(8);
                        let id = requested.len();
                        requested.push(at);
                        fired.push(false);
                        // The wheel's contract: a past tick means "next advance".
                        let effective = at.max(wheel.current() + 1);
                        wheel.insert(at, id);
                        model.entry(effective).or_default().push(id);
                    }
                    Op::Advance(delta) => {
                        let now = wheel.current() + delta;
                        let mut due = Vec::new();
                        wheel.advance(now, &mut due);
                        due.sort_unstable();
                        let mut want: Vec<usize> = Vec::new();
                        while model.first_key_value().is_some_and(|(&at, _)| at <= now) {
                            want.extend(model.pop_first().unwrap().1);
                        }
                        want.sort_unstable();
                        prop_assert_eq!(&due, &want, "advance to {}", now);
                        for id in due {
                            prop_assert!(!fired[id], "{} fired twice", id);
                            prop_assert!(requested[id] <= now);
                            fired[id] = true;
                        }
                    }
                }
                let count: usize = model.values().map(Vec::len).sum();
                prop_assert_eq!(wheel.len(), count);
                prop_assert_eq!(wheel.is_empty(), count == 0);
                match model.keys().next() {
                    None => prop_assert_eq!(wheel.next_due(), None),
                    Some(&earliest) => {
                        let next = wheel.next_due().expect("non-empty wheel has a next tick");
                        prop_assert!(next > wheel.current());
                        prop_assert!(next <= earliest);
                    }
                }
            }
            // Everything left fires once time passes every tick.
            let mut due = Vec::new();
            wheel.advance(u64::MAX / 2, &mut due);
            prop_assert_eq!(due.len() + fired.iter().filter(|&&f| f).count(), requested.len());
            prop_assert!(wheel.is_empty());
        }
    }
}
