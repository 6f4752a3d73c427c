//! What a call does with its function's copies, whatever the value type.
//!
//! Keeping and handing out copies needs the value to be `Clone + Send + Sync + 'static`. That
//! bound is checked once, where the generated code makes a [`LocalCopies`] (through a function
//! of its own whose bound names the user's type, spanned on the return type); the flow then
//! holds the table of operations and puts no bound of its own on the value, so a type that cannot
//! be kept is one error, in the user's code, never in this crate's.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::{AnyStore, Copied, LocalStore, LocalTier, Watch};
use crate::connection::Connection;
use crate::envelope::Meta;
use crate::policy::LocalValue;
use crate::site::Site;

/// The operations on copies of `T`, as function pointers made where `T: LocalValue` is known.
#[doc(hidden)]
pub struct LocalCopies<T: 'static> {
    store: StoreFn<T>,
    get: GetFn<T>,
    watch: fn(&StoreRef<T>, u128) -> Watch,
    invalidate: fn(&StoreRef<T>, u128),
    keep: KeepFn<T>,
}

/// A function's store in a tier, its copies served at most the given `local_ttl` without
/// Redis's confirmation.
type StoreFn<T> = fn(&LocalTier, &'static Site, &Arc<Connection>, Duration) -> Option<StoreRef<T>>;

/// The copy of a key at a time, with its entry's header.
type GetFn<T> = fn(&StoreRef<T>, u128, u64) -> Option<(T, Meta)>;

/// Keeps a copy: see [`keep_copy`]. `true` if kept.
type KeepFn<T> = fn(&LocalTier, &'static Site, &StoreRef<T>, Watch, Copy<'_, T>, Made) -> bool;

/// Where a copy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Made {
    /// A read from Redis (or a computation while Redis was unreachable).
    Read,
    /// This process's own store, which Redis has not announced yet.
    Stored,
}

/// A copy to keep: the Redis key it was read from, the value, its entry's header (when it was
/// computed, when it stops being fresh), and its stored size.
pub(crate) type Copy<'a, T> = (&'a str, &'a T, Meta, usize);

impl<T: 'static> Clone for LocalCopies<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: 'static> std::marker::Copy for LocalCopies<T> {}

impl<T: 'static> std::fmt::Debug for LocalCopies<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCopies")
    }
}

impl<T: LocalValue> LocalCopies<T> {
    /// The table for `T`; the generated code calls it through a function whose bound is spanned
    /// on the return type.
    pub fn new() -> Self {
        LocalCopies {
            store: |tier, site, conn, local_ttl| tier.store::<T>(site, conn, local_ttl),
            get: |store, args, now_ms| store.get().get(args, now_ms),
            watch: |store, args| store.get().watch(args),
            invalidate: |store, args| {
                store.get().invalidate(args, false);
            },
            keep: |tier, site, store, watch, copy, made| {
                keep_copy(tier, site, store.get(), watch, copy, made)
            },
        }
    }
}

impl<T: LocalValue> Default for LocalCopies<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: 'static> LocalCopies<T> {
    /// `site`'s store in `tier`, its copies served at most `local_ttl` without Redis's
    /// confirmation (see [`LocalTier::store`]).
    pub(crate) fn store(
        &self,
        tier: &LocalTier,
        site: &'static Site,
        conn: &Arc<Connection>,
        local_ttl: Duration,
    ) -> Option<StoreRef<T>> {
        (self.store)(tier, site, conn, local_ttl)
    }

    /// The copy of `args` in `store`, if it may be served at `now_ms`, with its entry's header.
    pub(crate) fn get(&self, store: &StoreRef<T>, args: u128, now_ms: u64) -> Option<(T, Meta)> {
        (self.get)(store, args, now_ms)
    }

    /// What to check, after reading `args` from Redis, before keeping a copy of it.
    pub(crate) fn watch(&self, store: &StoreRef<T>, args: u128) -> Watch {
        (self.watch)(store, args)
    }

    /// Drops the copy of `args` (a write-through replaces it).
    pub(crate) fn invalidate(&self, store: &StoreRef<T>, args: u128) {
        (self.invalidate)(store, args);
    }
}

/// A function's store of `T`s, borrowed from its site (the common case) or shared with the tier.
/// Held type-erased, so that it is `Send + Sync` whatever `T` is: the flow that holds it has no
/// bound on `T`.
pub(crate) struct StoreRef<T: 'static> {
    store: Held,
    value: PhantomData<fn() -> T>,
}

enum Held {
    Static(&'static dyn AnyStore),
    Shared(Arc<dyn AnyStore>),
}

impl<T: LocalValue> StoreRef<T> {
    pub(crate) fn borrowed(store: &'static LocalStore<T>) -> Self {
        StoreRef {
            store: Held::Static(store),
            value: PhantomData,
        }
    }

    /// `store`, a `LocalStore<T>`.
    pub(crate) fn shared(store: Arc<dyn AnyStore>) -> Self {
        StoreRef {
            store: Held::Shared(store),
            value: PhantomData,
        }
    }

