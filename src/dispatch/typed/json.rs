//! JSON (serde_json) for handlers.

use serde::{Deserialize, Serialize};

use super::{with_scratch, DecodeError};
use crate::dispatch::context::{Context, Session};
use crate::error::Result;

impl<'a> Context<'a> {
    /// The body decoded from JSON as a `T`, which may borrow from it (a
    /// `&'a str` field borrows the receive buffer, when the string has no
    /// escapes). Return the error with `?` to hand it to the server's
    /// [`BadBody`](crate::BadBody) policy.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Say<'a> { text: &'a str }
    ///
    /// let builder = netloom::Server::builder().route(1, |ctx| -> netloom::HandlerResult {
    ///     let say: Say<'_> = ctx.json()?;
    ///     ctx.reply(1, say.text.to_uppercase())?;
    ///     Ok(())
    /// });
    /// # drop(builder);
    /// ```
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the body is not JSON of type `T`.
    pub fn json<T: Deserialize<'a>>(&self) -> std::result::Result<T, DecodeError> {
        serde_json::from_slice(self.body).map_err(|e| DecodeError::new("json", self.id, e))
    }

    /// Answer this message with `value` encoded as JSON (message id `id`,
    /// this message's sequence number).
    ///
    /// # Errors
    ///
    /// As [`Session::send`], and [`Error::Encode`](crate::Error::Encode)
    /// if `value` does not serialize.
    pub fn reply_json<T: Serialize + ?Sized>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(
            |buf| serde_json::to_writer(buf, value).map_err(|e| e.to_string()),
            |body| self.reply(id, body),
        )
    }
}

impl Session<'_> {
    /// Send `value` encoded as JSON with message id `id`.
    ///
    /// # Errors
    ///
    /// As [`Context::reply_json`].
    pub fn send_json<T: Serialize + ?Sized>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(
            |buf| serde_json::to_writer(buf, value).map_err(|e| e.to_string()),
            |body| self.send(id, body),
        )
    }
}
