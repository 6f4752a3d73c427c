//! Per-function counters, readable with [`stats`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::site::REGISTRY;

/// Live counters of one function; relaxed atomics, so counting costs no synchronisation.
#[derive(Debug)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub executions: AtomicU64,
    pub fallbacks: AtomicU64,
    pub errors: AtomicU64,
    pub invalid: AtomicU64,
    pub writes: AtomicU64,
    pub coalesced: AtomicU64,
    pub stale: AtomicU64,
    pub early_refreshes: AtomicU64,
    pub lock_waits: AtomicU64,
    pub lock_timeouts: AtomicU64,
    pub oversize: AtomicU64,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            executions: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            early_refreshes: AtomicU64::new(0),
            lock_waits: AtomicU64::new(0),
            lock_timeouts: AtomicU64::new(0),
            oversize: AtomicU64::new(0),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// A snapshot of one cached function's counters since the process started.
///
/// Every call is exactly one of a hit, a stale serve, a miss, a fallback or a coalesced call, so
/// `hits + stale + misses + fallbacks + coalesced` is the number of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's key segment: `module::fn`, `module::Type::method`, or its `name`.
    pub function: String,
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
    /// Times the function's body ran, for any reason.
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
    /// Misses that found another process computing the key and waited for its value.
    pub lock_waits: u64,
    /// Waits that reached the lock wait bound; the caller then computed without the lock.
    pub lock_timeouts: u64,
    /// Values not stored because they were larger than the cache's `max_value_bytes`.
    pub oversize: u64,
}

impl FunctionStats {
    /// The share of cached calls answered without running the function:
    /// `(hits + stale + coalesced) / (hits + stale + coalesced + misses)`, or 0 before any.
    pub fn hit_ratio(&self) -> f64 {
        let served = self.hits + self.stale + self.coalesced;
        let lookups = served + self.misses;
        if lookups == 0 {
            0.0
        } else {
            served as f64 / lookups as f64
        }
    }
}

/// Counters of every `#[redis_cache]` function called so far in this process, in first-call order.
pub fn stats() -> Vec<FunctionStats> {
    let registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    registry
        .iter()
        .map(|site| {
            let c = &site.counters;
            FunctionStats {
                function: site.display().to_string(),
                hits: c.hits.load(Relaxed),
                misses: c.misses.load(Relaxed),
                executions: c.executions.load(Relaxed),
                fallbacks: c.fallbacks.load(Relaxed),
                errors: c.errors.load(Relaxed),
                invalid: c.invalid.load(Relaxed),
                writes: c.writes.load(Relaxed),
                stale: c.stale.load(Relaxed),
                coalesced: c.coalesced.load(Relaxed),
                early_refreshes: c.early_refreshes.load(Relaxed),
                lock_waits: c.lock_waits.load(Relaxed),
                lock_timeouts: c.lock_timeouts.load(Relaxed),
                oversize: c.oversize.load(Relaxed),
            }
        })
        .collect()
}

/// The counters of one function, by the name [`FunctionStats::function`] shows.
pub fn stats_for(function: &str) -> Option<FunctionStats> {
    stats().into_iter().find(|s| s.function == function)
}
