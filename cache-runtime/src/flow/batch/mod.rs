//! A batch call (`batch = ids`): many keys, one round trip per step, one call of the function.
//!
//! Each element of the batch parameter is an item stored under its own key: the key a
//! single-item function with the same `name` and that element as its key argument uses, so the
//! two share entries (and, in this process, their flights). One call:
//!
//! 1. De-duplicates the keys; with `local = N`, serves what the local tier holds.
//! 2. Joins the flights of the other keys (`Flights::join_batch_all`):
//!    leads those nobody is computing; awaits those a single-key call leads (before taking any
//!    lock, so nothing waits for this call while it waits); leaves those another batch call
//!    leads to Redis, except that keys an older batch call leads are awaited where this call
//!    would compute them without Redis (after step 4: Redis could not be read, or there is no
//!    lock to wait on), so a key is computed once in the process even then.
//! 3. Reads the rest in one round trip ([`lookup`]): `MGET` on one server, a pipeline of `GET`s
//!    per primary on a cluster, in chunks of [`batch_chunk`](crate::CacheBuilder::batch_chunk).
//!    Fresh items are served; early (XFetch) and stale ones are served and refreshed.
//! 4. Takes the misses' and refreshes' locks in one round trip ([`locks`]); keys another process
//!    holds are awaited in a fixed global order, so two batches never wait for each other.
//! 5. Calls the function once with the keys still missing ([`compute`]), and stores each item
//!    with its own TTL, `unless` and tags, pipelined (`crate::flow::store::store_many`), before
//!    returning.
//!
//! When Redis cannot be read the function runs with those keys, once, and the followers in
//! this process share its values. Outcomes are counted per item.

mod body;
mod compute;
mod locks;
mod lookup;
mod refresh;
mod shape;

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

pub use body::{BatchBackground, BatchBody, BatchComputed};
pub use shape::{
    BatchKey, BatchMap, BatchReturn, FromBatchKeys, ItemCodec, KeyedBy, batch_keys, batch_param,
    item_codec, item_codec_with_absent,
};

use super::in_tokio;
use super::refresh::RefreshReason;
use super::write_through::take_write_through_request;
use crate::cache::Cache;
use crate::connection::Connection;
use crate::envelope::{Meta, unix_ms};
use crate::freshness;
use crate::key::{CallKey, PreHashed};
use crate::local::{LocalBatch, LocalCopies, LocalItems, Watch};
use crate::policy::Rules;
use crate::site::Site;
use crate::stampede::lock::{Lock, Locks};
use crate::stampede::single_flight::{BatchJoin, Follower, Handoff, Leader};
use crate::stats::{Count, Outcome};

/// The key type of a batch function returning `R`.
type KeyOf<R> = <<R as BatchReturn>::Map as BatchMap>::Key;
/// The value type of one item.
type ValueOf<R> = <<R as BatchReturn>::Map as BatchMap>::Value;

/// Runs one call of a batch function through the cache.
#[doc(hidden)]
pub async fn cached_batch<R, K, B>(
    site: &'static Site,
    cache: &Cache,
    keys: Vec<(K, CallKey)>,
    bypassed: bool,
    codec: ItemCodec<ValueOf<R>>,
    rules: Rules<'_, ValueOf<R>>,
    body: B,
) -> R
where
    R: KeyedBy<K>,
    K: Clone,
    B: BatchBody<K, R, ValueOf<R>>,
{
    register(site, &keys);
    let call = Call {
        site,
        cache,
        bypassed,
        codec: codec.with(cache.codec_for(&site.spec)),
        rules: &rules,
        local: None,
    };
    call.run(keys, body).await
}

/// [`cached_batch`] for a function with `local = N`.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // called by generated code only, each argument named there
pub async fn cached_batch_local<R, K, B>(
    site: &'static Site,
    cache: &Cache,
    keys: Vec<(K, CallKey)>,
    bypassed: bool,
    codec: ItemCodec<ValueOf<R>>,
    copies: LocalCopies<ValueOf<R>>,
    rules: Rules<'_, ValueOf<R>>,
    body: B,
) -> R
where
    R: KeyedBy<K>,
    K: Clone,
    B: BatchBody<K, R, ValueOf<R>>,
{
    register(site, &keys);
    let local = match (cache.local(), cache.shared_connection()) {
        (Some(tier), Some(conn)) if in_tokio() => {
            let local_ttl = freshness::local_ttl(&site.spec);
            copies
                .store(tier, site, conn, local_ttl)
                .map(|store| LocalItems {
                    tier,
                    site,
                    copies,
                    store,
                })
        }
        _ => None,
    };
    let call = Call {
        site,
        cache,
        bypassed,
        codec: codec.with(cache.codec_for(&site.spec)),
        rules: &rules,
        local: local
            .as_ref()
            .map(|local| local as &(dyn LocalBatch<ValueOf<R>> + Sync)),
    };
    call.run(keys, body).await
}

