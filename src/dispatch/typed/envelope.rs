//! hotpot's JSON envelope over WebSocket text messages:
//! `{"type": "Echo", "data": {...}}`, routed by the type name to typed
//! handlers, answered in the same envelope. A `Pong` is life (the
//! keepalive's answer) and a `Ping` from the client is answered with a
//! `Pong`, unless the application routes them itself.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{with_scratch, DataFn, DecodeError};
use crate::dispatch::context::{Context, HandlerResult, Session};
use crate::error::Result;
use crate::transport::ws::TEXT;

/// What the keepalive sends (`Builder::keepalived`).
pub(crate) const PING: &[u8] = br#"{"type":"Ping","data":{}}"#;

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Data<'a>,
}

/// The `data` member as it came (`null` included), or `None` without one
/// (an `Option<&RawValue>` would read `null` as missing).
#[derive(Default)]
struct Data<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Data(Some(raw)))
    }
}

#[derive(Serialize)]
struct Outgoing<'a, T: ?Sized> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
}

/// The route of `ws::TEXT` messages when envelope handlers exist.
pub(crate) fn dispatcher(
    table: Arc<OnceLock<FxHashMap<String, DataFn>>>,
) -> impl Fn(&mut Context<'_>) -> HandlerResult + Send + Sync + 'static {
    move |ctx: &mut Context<'_>| {
        let msg: Incoming<'_> = ctx.json().map_err(|mut e| {
            e.format = "json envelope";
            e
        })?;
        let data = msg.data.0.map_or("{}", RawValue::get);
        match table.get().and_then(|t| t.get(&*msg.kind)) {
            Some(f) => f(ctx, data),
            None if msg.kind == "Pong" => Ok(()),
            None if msg.kind == "Ping" => Ok(ctx.reply_envelope("Pong", &Empty {})?),
            None => Err(DecodeError::new(
                "json envelope",
                ctx.msg_id(),
                format_args!("no handler for type {:?}", msg.kind),
            )
            .into()),
        }
    }
}

#[derive(Serialize)]
struct Empty {}

/// A typed handler for the envelope's `data`.
pub(crate) fn typed<Req, Resp, E, F>(kind: String, f: F) -> DataFn
where
    Req: serde::de::DeserializeOwned,
    Resp: Serialize,
    E: Into<crate::dispatch::context::BoxError>,
    F: Fn(&mut Context<'_>, Req) -> std::result::Result<Resp, E> + Send + Sync + 'static,
{
    Box::new(move |ctx: &mut Context<'_>, data: &str| -> HandlerResult {
        let req: Req = serde_json::from_str(data).map_err(|e| {
            DecodeError::new("json envelope", ctx.msg_id(), format_args!("{kind}: {e}"))
        })?;
        let resp = f(ctx, req).map_err(Into::into)?;
        ctx.reply_envelope(&kind, &resp)?;
        Ok(())
    })
}

impl Context<'_> {
    /// Answer with `{"type": kind, "data": data}` as a WebSocket text
    /// message (hotpot's envelope).
    ///
    /// # Errors
    ///
    /// As [`reply_json`](Self::reply_json).
    pub fn reply_envelope<T: Serialize + ?Sized>(&self, kind: &str, data: &T) -> Result<()> {
        let value = Outgoing { kind, data };
        with_scratch(
            |buf| serde_json::to_writer(buf, &value).map_err(|e| e.to_string()),
            |body| self.reply(TEXT, body),
        )
    }
}

impl Session<'_> {
    /// Send `{"type": kind, "data": data}` as a WebSocket text message
    /// (hotpot's envelope): a push, not an answer.
    ///
    /// # Errors
    ///
    /// As [`Context::reply_json`].
    pub fn send_envelope<T: Serialize + ?Sized>(&self, kind: &str, data: &T) -> Result<()> {
        let value = Outgoing { kind, data };
        with_scratch(
            |buf| serde_json::to_writer(buf, &value).map_err(|e| e.to_string()),
            |body| self.send(TEXT, body),
        )
    }
}
