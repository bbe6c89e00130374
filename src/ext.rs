//! [`Extensions`]: a small map from type to value, for a connection's user
//! data (`Session::data`) and for the values middleware hands down to a
//! handler (`Context::values`). The same vocabulary as `http::Extensions`.
//! [`StateMap`]: its shared, read-only cousin for the application state
//! of `Builder::state`.

use std::any::{Any, TypeId};
use std::fmt;

/// Values keyed by their type: at most one value per type.
///
/// Allocates nothing while empty; a connection that stores one value pays
/// for one small box. Values must be `Send`: a connection's data goes
/// with its work to a worker pool or the logic thread under
/// [`Exec::Pool`](crate::Exec::Pool) and [`Exec::Single`](crate::Exec::Single)
/// (one thread at a time holds it; see `docs/ARCHITECTURE.md`). A value
/// that may not leave its thread is refused at compile time:
///
/// ```compile_fail,E0277
/// let mut ext = netloom::Extensions::new();
/// ext.insert(std::rc::Rc::new(5));
/// ```
///
/// # Examples
///
/// ```
/// let mut ext = netloom::Extensions::new();
/// struct User(&'static str);
/// assert!(ext.insert(User("ann")).is_none());
/// assert_eq!(ext.get::<User>().map(|u| u.0), Some("ann"));
/// ext.get_mut::<User>().unwrap().0 = "bob";
/// assert_eq!(ext.remove::<User>().map(|u| u.0), Some("bob"));
/// assert!(ext.is_empty());
/// ```
#[derive(Default)]
pub struct Extensions(Vec<(TypeId, Box<dyn Any + Send>)>);

impl Extensions {
    /// An empty map (no allocation).
    pub const fn new() -> Self {
        Extensions(Vec::new())
    }

    /// The value of type `T`, if one is stored.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        let t = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(k, _)| *k == t)
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// Mutable access to the value of type `T`, if one is stored.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let t = TypeId::of::<T>();
        self.0
            .iter_mut()
            .find(|(k, _)| *k == t)
            .and_then(|(_, v)| v.downcast_mut())
    }

    /// Store `value`, returning the value of the same type stored before.
    pub fn insert<T: Send + 'static>(&mut self, value: T) -> Option<T> {
        let old = self.remove::<T>();
        // Exact growth: most connections keep one or two values, and this
        // map lives as long as the connection.
        self.0.reserve_exact(1);
        self.0.push((TypeId::of::<T>(), Box::new(value)));
        old
    }

    /// Remove and return the value of type `T`.
    pub fn remove<T: 'static>(&mut self) -> Option<T> {
        let t = TypeId::of::<T>();
        let i = self.0.iter().position(|(k, _)| *k == t)?;
        self.0.swap_remove(i).1.downcast().ok().map(|b| *b)
    }

    /// Whether a value of type `T` is stored.
    pub fn contains<T: 'static>(&self) -> bool {
        let t = TypeId::of::<T>();
        self.0.iter().any(|(k, _)| *k == t)
    }

    /// Number of values stored.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drop every value (keeping the allocation).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.0.len())
            .finish()
    }
}

/// Values keyed by their type, shared by every loop of a server: the
/// application state (`Builder::state`). Filled before the server starts,
/// read-only after, so readers need no lock.
#[derive(Default)]
pub(crate) struct StateMap(Vec<(TypeId, Box<dyn Any + Send + Sync>)>);

impl StateMap {
    /// Store `value`, replacing the value of the same type stored before.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let t = TypeId::of::<T>();
        self.0.retain(|(k, _)| *k != t);
        self.0.push((t, Box::new(value)));
    }

    /// The value of type `T`, if one is stored.
    #[inline]
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let t = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(k, _)| *k == t)
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// Number of values stored.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type() {
        let mut m = Extensions::new();
        assert_eq!(m.insert(1u32), None);
        assert_eq!(m.insert("a"), None);
        assert_eq!(m.insert(2u32), Some(1));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get::<u32>(), Some(&2));
        *m.get_mut::<&str>().unwrap() = "b";
        assert!(m.contains::<&str>());
        assert_eq!(m.remove::<&str>(), Some("b"));
        assert_eq!(m.get::<&str>(), None);
        assert_eq!(m.get::<u64>(), None);
        m.clear();
        assert!(m.is_empty());
    }

    #[test]
    fn state_keeps_one_value_per_type() {
        let mut s = StateMap::default();
        s.insert(1u32);
        s.insert(String::from("a"));
        s.insert(2u32);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get::<u32>(), Some(&2));
        assert_eq!(s.get::<String>().map(String::as_str), Some("a"));
        assert_eq!(s.get::<u64>(), None);
    }

    #[test]
    fn extensions_go_to_other_threads() {
        fn is_send<T: Send>() {}
        is_send::<Extensions>();
    }
}
