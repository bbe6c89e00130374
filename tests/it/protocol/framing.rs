//! Framing: literal frames and empty bodies byte exact, frames split byte
//! by byte or batched in one write, large bodies echoed by reference or
//! kept, and kept bodies staying intact while reads continue.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use netloom::{Context, Server};

use super::{echo_builder, read_raw, xorshift};
use crate::common::{echo, frame, start, Client};

#[test]
fn echoes_literal_frame_and_empty_body_byte_exact() {
    let server = start(echo_builder(2));
    let mut c = Client::connect(server.local_addr());

    let hello = b"\x05\x00\x00\x00\x01\x00\x00\x00hello";
    c.send_raw(hello);
    assert_eq!(read_raw(&mut c, hello.len()), hello.to_vec());

    // An empty body is a valid message and comes back as a bare header.
    let empty = b"\x00\x00\x00\x00\x02\x00\x00\x00";
    c.send_raw(empty);
    assert_eq!(read_raw(&mut c, empty.len()), empty.to_vec());

    // Still in sync afterwards.
    let again = b"\x03\x00\x00\x00\x03\x00\x00\x00abc";
    c.send_raw(again);
    assert_eq!(read_raw(&mut c, again.len()), again.to_vec());
}

#[test]
fn frames_split_byte_by_byte_are_echoed_in_order() {
    let server = start(echo_builder(2));
    let mut c = Client::connect(server.local_addr());

    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let mut wire = Vec::new();
    wire.extend_from_slice(b"\x03\x00\x00\x00\x01\x00\x00\x00abc");
    wire.extend_from_slice(b"\x00\x00\x00\x00\x02\x00\x00\x00");
    wire.extend_from_slice(&frame(3, &big));
    wire.extend_from_slice(b"\x01\x00\x00\x00\x01\x00\x00\x00z");

    for byte in &wire {
        c.stream.write_all(std::slice::from_ref(byte)).unwrap();
        c.stream.flush().unwrap();
    }
    assert_eq!(c.recv(), (1, b"abc".to_vec()));
    assert_eq!(c.recv(), (2, Vec::new()));
    assert_eq!(c.recv(), (3, big));
    assert_eq!(c.recv(), (1, b"z".to_vec()));
}

#[test]
fn many_frames_in_one_write_are_echoed_in_order_byte_exact() {
    let server = start(echo_builder(2));
    let mut c = Client::connect(server.local_addr());

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut wire = Vec::new();
    for i in 0..500u32 {
        let len = match i {
            250 => 200 * 1024,
            _ if i % 10 == 0 => 0,
            _ => (xorshift(&mut seed) % 3000) as usize,
        };
        let body: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
        wire.extend_from_slice(&frame(1 + i % 3, &body));
    }

    // Write everything at once from another thread while this one reads,
    // so neither side can stall on a full kernel buffer.
    let mut writer = c.stream.try_clone().unwrap();
    let to_send = wire.clone();
    let sender = std::thread::spawn(move || writer.write_all(&to_send));
    let got = read_raw(&mut c, wire.len());
    sender.join().unwrap().expect("write all frames");
    assert!(got == wire, "echoed bytes differ from the frames sent");
}

