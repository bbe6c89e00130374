//! TLS over real loopback sockets: our client, a raw rustls client that
//! counts TLS records on the wire, `openssl s_client` and Python's `ssl`
//! module against the server.
//!
//! Certificates are generated at test time with rcgen; the PEM files that
//! openssl and Python need are written under the system temp directory with
//! unique names and removed afterwards. Frames are assembled by hand
//! (`crate::common::frame`), never with netloom's encoder. Nothing sleeps to
//! synchronise: tests wait on channels fed by hooks and handlers, on reads
//! with timeouts, or on a child's output, always with a bound.
//!
//! openssl and python3 are installed by `scripts/test`; a test whose peer
//! is missing fails with how to install it, or is skipped and listed under
//! `NETLOOM_SKIP_MISSING_PEERS=1` (`crate::common::peers`).
//!
//! This file: the server the submodules share. `tls/session.rs`: our
//! client and a raw rustls client (ALPN, SNI, versions, key updates, PEM
//! files; frames across TLS records). `tls/peers.rs`: `openssl s_client`
//! and Python's `ssl` module. `tls/ends.rs`: ends without close_notify,
//! handshake timeouts, plaintext clients, failed handshakes.
//! `tls/server_core.rs`: backpressure, heartbeat, handles, broadcast,
//! hooks, middleware, a custom packer and shutdown over TLS.

mod ends;
mod peers;
mod server_core;
mod session;

use std::sync::Arc;

use netloom::{Builder, Context, Server, TlsInfo};

use crate::common::echo;
use crate::tls_support::{alpn_and_sni, server_config, TestCert, ECHO};

/// Replies with "version alpn sni" from the connection's [`TlsInfo`].
const INFO: u32 = 9;

/// Reply with what the handshake settled, as "version alpn sni".
fn info(ctx: &mut Context<'_>) -> netloom::Result<()> {
    let text = match ctx.data().get::<TlsInfo>() {
        Some(i) => format!("{} {}", i.version, alpn_and_sni(i)),
        None => "no TlsInfo".into(),
    };
    ctx.reply(INFO, text)
}

/// A TLS server (TLS 1.2 and 1.3) on two loops with [`ECHO`] and [`INFO`].
fn tls_builder(c: &TestCert) -> Builder {
    Server::builder()
        .event_loops(2)
        .tls(Arc::new(server_config(c, rustls::ALL_VERSIONS)))
        .route(ECHO, echo)
        .route(INFO, info)
}
