//! Blocking (non-`async`) cached functions, against a real `redis-server` per test: hit, miss,
//! stampede, the local tier and Redis killed, called from a plain thread, from `spawn_blocking`
//! and from inside a task of a current-thread runtime (whose only thread the call blocks).
//!
//! Most tests here are plain `#[test]`s: no runtime at all. What they await (a store, a gate)
//! they await with `redis_cached::block_on`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_cache_tests::{Gate, RedisServer, Runs};
use redis_cached::{Cache, Outcome, block_on, redis_cache, stats_for};

/// A current-thread runtime: one thread, which a blocking call made in its task holds.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}

#[redis_cache(ttl = 300, early_refresh = false, skip(cache, runs), cache = cache)]
fn product(cache: &Cache, runs: &Runs, id: u64) -> Result<String, String> {
    runs.tick();
    Ok(format!("product {id}"))
}

#[test]
fn from_a_plain_thread_a_miss_is_stored_then_hit_invalidated_and_refreshed() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-plain");
    let runs = Runs::default();
    let (value, outcome) = product_with_outcome(&cache, &runs, 1);
    assert_eq!(value.as_deref(), Ok("product 1"));
    assert_eq!(outcome.outcome(), Outcome::Miss);
    block_on(cache.flush());
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "1", "the entry is in Redis");
    let (value, outcome) = product_with_outcome(&cache, &runs, 1);
    assert_eq!(value.as_deref(), Ok("product 1"));
    assert_eq!(outcome.outcome(), Outcome::Hit);
    assert_eq!(runs.count(), 1, "a hit does not run the body");

    assert_eq!(product_invalidate(&cache, 1), Ok(true));
    assert_eq!(product(&cache, &runs, 1).as_deref(), Ok("product 1"));
    assert_eq!(runs.count(), 2, "invalidated: computed again");
    assert_eq!(
        product_refresh(&cache, &runs, 1).as_deref(),
        Ok("product 1")
    );
    assert_eq!(runs.count(), 3, "a refresh always runs the body");
    let stats = product_stats();
    assert_eq!(stats.function, name("product"));
    assert!(stats.hits >= 1 && stats.misses >= 2, "{stats:?}");
}

#[redis_cache(ttl = 300, early_refresh = false, skip(cache, runs), cache = cache)]
async fn shared(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id
}

#[redis_cache(ttl = 300, early_refresh = false, skip(cache, runs), cache = cache, name = "blocking::shared")]
fn shared_blocking(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id
}

/// The cache is used first by an `async` call on a current-thread runtime, so its links live
/// there; then a blocking call from a task of that runtime blocks its only thread. The blocking
/// call must not use those links (nothing would read their replies until its timeout): it is
/// answered by Redis, as a hit, not as a fallback.
#[test]
fn inside_a_current_thread_runtime_a_blocking_call_does_not_wait_on_that_runtime() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-current");
    let runs = Runs::default();
    current_thread_runtime().block_on(async {
        assert_eq!(shared(&cache, &runs, 5).await, 5);
        cache.flush().await;
        let task = tokio::spawn({
            let cache = cache.clone();
            async move {
                let runs = Runs::default();
                let first = shared_blocking_with_outcome(&cache, &runs, 5);
                // A key no one stored: a miss, stored from the I/O thread.
                let second = shared_blocking_with_outcome(&cache, &runs, 6);
                (first, second, runs.count())
            }
        });
        let ((first, first_outcome), (second, second_outcome), ran) = task.await.unwrap();
        assert_eq!((first, first_outcome.outcome()), (5, Outcome::Hit));
        assert_eq!((second, second_outcome.outcome()), (6, Outcome::Miss));
        assert_eq!(ran, 1);
        cache.flush().await;
        // The blocking call's store is there for the `async` side.
        let (_, outcome) = shared_with_outcome(&cache, &runs, 6).await;
        assert_eq!(outcome.outcome(), Outcome::Hit);
    });
    assert_eq!(runs.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_spawn_blocking_and_a_multi_thread_worker() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-pool");
    let runs = Arc::new(Runs::default());
    let missed = tokio::task::spawn_blocking({
        let (cache, runs) = (cache.clone(), runs.clone());
        move || product_with_outcome(&cache, &runs, 8)
    })
    .await
    .unwrap();
    assert_eq!(missed.1.outcome(), Outcome::Miss);
    cache.flush().await;
    // On a worker thread itself (blocking it, as any blocking call does).
    let (value, outcome) = product_with_outcome(&cache, &runs, 8);
    assert_eq!(value.as_deref(), Ok("product 8"));
    assert_eq!(outcome.outcome(), Outcome::Hit);
    assert_eq!(runs.count(), 1);
}

