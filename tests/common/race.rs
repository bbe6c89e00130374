//! Small pieces the race stress tests share (`handle_races`,
//! `reconnect_races`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Count one event.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// xorshift64: a fixed seed per thread, so a run's choices repeat.
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
