//! What the cache reports: per-function counters and latencies ([`stats`], [`snapshot`]),
//! rate-limited warnings, and (with the `metrics` feature) the same figures through the
//! [`metrics`](https://docs.rs/metrics) facade.
//!
//! - `histogram`: the lock-free latency histogram behind [`Latency`];
//! - `warnings`: one `warn` per function per interval for problems that repeat on every call;
//! - `metrics`: the export to whatever recorder the application installed.

mod histogram;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod warnings;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

pub use histogram::Latency;
use histogram::{Counts, Histogram};

/// A function called at least once in this process.
#[derive(Debug, Clone, Copy)]
struct Registered {
    /// How [`FunctionStats::function`] names it: its key segment, followed by ` (batch)` for a
    /// batch function.
    name: &'static str,
    /// Its key segment, which clears select it by.
    segment: &'static str,
    counters: &'static Counters,
    /// Its flight namespace ([`SiteSpec::namespace`](crate::spec::SiteSpec::namespace)).
    namespace: u64,
}

/// Every function called so far, in first-call order.
static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<Registered>> {
    crate::sync::guard(&REGISTRY)
}

/// Lists a function at its first call. `false` if another function already has its name (they
/// share keys; the caller warns).
pub(crate) fn register(
    name: &'static str,
    segment: &'static str,
    counters: &'static Counters,
    namespace: u64,
) -> bool {
    let mut registry = registry();
    let unique = registry.iter().all(|r| r.name != name);
    registry.push(Registered {
        name,
        segment,
        counters,
        namespace,
    });
    unique
}

/// The flight namespaces of the functions called so far whose key segments `selected` accepts.
pub(crate) fn namespaces(selected: impl Fn(&str) -> bool) -> Vec<u64> {
    registry()
        .iter()
        .filter(|r| selected(r.segment))
        .map(|r| r.namespace)
        .collect()
}

/// How a call was answered. Every call of a cached function that returns is exactly one of
/// these, counted once in the [`FunctionStats`] field of the same name; `{fn}_with_outcome`
/// hands it to the caller with a [`CallOutcome`](crate::CallOutcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// An entry read from Redis (or stored by another process this call waited for), or a
    /// fresh one recomputed ahead of its expiry by this call (an early refresh: no entry served).
    Hit,
    /// An entry past its TTL, inside the `stale` window, served while one caller refreshes it.
    Stale,
    /// No usable entry: the function ran and its value was stored.
    Miss,
    /// Served the value of a call of the same key already running in this process.
    Coalesced,
    /// Redis was unreachable or failing (or caching is off): the function ran uncached.
    Fallback,
    /// Answered by the local tier (`local = N`), without a round trip.
    LocalHit,
    /// The attribute's `condition` was false: the function ran, the cache was not consulted.
    Bypassed,
}

impl Outcome {
    /// Its name, as a log field or an `X-Cache` header would carry it: `"hit"`, `"stale"`,
    /// `"miss"`, `"coalesced"`, `"fallback"`, `"local-hit"` or `"bypassed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::Fallback => "fallback",
            Outcome::LocalHit => "local-hit",
            Outcome::Bypassed => "bypassed",
        }
    }

    pub(crate) const ALL: [Outcome; 7] = [
        Outcome::Hit,
        Outcome::Stale,
        Outcome::Miss,
        Outcome::Coalesced,
        Outcome::Fallback,
        Outcome::LocalHit,
        Outcome::Bypassed,
    ];

    /// The counter it feeds.
    pub(crate) fn count(self) -> Count {
        match self {
            Outcome::Hit => Count::Hits,
            Outcome::Stale => Count::Stale,
            Outcome::Miss => Count::Misses,
            Outcome::Coalesced => Count::Coalesced,
            Outcome::Fallback => Count::Fallbacks,
            Outcome::LocalHit => Count::LocalHits,
            Outcome::Bypassed => Count::Bypassed,
        }
    }
}

/// What a cached function counts. The first seven are the [`Outcome`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    Hits,
    Stale,
    Misses,
    Coalesced,
    Fallbacks,
    LocalHits,
    Bypassed,
    Executions,
    Errors,
    Invalid,
    Writes,
    EarlyRefreshes,
    SoftTimeouts,
    LockWaits,
    LockTimeouts,
    Oversize,
    Fenced,
    LocalEvictions,
    LocalInvalidations,
    BatchCalls,
    BatchKeys,
}

