//! The builder's typed routes (`route_json`, `route_msgpack`,
//! `route_protobuf`, each behind its feature) and what becomes of a body
//! that does not decode (`bad_body`, `on_bad_body`).

use super::Builder;
use crate::dispatch::context::Session;
#[cfg(any(feature = "json", feature = "msgpack", feature = "protobuf"))]
use crate::dispatch::context::{BoxError, Context, HandlerResult};
use crate::dispatch::typed::{BadBody, DecodeError};

impl Builder {
    /// What the server does with a body that does not decode as its typed
    /// route's type (or that a handler's `ctx.json()`, `ctx.msgpack()` or
    /// `ctx.protobuf()` could not decode and returned with `?`): drop it
    /// (the default), answer with an error message, or close the
    /// connection. See [`BadBody`].
    pub fn bad_body(mut self, policy: BadBody) -> Self {
        self.bad_bodies.policy = policy;
        self
    }

    /// Run `f` for every body that does not decode, on the thread of its
    /// handler, before the [`bad_body`](Self::bad_body) policy applies.
    pub fn on_bad_body<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Session<'_>, &DecodeError) + Send + Sync + 'static,
    {
        self.bad_bodies.hook = Some(Box::new(f));
        self
    }

    /// Route message id `id` to a handler of typed JSON messages (feature
    /// `json`): the body is decoded into `Req` (serde_json), the handler's
    /// `Resp` is encoded as JSON and sent back with the same id and
    /// sequence number. A body that is not a `Req` goes to the
    /// [`bad_body`](Self::bad_body) policy; an `Err` from `f` is logged
    /// and counted as a handler's.
    ///
    /// To borrow from the body (a `&str` field) or to answer otherwise,
    /// use a plain route with [`Context::json`] and
    /// [`Context::reply_json`].
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct Move { x: i32, y: i32 }
    /// #[derive(Serialize)]
    /// struct Moved { ok: bool, x: i32, y: i32 }
    ///
    /// let builder = netloom::Server::builder()
    ///     .route_json(10, |_ctx, m: Move| {
    ///         Ok::<_, netloom::BoxError>(Moved { ok: true, x: m.x, y: m.y })
    ///     });
    /// # drop(builder);
    /// ```
    #[cfg(feature = "json")]
    pub fn route_json<Req, Resp, E, F>(self, id: u32, f: F) -> Self
    where
        Req: serde::de::DeserializeOwned,
        Resp: serde::Serialize,
        E: Into<BoxError>,
        F: Fn(&mut Context<'_>, Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        self.route(id, move |ctx: &mut Context<'_>| -> HandlerResult {
            let req = ctx.json::<Req>()?;
            let resp = f(ctx, req).map_err(Into::into)?;
            ctx.reply_json(ctx.msg_id(), &resp)?;
            Ok(())
        })
    }

    /// [`route_json`](Self::route_json) for MessagePack (feature
    /// `msgpack`, rmp-serde; structs are encoded as maps, with their
    /// field names).
    #[cfg(feature = "msgpack")]
    pub fn route_msgpack<Req, Resp, E, F>(self, id: u32, f: F) -> Self
    where
        Req: serde::de::DeserializeOwned,
        Resp: serde::Serialize,
        E: Into<BoxError>,
        F: Fn(&mut Context<'_>, Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        self.route(id, move |ctx: &mut Context<'_>| -> HandlerResult {
            let req = ctx.msgpack::<Req>()?;
            let resp = f(ctx, req).map_err(Into::into)?;
            ctx.reply_msgpack(ctx.msg_id(), &resp)?;
            Ok(())
        })
    }

    /// [`route_json`](Self::route_json) for Protocol Buffers (feature
    /// `protobuf`, prost): `Req` and `Resp` are prost messages.
    #[cfg(feature = "protobuf")]
    pub fn route_protobuf<Req, Resp, E, F>(self, id: u32, f: F) -> Self
    where
        Req: prost::Message + Default,
        Resp: prost::Message,
        E: Into<BoxError>,
        F: Fn(&mut Context<'_>, Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        self.route(id, move |ctx: &mut Context<'_>| -> HandlerResult {
            let req = ctx.protobuf::<Req>()?;
            let resp = f(ctx, req).map_err(Into::into)?;
            ctx.reply_protobuf(ctx.msg_id(), &resp)?;
            Ok(())
        })
    }

    /// Route hotpot's JSON envelope (features `json` and `ws`): WebSocket
    /// text messages `{"type": kind, "data": {...}}` whose type is `kind`
    /// go to `f` with `data` decoded as `Req`; its `Resp` goes back as
    /// `{"type": kind, "data": resp}`. Once a type is routed so, the
    /// envelope takes every `ws::TEXT` message: a message that is not an
    /// envelope, or of a type nobody routes, goes to the
    /// [`bad_body`](Self::bad_body) policy; `Pong` is taken as life and a
    /// client's `Ping` answered with a `Pong`, unless routed here.
    ///
    /// ```
    /// #[derive(serde::Deserialize, serde::Serialize)]
    /// #[allow(non_snake_case)]
    /// struct Echo { Message: String }
    ///
    /// let builder = netloom::Server::builder()
    ///     .route_envelope("Echo", |_ctx, e: Echo| Ok::<_, netloom::BoxError>(e))
    ///     .keepalived(std::time::Duration::from_secs(5), std::time::Duration::from_secs(12));
    /// # drop(builder);
    /// ```
    #[cfg(all(feature = "json", feature = "ws"))]
    pub fn route_envelope<Req, Resp, E, F>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        Req: serde::de::DeserializeOwned,
        Resp: serde::Serialize,
        E: Into<BoxError>,
        F: Fn(&mut Context<'_>, Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        let kind = kind.into();
        let handler = crate::dispatch::typed::envelope_handler(kind.clone(), f);
        if self.envelopes.add(kind, handler) {
            let table = self.envelopes.table();
            self = self.route(
                crate::transport::ws::TEXT,
                crate::dispatch::typed::envelope_dispatcher(table),
            );
        }
        self
    }

    /// hotpot's keepalive, `Keepalived(check, timeout)` (features `json`
    /// and `ws`): every `check` the server looks at the connections on
    /// its timer wheel; one silent for longer than `check` is sent
    /// `{"type":"Ping","data":{}}` (a text message, not a WebSocket
    /// ping), anything from it (its `Pong`) counts as life, and one
    /// silent for longer than `timeout` is closed
    /// ([`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout)).
    /// hotpot's default is `Keepalived(5 s, 12 s)`.
    ///
    /// It is the server's heartbeat (it replaces
    /// [`heartbeat`](Self::heartbeat) and
    /// [`ping_before_kick`](Self::ping_before_kick)): connections of the
    /// server's own protocol that are not WebSocket (a TCP listener beside
    /// the WebSocket one, or WebSocket in
    /// [`WsMode::Packer`](crate::ws::WsMode::Packer)) get no ping, only the
    /// close after `timeout` of silence. Dial profiles keep their own
    /// heartbeat.
    #[cfg(all(feature = "json", feature = "ws"))]
    pub fn keepalived(mut self, check: std::time::Duration, timeout: std::time::Duration) -> Self {
        self.config.ping_body = Some(bytes::Bytes::from_static(
            crate::dispatch::typed::ENVELOPE_PING,
        ));
        self.heartbeat(check, timeout)
            .ping_before_kick(check, crate::transport::ws::TEXT)
    }
}
