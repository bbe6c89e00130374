//! The reactor: the threads that own the sockets.
//!
//! * [`event_loop`]: one loop thread: poll → read, decode, dispatch →
//!   inbox → timers → flush.
//! * [`acceptor`]: accepts on every listener and hands sockets to loops.

pub(crate) mod acceptor;
pub(crate) mod event_loop;
