//! The loops' hashed timer wheel: insert, and advance one tick at a time
//! until every entry has expired (what heartbeat checks cost per
//! connection), with entries spread over the wheel as connections opened at
//! different times would be.
//!
//! ```text
//! cargo bench --features bench-internals --bench timer
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use netloom::bench_internals::Wheel;

/// 60 s idle timeout at a 1 s tick, as a heartbeat would size it.
const SLOTS: usize = 64;

fn timer(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer");
    for n in [1_000u64, 100_000] {
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::new("insert", n), |b| {
            b.iter_batched_ref(
                || Wheel::new(SLOTS),
                |w| {
                    for i in 0..n {
                        w.insert(1 + i % 60, i);
                    }
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(BenchmarkId::new("expire", n), |b| {
            b.iter_batched_ref(
                || {
                    let mut w = Wheel::new(SLOTS);
                    for i in 0..n {
                        w.insert(1 + i % 60, i);
                    }
                    w
                },
                |w| {
                    let mut fired = 0;
                    for tick in 1..=60 {
                        fired += w.advance(tick);
                    }
                    black_box(fired)
                },
                BatchSize::LargeInput,
            )
        });
    }
    // A tick with nothing due (the common case for an idle server between
    // checks): the bitmap scan.
    group.throughput(Throughput::Elements(1));
    group.bench_function("next_due/empty-slots", |b| {
        let mut w = Wheel::new(SLOTS);
        w.insert(59, 0);
        b.iter(|| black_box(w.next_due()))
    });
    group.finish();
}

criterion_group!(benches, timer);
criterion_main!(benches);
