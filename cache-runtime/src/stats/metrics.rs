//! The `metrics` feature: every count and latency also goes to the
//! [`metrics`](https://docs.rs/metrics) facade, so whatever recorder the application installed
//! (a Prometheus exporter, StatsD...) publishes them.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `redis_cache_calls_total` | counter | `function`, `outcome` = `local_hits`, `hits`, `stale`, `misses`, `coalesced`, `fallbacks`, `bypassed` |
//! | `redis_cache_events_total` | counter | `function`, `event` = `executions`, `errors`, `invalid`, `writes`, `early_refreshes`, `soft_timeouts`, `lock_waits`, `lock_timeouts`, `oversize`, `fenced`, `local_evictions`, `local_invalidations`, `batch_calls`, `batch_keys` (the distinct keys batch calls asked for) |
//! | `redis_cache_local_entries` | gauge | `function`: copies in the local tier |
//! | `redis_cache_local_bytes` | gauge | `function`: their estimated bytes |
//! | `redis_cache_redis_seconds` | histogram | `function`: each Redis round trip made for a call |
//! | `redis_cache_function_seconds` | histogram | `function`: each execution of the body |
//! | `redis_cache_breaker_open` | gauge | `prefix`, `node`: 1 while that circuit breaker is open (one per cache, or per primary of a cluster: `node` is its `host:port`) |
//!
//! The handles are registered at a function's first call, so install the recorder before the
//! first cached call (at start-up, as exporters expect anyway).

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

use crate::stats::Count;

/// One function's metric handles.
#[derive(Debug)]
pub(crate) struct Handles {
    counts: [Counter; Count::ALL.len()],
    pub(crate) redis: Seconds,
    pub(crate) function: Seconds,
    pub(crate) local_entries: Gauge,
    pub(crate) local_bytes: Gauge,
}

/// A histogram of durations in seconds.
#[derive(Debug)]
pub(crate) struct Seconds(Histogram);

impl Seconds {
    pub(crate) fn record(&self, took: Duration) {
        self.0.record(took.as_secs_f64());
    }
}

impl Handles {
    pub(crate) fn new(function: &str) -> Self {
        let function = Label::new("function", function.to_string());
        let counts = Count::ALL.map(|count| {
            let (name, kind) = if count.is_outcome() {
                ("redis_cache_calls_total", "outcome")
            } else {
                ("redis_cache_events_total", "event")
            };
            metrics::counter!(name, vec![function.clone(), Label::new(kind, count.name())])
        });
        let seconds =
            |name: &'static str| Seconds(metrics::histogram!(name, vec![function.clone()]));
        let gauge = |name: &'static str| metrics::gauge!(name, vec![function.clone()]);
        Handles {
            counts,
            redis: seconds("redis_cache_redis_seconds"),
            function: seconds("redis_cache_function_seconds"),
            local_entries: gauge("redis_cache_local_entries"),
            local_bytes: gauge("redis_cache_local_bytes"),
        }
    }

    pub(crate) fn count(&self, count: Count) {
        self.counts[count as usize].increment(1);
    }

    pub(crate) fn count_many(&self, count: Count, n: u64) {
        self.counts[count as usize].increment(n);
    }
}

/// Sets the gauge of one breaker of the cache with this key prefix.
pub(crate) fn breaker_open(prefix: &str, node: &str, open: bool) {
    metrics::gauge!(
        "redis_cache_breaker_open",
        "prefix" => prefix.to_string(),
        "node" => node.to_string()
    )
    .set(if open { 1.0 } else { 0.0 });
}
