//! The exec backlog on honest peers at full speed, on every transport:
//! with the echo on the worker pool and a backlog smaller than what each
//! client keeps in flight, reads pause and resume all along, and every
//! byte comes back, in order, with nothing closed for a limit.

use netloom::{CloseReason, Exec};

use super::{limits, python, serve, two_loops, Transport, ALL};

fn pooled_stream(t: Transport, py: &str) {
    let builder = limits(two_loops(), 4 << 20)
        .exec(Exec::Pool(2))
        // Under the 128 KiB each client keeps unanswered: the bound works.
        .exec_backlog(32 << 10);
    let mut h = serve(t, builder);
    let run = h.stream(py, 4000, 8 << 20, 4, 2.5);
    eprintln!(
        "{t:?}: {} MiB echoed through the pool in {:.1} s; {}",
        run.bytes >> 20,
        run.secs,
        h.server.stats()
    );
    assert!(run.bytes >= 4 * (8 << 20), "{t:?}: {run:?}");
    h.assert_untripped(4);
    let stats = h.server.stats();
    assert_eq!(stats.closed_by(&CloseReason::Backlog), 0, "{t:?}: {stats}");
}

#[test]
fn the_pool_echoes_honest_streams_on_every_transport() {
    let Some(py) = python() else {
        return;
    };
    std::thread::scope(|s| {
        for t in ALL {
            let py = &py;
            s.spawn(move || pooled_stream(t, py));
        }
    });
}
