//! The fault-injection suite: for each fault, 64 tasks call a cached function throughout, and
//! every call must return the function's value, none may wait for Redis past its deadlines, and
//! the cache must be used again after the repair. The scenarios are in
//! `redis_cache_tests::faults`; `cargo run --release --example faults` prints their figures.

use std::time::Duration;

use redis_cache_tests::faults::{self, FaultReport, HOLD, TASKS};

/// No call may come near the fault's duration: a call that waited for Redis instead of its
/// deadlines would take about `HOLD`. Generous, so a loaded machine does not fail it: the
/// progress during the fault is the load-proof check.
const SLOWEST_BOUND: Duration = Duration::from_millis(2500);
const _: () = assert!(SLOWEST_BOUND.as_millis() < HOLD.as_millis());

fn check(report: &FaultReport) {
    assert!(report.calls > 1000, "the load ran: {report:#?}");
    assert!(
        report.calls_during_fault >= TASKS as u64,
        "calls kept completing during the fault: {report:#?}"
    );
    assert_eq!(
        report.wrong, 0,
        "every call returned the function's value: {report:#?}"
    );
    assert!(
        report.slowest < SLOWEST_BOUND,
        "no call waited out the fault: {report:#?}"
    );
    assert!(
        report.recovered_after.is_some(),
        "the cache is used again after the repair: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_started() {
    let report = faults::redis_never_started().await;
    check(&report);
    assert!(report.stats.fallbacks > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted() {
    let report = faults::redis_killed_and_restarted().await;
    check(&report);
    assert!(report.stats.fallbacks > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_with_sigstop() {
    let report = faults::redis_paused_with_sigstop().await;
    check(&report);
    assert!(report.breaker_opened >= 1, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_client_pause() {
    let report = faults::redis_client_pause().await;
    check(&report);
    assert!(report.breaker_opened >= 1, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_debug_sleep() {
    let report = faults::redis_debug_sleep().await;
    check(&report);
    assert!(report.breaker_opened >= 1, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory() {
    let report = faults::redis_out_of_memory().await;
    check(&report);
    assert!(
        report.stats.errors > 0,
        "the failed writes are counted: {report:#?}"
    );
    assert_eq!(
        report.breaker_opened, 0,
        "an OOM reply is an answer, not an outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_evicting() {
    let report = faults::redis_evicting().await;
    check(&report);
    assert_eq!(
        report.stats.errors, 0,
        "evictions are misses, not errors: {report:#?}"
    );
    assert!(
        report.stats.misses > 200,
        "entries were evicted: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_garbage() {
    let report = faults::redis_holds_garbage().await;
    check(&report);
    assert!(
        report.stats.invalid >= 200,
        "every tampered entry was seen as such: {report:#?}"
    );
    assert_eq!(report.stats.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_requires_a_password() {
    let report = faults::redis_requires_a_password().await;
    check(&report);
    assert!(
        report.stats.errors > 0,
        "auth failures are counted: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_read_only_replica() {
    let report = faults::redis_read_only_replica().await;
    check(&report);
    assert!(
        report.stats.errors > 0,
        "the refused writes are counted: {report:#?}"
    );
    assert_eq!(report.breaker_opened, 0);
}

mod runtimes {
    use std::sync::atomic::{AtomicU64, Ordering};

    use redis_cache_tests::RedisServer;
    use redis_cached::{Cache, redis_cache};

    static RUNS: AtomicU64 = AtomicU64::new(0);

    #[redis_cache(ttl = 60, cache = cache, skip(cache))]
    async fn price(cache: &Cache, id: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        id * 10
    }

    fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
        let mut builder = match multi_thread {
            true => tokio::runtime::Builder::new_multi_thread(),
            false => tokio::runtime::Builder::new_current_thread(),
        };
        builder.worker_threads(2).enable_all().build().unwrap()
    }

    /// What a test suite does with `#[tokio::test]`: one runtime per test, a cache that outlives
    /// them. The cache's connections were made on the first runtime and died with it; the first
    /// call on the next one connects again and hits, with no error and no fallback.
    #[test]
    fn a_call_on_a_new_runtime_after_the_old_one_ended_hits_without_an_error() {
        let redis = RedisServer::start();
        let cache = Cache::builder().url(redis.url()).build().unwrap();
        runtime(true).block_on(async {
            assert_eq!(price(&cache, 1).await, 10);
            cache.flush().await;
        });
        for multi_thread in [false, true, false] {
            let answer = runtime(multi_thread).block_on(price(&cache, 1));
            assert_eq!(answer, 10);
        }
        let stats = price_stats();
        assert_eq!(RUNS.load(Ordering::SeqCst), 1, "{stats:?}");
        assert_eq!((stats.misses, stats.hits), (1, 3), "{stats:?}");
        assert_eq!((stats.errors, stats.fallbacks), (0, 0), "{stats:?}");
    }
}
