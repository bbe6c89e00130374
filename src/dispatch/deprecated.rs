//! The names of 0.1.0 whose new form has another name, kept for one
//! release (see CHANGELOG.md). Names whose new form took them over
//! (`data`, `data_mut`) cannot be kept.

use super::context::{Context, Session};

impl Session<'_> {
    /// Store user data of type `T`, returning the old value of that type.
    ///
    /// ```
    /// #[allow(deprecated)]
    /// let builder = netloom::Server::builder().on_open(|session| {
    ///     session.set_data(std::time::Instant::now());
    /// });
    /// # drop(builder);
    /// ```
    #[deprecated(since = "0.1.0", note = "use `data_mut().insert(value)`")]
    pub fn set_data<T: Send + 'static>(&mut self, value: T) -> Option<T> {
        self.data_mut().insert(value)
    }

    /// Remove and return the user data of type `T`.
    ///
    /// ```
    /// #[allow(deprecated)]
    /// let builder = netloom::Server::builder().on_close(|session, _reason| {
    ///     let _ = session.remove_data::<std::time::Instant>();
    /// });
    /// # drop(builder);
    /// ```
    #[deprecated(since = "0.1.0", note = "use `data_mut().remove::<T>()`")]
    pub fn remove_data<T: 'static>(&mut self) -> Option<T> {
        self.data_mut().remove()
    }
}

impl Context<'_> {
    /// Pass a value down the chain (middleware to handler); one per type.
    ///
    /// ```
    /// use netloom::{Context, HandlerResult, Next};
    ///
    /// struct Authenticated;
    ///
    /// #[allow(deprecated)]
    /// fn auth(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
    ///     ctx.set(Authenticated);
    ///     next.run(ctx)
    /// }
    /// # let _ = netloom::Server::builder().middleware(auth);
    /// ```
    #[deprecated(since = "0.1.0", note = "use `values_mut().insert(value)`")]
    pub fn set<T: Send + 'static>(&mut self, value: T) -> Option<T> {
        self.values_mut().insert(value)
    }

    /// A value passed down by a middleware earlier in the chain.
    ///
    /// ```
    /// struct UserId(u64);
    ///
    /// #[allow(deprecated)]
    /// fn handler(ctx: &mut netloom::Context<'_>) -> netloom::Result<()> {
    ///     let uid = ctx.get::<UserId>().map_or(0, |u| u.0);
    ///     ctx.reply(1, uid.to_string())
    /// }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    #[deprecated(since = "0.1.0", note = "use `values().get::<T>()`")]
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.values().get()
    }

    /// Take a value passed down earlier in the chain.
    ///
    /// ```
    /// struct UserId(u64);
    ///
    /// #[allow(deprecated)]
    /// fn handler(ctx: &mut netloom::Context<'_>) -> netloom::Result<()> {
    ///     let uid = ctx.take::<UserId>().map_or(0, |u| u.0);
    ///     ctx.reply(1, uid.to_string())
    /// }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    #[deprecated(since = "0.1.0", note = "use `values_mut().remove::<T>()`")]
    pub fn take<T: 'static>(&mut self) -> Option<T> {
        self.values_mut().remove()
    }
}