impl Count {
    pub(crate) const ALL: [Count; 21] = [
        Count::Hits,
        Count::Stale,
        Count::Misses,
        Count::Coalesced,
        Count::Fallbacks,
        Count::LocalHits,
        Count::Bypassed,
        Count::Executions,
        Count::Errors,
        Count::Invalid,
        Count::Writes,
        Count::EarlyRefreshes,
        Count::SoftTimeouts,
        Count::LockWaits,
        Count::LockTimeouts,
        Count::Oversize,
        Count::Fenced,
        Count::LocalEvictions,
        Count::LocalInvalidations,
        Count::BatchCalls,
        Count::BatchKeys,
    ];

    /// The field of [`FunctionStats`] (and the metric's label) it feeds.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Count::Hits => "hits",
            Count::Stale => "stale",
            Count::Misses => "misses",
            Count::Coalesced => "coalesced",
            Count::Fallbacks => "fallbacks",
            Count::LocalHits => "local_hits",
            Count::Bypassed => "bypassed",
            Count::Executions => "executions",
            Count::Errors => "errors",
            Count::Invalid => "invalid",
            Count::Writes => "writes",
            Count::EarlyRefreshes => "early_refreshes",
            Count::SoftTimeouts => "soft_timeouts",
            Count::LockWaits => "lock_waits",
            Count::LockTimeouts => "lock_timeouts",
            Count::Oversize => "oversize",
            Count::Fenced => "fenced",
            Count::LocalEvictions => "local_evictions",
            Count::LocalInvalidations => "local_invalidations",
            Count::BatchCalls => "batch_calls",
            Count::BatchKeys => "batch_keys",
        }
    }

    /// Whether it is an [`Outcome`]'s counter (how a call ended, as opposed to something that
    /// happened during it).
    #[cfg(feature = "metrics")]
    pub(crate) fn is_outcome(self) -> bool {
        (self as usize) <= Count::Bypassed as usize
    }
}

/// One function's counts, indexed by [`Count`].
type Values = [u64; Count::ALL.len()];

