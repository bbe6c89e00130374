//! # netloom
//!
//! Long-connection TCP servers (game servers, IM, push, IoT gateways) on an
//! epoll/kqueue reactor: `N` event-loop threads, framed messages routed by
//! numeric id through middleware to your handlers, per-connection write
//! queues with backpressure, and a timer wheel that kicks idle peers.
//!
//! ```text
//! accept (acceptor thread) ──► loop k (round-robin / least-connections)    reactor::acceptor
//! readable ──► read into the loop's buffers (no buffer while idle)          reactor::event_loop, codec::reader
//!          ──► [TLS: rustls decrypts]                                        transport::tls
//!          ──► [WebSocket: tungstenite unframes; whole messages or packer
//!              bytes]                                                        transport::ws
//!          ──► Packer::peek / decode → messages                              codec
//!          ──► global middleware ──► group middleware ──► handler by id      dispatch
//!          ──► ctx.reply / send / ConnHandle::send / Hub::broadcast          dispatch::context, runtime
//!          ──► Packer::encode into the connection's write queue             conn::table, transport::wire
//!          ──► flushed at the end of the loop turn (vectored write;
//!              WRITABLE interest only while the kernel buffer is full;
//!              TLS: encrypted into records first)                           reactor::event_loop, buf
//! timer wheel per loop: idle kick, ping-before-kick, close linger,
//!                       TLS handshake timeout                               timer
//! ```
//!
//! The modules form one-way layers, each using only those below it:
//! `sys`, `error`, `ext`, `id`, `stats`, `timer` → `buf` → `codec` →
//! `config` → `transport` → `conn` → `runtime` → `dispatch` → `reactor` →
//! `server` → `builder` → `client`, `ws`, `cluster`, `metrics` (see
//! `docs/ARCHITECTURE.md`; a test keeps it so).
//!
//! * [`Server::builder`] configures and starts a server.
//! * [`Packer`] defines the wire format; [`LengthPacker`] is the default
//!   (`len u32 LE | id u32 LE | body`, wire-compatible with netman's
//!   `DataPacker`).
//! * Handlers get a [`Context`]; middleware gets a [`Context`] and a [`Next`].
//! * [`ConnHandle`] and [`Hub`] reach connections from any thread; a
//!   [`Receipt`] says what a connection's loop did with a request
//!   (`ConnHandle::send_confirmed`, `ConnHandle::run`).
//! * Rooms: `Session::join` / `leave` (or `ConnHandle::join` from any
//!   thread), `Hub::publish` encoded once for every member, `Hub::room_len`.
//!   With the `cluster` feature, `cluster::Cluster` carries rooms, sends
//!   and broadcasts to other nodes through Redis pub/sub.
//! * `Builder::state` shares application state with every handler and
//!   hook (`Session::state`).
//! * [`CloseReason`] tells `on_close` why a connection ended; [`Stats`]
//!   counts everything.
//! * With the `tls` feature (default), `Builder::tls` and
//!   `Builder::tls_pem_files` serve TLS (rustls) on every listener, on the
//!   same loops; `TlsInfo` tells a connection what its handshake settled,
//!   and `client::Client::connect_tls` connects to it. `Dial::tls` makes
//!   the server's own outbound connections (`Hub::dial`) speak TLS.
//! * With the `ws` feature (default), `Builder::bind_ws` adds WebSocket
//!   listeners (`ws://`, `wss://` with TLS) on the same loops and routes:
//!   see the `ws` module.
//! * With the `metrics` feature, the `metrics` module exports [`Stats`]
//!   (and pool and cluster figures) through the `metrics` facade, a
//!   request latency histogram is recorded, and `ConnHandle::traffic`
//!   reads one connection's bytes and messages.
//!
//! # Example
//!
//! An echo server on message id 0, with a global logging middleware:
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use netloom::{Context, HandlerResult, Next, Server};
//!
//! fn timing(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
//!     let start = Instant::now();
//!     let result = next.run(ctx);
//!     log::debug!("message {} took {:?}", ctx.msg_id(), start.elapsed());
//!     result
//! }
//!
//! let handle = Server::builder()
//!     .event_loops(4)
//!     .max_body_length(1 << 20)
//!     .heartbeat(Duration::from_secs(60), Duration::from_secs(180))
//!     .on_open(|conn| log::info!("open {}", conn.id()))
//!     .on_close(|conn, reason| log::info!("close {} {reason}", conn.id()))
//!     .middleware(timing)
//!     .route(0, |ctx| ctx.reply(0, ctx.body()))
//!     .bind("127.0.0.1:6565")?
//!     .start()?;
//! handle.shutdown(Duration::from_secs(5))?;
//! # Ok::<(), netloom::Error>(())
//! ```
//!
//! # Threads and ordering
//!
//! Handlers run on the loop thread that owns the connection. Messages from
//! one connection reach handlers one at a time, in arrival order, and
//! replies leave in the order they were queued (also when the peer
//! pipelines). A handler that blocks stalls its whole loop: hand slow work
//! to your own threads and answer later through a [`ConnHandle`].
//!
//! See `docs/ARCHITECTURE.md` for the design decisions.

#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
// The one exception, a read into uninitialised spare capacity, is in `sys`.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals;
mod buf;
mod builder;
pub mod client;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster;
mod codec;
mod config;
mod conn;
mod dispatch;
mod error;
mod ext;
mod id;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod reactor;
mod runtime;
mod server;
mod stats;
mod sys;
mod timer;
mod transport;
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub mod ws;

/// The `bytes` crate, whose [`BytesMut`](bytes::BytesMut) and
/// [`Bytes`](bytes::Bytes) the [`Packer`] trait and the `*_bytes` sends
/// use: no need to depend on it separately.
pub use bytes;

pub use builder::{Builder, Group, Profile, Server};
pub use codec::{LengthPacker, Message, Packer, Peek, SeqPacker, TlvPacker};
pub use config::{
    Balance, Config, HealthCheck, Heartbeat, PoolConfig, Reconnect, SlowPeerPolicy, UdpConfig,
    UdpValidation, UnknownIdPolicy, WhileDown, FOREVER, MAX_UDP_PAYLOAD,
};
pub use conn::dial::Dial;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use conn::metered::Traffic;
pub use conn::rooms::{MAX_ROOMS_PER_CONN, MAX_ROOM_NAME};
pub use dispatch::context::{BoxError, Context, HandlerResult, IntoHandlerResult, Session};
pub use dispatch::exec::Exec;
pub use dispatch::hooks::{Disconnect, IntoOpenResult};
pub use dispatch::middleware::Next;
pub use dispatch::typed::{BadBody, DecodeError};
pub use error::{CloseReason, Error, PackError, Result};
pub use ext::Extensions;
pub use id::ConnId;
pub use runtime::{
    ConnHandle, Hub, PendingReply, Pool, PoolStats, Pooled, Receipt, Responder, TimerHandle,
};
pub use server::{ServerHandle, ShutdownHandle};
pub use stats::{DatagramDrop, Stats};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use transport::tls::TlsInfo;
pub use transport::udp::UdpSession;

/// The README's code blocks, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The guide's code blocks, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/GUIDE.md")]
struct GuideDoctests;