fn register<K>(site: &'static Site, keys: &[(K, CallKey)]) {
    site.register(keys.first().and_then(|(_, call)| call.self_type()));
}

/// One batch call, before it knows whether it can use Redis.
struct Call<'a, V> {
    site: &'static Site,
    cache: &'a Cache,
    /// The attribute's `condition` was false.
    bypassed: bool,
    codec: ItemCodec<V>,
    rules: &'a Rules<'a, V>,
    local: Option<&'a (dyn LocalBatch<V> + Sync)>,
}

impl<V> Call<'_, V> {
    async fn run<R, B>(self, keys: Vec<(KeyOf<R>, CallKey)>, body: B) -> R
    where
        R: BatchReturn,
        R::Map: BatchMap<Value = V>,
        KeyOf<R>: Clone,
        B: BatchBody<KeyOf<R>, R, V>,
    {
        let site = self.site;
        let keys = distinct(keys);
        // Taken here, so calls the function's body makes are ordinary calls.
        let write_through = take_write_through_request();
        if keys.is_empty() {
            return R::from_map(Default::default());
        }
        site.count(Count::BatchCalls);
        site.count_many(Count::BatchKeys, keys.len() as u64);
        if self.bypassed {
            return uncached(site, keys, body, Outcome::Bypassed).await;
        }
        let (Some(conn), Some(locks), false) = (
            self.cache.connection(),
            self.cache.locks(),
            site.stopped(self.codec.codec()),
        ) else {
            return uncached(site, keys, body, Outcome::Fallback).await;
        };
        // Every key of the call shares its stem: rendered once.
        let stem = keys[0].1.stem(
            self.cache.prefix(),
            &site.spec,
            site.fingerprint(self.codec.codec()),
        );
        let rendered: Option<Vec<_>> = keys
            .iter()
            .map(|(_, call)| Some((call.args()?, call.render_on(&stem)?)))
            .collect();
        if !in_tokio() {
            crate::notice::no_runtime(site.display());
            return uncached(site, keys, body, Outcome::Fallback).await;
        }
        let Some(rendered) = rendered else {
            tracing::debug!(
                function = site.display(),
                "redis_cache: a key argument could not be serialized; running uncached"
            );
            return uncached(site, keys, body, Outcome::Fallback).await;
        };
        let batch = Batch {
            site,
            cache: self.cache,
            conn,
            locks,
            codec: self.codec,
            rules: self.rules,
            local: self.local,
            chunk: self.cache.limits().batch_chunk,
            counts_outcomes: true,
        };
        let items = keys
            .into_iter()
            .zip(rendered)
            .map(|((key, _), (args, redis))| Item::new(key, args, redis))
            .collect();
        batch.answer(items, body, write_through).await
    }
}

/// The keys of a call, each once (the first of equal keys, in order): equal keys have equal
/// argument hashes.
fn distinct<K>(keys: Vec<(K, CallKey)>) -> Vec<(K, CallKey)> {
    let mut seen: HashSet<u128, PreHashed> =
        HashSet::with_capacity_and_hasher(keys.len(), PreHashed::default());
    keys.into_iter()
        .filter(|(_, call)| call.args().is_none_or(|args| seen.insert(args)))
        .collect()
}

/// Runs the function with every key, without the cache.
async fn uncached<R, B, V>(
    site: &'static Site,
    keys: Vec<(KeyOf<R>, CallKey)>,
    body: B,
    outcome: Outcome,
) -> R
where
    R: BatchReturn,
    B: BatchBody<KeyOf<R>, R, V>,
{
    let n = keys.len();
    let started = Instant::now();
    let computed = body
        .run(keys.into_iter().map(|(key, _)| key).collect())
        .await;
    site.executed(started.elapsed());
    site.answered_items(&vec![outcome; n]);
    computed.value
}

/// One batch call's context, once it knows it can use Redis.
struct Batch<'a, V> {
    site: &'static Site,
    cache: &'a Cache,
    conn: &'a Connection,
    locks: &'a Locks,
    codec: ItemCodec<V>,
    rules: &'a Rules<'a, V>,
    local: Option<&'a (dyn LocalBatch<V> + Sync)>,
    /// Keys per command or pipeline.
    chunk: usize,
    /// Count the items' outcomes (a background refresh's callers were counted already).
    counts_outcomes: bool,
}

/// One key of a batch call, and how far it got.
struct Item<'f, K, V> {
    key: K,
    /// Its argument hash: its flight, and its copy in the local tier.
    args: u128,
    /// Its Redis key.
    redis: String,
    flight: Flight<'f>,
    /// How this call answers it, once known: the value (`None`: not found) and the outcome.
    served: Option<(Option<V>, Outcome)>,
    /// What remains to do for it.
    step: Step,
    /// The served entry's header, and why this call refreshes it (if it gets the lock).
    refresh: Option<(Meta, RefreshReason)>,
    lock: Option<Lock>,
    /// With `local = N`: taken before the key was read, to keep a copy of what was read.
    watch: Option<Watch>,
}

