//! With a reader endpoint (replicas), the keys this process just changed are read from the
//! primary until the replicas have caught up: replication is asynchronous, and a replica read
//! right after an invalidation could return the value it removed (which the local tier would
//! then keep for `local_ttl`).

use std::collections::{HashMap, VecDeque};
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
    /// Hash of a key, and when it last changed.
    keys: HashMap<u64, Instant>,
    /// The same changes in the order they came, so the old ones are let go from the front:
    /// each operation costs the keys it adds or lets go, not the keys remembered.
    order: VecDeque<(Instant, u64)>,
    /// Every key changed at this instant (a clear).
    all: Option<Instant>,
}

impl Changed {
    /// Lets go of what changed before the window.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if now.duration_since(at) < READER_CATCH_UP {
                break;
            }
            self.order.pop_front();
            // Unless it changed again since (a later entry of `order` holds it).
            if self.keys.get(&key) == Some(&at) {
                self.keys.remove(&key);
            }
        }
        if self
            .all
            .is_some_and(|at| now.duration_since(at) >= READER_CATCH_UP)
        {
            self.all = None;
        }
    }
}

impl CatchUp {
    /// `keys` just changed in this process.
    pub(crate) fn changed<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        let now = Instant::now();
        let mut changed = crate::sync::guard(&self.changed);
        changed.expire(now);
        for key in keys {
            if changed.order.len() >= MAX_KEYS {
                changed.all = Some(now);
                break;
            }
            let key = xxh3_64(key.as_bytes());
            changed.keys.insert(key, now);
            changed.order.push_back((now, key));
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
        let mut changed = crate::sync::guard(&self.changed);
        changed.expire(Instant::now());
        if changed.all.is_some() {
            return false;
        }
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

    #[test]
    fn changes_are_let_go_after_the_window_the_latest_counts() {
        let mut changed = Changed::default();
        let start = Instant::now();
        for (at, key) in [
            (start, 1),
            (start + Duration::from_secs(2), 2),
            (start + Duration::from_secs(3), 1),
        ] {
            changed.keys.insert(key, at);
            changed.order.push_back((at, key));
        }
        // Past the first change of 1: 1 changed again since, and stays.
        changed.expire(start + READER_CATCH_UP + Duration::from_millis(1));
        assert_eq!(changed.order.len(), 2);
        assert!(changed.keys.contains_key(&1) && changed.keys.contains_key(&2));
        changed.expire(start + Duration::from_secs(3) + READER_CATCH_UP);
        assert!(changed.keys.is_empty() && changed.order.is_empty());
    }
}