const THREADS: u64 = 64;
static STAMPEDE_GATE: Gate = Gate::new();
static STAMPEDE_RUNS: AtomicU64 = AtomicU64::new(0);

/// Holds its callers in flight until all of them have called.
#[redis_cache(ttl = 60, skip(cache), cache = cache)]
fn cold(cache: &Cache, id: u64) -> String {
    STAMPEDE_RUNS.fetch_add(1, SeqCst);
    block_on(STAMPEDE_GATE.until_arrived(THREADS));
    format!("cold {id}")
}

#[test]
fn sixty_four_threads_on_a_cold_key_run_the_function_once() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-stampede");
    let values: Vec<String> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    STAMPEDE_GATE.arrive();
                    cold(&cache, 9)
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(values.iter().all(|v| v == "cold 9"), "{values:?}");
    assert_eq!(STAMPEDE_RUNS.load(SeqCst), 1);
    let stats = stats_for(&name("cold")).unwrap();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.coalesced + stats.hits, THREADS - 1, "{stats:?}");
    assert!(stats.coalesced > 0, "{stats:?}");
    assert_eq!(cache.in_flight(), 0);
}

#[redis_cache(ttl = 300, local = 10, early_refresh = false, skip(cache, runs), cache = cache)]
fn kept(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id
}

#[test]
fn the_local_tier_answers_a_blocking_call_and_hears_a_change_made_elsewhere() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-local");
    let runs = Runs::default();
    assert_eq!(kept(&cache, &runs, 2), 2);
    block_on(async {
        cache.flush().await;
        redis_cache_tests::local::coherent(&cache).await;
    });
    let local = (0..100)
        .map(|_| kept_with_outcome(&cache, &runs, 2).1.outcome())
        .find(|outcome| *outcome == Outcome::LocalHit);
    assert_eq!(local, Some(Outcome::LocalHit), "a copy answers");
    assert_eq!(runs.count(), 1);
    // Another client removes the entry: the tier hears it, and the next call computes again.
    redis.cli(&["FLUSHALL"]);
    block_on(redis_cache_tests::local::entries_become(
        &cache,
        &name("kept"),
        0,
    ));
    assert_eq!(kept(&cache, &runs, 2), 2);
    assert_eq!(runs.count(), 2, "the removed copy is not served");
}

/// Eight threads call while one of them kills Redis partway through its run: every call returns
/// its value, before, during and after.
#[test]
fn with_redis_killed_mid_run_every_call_still_returns_its_value() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 200;
    let redis = std::sync::Mutex::new(RedisServer::start());
    let cache = redis.lock().unwrap().cache("blocking-killed");
    let runs = Runs::default();
    let fallbacks = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (redis, cache, runs, fallbacks) = (&redis, &cache, &runs, &fallbacks);
            scope.spawn(move || {
                for call in 0..CALLS {
                    if thread == 0 && call == CALLS / 4 {
                        redis.lock().unwrap().kill();
                    }
                    let id = call % 20;
                    let (value, outcome) = product_with_outcome(cache, runs, id);
                    assert_eq!(
                        value,
                        Ok(format!("product {id}")),
                        "thread {thread}, call {call}"
                    );
                    if thread == 0 && call >= CALLS / 4 {
                        // After the kill: run here, or shared by a caller that ran it.
                        assert!(
                            matches!(outcome.outcome(), Outcome::Fallback | Outcome::Coalesced),
                            "call {call}: {outcome:?}"
                        );
                        if outcome.outcome() == Outcome::Fallback {
                            fallbacks.fetch_add(1, SeqCst);
                        }
                    }
                }
            });
        }
    });
    assert!(!redis.lock().unwrap().is_running());
    assert!(
        fallbacks.load(SeqCst) > 0,
        "the killer's calls ran without Redis"
    );
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
fn many(
    cache: &Cache,
    keys: &redis_cache_tests::Keys,
    ids: Vec<u64>,
) -> std::collections::HashMap<u64, u64> {
    keys.record(&ids);
    ids.into_iter().map(|id| (id, id * 10)).collect()
}

#[test]
fn a_blocking_batch_computes_only_its_misses() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-batch");
    let keys = redis_cache_tests::Keys::default();
    let first = many(&cache, &keys, vec![1, 2, 3]);
    assert_eq!(first.len(), 3);
    block_on(cache.flush());
    let second = many(&cache, &keys, vec![2, 3, 4, 5]);
    assert_eq!(second[&5], 50);
    assert_eq!(keys.calls(), vec![vec![1, 2, 3], vec![4, 5]]);
    assert_eq!(many_invalidate(&cache, vec![1, 4]), Ok(2));
}

