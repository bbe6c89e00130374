//! netloom's integration tests, one binary: every module talks to a real
//! server over loopback sockets (and, where one exists, through a peer
//! nobody on the team wrote). The tests that change process-wide state (the
//! descriptor limit, CPU time) live in their own binaries beside this one.

#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "tls")]
mod tls_support;

mod client_timeout;
#[cfg(feature = "cluster")]
mod cluster;
mod defects;
mod defects2;
mod deprecated;
mod dial;
#[cfg(feature = "tls")]
mod dial_tls;
mod docs_sync;
#[cfg(all(feature = "json", feature = "ws"))]
mod envelope;
mod ergonomics;
mod exec;
mod features;
// The fuzz targets' drivers (fuzz/), and the regression tests of what
// the fuzzers found.
#[cfg(all(feature = "bench-internals", feature = "tls", feature = "ws"))]
mod fuzz_drivers;
#[cfg(feature = "ws")]
mod hardening;
#[cfg(all(feature = "tls", feature = "ws"))]
mod honest;
mod layering;
mod lifecycle;
#[cfg(feature = "metrics")]
mod metrics;
mod pool;
mod profile_rules;
mod profiles;
mod protocol;
mod review;
mod rooms;
mod timers;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
mod tls_close;
#[cfg(feature = "tls")]
mod tls_features;
mod tlv;
#[cfg(all(
    feature = "tls",
    feature = "json",
    feature = "msgpack",
    feature = "protobuf"
))]
mod typed;
mod udp;
#[cfg(feature = "ws")]
pub(crate) mod ws;
#[cfg(feature = "ws")]
mod ws_dial;
#[cfg(feature = "ws")]
mod ws_raw;
