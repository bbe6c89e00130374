//! Typed messages (found by the review of issue 22): the per-thread encode buffer "keeps at most 1 MiB
//! between replies" (docs/GUIDE.md). Its own binary: it counts the
//! process's live heap bytes with a global allocator.
#![cfg(feature = "json")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use netloom::{Context, HandlerResult, Server};
use serde::ser::{Error as _, SerializeSeq};
use serde::{Serialize, Serializer};

use common::{start, Client, TIMEOUT};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// 8 MiB of strings, then `fail` decides whether it errors at the end.
struct Big {
    fail: bool,
}

impl Serialize for Big {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let chunk = "x".repeat(8 << 10);
        let mut seq = s.serialize_seq(None)?;
        for _ in 0..1024 {
            seq.serialize_element(&chunk)?;
        }
        if self.fail {
            return Err(S::Error::custom("the last element does not serialize"));
        }
        seq.end()
    }
}

fn live_mib() -> f64 {
    LIVE.load(Relaxed) as f64 / (1 << 20) as f64
}

#[test]
fn the_scratch_buffer_is_not_kept_after_a_huge_encode_error() {
    let server = start(
        Server::builder()
            .event_loops(1)
            .max_body_length(16 << 20)
            .route(1, |ctx: &mut Context<'_>| -> HandlerResult {
                let what = ctx.body().to_vec();
                match &what[..] {
                    b"ok" => ctx.reply_json(1, &Big { fail: false })?,
                    b"fail" => {
                        let r = ctx.reply_json(1, &Big { fail: true });
                        assert!(matches!(r, Err(netloom::Error::Encode(_))), "{r:?}");
                        ctx.reply(1, b"failed")?;
                    }
                    _ => ctx.reply(1, b"small")?,
                }
                Ok(())
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"small");
    c.recv();
    let base = live_mib();
    c.send(1, b"ok");
    assert!(c.recv().1.len() > 8 << 20);
    let after_ok = live_mib() - base;
    c.send(1, b"fail");
    assert_eq!(c.recv().1, b"failed");
    let after_fail = live_mib() - base;
    // A small good reply on the same thread: the scratch buffer is let go.
    c.send(1, b"small");
    c.recv();
    let after_small = live_mib() - base;
    eprintln!(
        "live heap over the base: after an 8 MiB reply {after_ok:.2} MiB, \
         after an 8 MiB encode that failed {after_fail:.2} MiB, \
         after a small reply {after_small:.2} MiB"
    );
    server.shutdown(TIMEOUT).unwrap();
    assert!(
        after_fail - after_ok < 2.0,
        "an 8 MiB encode that failed left {:.2} MiB more live than a good one",
        after_fail - after_ok
    );
}
