//! Review of 04f5af1 (timers count from the clock when armed): a
//! repeating timer whose interval is the wheel's tick must still run once
//! per interval, not once every two.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::Server;

use crate::common::{init_logs, TIMEOUT};

/// `Builder::every(10 ms)`: the wheel's tick is made 10 ms; each run is
/// "due `interval` after the tick the last one ran in, at most one tick
/// late". Over 40 runs the median gap must be the interval (give or take
/// half a tick), not two intervals (the `+ 1` ms rounding of the fresh
/// clock pushes every re-arm into the tick after the one it is due in).
#[test]
fn builder_every_runs_once_per_interval_when_interval_is_the_tick() {
    init_logs();
    let (tx, ticks) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .every(Duration::from_millis(10), move |_hub| {
            let _ = tx.send(Instant::now());
        })
        .start()
        .unwrap();
    let mut at = Vec::new();
    for _ in 0..41 {
        at.push(ticks.recv_timeout(TIMEOUT).expect("a tick"));
    }
    server.shutdown(TIMEOUT).unwrap();
    let mut gaps: Vec<u128> = at.windows(2).map(|w| (w[1] - w[0]).as_micros()).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    assert!(
        median <= 15_000,
        "every(10 ms): median gap {median} µs (sorted gaps: {gaps:?})"
    );
}
