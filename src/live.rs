//! Values shared by everything of one run that uses them — a resolved secret, a token holder,
//! a tenant snapshot — without passing them around: a registry of weak references by key.
//! Whoever builds a runner asks for the value under its key and keeps the `Arc`; while any
//! holder lives, everyone gets the same one, and the value leaves memory with the last.

use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Values shared by every runner of a plan while any of them holds one, by key. Weak, so
/// what they hold (a resolved secret, a token, a tenant snapshot) leaves memory with the last
/// runner that uses it.
pub struct LiveRegistry<T> {
    live: Mutex<Vec<(String, Weak<T>)>>,
}

impl<T> Default for LiveRegistry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LiveRegistry<T> {
    pub const fn new() -> Self {
        LiveRegistry {
            live: Mutex::new(Vec::new()),
        }
    }

    /// The live value under `key`, else `make()` registered under it.
    pub fn get_or_insert(&self, key: String, make: impl FnOnce() -> T) -> Arc<T> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|(_, w)| w.strong_count() > 0);
        if let Some(found) = live
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return found;
        }
        let value = Arc::new(make());
        live.push((key, Arc::downgrade(&value)));
        value
    }
}