/// Live counters and latencies of one function; relaxed atomics, so counting costs no
/// synchronisation.
#[derive(Debug)]
pub(crate) struct Counters {
    counts: [AtomicU64; Count::ALL.len()],
    /// Each Redis round trip made for a call (lookup, lock, store).
    pub(crate) redis: Histogram,
    /// Each execution of the function's body.
    pub(crate) function: Histogram,
    /// Copies in the local tier, in every cache, and their estimated bytes.
    pub(crate) local_entries: AtomicU64,
    pub(crate) local_bytes: AtomicU64,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            counts: [const { AtomicU64::new(0) }; Count::ALL.len()],
            redis: Histogram::new(),
            function: Histogram::new(),
            local_entries: AtomicU64::new(0),
            local_bytes: AtomicU64::new(0),
        }
    }

    pub(crate) fn bump(&self, count: Count) {
        self.counts[count as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn add(&self, count: Count, n: u64) {
        self.counts[count as usize].fetch_add(n, Relaxed);
    }

    /// Every count, each read once.
    fn values(&self) -> Values {
        std::array::from_fn(|i| self.counts[i].load(Relaxed))
    }
}

/// A snapshot of one cached function's counters since the process started (or of all functions
/// together, in [`Snapshot::total`]).
///
/// Every call that returns is exactly one of a local hit, a hit, a stale serve, a miss, a
/// fallback, a coalesced call or a bypassed one, counted as it returns, so `local_hits + hits +
/// stale + misses + fallbacks + coalesced + bypassed` is the number of calls
/// ([`FunctionStats::calls`]). A call cancelled (or
/// panicking) before it returns is in none of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's key segment: `module::fn`, `module::Type::method`, or its `name`.
    pub function: String,
    /// Calls whose attribute `condition` was false: the function ran without a lookup or a
    /// store.
    pub bypassed: u64,
    /// Calls answered by the local tier (`local = N`): a decoded copy in this process, without
    /// a round trip.
    pub local_hits: u64,
    /// Calls answered with a fresh entry from Redis (including after waiting for another process
    /// to compute it, and early refreshes).
    pub hits: u64,
    /// Calls answered with an entry past its TTL but inside its stale window, while another call
    /// refreshed it (or after a refresh failed).
    pub stale: u64,
    /// Calls that found no usable entry, ran the function and (if cacheable) stored the result.
    pub misses: u64,
    /// Calls that waited for a concurrent call with the same key in this process and shared its
    /// result (single-flight), without a Redis round trip of their own.
    pub coalesced: u64,
    /// Times the function's body ran to completion, for any reason.
    pub executions: u64,
    /// Calls that ran the function without the cache: Redis unreachable, slow or failing, the
    /// cache disabled by configuration, an argument that could not be serialized, or no Tokio
    /// runtime.
    pub fallbacks: u64,
    /// Redis commands that failed or missed their deadline, and values that could not be encoded.
    pub errors: u64,
    /// Entries found in Redis that could not be read (corrupt, truncated, another version or
    /// codec); each was counted as a miss and overwritten.
    pub invalid: u64,
    /// Values written to Redis.
    pub writes: u64,
    /// Hits that also recomputed the entry shortly before its expiry (XFetch), so that later
    /// calls do not miss.
    pub early_refreshes: u64,
    /// Calls that waited `soft_timeout` for a refresh and were served the entry they had (also
    /// counted as `stale`, or as `hits` for an early refresh); the refresh went on and stored.
    pub soft_timeouts: u64,
    /// Misses that found another process computing the key and waited for its value.
    pub lock_waits: u64,
    /// Waits that reached the lock wait bound; the caller then computed without the lock.
    pub lock_timeouts: u64,
    /// Values not stored because they were larger than the cache's `max_value_bytes`.
    pub oversize: u64,
    /// Values computed but not stored because the key was invalidated, cleared or refreshed
    /// while they were being computed (they may predate that write), or because their lock
    /// lapsed: stale writes prevented.
    pub fenced: u64,
    /// Copies dropped from the local tier to make room (its `local = N` bound).
    pub local_evictions: u64,
    /// Copies dropped from the local tier because Redis's entry changed (announced by Redis, or
    /// invalidated or cleared in this process).
    pub local_invalidations: u64,
    /// Calls of a batch function (`batch = ...`) with at least one key (an empty one sends and
    /// computes nothing). Its outcomes above count items: a call for 100 ids of which 90 were
    /// cached adds 90 hits and 10 misses.
    pub batch_calls: u64,
    /// The distinct keys those calls asked for: `batch_keys / batch_calls` is the average batch
    /// ([`FunctionStats::keys_per_batch`]).
    pub batch_keys: u64,
    /// Copies in the local tier now (in every cache of this process).
    pub local_entries: u64,
    /// Their estimated size in bytes (see
    /// [`CacheBuilder::local_max_bytes`](crate::CacheBuilder::local_max_bytes)).
    pub local_bytes: u64,
    /// Redis round trips made for calls: lookups, lock scripts, stores.
    pub redis_latency: Latency,
    /// Executions of the function's body.
    pub function_latency: Latency,
}

impl FunctionStats {
    /// The share of lookups answered from the cache, local tier included: `served / (served +
    /// misses + fallbacks)` with `served = local_hits + hits + stale`, or 0 before any.
    /// Coalesced calls shared another call's lookup and are left out; fallbacks count against
    /// it, so a cache whose Redis is down shows 0, not 100% (a local hit during an outage still
    /// counts as served).
    pub fn hit_ratio(&self) -> f64 {
        let served = self.local_hits + self.hits + self.stale;
        let lookups = served + self.misses + self.fallbacks;
        if lookups == 0 {
            0.0
        } else {
            served as f64 / lookups as f64
        }
    }

    /// The average number of distinct keys per call of a batch function (0 before any).
    pub fn keys_per_batch(&self) -> f64 {
        if self.batch_calls == 0 {
            0.0
        } else {
            self.batch_keys as f64 / self.batch_calls as f64
        }
    }

    /// Calls so far: local hits, hits, stale serves, misses, coalesced calls, fallbacks and
    /// bypassed calls (for a batch function, items: see [`FunctionStats::batch_calls`]).
    pub fn calls(&self) -> u64 {
        self.local_hits
            + self.hits
            + self.stale
            + self.misses
            + self.coalesced
            + self.fallbacks
            + self.bypassed
    }

