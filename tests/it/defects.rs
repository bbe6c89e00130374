//! Regression tests for defects found by review (issues 18 and 25), one
//! file per class: connection identity (`identity`), borrows held across
//! user code and requests (`requests`), dial accounting (`dials`).

mod dials;
mod identity;
mod requests;
