//! Router + middleware dispatch: decoded messages through the route lookup,
//! 0 or 3 pass-through global middleware and an echo handler
//! (`ctx.reply(ctx.msg_id(), ctx.body())`) that encodes into the
//! connection's write queue (`dispatch`: `Message`s with `Bytes` bodies, as
//! a packer without `peek` produces; `dispatch/read`: a whole read's
//! frames found with `peek` and handled with borrowed bodies, as the loop
//! does with the default packer). The socket write is not included (see
//! `netloom::bench_internals::Dispatcher`).
//!
//! ```text
//! cargo bench --features bench-internals --bench dispatch
//! ```

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netloom::bench_internals::Dispatcher;
use netloom::{LengthPacker, Message, Packer};

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

/// What the loop does after a read of 16 pipelined 64 B frames: find them
/// with `peek`, split them off at once, dispatch with borrowed bodies.
fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch/read");
    let packer = LengthPacker::default();
    let mut wire = BytesMut::new();
    for id in 0..BATCH as u32 {
        packer.encode(id, 0, &[7u8; 64], &mut wire).unwrap();
    }
    for middleware in [0, 3] {
        let d = Dispatcher::echo(middleware).expect("loopback dispatcher");
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(
            BenchmarkId::new(format!("{middleware}mw/64B"), format!("x{BATCH}")),
            |b| {
                let mut buf = BytesMut::with_capacity(64 << 10);
                b.iter(|| {
                    buf.clear();
                    buf.extend_from_slice(&wire);
                    let n = d.dispatch_read(&mut buf);
                    black_box((n, d.take_output()))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, dispatch, read);
criterion_main!(benches);