    fn from_parts(
        function: String,
        values: &Values,
        redis: &Counts,
        function_latency: &Counts,
        (local_entries, local_bytes): (u64, u64),
    ) -> Self {
        let count = |c: Count| values[c as usize];
        FunctionStats {
            function,
            hits: count(Count::Hits),
            stale: count(Count::Stale),
            misses: count(Count::Misses),
            coalesced: count(Count::Coalesced),
            executions: count(Count::Executions),
            fallbacks: count(Count::Fallbacks),
            errors: count(Count::Errors),
            invalid: count(Count::Invalid),
            writes: count(Count::Writes),
            early_refreshes: count(Count::EarlyRefreshes),
            soft_timeouts: count(Count::SoftTimeouts),
            lock_waits: count(Count::LockWaits),
            lock_timeouts: count(Count::LockTimeouts),
            oversize: count(Count::Oversize),
            fenced: count(Count::Fenced),
            local_hits: count(Count::LocalHits),
            bypassed: count(Count::Bypassed),
            local_evictions: count(Count::LocalEvictions),
            local_invalidations: count(Count::LocalInvalidations),
            batch_calls: count(Count::BatchCalls),
            batch_keys: count(Count::BatchKeys),
            local_entries,
            local_bytes,
            redis_latency: redis.summary(),
            function_latency: function_latency.summary(),
        }
    }
}

/// Every function's figures and their sum, taken together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every `#[redis_cache]` function called so far in this process, in first-call order.
    pub functions: Vec<FunctionStats>,
    /// All of them added up (latencies merged), named `*`.
    pub total: FunctionStats,
    /// Tags invalidated by [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) (and
    /// `invalidate_tags`, one per tag), in this process.
    pub tag_invalidations: u64,
}

/// Tags invalidated in this process (they belong to no function).
static TAG_INVALIDATIONS: AtomicU64 = AtomicU64::new(0);

/// Counts one tag invalidation (and exports it, with the `metrics` feature).
pub(crate) fn tag_invalidated() {
    TAG_INVALIDATIONS.fetch_add(1, Relaxed);
    #[cfg(feature = "metrics")]
    ::metrics::counter!("redis_cache_tag_invalidations_total").increment(1);
}

/// The counters of the function named `name` (as [`FunctionStats::function`] shows it) whose
/// flights live in `namespace`, zero if it has not been called yet: a `{fn}_stats()` companion.
pub(crate) fn of_function(name: String, namespace: u64) -> FunctionStats {
    let found = registry()
        .iter()
        .find(|r| r.name == name && r.namespace == namespace)
        .map(|r| r.counters);
    let Some(c) = found else {
        let none = Counts::default();
        return FunctionStats::from_parts(name, &[0; Count::ALL.len()], &none, &none, (0, 0));
    };
    let local = (c.local_entries.load(Relaxed), c.local_bytes.load(Relaxed));
    let (redis, function) = (c.redis.counts(), c.function.counts());
    FunctionStats::from_parts(name, &c.values(), &redis, &function, local)
}

/// Per-function counters and latencies, and their total.
pub fn snapshot() -> Snapshot {
    let registered: Vec<Registered> = registry().clone();
    let mut totals = [0u64; Count::ALL.len()];
    let (mut redis, mut function) = (Counts::default(), Counts::default());
    let mut local_total = (0, 0);
    let functions = registered
        .iter()
        .map(|registered| {
            // Read once, so the total is exactly the sum of the functions shown.
            let c = registered.counters;
            let values = c.values();
            for (total, value) in totals.iter_mut().zip(values) {
                *total += value;
            }
            let (r, f) = (c.redis.counts(), c.function.counts());
            redis.merge(&r);
            function.merge(&f);
            let local = (c.local_entries.load(Relaxed), c.local_bytes.load(Relaxed));
            local_total = (local_total.0 + local.0, local_total.1 + local.1);
            FunctionStats::from_parts(registered.name.to_string(), &values, &r, &f, local)
        })
        .collect();
    let total = FunctionStats::from_parts("*".into(), &totals, &redis, &function, local_total);
    Snapshot {
        functions,
        total,
        tag_invalidations: TAG_INVALIDATIONS.load(Relaxed),
    }
}

/// Counters of every `#[redis_cache]` function called so far in this process, in first-call order.
pub fn stats() -> Vec<FunctionStats> {
    snapshot().functions
}

/// The counters of one function, by the name [`FunctionStats::function`] shows; `None` if no
/// function of that name has been called yet in this process.
///
/// The name is the function's key segment: `name = "..."` if the attribute gives one, otherwise
/// `module_path!()` and the function's name, `my_crate::catalog::product` (a method adds its
/// type: `my_crate::catalog::Repo::product`; a batch function ends with ` (batch)`). In a
/// binary, `module_path!()` starts with the binary's name, not the package's
/// (`my_service::handlers::user` for `src/bin/my_service.rs`). The generated
/// `{fn}_stats()` returns the same counters without a name to guess.
pub fn stats_for(function: &str) -> Option<FunctionStats> {
    stats().into_iter().find(|s| s.function == function)
}
