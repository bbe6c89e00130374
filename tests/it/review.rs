//! Defects found by the independent review of the partial-unit accounting
//! and the frame deadline (issues 18 and 25), each pinned by a test over
//! loopback sockets that failed before its fix.

#[cfg(feature = "tls")]
mod stale_partial;
#[cfg(all(feature = "tls", feature = "ws"))]
mod tls_error;
#[cfg(feature = "ws")]
mod ws_retained;

mod every_period;
#[cfg(all(feature = "tls", feature = "ws"))]
mod partial_closing;
#[cfg(all(feature = "tls", feature = "ws"))]
mod shutdown_idle;
mod unresponsive;
