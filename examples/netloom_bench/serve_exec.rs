//! The execution models' echo servers (issue 21), for `compare --kinds
//! netloom,netloom-pool,netloom-single,tokio-blocking`:
//!
//! * `netloom-pool`: the netloom echo with `Exec::Pool(WORKERS)`: every
//!   frame handled on the worker pool (as a blocking handler would be).
//! * `netloom-single`: the same with `Exec::Single` (one logic thread).
//! * `tokio-blocking`: tokio's answer to handlers that block: each frame's
//!   answer comes from `tokio::task::spawn_blocking` (on at most
//!   `WORKERS` blocking threads, the pool's size), awaited in order per
//!   connection (one at a time, as netloom's pool keeps a connection's
//!   order), buffered replies flushed once.

use bytes::Bytes;

/// Workers of `netloom-pool`, blocking threads of `tokio-blocking`.
pub const WORKERS: usize = 2;

/// The execution model of a netloom server kind.
pub fn model(kind: &str) -> netloom::Exec {
    match kind {
        "netloom-pool" => netloom::Exec::Pool(WORKERS),
        "netloom-single" => netloom::Exec::Single,
        _ => netloom::Exec::Inline,
    }
}

/// One connection of `tokio-blocking`.
pub async fn blocking_echo(stream: tokio::net::TcpStream) {
    use futures_util::{FutureExt, SinkExt, StreamExt};
    let mut framed = tokio_util::codec::Framed::new(stream, crate::serve::FrameCodec);
    // The handler: what a blocking one would compute, off the runtime.
    let answer =
        |frame: (u32, Bytes)| async move { tokio::task::spawn_blocking(move || frame).await.ok() };
    while let Some(Ok(frame)) = framed.next().await {
        let Some(reply) = answer(frame).await else {
            return;
        };
        if framed.feed(reply).await.is_err() {
            return;
        }
        // Frames already buffered: answer them all, then flush once.
        loop {
            match framed.next().now_or_never() {
                Some(Some(Ok(frame))) => {
                    let Some(reply) = answer(frame).await else {
                        return;
                    };
                    if framed.feed(reply).await.is_err() {
                        return;
                    }
                }
                Some(_) => {
                    let _ = framed.flush().await;
                    return;
                }
                None => break,
            }
        }
        if framed.flush().await.is_err() {
            return;
        }
    }
}
