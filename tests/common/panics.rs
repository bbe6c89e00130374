//! A panic hook that records every panic of the process (thread name and
//! message) before the default hook prints it, for tests that assert
//! "no panic anywhere": a panic caught by the library (a handler's, a
//! job's) or on a thread nobody joins is seen here too.
//!
//! The hook is process-wide: only test binaries that hold nothing else
//! (tests/shutdown_load.rs, tests/handle_races.rs) install it.

use std::sync::{Mutex, Once};

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Install the recording hook (once per process; later calls do nothing).
pub fn record() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let line = format!("{}: {info}", thread.name().unwrap_or("<unnamed>"));
            PANICS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            default(info);
        }));
    });
}

/// Every panic recorded so far.
pub fn seen() -> Vec<String> {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
