//! `LengthPacker` decode, peek and encode: one frame and a batch of 64, with
//! 64 B and 4 KiB bodies (the read path handles a whole read's worth of
//! frames from one buffer: `decode` splits a `Message` off per frame, `peek`
//! finds them all and splits once, as the loop does; the write path encodes
//! replies back to back into one buffer).
//!
//! ```text
//! cargo bench --features bench-internals --bench packer
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netloom::{LengthPacker, Packer, Peek};

const BATCH: usize = 64;
const SIZES: [usize; 2] = [64, 4096];

fn frames(packer: &LengthPacker, size: usize, count: usize) -> BytesMut {
    let body = vec![0xa5u8; size];
    let mut out = BytesMut::new();
    for id in 0..count as u32 {
        packer.encode(id, 0, &body, &mut out).unwrap();
    }
    out
}

/// One read's worth of frames per iteration: the loop copies each read
/// into its rx buffer, then `handle` takes the frames out of it; the same
/// here. `handle` returns the body bytes it saw.
fn read_group(
    c: &mut Criterion,
    name: &str,
    handle: impl Fn(&LengthPacker, &mut BytesMut) -> usize,
) {
    let packer = LengthPacker::default();
    let mut group = c.benchmark_group(name);
    for size in SIZES {
        for count in [1, BATCH] {
            let wire = frames(&packer, size, count);
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{size}B"), format!("x{count}")),
                &wire,
                |b, wire| {
                    let mut buf = BytesMut::with_capacity(wire.len());
                    b.iter(|| {
                        buf.clear();
                        buf.extend_from_slice(wire);
                        black_box(handle(&packer, &mut buf))
                    })
                },
            );
        }
    }
    group.finish();
}

/// A `Message` split off per frame until `Ok(None)`.
fn decode(c: &mut Criterion) {
    read_group(c, "packer/decode", |packer, buf| {
        let mut n = 0;
        while let Some(m) = packer.decode(buf).unwrap() {
            n += m.body.len();
        }
        n
    });
}

/// The loop's way with a packer that peeks: find every whole frame, then
/// split them all off in one go.
fn peek(c: &mut Criterion) {
    read_group(c, "packer/peek", |packer, buf| {
        let (mut offset, mut n) = (0, 0);
        while let Peek::Frame { body, len, .. } = packer.peek(&buf[offset..]).unwrap() {
            n += body.len();
            offset += len;
        }
        black_box(buf.split_to(offset).freeze());
        n
    });
}

fn encode(c: &mut Criterion) {
    let packer = LengthPacker::default();
    let mut group = c.benchmark_group("packer/encode");
    for size in SIZES {
        let body = vec![0x5au8; size];
        for count in [1, BATCH] {
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{size}B"), format!("x{count}")),
                &body,
                |b, body| {
                    let mut out = BytesMut::with_capacity((size + 8) * count);
                    b.iter(|| {
                        out.clear();
                        for id in 0..count as u32 {
                            packer.encode(id, 0, black_box(body), &mut out).unwrap();
                        }
                        black_box(out.len())
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, decode, peek, encode);
criterion_main!(benches);
