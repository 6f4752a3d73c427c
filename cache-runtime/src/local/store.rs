//! The decoded copies of one function in one cache: a bounded map (quick_cache's CLOCK-Pro,
//! `local = N` entries) from the hash of a call's arguments to its value and how long that value
//! may be served.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use quick_cache::sync::Cache as Map;
use quick_cache::{Lifecycle, UnitWeighter};

use super::Budget;
use crate::key::PreHashed;
use crate::site::Site;
use crate::stats::Count;

/// Invalidation counters per store: an insertion that raced an invalidation of a key in the
/// same slot undoes itself.
const SLOTS: usize = 64;

/// One copy.
#[derive(Clone)]
struct Entry<T> {
    value: T,
    /// Unix ms after which the copy is not served: the entry's freshness, or `local_ttl` after it
    /// was cached, whichever comes first.
    until_ms: u64,
    /// Its estimated size, charged to the cache's budget while it is held.
    bytes: u64,
}

/// The copies of one function in one cache.
pub(crate) struct LocalStore<T> {
    map: Map<u128, Entry<T>, UnitWeighter, PreHashed, Evicted>,
    /// Insertions take it, so that replacing a copy can return the bytes of the one it replaces.
    inserting: Mutex<()>,
    /// Bumped before each invalidation of a key of the slot (see [`LocalStore::insert`]).
    versions: [AtomicU64; SLOTS],
    budget: Arc<Budget>,
    site: &'static Site,
}

/// Returns an evicted copy's bytes to the budget and counts the eviction.
#[derive(Clone)]
struct Evicted {
    budget: Arc<Budget>,
    site: &'static Site,
}

impl<T> Lifecycle<u128, Entry<T>> for Evicted {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, _state: &mut (), _key: u128, entry: Entry<T>) {
        self.budget.release(entry.bytes);
        self.site.local_removed(entry.bytes);
        self.site.count(Count::LocalEvictions);
    }
}

/// What [`LocalStore::watch`] saw before a read from Redis, to check after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    args: u128,
    version: u64,
}

impl<T: Clone + Send + Sync + 'static> LocalStore<T> {
    pub(crate) fn new(site: &'static Site, budget: Arc<Budget>) -> Self {
        let entries = usize::try_from(site.spec.local_entries).unwrap_or(usize::MAX);
        let lifecycle = Evicted {
            budget: budget.clone(),
            site,
        };
        LocalStore {
            map: Map::with(
                entries.min(1 << 16),
                site.spec.local_entries,
                UnitWeighter,
                PreHashed::default(),
                lifecycle,
            ),
            inserting: Mutex::new(()),
            versions: [const { AtomicU64::new(0) }; SLOTS],
            budget,
            site,
        }
    }

    /// The copy of `args`, if it may still be served at `now_ms`.
    pub(crate) fn get(&self, args: u128, now_ms: u64) -> Option<T> {
        let entry = self.map.get(&args)?;
        if now_ms < entry.until_ms {
            return Some(entry.value);
        }
        self.remove(args);
        None
    }

    /// Taken before reading `args` from Redis; [`LocalStore::insert`] keeps the value it read
    /// only if no invalidation of its slot came in between.
    pub(crate) fn watch(&self, args: u128) -> Watch {
        Watch {
            args,
            version: self.slot(args).load(SeqCst),
        }
    }

    /// Keeps a copy of `value` (read from Redis after `watch`, or computed while Redis was
    /// unreachable) until `until_ms`.
    ///
    /// An invalidation message may overtake the read it concerns: Redis changed the key after
    /// our `GET` answered, and the message arrived before this insertion. The invalidation bumps
    /// the slot's version before it removes, and this checks the version after it inserted, so
    /// either the removal comes after the insertion, or the insertion sees the bump and undoes
    /// itself.
    pub(crate) fn insert(&self, watch: Watch, value: &T, until_ms: u64, bytes: u64) {
        let Watch { args, version } = watch;
        {
            let _inserting = crate::sync::guard(&self.inserting);
            if let Some((_, old)) = self.map.remove(&args) {
                self.released(old.bytes);
            }
            if !self.budget.reserve(bytes) {
                return;
            }
            let entry = Entry {
                value: value.clone(),
                until_ms,
                bytes,
            };
            self.site.local_added(bytes);
            self.map.insert(args, entry);
        }
        if self.slot(args).load(SeqCst) != version {
            self.remove(args);
        }
    }

    /// Removes the copy of `args` because Redis's entry changed. `true` if there was one.
    pub(crate) fn invalidate(&self, args: u128) -> bool {
        self.slot(args).fetch_add(1, SeqCst);
        let removed = self.remove(args);
        if removed {
            self.site.count(Count::LocalInvalidations);
        }
        removed
    }

    /// Removes every copy (coherence was lost and is back, or the function was cleared). Copies
    /// being inserted concurrently undo themselves.
    pub(crate) fn clear(&self) -> usize {
        for version in &self.versions {
            version.fetch_add(1, SeqCst);
        }
        let mut removed = 0;
        for (_, entry) in self.map.drain() {
            self.released(entry.bytes);
            self.site.count(Count::LocalInvalidations);
            removed += 1;
        }
        removed
    }

    /// Removes the copies that can no longer be served, so that their memory does not wait for
    /// a lookup of their key.
    pub(crate) fn sweep(&self, now_ms: u64) {
        let expired: Vec<u128> = self
            .map
            .iter()
            .filter(|(_, entry)| entry.until_ms <= now_ms)
            .map(|(args, _)| args)
            .collect();
        for args in expired {
            self.remove(args);
        }
    }

    fn remove(&self, args: u128) -> bool {
        match self.map.remove(&args) {
            Some((_, entry)) => {
                self.released(entry.bytes);
                true
            }
            None => false,
        }
    }

    fn released(&self, bytes: u64) {
        self.budget.release(bytes);
        self.site.local_removed(bytes);
    }

    fn slot(&self, args: u128) -> &AtomicU64 {
        &self.versions[(args as usize) % SLOTS]
    }
}
