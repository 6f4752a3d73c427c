//! The local tier (`local = N`): decoded copies of a function's entries in this process, served
//! without a round trip, and removed when Redis's entry changes.
//!
//! - [`store`]: one function's copies, bounded by `local = N` entries and by the cache's byte
//!   budget ([`Budget`]); a copy is served while the entry it copies is fresh, and at most
//!   `local_ttl` without Redis's confirmation: past the later of its making and the last moment
//!   the channel was known to deliver every announcement ([`Confirmed`]).
//! - [`tracking`]: coherence. A connection per primary asks Redis for server-assisted
//!   client-side caching in broadcast mode (`CLIENT TRACKING ON BCAST PREFIX ...` over RESP3,
//!   one prefix per function this process keeps copies of): every change of such a key (a store,
//!   `DEL` from any client,
//!   `FLUSHALL`, expiry, eviction) is announced, and the copy of that key is removed. A ping
//!   round answered by every primary confirms the copies (every announcement before it has been
//!   applied). While the channel is down, copies are served until `local_ttl` past its last
//!   confirmation, and when it is back every copy cached before is dropped.
//!
//! Copies are made from reads, and from this process's own stores when the store's own
//! announcement can be told apart from a later change ([`LocalStore::insert_own`]): then a miss
//! is followed by local hits at once. When Redis becomes unreachable, the copies it confirmed are
//! served `local_ttl` longer, and computed values are kept too (for `local_ttl`), so an outage
//! shorter than `local_ttl` costs no execution of a key held here, and a longer one one
//! execution per key per `local_ttl` in each process, like the in-process map the tier replaces.

mod copies;
mod store;
mod tracking;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use copies::LocalCopies;
pub(crate) use copies::{Keep, KeepLocal, LocalBatch, LocalItems, StoreRef};
pub(crate) use store::{Copied, LocalStore, Watch};

use crate::connection::Connection;
use crate::key::PreHashed;
use crate::site::Site;
use crate::spec::SiteSpec;

/// The bytes the local tier of one cache may hold (estimated).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    max: u64,
}

impl Budget {
    fn new(max: u64) -> Self {
        Budget {
            used: AtomicU64::new(0),
            max,
        }
    }

    /// Takes `bytes` from the budget, if they fit.
    pub(crate) fn reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    pub(crate) fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Until when Redis vouches for a tier's copies: the unix ms at which its invalidation channel
/// was last known to have delivered every announcement (a ping round, sent then, answered by
/// every primary; announcements and replies come in order on each connection). Moves forward
/// only.
#[derive(Debug, Default)]
pub(crate) struct Confirmed(AtomicU64);

impl Confirmed {
    pub(crate) fn ms(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn confirm(&self, at_ms: u64) {
        self.0.fetch_max(at_ms, Ordering::AcqRel);
    }
}

/// What the tier does with one function's store, whatever its value type.
pub(crate) trait AnyStore: Any + Send + Sync {
    fn invalidate(&self, args: u128, announced: bool) -> bool;
    fn clear(&self) -> usize;
    fn sweep(&self, now_ms: u64);
    fn track(&self, route: &str);
}

impl std::fmt::Debug for dyn AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalStore")
    }
}

impl<T: Clone + Send + Sync + 'static> AnyStore for LocalStore<T> {
    fn invalidate(&self, args: u128, announced: bool) -> bool {
        LocalStore::invalidate(self, args, announced)
    }
    fn clear(&self) -> usize {
        LocalStore::clear(self)
    }
    fn sweep(&self, now_ms: u64) {
        LocalStore::sweep(self, now_ms);
    }
    fn track(&self, route: &str) {
        LocalStore::track(self, route);
    }
}

/// The local tier of one cache. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LocalTier {
    inner: Arc<Tier>,
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("budget", &self.inner.budget)
            .field("coherent", &self.is_coherent())
            .finish_non_exhaustive()
    }
}

