//! The typed-message echo servers (issue 22), for `compare --json --kinds
//! netloom,netloom-json,tokio,tokio-json`: every body is the JSON of a
//! three-field struct (`Pattern::json`), decoded and encoded again.
//!
//! * `netloom-json`: a fallback route that decodes `Record` with
//!   `ctx.json()` and answers with `ctx.reply_json` (the same id, so the
//!   generator can check it; `route_json` does the same for one id).
//! * `netloom-json-vec`: the same with a `Vec` per reply
//!   (`serde_json::to_vec`), to measure what `reply_json` saves.
//! * `tokio-json`: tokio-util `Framed`, `serde_json::from_slice` and
//!   `serde_json::to_vec` per frame, replies buffered and flushed once.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The struct of three fields every body holds.
#[derive(Serialize, Deserialize)]
pub struct Record {
    id: u64,
    name: String,
    ok: bool,
}

/// `b` answering every id by decoding and encoding a `Record`.
pub fn netloom_json(b: netloom::Builder) -> netloom::Builder {
    b.fallback(|ctx| -> netloom::HandlerResult {
        let r: Record = ctx.json()?;
        ctx.reply_json(ctx.msg_id(), &r)?;
        Ok(())
    })
}

/// `b` doing what `netloom_json` does with a `Vec` per reply
/// (`serde_json::to_vec`, then `reply`): what `reply_json`'s per-thread
/// buffer saves (`netloom-json-vec`).
pub fn netloom_json_vec(b: netloom::Builder) -> netloom::Builder {
    b.fallback(|ctx| -> netloom::HandlerResult {
        let r: Record = ctx.json()?;
        ctx.reply(ctx.msg_id(), serde_json::to_vec(&r)?)?;
        Ok(())
    })
}

/// One connection of `tokio-json`.
pub async fn tokio_json(stream: tokio::net::TcpStream) {
    use futures_util::{FutureExt, SinkExt, StreamExt};
    let mut framed = tokio_util::codec::Framed::new(stream, crate::serve::FrameCodec);
    let answer = |(id, body): (u32, Bytes)| -> Option<(u32, Bytes)> {
        let r: Record = serde_json::from_slice(&body).ok()?;
        Some((id, Bytes::from(serde_json::to_vec(&r).ok()?)))
    };
    while let Some(Ok(frame)) = framed.next().await {
        let Some(reply) = answer(frame) else {
            return;
        };
        if framed.feed(reply).await.is_err() {
            return;
        }
        // Frames already buffered: answer them all, then flush once.
        loop {
            match framed.next().now_or_never() {
                Some(Some(Ok(frame))) => {
                    let Some(reply) = answer(frame) else {
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
