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
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// A snapshot of one cached function's counters since the process started.
///
/// Every call is exactly one of a hit, a miss or a fallback, so
/// `hits + misses + fallbacks` is the number of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's key segment: `module::fn`, `module::Type::method`, or its `name`.
    pub function: String,
    /// Calls answered from Redis without running the function.
    pub hits: u64,
    /// Calls that found no usable entry, ran the function and (if cacheable) stored the result.
    pub misses: u64,
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
}

impl FunctionStats {
    /// Hits divided by lookups (hits + misses), or 0 when nothing was looked up.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
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
            }
        })
        .collect()
}

/// The counters of one function, by the name [`FunctionStats::function`] shows.
pub fn stats_for(function: &str) -> Option<FunctionStats> {
    stats().into_iter().find(|s| s.function == function)
}
