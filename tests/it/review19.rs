//! Reproductions from the independent review of issue 19 (dial profiles,
//! host names, the pool, user timers). Each test states what it checks;
//! the ones that fail on the reviewed code are marked in the report.

mod dial_identity;
mod pool;
mod timers;
