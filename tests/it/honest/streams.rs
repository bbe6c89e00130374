//! Honest full-speed streams on every transport: large and small
//! messages for several frame windows, 256 MiB in one stream, and 100
//! clients at once under a small partial-frame budget.

use super::{limits, python, serve, two_loops, Transport, ALL};

/// One client, `size`-byte messages, at least `bytes` echoed and
/// `min_secs` (several 1 s frame windows) spent.
fn one_client(t: Transport, size: usize, bytes: u64, min_secs: f64) {
    let Some(py) = python() else {
        return;
    };
    // Holding at most a message (and a TLS record) in partial units, one
    // client stays far under 256 KiB.
    let mut h = serve(t, limits(two_loops(), 256 << 10));
    let run = h.stream(&py, size, bytes, 1, min_secs);
    eprintln!(
        "{t:?}: {} MiB of {size}-byte messages echoed in {:.1} s",
        run.bytes >> 20,
        run.secs
    );
    assert!(run.bytes >= bytes, "{t:?}: {run:?}");
    h.assert_untripped(1);
}

macro_rules! for_each_transport {
    ($($name:ident: $size:expr, $bytes:expr, $secs:expr;)*) => {
        $(
            mod $name {
                use super::*;
                #[test] fn tcp() { one_client(Transport::Tcp, $size, $bytes, $secs) }
                #[test] fn tls() { one_client(Transport::Tls, $size, $bytes, $secs) }
                #[test] fn ws() { one_client(Transport::Ws, $size, $bytes, $secs) }
                #[test] fn wss() { one_client(Transport::Wss, $size, $bytes, $secs) }
            }
        )*
    };
}

for_each_transport! {
    messages_of_4000_bytes_for_several_frame_windows: 4000, 1 << 20, 3.5;
    messages_of_200_bytes_for_several_frame_windows: 200, 1 << 18, 3.5;
    a_stream_of_256_mib: 4000, 256 << 20, 0.0;
}

/// 100 honest clients at once on two loops, each holding at most a message
/// and a TLS record unfinished: a 4 MiB budget per loop is never reached.
#[test]
fn a_hundred_clients_at_once_under_a_small_partial_budget() {
    let Some(py) = python() else {
        return;
    };
    std::thread::scope(|s| {
        for t in ALL {
            let py = &py;
            s.spawn(move || {
                let mut h = serve(t, limits(two_loops(), 4 << 20));
                let run = h.stream(py, 4000, 256 << 10, 100, 2.5);
                assert!(run.bytes >= 100 * (256 << 10), "{t:?}: {run:?}");
                h.assert_untripped(100);
            });
        }
    });
}