/// Large bodies around the size where replies stop being copied, echoed
/// whole (id 1), as a slice of the request (id 2), or kept by the handler
/// (id 3), arriving in writes of random sizes: every reply is byte exact
/// and in order, whether it was copied or queued by reference, and whether
/// its frame was read through the scratch buffer or straight into the
/// buffer reserved for it.
#[test]
fn large_bodies_echoed_by_reference_or_kept_come_back_byte_exact() {
    #[derive(Default)]
    struct Kept(Vec<bytes::Bytes>);
    let server = start(
        Server::builder()
            .event_loops(1)
            // All 60 replies (about 20 MiB) may be queued while the reader
            // thread lags: over the default 4 MiB mark the echo handler's
            // reply would be refused (BufferFull) and never arrive.
            .write_high_water(64 << 20)
            .on_open(|s| {
                s.data_mut().insert(Kept::default());
            })
            .route(1, echo)
            .route(2, |ctx: &mut Context<'_>| {
                let body = ctx.body();
                let inner = body.get(3..body.len().saturating_sub(5)).unwrap_or(&[]);
                ctx.reply(2, inner)
            })
            .route(3, |ctx: &mut Context<'_>| {
                let body = ctx.body_bytes();
                if let Some(kept) = ctx.data_mut().get_mut::<Kept>() {
                    kept.0.push(body);
                }
                ctx.reply(3, ctx.body())
            }),
    );
    let mut c = Client::connect(server.local_addr());

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let sizes: [usize; 7] = [16 * 1024 - 1, 16 * 1024, 70_000, 300_000, 1 << 20, 0, 5];
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for i in 0..60u32 {
        let len = sizes[xorshift(&mut seed) as usize % sizes.len()];
        let body: Vec<u8> = (0..len).map(|j| (j as u32 ^ (i * 131)) as u8).collect();
        let id = 1 + i % 3;
        wire.extend_from_slice(&frame(id, &body));
        let reply = match id {
            2 => body.get(3..len.saturating_sub(5)).unwrap_or(&[]).to_vec(),
            _ => body,
        };
        expected.extend_from_slice(&frame(id, &reply));
    }

    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (1 + xorshift(&mut seed) as usize % 200_000).min(rest.len());
            writer.write_all(&rest[..n])?;
            rest = &rest[n..];
        }
        Ok::<_, io::Error>(())
    });
    let got = read_raw(&mut c, expected.len());
    sender.join().unwrap().expect("write all frames");
    assert!(got == expected, "replies differ from what was expected");
}

/// Bodies a handler keeps (`body_bytes`) share the loop's receive buffer:
/// later reads must not overwrite them. Thousands of small frames arrive in
/// many reads while every body is kept; afterwards each kept body must still
/// be what was sent.
#[test]
fn bodies_kept_past_the_handler_stay_intact_while_reads_continue() {
    let kept = Arc::new(Mutex::new(Vec::<bytes::Bytes>::new()));
    let keep = kept.clone();
    let server = start(
        Server::builder()
            .event_loops(1)
            .route(1, move |ctx: &mut Context<'_>| {
                keep.lock().unwrap().push(ctx.body_bytes());
                ctx.reply(1, b"")
            }),
    );
    let mut c = Client::connect(server.local_addr());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let bodies: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| {
            let len = xorshift(&mut seed) as usize % 100;
            (0..len).map(|j| (j as u32 * 7 + i) as u8).collect()
        })
        .collect();
    let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(1, b)).collect();
    // Where each frame ends on the wire.
    let ends: Vec<usize> = bodies
        .iter()
        .scan(0, |end, b| {
            *end += 8 + b.len();
            Some(*end)
        })
        .collect();
    // Uneven writes, each followed by the acks of the frames it completed,
    // so the server reads many times into the buffer the kept bodies share.
    let (mut sent, mut acked) = (0, 0);
    while sent < wire.len() {
        let n = (1 + xorshift(&mut seed) as usize % 3000).min(wire.len() - sent);
        c.send_raw(&wire[sent..sent + n]);
        sent += n;
        while acked < ends.len() && ends[acked] <= sent {
            assert_eq!(c.recv(), (1, Vec::new()));
            acked += 1;
        }
    }
    while acked < bodies.len() {
        assert_eq!(c.recv(), (1, Vec::new()));
        acked += 1;
    }
    let kept = kept.lock().unwrap();
    assert_eq!(kept.len(), bodies.len());
    for (i, (got, sent)) in kept.iter().zip(&bodies).enumerate() {
        assert!(
            got[..] == sent[..],
            "kept body {i} changed: {got:?} != {sent:?}"
        );
    }
}
