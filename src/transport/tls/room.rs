//! Room for records: rustls' unbuffered API writes into a slice the caller
//! gives, and says how much it needs when the slice is too small.

use rustls::unbuffered::{EncodeError, EncryptError, InsufficientSizeError};

/// Let `write` put records at the end of `outgoing`, in room for
/// `estimate` bytes first and, if that is too small, for as many as it
/// says it needs (`required`). Nothing is appended on failure.
pub(super) fn append<E>(
    outgoing: &mut Vec<u8>,
    estimate: usize,
    mut write: impl FnMut(&mut [u8]) -> std::result::Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> std::result::Result<(), E> {
    let start = outgoing.len();
    outgoing.resize(start + estimate, 0);
    let mut result = write(&mut outgoing[start..]);
    if let Some(size) = result.as_ref().err().and_then(&required) {
        outgoing.resize(start + size, 0);
        result = write(&mut outgoing[start..]);
    }
    outgoing.truncate(start + result.as_ref().map_or(0, |&n| n));
    result.map(drop)
}

/// The room an [`EncodeError`] asks for.
pub(super) fn encode_room(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        EncodeError::AlreadyEncoded => None,
    }
}

/// The room an [`EncryptError`] asks for.
pub(super) fn encrypt_room(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        EncryptError::EncryptExhausted => None,
    }
}