struct Tier {
    /// Tells tiers apart in a site's fast slot.
    id: u64,
    prefix: String,
    budget: Arc<Budget>,
    /// The channel's last confirmation: copies are served at most `local_ttl` past it.
    confirmed: Arc<Confirmed>,
    /// The stores of each function (by flight namespace), created at its first call: one per
    /// value type, since the instantiations of a generic function share their site.
    stores: RwLock<Stores>,
    /// How invalidation messages find a function: `{function segment}:{fingerprint}` of the keys
    /// copies were made from, to the function's namespace; and whether Redis tracks the route's
    /// prefix (the channel asks for one prefix per route, so a process is told only of the
    /// functions it keeps copies of).
    routes: RwLock<HashMap<String, Route>>,
    /// Woken when a route is added: the channel asks Redis to track its prefix.
    new_routes: tokio::sync::Notify,
    /// Keys announced by Redis so far (a flush counts one).
    announced: AtomicU64,
    /// The invalidation channel is up: every change is being announced.
    coherent: AtomicBool,
    /// The channel's task is running (started at the first call of a function with `local`,
    /// and again if the runtime it ran on shut down).
    tracking: AtomicBool,
    /// Marked each time coherence is gained or lost or copies are dropped, with the instant (unix
    /// microseconds): for tests to await, and for the bench to time invalidations.
    changes: tokio::sync::watch::Sender<u64>,
}

/// A route of announcements (see `Tier::routes`).
#[derive(Debug, Clone, Copy)]
struct Route {
    namespace: u64,
    /// Redis tracks its prefix on the current channel.
    active: bool,
}

/// The stores of a tier's functions, by namespace.
type Stores = HashMap<u64, Vec<Arc<dyn AnyStore>>, PreHashed>;

static NEXT_TIER: AtomicU64 = AtomicU64::new(1);

