//! One `static Site` per annotated function: its options and its counters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use crate::key;
use crate::stats::Counters;

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
}

#[doc(hidden)]
#[derive(Debug)]
pub struct Site {
    pub(crate) spec: SiteSpec,
    pub(crate) counters: Counters,
    fingerprint: OnceLock<u32>,
    /// The function segment of the first call's key: how the site is named in stats.
    display: OnceLock<String>,
    registered: Once,
    oversize_logged: AtomicBool,
}

/// Every site that has been called at least once, for [`crate::stats`].
pub(crate) static REGISTRY: Mutex<Vec<&'static Site>> = Mutex::new(Vec::new());

impl Site {
    pub const fn new(spec: SiteSpec) -> Self {
        Site {
            spec,
            counters: Counters::new(),
            fingerprint: OnceLock::new(),
            display: OnceLock::new(),
            registered: Once::new(),
            oversize_logged: AtomicBool::new(false),
        }
    }

    pub(crate) fn fingerprint(&self) -> u32 {
        *self
            .fingerprint
            .get_or_init(|| key::fingerprint(self.spec.value_type, self.spec.version))
    }

    /// Called on every call; costs one atomic load after the first.
    pub(crate) fn register(&'static self, self_type: Option<&'static str>) {
        self.registered.call_once(|| {
            let mut name = String::new();
            key::push_function(&mut name, self, self_type);
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
}