/// A key's role in this process's single-flight.
enum Flight<'f> {
    /// This call leads it: it hands its value to the key's followers.
    Lead(Leader<'f>),
    /// A single-key call leads it: its value is awaited.
    Follow(Follower),
    /// An older batch call leads it: its value is awaited only where this call would compute it
    /// without Redis ([`Batch::await_older`]).
    Older(Follower),
    /// Nobody here waits for this call's value of it (another batch call leads it, the leader
    /// this call followed failed, or it was handed over already).
    Beside,
}

/// What remains to do for a key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Being looked up (or served: see [`Item::served`]).
    Look,
    /// Missing: the function computes it (stored if this call holds its lock).
    Compute,
    /// Redis could not be read: the function computes it, nothing is stored.
    Fallback,
}

impl<V> Batch<'_, V> {
    /// What decoding an entry may take.
    fn limits(&self) -> crate::codec::Limits {
        self.cache.limits().decode
    }
}

impl<K, V> Item<'_, K, V> {
    fn new(key: K, args: u128, redis: String) -> Self {
        Item {
            key,
            args,
            redis,
            flight: Flight::Beside,
            served: None,
            step: Step::Look,
            refresh: None,
            lock: None,
            watch: None,
        }
    }

    /// Hands `handoff` to the key's followers, if this call leads it (once).
    fn publish(&mut self, handoff: impl FnOnce() -> Handoff) {
        if let Flight::Lead(leader) = std::mem::replace(&mut self.flight, Flight::Beside) {
            leader.publish_with(handoff);
        }
    }

    /// Serves `value` (`None`: not found) with `outcome`.
    fn serve(&mut self, value: Option<V>, outcome: Outcome) {
        self.served = Some((value, outcome));
    }

    /// Whether the function must compute it in this call.
    fn computes(&self) -> bool {
        matches!(self.step, Step::Compute | Step::Fallback)
            || (self.refresh.is_some() && self.lock.is_some())
    }
}

impl<V> Batch<'_, V> {
    /// The steps of a call that can use Redis.
    async fn answer<R, B>(
        &self,
        mut items: Vec<Item<'_, KeyOf<R>, V>>,
        body: B,
        write_through: bool,
    ) -> R
    where
        R: BatchReturn,
        R::Map: BatchMap<Value = V>,
        KeyOf<R>: Clone,
        B: BatchBody<KeyOf<R>, R, V>,
    {
        let flights = self.cache.flights();
        let namespace = self.site.namespace();
        if let Some(local) = self.local {
            let now = unix_ms(SystemTime::now());
            for item in &mut items {
                if write_through {
                    // The write-through replaces the entries: this process's copies go now.
                    local.invalidate(item.args);
                } else if let Some(value) = local.get(item.args, now) {
                    item.serve(Some(value), Outcome::LocalHit);
                }
            }
        }
        if write_through {
            for item in &mut items {
                item.flight = Flight::Lead(flights.lead_anew((namespace, item.args), true));
            }
            return self.write_through(items, body).await;
        }
        let open: Vec<usize> = (0..items.len())
            .filter(|&index| items[index].served.is_none())
            .collect();
        let ids: Vec<_> = open
            .iter()
            .map(|&index| (namespace, items[index].args))
            .collect();
        for (index, join) in open.into_iter().zip(flights.join_batch_all(&ids)) {
            items[index].flight = match join {
                BatchJoin::Lead(leader) => Flight::Lead(leader),
                BatchJoin::Follow(follower) => Flight::Follow(follower),
                BatchJoin::Older(follower) => Flight::Older(follower),
                BatchJoin::Beside => Flight::Beside,
            };
        }
        self.await_follows(&mut items).await;
        self.lookup(&mut items).await;
        let body = match self.refresh_in_background(&mut items, body) {
            Ok(()) => return self.finish(items, None),
            Err(body) => body,
        };
        self.lock(&mut items).await;
        self.await_older(&mut items).await;
        self.compute(items, body).await
    }

    /// Counts the outcomes and builds the answer from what was served (`computed`: the map the
    /// function returned, which already holds the values it computed).
    fn finish<K, R>(&self, items: Vec<Item<'_, K, V>>, computed: Option<R::Map>) -> R
    where
        R: BatchReturn,
        R::Map: BatchMap<Key = K, Value = V>,
    {
        let mut map = computed.unwrap_or_default();
        map.reserve(items.len());
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let Some((value, outcome)) = item.served else {
                continue;
            };
            outcomes.push(outcome);
            if let Some(value) = value {
                map.put(item.key, value);
            }
        }
        if self.counts_outcomes {
            self.site.answered_items(&outcomes);
        }
        R::from_map(map)
    }
}