static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PANIC_GATE: Gate = Gate::new();

/// The first execution waits for its followers, then panics.
#[redis_cache(ttl = 60, skip(cache), cache = cache)]
fn panics_first(cache: &Cache, id: u64) -> u64 {
    if !PANICKED.swap(true, SeqCst) {
        block_on(PANIC_GATE.until_arrived(8));
        panic!("the first execution fails");
    }
    id
}

#[test]
fn a_panicking_blocking_leader_does_not_strand_its_followers() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-panic");
    let outcomes: Vec<std::thread::Result<u64>> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    PANIC_GATE.arrive();
                    panics_first(&cache, 4)
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join()).collect()
    });
    assert_eq!(
        outcomes.iter().filter(|o| o.is_err()).count(),
        1,
        "only the leader panics"
    );
    assert!(outcomes.iter().flatten().all(|v| *v == 4));
    assert_eq!(cache.in_flight(), 0, "the flight is gone");
    block_on(cache.flush());
    assert!(
        block_on(redis.keys()).iter().all(|k| !k.ends_with(":lock")),
        "the panicking leader's lock is released"
    );
}

#[test]
fn with_redis_frozen_a_blocking_call_gives_up_and_runs_the_function() {
    let redis = RedisServer::start();
    let cache = redis.cache("blocking-frozen");
    let runs = Runs::default();
    product(&cache, &runs, 1).unwrap();
    block_on(cache.flush());
    // The same entries through short timeouts: a frozen server costs a call that much.
    let short = redis
        .builder()
        .prefix("blocking-frozen")
        .connect_timeout(Duration::from_millis(200))
        .command_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    redis.pause();
    // Frozen: connections accepted by the kernel, no reply. The call gives up at its timeouts.
    let (value, outcome) = product_with_outcome(&short, &runs, 1);
    redis.resume();
    assert_eq!(value.as_deref(), Ok("product 1"));
    assert_eq!(outcome.outcome(), Outcome::Fallback);
    assert_eq!(runs.count(), 2);
}

#[redis_cache(ttl = 300, skip(cache, gate), cache = cache, name = "blocking::gated")]
async fn gated(cache: &Cache, gate: &Gate, id: u64) -> u64 {
    gate.wait().await;
    id
}

#[redis_cache(ttl = 300, skip(cache, _gate), cache = cache, name = "blocking::gated")]
fn gated_blocking(cache: &Cache, _gate: &Gate, id: u64) -> u64 {
    id
}

/// An `async` call leads a key on a current-thread runtime and waits; a blocking call of the
/// same key, on that runtime's only thread, must not follow it (the leader could never run
/// again): it goes to Redis beside it, waits for the key's lock no longer than `lock_wait`, and
/// computes.
#[test]
fn a_blocking_call_does_not_follow_an_async_leader_it_would_block() {
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("blocking-beside")
        .lock_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    current_thread_runtime().block_on(async {
        let gate = Arc::new(Gate::new());
        let leader = tokio::spawn({
            let (cache, gate) = (cache.clone(), gate.clone());
            async move { gated(&cache, &gate, 3).await }
        });
        gate.until_arrived(1).await;
        assert_eq!(cache.in_flight(), 1, "the async call leads the key");
        // On this runtime's only thread, while the leader waits at the gate.
        let (value, outcome) = gated_blocking_with_outcome(&cache, &gate, 3);
        assert_eq!((value, outcome.outcome()), (3, Outcome::Miss));
        gate.open();
        assert_eq!(leader.await.unwrap(), 3);
    });
}

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
fn slow(cache: &Cache, id: u64) -> u64 {
    // Slower than the lock's lease: the function being slow, not a wait for an event.
    std::thread::sleep(Duration::from_millis(2500));
    id
}

/// A blocking body runs to its end within one poll of its call, so its lock is renewed by a task
/// of the I/O runtime meanwhile: a body slower than the lease still stores its value.
#[test]
fn a_blocking_body_slower_than_the_lock_lease_keeps_its_lock_and_stores() {
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("blocking-slow")
        .lock_lease(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(slow_with_outcome(&cache, 1).1.outcome(), Outcome::Miss);
    block_on(cache.flush());
    assert_eq!(
        slow_with_outcome(&cache, 1).1.outcome(),
        Outcome::Hit,
        "the value was stored under the renewed lock"
    );
}