    pub(crate) fn get(&self) -> &LocalStore<T> {
        let store: &dyn AnyStore = match &self.store {
            Held::Static(store) => *store,
            Held::Shared(store) => &**store,
        };
        (store as &dyn Any)
            .downcast_ref()
            .expect("a store's type is its function's value type")
    }
}

/// What the flow keeps in the local tier for one call (see [`crate::flow::cached_local`]).
pub(crate) struct Keep<'a, T: 'static> {
    pub tier: &'a LocalTier,
    pub site: &'static Site,
    pub copies: LocalCopies<T>,
    pub store: &'a StoreRef<T>,
    pub watch: Watch,
}

/// Keeping a copy, whatever the value type: the flow holds a `&dyn KeepLocal<T>` only for
/// functions with `local`, so the others pay nothing.
pub(crate) trait KeepLocal<T> {
    /// Keeps `value`, read from `key` in Redis (or computed while Redis was unreachable), headed
    /// by `meta`; `bytes` is its stored size.
    fn keep(&self, key: &str, value: &T, meta: Meta, bytes: usize);
    /// Keeps `value`, which this call has just stored under `key`, if that is safe: see
    /// [`LocalStore::insert_own`]. `true` if kept.
    fn keep_stored(&self, key: &str, value: &T, meta: Meta, bytes: usize) -> bool;
}

/// Bytes charged per copy beyond its stored size and the value's own `size_of`, roughly: the
/// entry's fields and its `Arc` header (about 64), its allocation's rounding, and the map's slot
/// (the key, the pointer, the eviction state and the index).
const ENTRY_OVERHEAD: u64 = 128;

impl<T: 'static> Keep<'_, T> {
    fn keep_made(&self, copy: Copy<'_, T>, made: Made) -> bool {
        (self.copies.keep)(self.tier, self.site, self.store, self.watch, copy, made)
    }
}

impl<T: 'static> KeepLocal<T> for Keep<'_, T> {
    fn keep(&self, key: &str, value: &T, meta: Meta, bytes: usize) {
        self.keep_made((key, value, meta, bytes), Made::Read);
    }

    fn keep_stored(&self, key: &str, value: &T, meta: Meta, bytes: usize) -> bool {
        self.keep_made((key, value, meta, bytes), Made::Stored)
    }
}

/// Keeps a copy of `value` (from `key`, headed by `meta`, `bytes` stored), served while its
/// entry is fresh and at most `local_ttl` without Redis's confirmation, unless an invalidation of
/// its key came after `watch`. A copy of this process's own store is kept only while Redis
/// announces every change (the tier is coherent), if announcements of the key reached the store
/// since before the call began (Redis tracks the function's prefix, which an earlier copy asked
/// for), and only if its own announcement can be told apart ([`LocalStore::insert_own`]). `true`
/// if kept.
fn keep_copy<T: LocalValue>(
    tier: &LocalTier,
    site: &'static Site,
    store: &LocalStore<T>,
    watch: Watch,
    (key, value, meta, bytes): Copy<'_, T>,
    made: Made,
) -> bool {
    // The route first: a function's first call asks Redis to track its keys, whatever it keeps.
    let route = tier.route(key, site.namespace());
    if made == Made::Stored && !tier.is_coherent() {
        return false;
    }
    let now = crate::envelope::unix_ms(std::time::SystemTime::now());
    if meta.fresh_until_ms <= now {
        return false;
    }
    // Covered: announcements of the key reached the store since before the read (or the
    // store's own write) began. Otherwise one may have been missed (Redis did not track the
    // function's prefix yet, or the store had no route to it): the channel's confirmations do
    // not vouch for the copy, and it lives `local_ttl` from now at most.
    let covered = match route {
        Some((route, tracked)) => {
            let own = store.claim_route(route);
            if own && tracked {
                store.track(route);
            }
            own && watch.covered()
        }
        None => false,
    };
    if made == Made::Stored && !covered {
        // The store's own announcement may have been one of those missed, and nothing would
        // tell it apart from a later write's.
        return false;
    }
    let copied = Copied {
        meta,
        at_ms: now,
        covered,
    };
    let bytes = bytes as u64 + ENTRY_OVERHEAD + std::mem::size_of::<T>() as u64;
    match made {
        Made::Read => {
            store.insert(watch, value, copied, bytes);
            true
        }
        Made::Stored => store.insert_own(watch, value, copied, bytes),
    }
}

/// A batch function's store in the local tier, for the keys of one call.
pub(crate) struct LocalItems<'a, T: 'static> {
    pub tier: &'a LocalTier,
    pub site: &'static Site,
    pub copies: LocalCopies<T>,
    pub store: StoreRef<T>,
}

/// What a batch call does with the local tier, whatever the value type (see [`LocalItems`]).
pub(crate) trait LocalBatch<T> {
    /// The copy of `args`, if one may be served at `now_ms`.
    fn get(&self, args: u128, now_ms: u64) -> Option<T>;
    /// What to check, after reading `args` from Redis, before keeping a copy of it.
    fn watch(&self, args: u128) -> Watch;
    /// Keeps a copy: see [`KeepLocal::keep`].
    fn keep(&self, watch: Watch, key: &str, value: &T, meta: Meta, bytes: usize);
    /// Drops the copy of `args` (a write-through replaces it).
    fn invalidate(&self, args: u128);
}

impl<T: 'static> LocalBatch<T> for LocalItems<'_, T> {
    fn get(&self, args: u128, now_ms: u64) -> Option<T> {
        self.copies
            .get(&self.store, args, now_ms)
            .map(|(value, _)| value)
    }

    fn watch(&self, args: u128) -> Watch {
        self.copies.watch(&self.store, args)
    }

    fn keep(&self, watch: Watch, key: &str, value: &T, meta: Meta, bytes: usize) {
        let copy = (key, value, meta, bytes);
        (self.copies.keep)(self.tier, self.site, &self.store, watch, copy, Made::Read);
    }

    fn invalidate(&self, args: u128) {
        self.copies.invalidate(&self.store, args);
    }
}
