//! The background refreshes (`refresh = "background"`) running in this process: at most one per
//! key. Across processes the key's lock keeps it to one; this set only spares Redis a lock attempt
//! per call while a slow refresh runs, when every call in the stale window would ask for it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The keys being refreshed in the background. Clones share them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Refreshing {
    keys: Arc<Mutex<HashSet<Box<str>>>>,
}

impl Refreshing {
    /// Claims `key` for a background refresh, or `None` if this process refreshes it already.
    pub(crate) fn claim(&self, key: &str) -> Option<Claim> {
        let fresh = crate::sync::guard(&self.keys).insert(key.into());
        fresh.then(|| Claim {
            refreshing: self.clone(),
            key: key.into(),
        })
    }
}

/// A key's claim; released when dropped, however its refresh ends.
#[derive(Debug)]
pub(crate) struct Claim {
    refreshing: Refreshing,
    key: Box<str>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        crate::sync::guard(&self.refreshing.keys).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_key_until_it_is_dropped() {
        let refreshing = Refreshing::default();
        let claim = refreshing.claim("a").expect("first claim");
        assert!(refreshing.claim("a").is_none(), "a is being refreshed");
        let other = refreshing.claim("b");
        assert!(other.is_some(), "b is not");
        drop(claim);
        assert!(refreshing.claim("a").is_some(), "released on drop");
    }
}
