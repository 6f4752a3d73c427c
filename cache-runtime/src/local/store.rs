//! The decoded copies of one function in one cache: a bounded map (quick_cache's CLOCK-Pro,
//! `local = N` entries) from the hash of a call's arguments to its value and how long that value
//! may be served: while its entry is fresh, and at most `local_ttl` past the later of its making
//! and the last moment the invalidation channel was known to deliver every announcement
//! ([`Confirmed`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use quick_cache::sync::Cache as Map;
use quick_cache::{Lifecycle, OptionsBuilder, UnitWeighter};

use super::{Budget, Confirmed};
use crate::envelope::Meta;
use crate::key::PreHashed;
use crate::site::Site;
use crate::stats::Count;

/// Invalidation counters per store: an insertion that raced an invalidation of a key in the
/// same slot undoes itself.
const SLOTS: usize = 64;

/// What a clear (or a change made by this process) adds to its slots' versions: more than any
/// count of announcements a call can see, so that [`LocalStore::insert_own`] never takes one for
/// an announcement.
const CLEAR_BUMP: u64 = 1 << 32;

/// One copy, shared with the map: a hit clones the `Arc` under the shard's lock and the value
/// after it, so the entry itself is never moved out of the map.
struct Entry<T> {
    value: T,
    /// When it was made (unix ms): it is served at most `local_ttl` past the later of this and
    /// the channel's last confirmation.
    copied_ms: u64,
    /// Whether the channel's confirmations cover it: `false` for a copy that may have missed an
    /// announcement the channel delivered (see [`Copied::covered`]), served at most `local_ttl`
    /// past its making.
    covered: bool,
    /// The header of the entry it copies: it is not served past the entry's freshness (and
    /// `{fn}_with_outcome` reports its age).
    meta: Meta,
    /// Its estimated size, charged to the cache's budget while it is held.
    bytes: u64,
}

/// The copies of one function in one cache.
pub(crate) struct LocalStore<T> {
    map: Map<u128, Arc<Entry<T>>, UnitWeighter, PreHashed, Evicted>,
    /// Insertions take it, so that replacing a copy can return the bytes of the one it replaces.
    inserting: Mutex<()>,
    /// Bumped before each invalidation of a key of the slot (see [`LocalStore::insert`]).
    versions: [AtomicU64; SLOTS],
    /// Keys whose copy was made from this process's own store, before Redis announced that
    /// store: their next announcement is that store's, and leaves the copy (see
    /// [`LocalStore::insert_own`]). Held while a slot's version is bumped, so that marking a key
    /// and counting its slot's announcements are one step.
    own: Mutex<HashSet<u128>>,
    budget: Arc<Budget>,
    /// The tier's clock of the channel's confirmations.
    confirmed: Arc<Confirmed>,
    /// The function's `local_ttl`, in ms.
    local_ttl_ms: u64,
    /// The route (`{function}:{fingerprint}`) of the keys its copies are made from, claimed by
    /// the first copy: only copies of that route's keys are covered by the channel.
    route: OnceLock<Box<str>>,
    /// Announcements of its route's keys reach it: the server tracks the route's prefix and the
    /// tier routes them here. Read by [`LocalStore::watch`], before a read begins.
    tracked: AtomicBool,
    site: &'static Site,
}

/// Returns an evicted copy's bytes to the budget and counts the eviction.
#[derive(Clone)]
struct Evicted {
    budget: Arc<Budget>,
    site: &'static Site,
}

impl<T> Lifecycle<u128, Arc<Entry<T>>> for Evicted {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, _state: &mut (), _key: u128, entry: Arc<Entry<T>>) {
        self.budget.release(entry.bytes);
        self.site.local_removed(entry.bytes);
        self.site.count(Count::LocalEvictions);
    }
}

/// A copy's header: the entry's, when the copy was made, and whether the channel covers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Copied {
    pub meta: Meta,
    /// Unix ms.
    pub at_ms: u64,
    /// Announcements of the key reached its store before the copy's read began (see
    /// [`Watch::covered`]): the channel's confirmations vouch for the copy.
    pub covered: bool,
}

