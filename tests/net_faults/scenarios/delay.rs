//! stub
use super::Env;
pub fn latency_and_reordering(_env: &Env) {}
