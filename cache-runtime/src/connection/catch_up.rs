//! With a reader endpoint (replicas), the keys this process just changed are read from the
//! primary until the replicas have caught up: replication is asynchronous, and a replica read
//! right after an invalidation could return the value it removed (which the local tier would
//! then keep for `local_ttl`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

/// How long a replica may lag behind the primary: for this long after this process changes a
/// key (an invalidation, a write-through, a clear), its lookups go to the primary. A replica
/// further behind can still serve an older value.
pub(crate) const READER_CATCH_UP: Duration = Duration::from_secs(5);

/// Keys remembered at most: past that (a clear of many keys, an invalidation storm), every
/// lookup goes to the primary for the window instead.
const MAX_KEYS: usize = 100_000;

/// The keys changed in the last [`READER_CATCH_UP`].
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Anything remembered at all: a lookup looks no further when not.
    any: AtomicBool,
    changed: Mutex<Changed>,
}

#[derive(Debug, Default)]
struct Changed {
    /// Hash of a key, and when it changed.
    keys: HashMap<u64, Instant>,
    /// Every key changed at this instant (a clear).
    all: Option<Instant>,
}

impl CatchUp {
    /// `keys` just changed in this process.
    pub(crate) fn changed<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        let now = Instant::now();
        let mut changed = crate::sync::guard(&self.changed);
        changed
            .keys
            .retain(|_, at| now.duration_since(*at) < READER_CATCH_UP);
        for key in keys {
            if changed.keys.len() >= MAX_KEYS {
                changed.all = Some(now);
                break;
            }
            changed.keys.insert(xxh3_64(key.as_bytes()), now);
        }
        self.any.store(true, Ordering::Release);
    }

    /// Every key just changed (a clear).
    pub(crate) fn changed_all(&self) {
        crate::sync::guard(&self.changed).all = Some(Instant::now());
        self.any.store(true, Ordering::Release);
    }

    /// Whether `keys` may be read from a replica: none of them changed here in the last
    /// [`READER_CATCH_UP`].
    pub(crate) fn settled<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return true;
        }
        let now = Instant::now();
        let mut changed = crate::sync::guard(&self.changed);
        let recent = |at: &Instant| now.duration_since(*at) < READER_CATCH_UP;
        if changed.all.as_ref().is_some_and(recent) {
            return false;
        }
        changed.all = None;
        changed.keys.retain(|_, at| recent(at));
        if changed.keys.is_empty() {
            self.any.store(false, Ordering::Release);
            return true;
        }
        keys.into_iter()
            .all(|key| !changed.keys.contains_key(&xxh3_64(key.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_key_is_not_settled_the_others_are() {
        let catch_up = CatchUp::default();
        assert!(catch_up.settled(["a", "b"]));
        catch_up.changed(["a"]);
        assert!(!catch_up.settled(["a"]));
        assert!(!catch_up.settled(["b", "a"]));
        assert!(catch_up.settled(["b"]));
        catch_up.changed_all();
        assert!(!catch_up.settled(["b"]));
    }
}
