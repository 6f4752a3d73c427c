//! Stats match a counted workload exactly, in the snapshot API and through the `metrics` facade.
//! One test in this binary: it installs the process's global recorder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache};

/// A recorder that keeps every value, by `name{label=value,...}`.
#[derive(Default)]
struct Recorded {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

fn entry<T: Default>(map: &Mutex<HashMap<String, Arc<T>>>, key: &Key) -> Arc<T> {
    map.lock().unwrap().entry(render(key)).or_default().clone()
}

impl Recorded {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(SeqCst))
    }
    fn gauge(&self, name: &str) -> Option<f64> {
        let gauges = self.gauges.lock().unwrap();
        gauges.get(name).map(|g| f64::from_bits(g.load(SeqCst)))
    }
    fn samples(&self, name: &str) -> Vec<f64> {
        let histograms = self.histograms.lock().unwrap();
        histograms
            .get(name)
            .map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
    }
}

/// The recorder is global; the test reads it through this handle.
struct Shared(Arc<Recorded>);

impl Recorder for Shared {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(entry(&self.0.counters, key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(entry(&self.0.gauges, key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(entry(&self.0.histograms, key))
    }
}

#[redis_cache(ttl = 300, early_refresh = false, skip(cache), cache = cache)]
async fn counted(cache: &Cache, id: u64) -> u64 {
    id + 100
}

#[redis_cache(ttl = 300, local = 10, skip(cache), cache = cache)]
async fn counted_local(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test]
async fn stats_and_metrics_match_a_counted_workload_exactly() {
    let recorded = Arc::new(Recorded::default());
    metrics::set_global_recorder(Shared(recorded.clone())).unwrap();
    let redis = RedisServer::start();
    let cache = redis.cache("counted");
    // The `_stats()` companion: zero before the first call, under the name `stats_for` takes.
    let before = counted_stats();
    assert_eq!(
        (before.function.as_str(), before.calls()),
        ("metrics::counted", 0)
    );
    assert_eq!(redis_cached::stats_for("metrics::counted"), None);

    for id in 0..10 {
        counted(&cache, id).await; // 10 misses: GET, lock, store
    }
    cache.flush().await;
    for _ in 0..3 {
        for id in 0..10 {
            counted(&cache, id).await; // 30 hits: GET
        }
    }
    counted_invalidate(&cache, 0).await.unwrap();
    counted(&cache, 0).await; // a miss: GET, lock, store
    counted_refresh(&cache, 1).await; // a miss: take the lock, store
    cache.flush().await;

    let stats = redis_cached::stats_for("metrics::counted").unwrap();
    assert_eq!(
        counted_stats(),
        stats,
        "the companion counts what its function did"
    );
    assert_eq!(
        (stats.hits, stats.misses, stats.executions, stats.writes),
        (30, 12, 12, 12)
    );
    assert_eq!(stats.calls(), 42);
    assert_eq!(
        stats.stale + stats.coalesced + stats.fallbacks + stats.errors + stats.fenced,
        0
    );
    assert_eq!(stats.redis_latency.count, 11 * 3 + 2 + 30);
    assert_eq!(stats.function_latency.count, 12);
    let latency = stats.redis_latency;
    assert!(latency.p50_us <= latency.p99_us && latency.p99_us <= latency.max_us);
    assert!(latency.max_us > 0);
    assert!((stats.hit_ratio() - 30.0 / 42.0).abs() < 1e-9);

    let snapshot = redis_cached::snapshot();
    let sum: u64 = snapshot.functions.iter().map(|f| f.hits).sum();
    assert_eq!(snapshot.total.hits, sum);
    assert_eq!(snapshot.total.function, "*");

    let calls = |outcome: &str| {
        recorded.counter(&format!(
            "redis_cache_calls_total{{function=metrics::counted,outcome={outcome}}}"
        ))
    };
    let events = |event: &str| {
        recorded.counter(&format!(
            "redis_cache_events_total{{function=metrics::counted,event={event}}}"
        ))
    };
    assert_eq!(
        (calls("hits"), calls("misses"), calls("stale")),
        (30, 12, 0)
    );
    assert_eq!((events("executions"), events("writes")), (12, 12));
    let redis_seconds = recorded.samples("redis_cache_redis_seconds{function=metrics::counted}");
    assert_eq!(redis_seconds.len(), 65);
    assert!(redis_seconds.iter().all(|s| *s > 0.0 && *s < 10.0));
    assert_eq!(
        recorded
            .samples("redis_cache_function_seconds{function=metrics::counted}")
            .len(),
        12
    );

    // The local tier: a miss, a read from Redis (copied), a local hit; its gauges.
    let local = redis.cache("metrics-local");
    counted_local(&local, 1).await;
    redis_cache_tests::local::coherent(&local).await;
    let name = "metrics::counted_local";
    redis_cache_tests::local::local_hit(name, || counted_local(&local, 1)).await;
    let stats = redis_cached::stats_for(name).unwrap();
    let local_calls = |outcome: &str| {
        recorded.counter(&format!(
            "redis_cache_calls_total{{function=metrics::counted_local,outcome={outcome}}}"
        ))
    };
    assert_eq!(
        (
            local_calls("misses"),
            local_calls("hits"),
            local_calls("local_hits")
        ),
        (stats.misses, stats.hits, stats.local_hits)
    );
    assert!(stats.local_hits >= 1);
    // The gauges follow the same copies as the stats (read twice, in case an announcement
    // removed a copy between the two reads).
    let gauges_match = || {
        let stats = redis_cached::stats_for(name).unwrap();
        recorded.gauge("redis_cache_local_entries{function=metrics::counted_local}")
            == Some(stats.local_entries as f64)
            && recorded.gauge("redis_cache_local_bytes{function=metrics::counted_local}")
                == Some(stats.local_bytes as f64)
    };
    assert!(gauges_match() || gauges_match());

    // The breaker's gauge, for a cache whose Redis is not there.
    let down = redis_cache_tests::unreachable_cache("metrics-down");
    counted(&down, 1).await;
    let [breaker] = <[_; 1]>::try_from(down.breakers()).expect("one breaker for one server");
    assert_eq!(
        recorded.gauge(&format!(
            "redis_cache_breaker_open{{prefix=metrics-down,node={}}}",
            breaker.node
        )),
        Some(1.0)
    );

    // Tag invalidations: a process-wide counter, in the snapshot and the facade alike.
    let cache = redis.cache("metrics-tags");
    cache.invalidate_tag("product:1").await.unwrap();
    cache
        .invalidate_tags(&["product:2", "catalog"])
        .await
        .unwrap();
    assert_eq!(redis_cached::snapshot().tag_invalidations, 3);
    assert_eq!(recorded.counter("redis_cache_tag_invalidations_total{}"), 3);
}
