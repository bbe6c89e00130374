//! What a loop's buffer pool keeps once its connections are gone (found
//! by the soak of issue 26, `examples/soak`): measured with a counting
//! allocator, this binary's own (it counts the whole process, so it
//! cannot share the `it` binary with tests running beside it).

mod common;

use netloom::Server;

use common::{echo, serial, start, wait_until, Client};

#[path = "../examples/common/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static A: counting_alloc::Counting = counting_alloc::Counting;

fn live() -> isize {
    counting_alloc::live().0
}

/// An honest peer at full speed: 200 bursts of 8 messages of 16 B to
/// 256 KiB, each burst's echoes read before the next, then it leaves.
/// Large frames arrive over several reads, so a partial frame's buffer
/// grows a few times, and each outgrown buffer goes back to the loop's
/// pool, while a partial frame takes at most one from it. Once the peer is
/// gone the loop should keep about nothing for it: before the fix the
/// pool kept 45 MiB here (up to 1,024 buffers of up to 256 KiB each, per
/// loop, for good).
#[test]
fn a_loop_does_not_keep_the_buffers_of_frames_it_finished() {
    let _serial = serial();
    const BURSTS: usize = 200;
    const SIZES: [usize; 8] = [
        16,
        64 << 10,
        1000,
        16 << 10,
        64 << 10,
        200,
        256 << 10,
        64 << 10,
    ];
    let server = start(Server::builder().event_loops(1).route(1, echo));
    let hub = server.hub();
    // A first connection and echo, so that what the loop allocates once
    // (its scratch buffer, the slab) is there before the baseline.
    let mut warm = Client::connect(server.local_addr());
    warm.send(1, b"warm");
    assert_eq!(warm.recv().1, b"warm");
    drop(warm);
    wait_until("the first connection closed", || {
        hub.stats().connections == 0
    });
    let before = live();

    let mut c = Client::connect(server.local_addr());
    for _ in 0..BURSTS {
        for n in SIZES {
            c.send(1, &vec![b'x'; n]);
        }
        for n in SIZES {
            let (id, echoed) = c.recv();
            assert_eq!((id, echoed.len()), (1, n));
        }
    }
    drop(c);
    wait_until("the connection closed", || hub.stats().connections == 0);
    let kept = live() - before;
    println!("after {BURSTS} bursts, the loop keeps {} KiB", kept >> 10);
    assert!(
        kept < (4 << 20) as isize,
        "the loop keeps {} KiB after its only connection closed",
        kept >> 10
    );
    server.shutdown(common::TIMEOUT).unwrap();
}
