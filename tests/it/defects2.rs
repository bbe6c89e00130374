//! Defects of the second review (issue 25) on the dialer, durations and
//! backpressure paths, each pinned by a test over loopback sockets (or the
//! public API) that failed before its fix: messages queued while a connect
//! fails, durations too long for the timer wheel, reconnect policies that
//! overflow, a dialed link against a backend that blocks writing its
//! replies, and a stalled TLS handshake with sends queued. Then what its
//! review found: a ping flood on a connection that is never paused
//! (`awaiting`), dials and requests left at the end of a turn (`slots`),
//! `shutdown(Duration::MAX)` (`durations`).

#[cfg(feature = "ws")]
mod awaiting;
mod backpressure;
mod dialer;
mod durations;
mod slots;
#[cfg(feature = "tls")]
mod tls;

use std::net::{SocketAddr, TcpListener};

/// A loopback port with nothing listening on it (yet).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