/// What [`LocalStore::watch`] saw before a read from Redis, to check after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    args: u128,
    version: u64,
    covered: bool,
}

impl Watch {
    /// Whether announcements of the store's route reached it when the read began: then none of
    /// the key's changes after the read can be missed while the channel is up. (Before the first
    /// copy of a function, and until Redis tracks its prefix, they are not delivered.)
    pub(crate) fn covered(&self) -> bool {
        self.covered
    }
}

impl<T: Clone + Send + Sync + 'static> LocalStore<T> {
    pub(crate) fn new(
        site: &'static Site,
        budget: Arc<Budget>,
        confirmed: Arc<Confirmed>,
        local_ttl: Duration,
    ) -> Self {
        let entries = usize::try_from(site.spec.local_entries).unwrap_or(usize::MAX);
        let lifecycle = Evicted {
            budget: budget.clone(),
            site,
        };
        LocalStore {
            map: Map::with_options(
                OptionsBuilder::new()
                    .estimated_items_capacity(entries.min(1 << 16))
                    .weight_capacity(site.spec.local_entries)
                    // One shard: `local = N` holds N keys. Split into shards, the capacity is
                    // split evenly too, and keys are not: 1,000 keys in a `local = 1_000` held
                    // 962 with the default 8 shards, and the other 38 churned through Redis (or,
                    // in an outage, through the function) for ever.
                    .shards(1)
                    .build()
                    .expect("a capacity and one shard are valid options"),
                UnitWeighter,
                PreHashed::default(),
                lifecycle,
            ),
            inserting: Mutex::new(()),
            versions: [const { AtomicU64::new(0) }; SLOTS],
            own: Mutex::new(HashSet::new()),
            budget,
            confirmed,
            local_ttl_ms: u64::try_from(local_ttl.as_millis()).unwrap_or(u64::MAX),
            route: OnceLock::new(),
            tracked: AtomicBool::new(false),
            site,
        }
    }

    /// The copy of `args`, if it may still be served at `now_ms`, with its entry's header.
    pub(crate) fn get(&self, args: u128, now_ms: u64) -> Option<(T, Meta)> {
        let entry = self.map.get(&args)?;
        if self.servable(&entry, now_ms) {
            return Some((entry.value.clone(), entry.meta));
        }
        self.remove(args);
        None
    }

    /// While its entry is fresh, and at most `local_ttl` past the later of its making and the
    /// channel's last confirmation (if the channel covers it). A copy that fails this is removed
    /// (the confirmation moves on only while the channel is up, and a channel that comes back
    /// drops every copy first).
    fn servable(&self, entry: &Entry<T>, now_ms: u64) -> bool {
        let vouched = if entry.covered {
            entry.copied_ms.max(self.confirmed.ms())
        } else {
            entry.copied_ms
        };
        now_ms < entry.meta.fresh_until_ms && now_ms < vouched.saturating_add(self.local_ttl_ms)
    }

    /// Taken before reading `args` from Redis; [`LocalStore::insert`] keeps the value it read
    /// only if no invalidation of its slot came in between.
    pub(crate) fn watch(&self, args: u128) -> Watch {
        Watch {
            args,
            version: self.slot(args).load(SeqCst),
            covered: self.tracked.load(SeqCst),
        }
    }

    /// Claims `route` as the store's, if it has none yet; `true` if it is the store's route.
    pub(crate) fn claim_route(&self, route: &str) -> bool {
        &**self.route.get_or_init(|| route.into()) == route
    }

    /// Announcements of `route`'s keys now reach the store (the server tracks its prefix): if it
    /// is the store's route, reads that begin from now on are covered.
    pub(crate) fn track(&self, route: &str) {
        if self.route.get().is_some_and(|own| &**own == route) {
            self.tracked.store(true, SeqCst);
        }
    }

    /// Keeps a copy of `value` (read from Redis after `watch`, or computed while Redis was
    /// unreachable).
    ///
    /// An invalidation message may overtake the read it concerns: Redis changed the key after
    /// our `GET` answered, and the message arrived before this insertion. The invalidation bumps
    /// the slot's version before it removes, and this checks the version after it inserted, so
    /// either the removal comes after the insertion, or the insertion sees the bump and undoes
    /// itself.
    pub(crate) fn insert(&self, watch: Watch, value: &T, copied: Copied, bytes: u64) {
        let Watch { args, version, .. } = watch;
        self.put(args, value, copied, bytes);
        if self.slot(args).load(SeqCst) != version {
            self.remove(args);
        }
    }

    /// Puts a copy in the map, replacing the one there.
    fn put(&self, args: u128, value: &T, copied: Copied, bytes: u64) {
        let _inserting = crate::sync::guard(&self.inserting);
        if let Some((_, old)) = self.map.remove(&args) {
            self.released(old.bytes);
        }
        if !self.budget.reserve(bytes) {
            return;
        }
        let entry = Arc::new(Entry {
            value: value.clone(),
            copied_ms: copied.at_ms,
            covered: copied.covered,
            meta: copied.meta,
            bytes,
        });
        self.site.local_added(bytes);
        self.map.insert(args, entry);
    }

    /// Keeps a copy of `value`, which this process has just stored in Redis; `watch` was taken
    /// before the call looked the key up. `true` if kept.
    ///
    /// Announcements of one key arrive in the order of its writes, and the store came after
    /// `watch`. Counting the announcements of the key's slot since `watch` (a change made in
    /// this process, or a clear, counts as many, and nothing is kept):
    /// - none: the store's announcement is still to come, and the key's next announcement is
    ///   that store's (or one of an earlier write), never one of a later write. The key is
    ///   marked, and its next announcement takes the mark instead of the copy; any later one
    ///   removes the copy. One announcement racing the insertion is either the key's (it took
    ///   the mark: it was the store's, or an earlier write's and the store's is still to come
    ///   and removes the copy) or another key's (the mark waits for the store's);
    /// - one, before the insertion: it was the store's (then any later write's removes the
    ///   copy), or another (then the store's is still to come and removes it: a copy lost,
    ///   nothing stale). The copy is kept unmarked, unless another announcement races it;
    /// - more: nothing is kept.
    pub(crate) fn insert_own(&self, watch: Watch, value: &T, copied: Copied, bytes: u64) -> bool {
        let args = watch.args;
        let seen = |store: &Self| store.slot(args).load(SeqCst).wrapping_sub(watch.version);
        let before = {
            // Counted and marked in one step: an announcement is either before both (counted,
            // no mark to take) or after both (it finds the mark).
            let mut marked = crate::sync::guard(&self.own);
            let before = seen(self);
            if before == 0 {
                marked.insert(args);
            }
            before
        };
        if before > 1 {
            return false;
        }
        self.put(args, value, copied, bytes);
        if seen(self) > 1 {
            crate::sync::guard(&self.own).remove(&args);
            self.remove(args);
            return false;
        }
        true
    }

    /// Removes the copy of `args` because Redis's entry changed (`announced`: Redis said so;
    /// otherwise this process changed it). `true` if there was one. The announcement of this
    /// process's own store, for a copy made from that store, leaves the copy.
    pub(crate) fn invalidate(&self, args: u128, announced: bool) -> bool {
        // A change made here counts as many for copies of this process's stores: they keep
        // nothing across it (see `insert_own`).
        let bump = if announced { 1 } else { CLEAR_BUMP };
        let marked = {
            let mut marked = crate::sync::guard(&self.own);
            self.slot(args).fetch_add(bump, SeqCst);
            marked.remove(&args)
        };
        if marked && announced {
            return false;
        }
        let removed = self.remove(args);
        if removed {
            self.site.count(Count::LocalInvalidations);
        }
        removed
    }

    /// Removes every copy (coherence was lost and is back, or the function was cleared). Copies
    /// being inserted concurrently undo themselves.
    pub(crate) fn clear(&self) -> usize {
        {
            let mut marked = crate::sync::guard(&self.own);
            for version in &self.versions {
                version.fetch_add(CLEAR_BUMP, SeqCst);
            }
            marked.clear();
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
            .filter(|(_, entry)| !self.servable(entry, now_ms))
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

#[cfg(test)]
mod tests {
    /// A copy made at 0 and covered by the channel, of an entry computed at 0 and fresh until
    /// `until_ms`.
    fn until(until_ms: u64) -> Copied {
        let meta = Meta {
            computed_at_ms: 0,
            fresh_until_ms: until_ms,
            compute_micros: 0,
        };
        Copied {
            meta,
            at_ms: 0,
            covered: true,
        }
    }

    use super::*;
    use crate::spec::SiteSpec;

    static SITE: Site = Site::new(SiteSpec {
        module: "local::store::tests",
        function: "four",
        name: None,
        ttl_secs: 60,
        none_ttl_secs: 0,
        version: 0,
        value_type: "u64",
        stale_secs: 0,
        early_refresh: false,
        jitter: None,
        wait_for_lock: true,
        local_entries: 4,
        local_ttl_secs: 0,
        tags: "",
        stores_none: false,
        batch: false,
        codec: None,
    });

    const LOCAL_TTL: Duration = Duration::from_secs(30);

    fn store(max_bytes: u64) -> (LocalStore<u64>, Arc<Budget>) {
        let budget = Arc::new(Budget::new(max_bytes));
        let store = LocalStore::new(&SITE, budget.clone(), Arc::default(), LOCAL_TTL);
        (store, budget)
    }

    fn used(budget: &Budget) -> u64 {
        budget.used.load(SeqCst)
    }

    #[test]
    fn a_copy_is_served_until_its_instant_and_not_after() {
        let (store, budget) = store(1000);
        store.insert(store.watch(1), &7, until(100), 10);
        assert_eq!(store.get(1, 99).map(|(value, _)| value), Some(7));
        assert_eq!(
            store.get(1, 100).map(|(value, _)| value),
            None,
            "served strictly before until_ms"
        );
        assert_eq!(
            store.get(1, 0).map(|(value, _)| value),
            None,
            "and removed once found expired"
        );
        assert_eq!(used(&budget), 0);
    }

    #[test]
    fn local_ttl_counts_from_the_channels_last_confirmation_for_a_covered_copy() {
        let (store, budget) = store(1000);
        let ttl = store.local_ttl_ms;
        let uncovered = Copied {
            covered: false,
            ..until(u64::MAX)
        };
        store.insert(store.watch(1), &7, until(u64::MAX), 10);
        store.insert(store.watch(2), &8, uncovered, 10);
        // No confirmation yet: both are served for local_ttl after they were made.
        assert_eq!(store.get(1, ttl - 1).map(|(v, _)| v), Some(7));
        assert_eq!(store.get(2, ttl - 1).map(|(v, _)| v), Some(8));
        // The channel confirmed at 5 * ttl: the covered copy lives on, to 6 * ttl.
        store.confirmed.confirm(5 * ttl);
        assert_eq!(store.get(1, 6 * ttl - 1).map(|(v, _)| v), Some(7));
        assert_eq!(
            store.get(1, 6 * ttl).map(|(v, _)| v),
            None,
            "local_ttl past it"
        );
        // The uncovered one was never vouched for.
        assert_eq!(store.get(2, ttl).map(|(v, _)| v), None);
        assert_eq!(used(&budget), 0, "both removed");
        // A confirmation never moves back.
        store.confirmed.confirm(ttl);
        assert_eq!(store.confirmed.ms(), 5 * ttl);
    }

    #[test]
    fn an_insertion_overtaken_by_an_invalidation_undoes_itself() {
        let (store, budget) = store(1000);
        // A read of key 1 starts; its key changes (announced) before the read's value lands.
        let watch = store.watch(1);
        assert!(!store.invalidate(1, true), "no copy yet");
        store.insert(watch, &7, until(u64::MAX), 10);
        assert_eq!(
            store.get(1, 0).map(|(value, _)| value),
            None,
            "the older value is not kept"
        );
        assert_eq!(used(&budget), 0);
        // A read that starts after the change keeps its value.
        store.insert(store.watch(1), &8, until(u64::MAX), 10);
        assert_eq!(store.get(1, 0).map(|(value, _)| value), Some(8));
    }

    #[test]
    fn a_copy_of_an_own_store_survives_that_stores_announcement_only() {
        // The store's announcement comes after the copy: it takes the mark, the next one the copy.
        let (store, budget) = store(1000);
        assert!(store.insert_own(store.watch(1), &7, until(u64::MAX), 10));
        assert!(!store.invalidate(1, true), "the store's own announcement");
        assert_eq!(store.get(1, 0).map(|(value, _)| value), Some(7));
        assert!(store.invalidate(1, true), "a later write's");
        assert_eq!(store.get(1, 0).map(|(value, _)| value), None);
        assert_eq!(used(&budget), 0);

        // The store's announcement came first: the copy is kept unmarked.
        let watch = store.watch(2);
        store.invalidate(2, true);
        assert!(store.insert_own(watch, &8, until(u64::MAX), 10));
        assert!(store.invalidate(2, true), "a later write's");

        // Two announcements since the call began: one may be a later write's; nothing kept.
        let watch = store.watch(3);
        store.invalidate(3, true);
        store.invalidate(3, true);
        assert!(!store.insert_own(watch, &9, until(u64::MAX), 10));
        assert_eq!(store.get(3, 0).map(|(value, _)| value), None);

        // A change made here (an `_invalidate`) or a clear meanwhile: nothing kept, and an
        // invalidation in this process removes a marked copy at once.
        let watch = store.watch(4);
        store.invalidate(4, false);
        assert!(!store.insert_own(watch, &10, until(u64::MAX), 10));
        let watch = store.watch(5);
        store.clear();
        assert!(!store.insert_own(watch, &11, until(u64::MAX), 10));
        assert!(store.insert_own(store.watch(6), &12, until(u64::MAX), 10));
        assert!(store.invalidate(6, false), "removed, mark or not");
        assert_eq!(store.get(6, 0).map(|(value, _)| value), None);
        assert_eq!(used(&budget), 0);
    }

    #[test]
    fn clearing_undoes_insertions_in_flight_and_returns_every_byte() {
        let (store, budget) = store(1000);
        store.insert(store.watch(1), &1, until(u64::MAX), 10);
        store.insert(store.watch(2), &2, until(u64::MAX), 10);
        let in_flight = store.watch(3);
        assert_eq!(store.clear(), 2);
        store.insert(in_flight, &3, until(u64::MAX), 10);
        assert_eq!(store.get(3, 0).map(|(value, _)| value), None);
        assert_eq!(used(&budget), 0);
    }

    #[test]
    fn entries_and_bytes_stay_within_their_bounds() {
        let (store, budget) = store(35);
        for key in 0..3u128 {
            store.insert(store.watch(key), &(key as u64), until(u64::MAX), 10);
        }
        assert_eq!(used(&budget), 30);
        store.insert(store.watch(9), &9, until(u64::MAX), 10);
        assert_eq!(
            store.get(9, 0).map(|(value, _)| value),
            None,
            "over the byte budget: not kept"
        );
        // Replacing a copy returns the old one's bytes first.
        store.insert(store.watch(0), &100, until(u64::MAX), 10);
        assert_eq!(store.get(0, 0).map(|(value, _)| value), Some(100));
        assert_eq!(used(&budget), 30);

        let (store, budget) = store_with_room();
        for key in 0..100u128 {
            store.insert(store.watch(key), &(key as u64), until(u64::MAX), 1);
        }
        assert!(store.map.len() <= 4, "local = 4 entries");
        assert_eq!(used(&budget), store.map.len() as u64);
    }

    #[test]
    fn local_n_holds_n_keys() {
        static SITE_1000: Site = Site::new(SiteSpec {
            local_entries: 1000,
            ..SITE.spec
        });
        let store = LocalStore::<u64>::new(
            &SITE_1000,
            Arc::new(Budget::new(u64::MAX)),
            Arc::default(),
            LOCAL_TTL,
        );
        for round in 0..3 {
            for key in 0..1000u128 {
                if store.get(key, 0).is_none() {
                    store.insert(store.watch(key), &(key as u64), until(u64::MAX), 1);
                }
            }
            assert_eq!(store.map.len(), 1000, "round {round}");
        }
    }

    fn store_with_room() -> (LocalStore<u64>, Arc<Budget>) {
        store(u64::MAX)
    }
}
