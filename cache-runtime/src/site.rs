//! One `static Site` per annotated function: its options, its counters and latencies, and how it
//! reports them (trace events, rate-limited warnings, metrics).

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

use crate::connection::StoreError;
use crate::key;
use crate::stats::warnings::Throttle;
use crate::stats::{Count, Counters};

/// The annotated function's options, as the macro wrote them.
#[doc(hidden)]
#[derive(Debug)]
pub struct SiteSpec {
    pub module: &'static str,
    pub function: &'static str,
    pub name: Option<&'static str>,
    pub ttl_secs: u64,
    /// 0: `None` is not cached.
    pub none_ttl_secs: u64,
    pub version: u32,
    /// The return type as written, whitespace removed.
    pub value_type: &'static str,
    /// Seconds an entry is kept (and may be served stale) after its TTL; 0: none.
    pub stale_secs: u64,
    /// Probabilistic early refresh (XFetch) on hits.
    pub early_refresh: bool,
    /// Fraction of the TTL by which expiries are randomly shortened; `None`:
    /// [`DEFAULT_TTL_JITTER`](crate::DEFAULT_TTL_JITTER).
    pub jitter: Option<f32>,
    /// On a miss, take the per-key Redis lock so one process computes while the others wait.
    pub lock: bool,
}

impl SiteSpec {
    pub(crate) fn jitter(&self) -> f64 {
        self.jitter
            .map_or(crate::config::DEFAULT_TTL_JITTER, f64::from)
            .clamp(0.0, 0.99)
    }

    /// What makes this function's stored bytes unreadable to another build: see [`key`].
    pub(crate) fn fingerprint(&self) -> u32 {
        key::fingerprint(self.value_type, self.version)
    }

    /// Identifies the function among the calls in flight in one process: its key segment's
    /// ingredients and fingerprint. The invalidation companion computes it from the same spec, so
    /// it finds the calls in flight of the function it invalidates.
    pub(crate) fn namespace(&self) -> u64 {
        let mut h = Xxh3::new();
        for part in [self.module, self.function, self.name.unwrap_or("")] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&self.fingerprint().to_le_bytes());
        h.digest()
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct Site {
    pub(crate) spec: SiteSpec,
    pub(crate) counters: Counters,
    /// Fingerprint and flight namespace, computed at the first call.
    ids: OnceLock<(u32, u64)>,
    /// The function segment of the first call's key: how the site is named in stats.
    display: OnceLock<String>,
    registered: Once,
    oversize_logged: AtomicBool,
    problems: Throttle,
    #[cfg(feature = "metrics")]
    metrics: OnceLock<crate::stats::metrics::Handles>,
}

/// Every site that has been called at least once, for [`crate::stats`].
pub(crate) static REGISTRY: Mutex<Vec<&'static Site>> = Mutex::new(Vec::new());

/// The flight namespaces of the functions called so far whose names `selected` accepts.
pub(crate) fn namespaces(selected: impl Fn(&str) -> bool) -> Vec<u64> {
    let registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    registry
        .iter()
        .filter(|site| selected(site.display()))
        .map(|site| site.namespace())
        .collect()
}

impl Site {
    pub const fn new(spec: SiteSpec) -> Self {
        Site {
            spec,
            counters: Counters::new(),
            ids: OnceLock::new(),
            display: OnceLock::new(),
            registered: Once::new(),
            oversize_logged: AtomicBool::new(false),
            problems: Throttle::new(),
            #[cfg(feature = "metrics")]
            metrics: OnceLock::new(),
        }
    }

    fn ids(&self) -> (u32, u64) {
        *self
            .ids
            .get_or_init(|| (self.spec.fingerprint(), self.spec.namespace()))
    }

    pub(crate) fn fingerprint(&self) -> u32 {
        self.ids().0
    }

    pub(crate) fn namespace(&self) -> u64 {
        self.ids().1
    }

    /// Called on every call; costs one atomic load after the first.
    pub(crate) fn register(&'static self, self_type: Option<&'static str>) {
        self.registered.call_once(|| {
            let mut name = String::new();
            key::push_function(&mut name, &self.spec, self_type);
            let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
            if registry.iter().any(|s| s.display() == name) {
                tracing::warn!(
                    function = %name,
                    "two #[redis_cache] functions share the key namespace `{name}` and may read each \
                     other's entries; give one of them `name = \"...\"`"
                );
            }
            let _ = self.display.set(name);
            registry.push(self);
        });
    }

    /// Counts `count`. Outcomes (hit, miss...) are also traced at `debug`, one event per call.
    pub(crate) fn count(&self, count: Count) {
        self.counters.bump(count);
        if count.is_outcome() {
            tracing::debug!(
                function = self.display(),
                outcome = count.name(),
                "redis_cache call"
            );
        }
        #[cfg(feature = "metrics")]
        self.metrics().count(count);
    }

    /// Runs one Redis round trip made for a call, recording how long it took (unless the breaker
    /// skipped it).
    pub(crate) async fn redis<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = op.await;
        if !matches!(result, Err(StoreError::Unavailable)) {
            self.took_redis(started.elapsed());
        }
        result
    }

    fn took_redis(&self, took: Duration) {
        self.counters.redis.record(took);
        #[cfg(feature = "metrics")]
        self.metrics().redis.record(took);
    }

    /// Records one execution of the function's body.
    pub(crate) fn took_function(&self, took: Duration) {
        self.counters.function.record(took);
        #[cfg(feature = "metrics")]
        self.metrics().function.record(took);
    }

    /// Counts an error and logs it at `warn`, at most once per
    /// [`WARN_INTERVAL`](crate::stats::warnings::WARN_INTERVAL) for this function; the ones held
    /// back in between are counted in the next message.
    pub(crate) fn problem(&self, count: Count, what: &str, error: &dyn Display) {
        self.count(count);
        match self.problems.admit() {
            Some(0) => tracing::warn!(function = self.display(), %error, "redis_cache: {what}"),
            Some(held_back) => tracing::warn!(
                function = self.display(),
                %error,
                held_back,
                "redis_cache: {what} ({held_back} similar problems not logged since the last message)"
            ),
            None => tracing::debug!(function = self.display(), %error, "redis_cache: {what}"),
        }
    }

    /// Logs, once per function, that a value was too large to store.
    pub(crate) fn warn_oversize(&self, bytes: usize, max_bytes: usize) {
        if !self.oversize_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                function = self.display(),
                bytes,
                max_bytes,
                "redis_cache: a value is larger than the cache's max_value_bytes and is not \
                 cached (counted in `oversize`; logged once per function)"
            );
        }
    }

    pub(crate) fn display(&self) -> &str {
        self.display
            .get()
            .map_or(self.spec.function, String::as_str)
    }

    #[cfg(feature = "metrics")]
    fn metrics(&self) -> &crate::stats::metrics::Handles {
        self.metrics
            .get_or_init(|| crate::stats::metrics::Handles::new(self.display()))
    }
}
