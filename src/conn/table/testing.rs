//! A table of its own for unit tests: one loop, the sequence packer.

use std::sync::Arc;

use super::ConnTable;
use crate::codec::{SeqPacker, ServerPacker};
use crate::config::Config;
use crate::transport::Wire;

/// A table as loop 0 of one would have it, with the default settings.
pub(super) fn table() -> ConnTable {
    let config = Config::default();
    let packer = ServerPacker::Custom(Box::new(SeqPacker::default()));
    let wire = Wire::new(packer, Vec::new(), None, None, Vec::new(), &config).unwrap();
    ConnTable::new(
        1,
        0,
        Arc::new(wire),
        &config,
        Arc::default(),
        Arc::default(),
    )
}
