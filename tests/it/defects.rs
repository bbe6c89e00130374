//! Regression tests for defects found by review (issues 18 and 25), one
//! file per class: connection identity (`identity`), borrows held across
//! user code and requests (`requests`), dial accounting (`dials`; the
//! loop-exit races are tested on a hand-driven loop in
//! `src/reactor/event_loop/exits.rs`), requests on framing without
//! sequence numbers (`noseq`).

mod dials;
mod identity;
mod noseq;
mod requests;
