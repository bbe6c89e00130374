//! Router + middleware dispatch: decoded messages through the route lookup,
//! 0 or 3 pass-through global middleware and an echo handler
//! (`ctx.reply(ctx.msg_id(), ctx.body())`) that encodes into the
//! connection's write queue. The socket write is not included (see
//! `netloom::bench_internals::Dispatcher`).
//!
//! ```text
//! cargo bench --features bench-internals --bench dispatch
//! ```

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netloom::bench_internals::Dispatcher;
use netloom::Message;

const BATCH: usize = 16;

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    let body = Bytes::from(vec![7u8; 64]);
    for middleware in [0, 3] {
        let d = Dispatcher::echo(middleware).expect("loopback dispatcher");
        for count in [1, BATCH] {
            group.throughput(Throughput::Elements(count as u64));
            group.bench_function(
                BenchmarkId::new(format!("{middleware}mw/64B"), format!("x{count}")),
                |b| {
                    let mut msgs = Vec::with_capacity(count);
                    b.iter(|| {
                        for id in 0..count as u32 {
                            msgs.push(Message::new(id, body.clone()));
                        }
                        d.dispatch(&mut msgs);
                        black_box(d.take_output())
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