impl LocalTier {
    pub(crate) fn new(prefix: &str, max_bytes: usize) -> Self {
        LocalTier {
            inner: Arc::new(Tier {
                id: NEXT_TIER.fetch_add(1, Ordering::Relaxed),
                prefix: prefix.to_string(),
                budget: Arc::new(Budget::new(max_bytes as u64)),
                confirmed: Arc::default(),
                stores: RwLock::default(),
                routes: RwLock::default(),
                new_routes: tokio::sync::Notify::new(),
                announced: AtomicU64::new(0),
                coherent: AtomicBool::new(false),
                tracking: AtomicBool::new(false),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// `site`'s store in this tier, created at its first call (its copies served at most
    /// `local_ttl` without Redis's confirmation); starts the invalidation channel at the first
    /// call of any function. The common case (one cache per function) is a load from the site,
    /// without a lock.
    pub(crate) fn store<T>(
        &self,
        site: &'static Site,
        conn: &Arc<Connection>,
        local_ttl: Duration,
    ) -> Option<StoreRef<T>>
    where
        T: Clone + Send + Sync + 'static,
    {
        // A load on every call (the swap only when the channel's task is not running).
        if !self.inner.tracking.load(Ordering::Acquire)
            && !self.inner.tracking.swap(true, Ordering::AcqRel)
        {
            tracking::start(Arc::downgrade(&self.inner), conn.clone());
        }
        if let Some((id, store)) = site.local_slot()
            && *id == self.inner.id
            && let Some(store) = store.downcast_ref()
        {
            return Some(StoreRef::borrowed(store));
        }
        let namespace = site.namespace();
        let of_type = |stores: &[Arc<dyn AnyStore>]| {
            stores
                .iter()
                .find(|store| (&***store as &dyn Any).is::<LocalStore<T>>())
                .cloned()
        };
        let existing = crate::sync::read(&self.inner.stores)
            .get(&namespace)
            .and_then(|stores| of_type(stores));
        let store = existing.unwrap_or_else(|| {
            let mut stores = crate::sync::write(&self.inner.stores);
            let stores = stores.entry(namespace).or_default();
            of_type(stores).unwrap_or_else(|| {
                let store: Arc<dyn AnyStore> = Arc::new(LocalStore::<T>::new(
                    site,
                    self.inner.budget.clone(),
                    self.inner.confirmed.clone(),
                    local_ttl,
                ));
                stores.push(store.clone());
                store
            })
        });
        if site.set_local_slot(self.inner.id, store.clone() as Arc<dyn Any + Send + Sync>) {
            return self.store(site, conn, local_ttl);
        }
        // Another cache (or another instantiation of a generic function) holds the site's
        // slot: this one goes through the map.
        Some(StoreRef::shared(store))
    }

    /// Makes invalidation messages about `key` (a key of the function with `namespace`) reach
    /// its stores: a new route is added, and the channel asked to track its prefix. Returns the
    /// key's route and whether Redis tracks it already (`None`: not a key of this tier).
    fn route<'k>(&self, key: &'k str, namespace: u64) -> Option<(&'k str, bool)> {
        let (route, _) = self.parse(key)?;
        if let Some(known) = crate::sync::read(&self.inner.routes).get(route) {
            return Some((route, known.active));
        }
        let added = {
            let mut routes = crate::sync::write(&self.inner.routes);
            let entry = routes.entry(route.to_string()).or_insert(Route {
                namespace,
                active: false,
            });
            *entry
        };
        if !added.active {
            self.inner.new_routes.notify_one();
        }
        Some((route, added.active))
    }

    /// `{prefix}:{function}:{fingerprint}:{{args}}` into its route and argument hash.
    fn parse<'k>(&self, key: &'k str) -> Option<(&'k str, u128)> {
        self.inner.parse(key)
    }

    /// Keys announced by Redis so far (see [`crate::Cache::local_announcements`]).
    pub(crate) fn announcements(&self) -> u64 {
        self.inner.announced.load(Ordering::Relaxed)
    }

    /// How many functions' prefixes Redis tracks for this tier (see
    /// [`crate::Cache::local_tracked_functions`]).
    pub(crate) fn tracked_routes(&self) -> usize {
        crate::sync::read(&self.inner.routes)
            .values()
            .filter(|known| known.active)
            .count()
    }

    /// Whether Redis is announcing every change right now.
    pub(crate) fn is_coherent(&self) -> bool {
        self.inner.coherent.load(Ordering::Acquire)
    }

    /// Drops the copies of `spec`'s function (an `_invalidate` of one call, or a clear, in this
    /// process: the announcement would do it too, a moment later).
    pub(crate) fn invalidate(&self, spec: &SiteSpec, args: u128) {
        self.inner.invalidate(spec.namespace(), args, false);
    }

    /// Drops the copies of these Redis keys (a tag's entries, invalidated by this process).
    pub(crate) fn invalidate_keys(&self, keys: &[String]) {
        let keys = keys.iter().map(|key| key.as_bytes().to_vec()).collect();
        self.inner.invalidated(Some(keys), false);
    }

    /// Drops every copy of the functions whose namespaces are given.
    pub(crate) fn clear_namespaces(&self, namespaces: &[u64]) {
        let stores = crate::sync::read(&self.inner.stores);
        for store in namespaces.iter().filter_map(|n| stores.get(n)).flatten() {
            store.clear();
        }
    }

    /// A receiver that changes whenever coherence is gained or lost, an announcement removed
    /// copies, or the server refused the channel (first refusal only), holding the instant of the
    /// last change (unix microseconds): what tests await instead of sleeping.
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

impl Tier {
    fn parse<'k>(&self, key: &'k str) -> Option<(&'k str, u128)> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        // `:{` + 32 hex digits + `}` at the end.
        let split = rest.len().checked_sub(35)?;
        let (route, tail) = (rest.get(..split)?, rest.get(split..)?);
        let hex = tail.strip_prefix(":{")?.strip_suffix('}')?;
        Some((route, u128::from_str_radix(hex, 16).ok()?))
    }

    /// These keys changed (`None`: the whole database was flushed), as Redis `announced`, or as
    /// this process knows (it changed them).
    fn invalidated(&self, keys: Option<Vec<Vec<u8>>>, announced: bool) {
        if announced {
            let count = keys.as_ref().map_or(1, Vec::len) as u64;
            self.announced.fetch_add(count, Ordering::Relaxed);
        }
        let Some(keys) = keys else {
            self.clear_all();
            return;
        };
        let mut removed = false;
        for key in &keys {
            let Ok(key) = std::str::from_utf8(key) else {
                continue;
            };
            if key.ends_with(":lock") {
                continue;
            }
            let Some((route, args)) = self.parse(key) else {
                continue;
            };
            let namespace = crate::sync::read(&self.routes)
                .get(route)
                .map(|known| known.namespace);
            if let Some(namespace) = namespace {
                removed |= self.invalidate(namespace, args, announced);
            }
        }
        if removed {
            self.changed();
        }
    }

    /// Drops the copies of `args` of the function with `namespace`. `true` if there was one.
    fn invalidate(&self, namespace: u64, args: u128, announced: bool) -> bool {
        let stores = crate::sync::read(&self.stores);
        let mut removed = false;
        for store in stores.get(&namespace).into_iter().flatten() {
            removed |= store.invalidate(args, announced);
        }
        removed
    }

    /// Drops every copy: the channel is (back) up, and copies cached before may have missed
    /// announcements; or the database was flushed.
    fn clear_all(&self) {
        for store in self.all_stores() {
            store.clear();
        }
        self.changed();
    }

    /// Every store, taken out of the lock (clearing or sweeping one takes a while).
    fn all_stores(&self) -> Vec<Arc<dyn AnyStore>> {
        crate::sync::read(&self.stores)
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// Tells the tier's watchers: the value is the change's instant, in unix microseconds.
    fn changed(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.changes.send_modify(|at| *at = now);
    }

    fn sweep(&self, now_ms: u64) {
        for store in self.all_stores() {
            store.sweep(now_ms);
        }
    }

    /// The prefix Redis is asked to track for `route`: its entries, not their locks
    /// (`…:#{args}:lock`, see `crate::stampede::lock::lock_key`).
    fn tracked_prefix(&self, route: &str) -> String {
        format!("{}:{route}:{{", self.prefix)
    }

    /// The routes Redis does not track yet (all of them, for a new channel).
    fn routes(&self, inactive_only: bool) -> Vec<String> {
        crate::sync::read(&self.routes)
            .iter()
            .filter(|(_, known)| !inactive_only || !known.active)
            .map(|(route, _)| route.clone())
            .collect()
    }

    /// Redis now tracks these routes' prefixes: announcements of their keys reach their stores,
    /// and reads that begin from now on are covered.
    fn activate(&self, routes: &[String]) {
        let namespaces: Vec<(u64, &str)> = {
            let mut known = crate::sync::write(&self.routes);
            routes
                .iter()
                .filter_map(|route| {
                    let entry = known.get_mut(route)?;
                    entry.active = true;
                    Some((entry.namespace, route.as_str()))
                })
                .collect()
        };
        {
            let stores = crate::sync::read(&self.stores);
            for (namespace, route) in namespaces {
                for store in stores.get(&namespace).into_iter().flatten() {
                    store.track(route);
                }
            }
        }
        self.changed();
    }

    fn set_coherent(&self, coherent: bool) {
        if self.coherent.swap(coherent, Ordering::AcqRel) != coherent {
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_key_is_parsed_into_its_route_and_argument_hash() {
        let tier = LocalTier::new("app", 1000);
        let key = "app:shop::Repo::product:0a1b2c3d:{000000000000000000000000000000ff}";
        assert_eq!(
            tier.parse(key),
            Some(("shop::Repo::product:0a1b2c3d", 0xff))
        );
        for other in [
            "app:shop::product:0a1b2c3d:#{000000000000000000000000000000ff}:lock",
            "other:shop::product:0a1b2c3d:{000000000000000000000000000000ff}",
            "app:x",
            "app:shop::product:0a1b2c3d:{00000000000000000000000000000zz}",
        ] {
            assert_eq!(tier.parse(other), None, "{other}");
        }
    }
}
