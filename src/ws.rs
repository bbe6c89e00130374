//! WebSocket (RFC 6455) listeners: `ws://`, and `wss://` with TLS, on the
//! same event loops, routes and middleware as the raw TCP listeners.
//!
//! ```no_run
//! use netloom::{ws, Server};
//!
//! let server = Server::builder()
//!     .ws_on_upgrade(|_session, req| {
//!         // Reject before the upgrade with an HTTP status.
//!         if req.path() != "/chat" { Err(404) } else { Ok(()) }
//!     })
//!     .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
//!     .route(ws::BINARY, |ctx| ctx.send_binary(ctx.body()))
//!     .bind_ws("127.0.0.1:6568")?
//!     .start()?;
//! server.join()?;
//! # Ok::<(), netloom::Error>(())
//! ```
//!
//! # Clients
//!
//! [`Dial::ws`](crate::Dial::ws) dials a WebSocket server from the same
//! loops (`wss://` with [`Dial::wss`](crate::Dial::wss), feature `tls`):
//! the same modes, limits, heartbeat and close codes as a listener's
//! connections, with every frame masked; the server's answer to the
//! upgrade is kept as the connection's data ([`WsResponse`]).
//! `examples/ws_client.rs` and `examples/autobahn_client.rs` use it.
//!
//! # How it works
//!
//! The loops read WebSocket connections like any other and pass the bytes
//! through a sans-I/O layer built on tungstenite's `WebSocketContext`: the
//! upgrade request (at most [`MAX_REQUEST_HEAD`] bytes) is parsed and
//! checked, the application decides (`Builder::ws_on_upgrade`), and frames
//! then flow through the same write queues, backpressure and heartbeat as
//! raw TCP. See `docs/ARCHITECTURE.md`.
//!
//! # Modes ([`WsMode`])
//!
//! * [`WsMode::Messages`] (default): every whole message (fragments
//!   reassembled) is dispatched as a [`Message`](crate::Message) with id [`TEXT`] or
//!   [`BINARY`] and `seq` 0, through the global and group middleware to
//!   `.route(ws::TEXT, ..)` / `.route(ws::BINARY, ..)`. Sending with id
//!   [`TEXT`] makes a text frame (the body must be UTF-8), any other id a
//!   binary frame.
//! * [`WsMode::Packer`]: binary messages carry the server's packer frames
//!   (one per message is usual; any split is tolerated) and every message
//!   sent is one packer frame in one binary message, so the same routes
//!   serve TCP and browser clients. A text message closes the connection
//!   with 1003.
//!
//! # Protocol duties
//!
//! Pings are answered with pongs; with a heartbeat, `ping_before_kick`
//! sends a WebSocket ping (the pong, like any byte, counts as traffic).
//! Close codes sent by the server:
//!
//! | why | code |
//! | --- | --- |
//! | `close()` / `ConnHandle::close()` | 1000 |
//! | [`Session::close_with`](crate::Session::close_with) | yours |
//! | server shutdown | 1001 "going away" |
//! | idle timeout | 1000 "idle timeout" |
//! | protocol violation, unmasked client frame, a close code a peer may not send, a 64-bit length with the top bit set | 1002 |
//! | text message in packer mode, unknown id with `UnknownIdPolicy::Close` | 1003 |
//! | invalid UTF-8 in a text message | 1007 |
//! | slow peer (`SlowPeerPolicy::Close`) | 1008 |
//! | a message not completed in time (`CloseReason::FrameTimeout`) | 1008 |
//! | the loop's partial-frame budget ran out (`CloseReason::MemoryLimit`) | 1013 |
//! | message or frame over the limit, packer frame over `max_body_length` | 1009 |
//! | handler panic | 1011 |
//!
//! After a close it initiates, the server waits (at most `close_linger`)
//! for the peer's close frame before it closes the TCP connection; after
//! a protocol failure it closes at once. A close frame from the peer is
//! answered and the connection closes with
//! [`CloseReason::WsClosed`](crate::CloseReason::WsClosed). Requests that
//! are not WebSocket upgrades get `400 Bad Request`
//! ([`CloseReason::BadUpgrade`](crate::CloseReason::BadUpgrade)); the
//! handshake timeout covers TLS and the upgrade.

#[doc(inline)]
pub use crate::transport::ws::{WsMode, WsRequest, WsResponse, BINARY, MAX_REQUEST_HEAD, TEXT};
