//! `soft_timeout`: the call chosen to refresh an entry in its stale window waits for the refresh
//! that long at most, then is served the stale value while the refresh goes on and stores. The
//! slow refreshes wait at a gate the test opens: the test never sleeps for them.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_cache_tests::{Gate, RedisServer};
use redis_cached::{Cache, Outcome, redis_cache, stats_for};

/// Makes the only entry of `function` under `prefix` stale (see `RedisServer::make_stale`).
async fn make_stale(redis: &RedisServer, prefix: &str, function: &str) -> Vec<u8> {
    let keys: Vec<String> = redis
        .command(&["KEYS", &format!("{prefix}:soft_timeout::{function}:*}}")])
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis.make_stale(&keys[0]).await
}

static SLOW_RUNS: AtomicU64 = AtomicU64::new(0);
static SLOW_GATE: Gate = Gate::new();

/// The first run answers at once; every later one (a refresh) waits at the gate.
#[redis_cache(ttl = 300, stale = 60, soft_timeout = "100ms", skip(cache), cache = cache)]
async fn slow(cache: Cache, id: u64) -> u64 {
    let run = SLOW_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        SLOW_GATE.wait().await;
    }
    run * 100 + id
}

#[tokio::test]
async fn a_slow_refresh_serves_the_stale_value_after_the_soft_timeout_and_stores_when_done() {
    let redis = RedisServer::start();
    let cache = redis.cache("soft");
    assert_eq!(slow(cache.clone(), 1).await, 101);
    cache.flush().await;
    make_stale(&redis, "soft", "slow").await;
    let before = stats_for("soft_timeout::slow").unwrap();

    let (value, outcome) = slow_with_outcome(cache.clone(), 1).await;
    assert_eq!((value, outcome.outcome()), (101, Outcome::Stale));
    SLOW_GATE.until_arrived(1).await;
    let after = stats_for("soft_timeout::slow").unwrap();
    assert_eq!(after.soft_timeouts, before.soft_timeouts + 1);
    assert_eq!(after.stale, before.stale + 1);

    // The refresh goes on after the caller left, and stores its value.
    SLOW_GATE.open();
    cache.flush().await;
    let (value, outcome) = slow_with_outcome(cache.clone(), 1).await;
    assert_eq!((value, outcome.outcome()), (201, Outcome::Hit));
    assert_eq!(SLOW_RUNS.load(SeqCst), 2, "one refresh");
}

static FAILING_RUNS: AtomicU64 = AtomicU64::new(0);
static FAILING_GATE: Gate = Gate::new();

#[redis_cache(ttl = 300, stale = 60, soft_timeout = "100ms", skip(cache), cache = cache)]
async fn failing(cache: Cache, id: u64) -> Result<u64, String> {
    let run = FAILING_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        FAILING_GATE.wait().await;
        return Err("the database is struggling".into());
    }
    Ok(run * 100 + id)
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_stale_value() {
    let redis = RedisServer::start();
    let cache = redis.cache("soft-failing");
    assert_eq!(failing(cache.clone(), 2).await, Ok(102));
    cache.flush().await;
    let stale = make_stale(&redis, "soft-failing", "failing").await;
    let (value, outcome) = failing_with_outcome(cache.clone(), 2).await;
    assert_eq!((value, outcome.outcome()), (Ok(102), Outcome::Stale));
    FAILING_GATE.open();
    cache.flush().await;
    let (value, outcome) = failing_with_outcome(cache.clone(), 2).await;
    assert_eq!((value, outcome.outcome()), (Ok(102), Outcome::Stale));
    let key: Vec<String> = redis
        .command(&["KEYS", "soft-failing:soft_timeout::failing:*}"])
        .await
        .unwrap();
    let kept: Vec<u8> = redis.command(&["GET", &key[0]]).await.unwrap();
    assert_eq!(kept, stale, "the entry is the one served before");
    // (A third run, if the failed refresh's backoff had passed on a slow machine, fails too.)
    assert!(FAILING_RUNS.load(SeqCst) >= 2);
}

static QUICK_RUNS: AtomicU64 = AtomicU64::new(0);

#[redis_cache(ttl = 300, stale = 60, soft_timeout = "1m", skip(cache), cache = cache)]
async fn quick(cache: Cache, id: u64) -> u64 {
    QUICK_RUNS.fetch_add(1, SeqCst) * 100 + 100 + id
}

/// A refresh that ends within the bound gives its value to the caller that waited for it.
#[tokio::test]
async fn a_refresh_within_the_soft_timeout_answers_the_call() {
    let redis = RedisServer::start();
    let cache = redis.cache("soft-quick");
    assert_eq!(quick(cache.clone(), 3).await, 103);
    cache.flush().await;
    make_stale(&redis, "soft-quick", "quick").await;
    let (value, outcome) = quick_with_outcome(cache.clone(), 3).await;
    assert_eq!((value, outcome.outcome()), (203, Outcome::Miss));
    cache.flush().await;
    assert_eq!(quick(cache.clone(), 3).await, 203, "and it was stored");
}

static COLD_GATE: Gate = Gate::new();

#[redis_cache(ttl = 300, stale = 60, soft_timeout = "50ms", skip(cache), cache = cache)]
async fn cold(cache: Cache, id: u64) -> u64 {
    COLD_GATE.wait().await;
    id
}

/// Without a stale value there is nothing to serve: the caller waits for the computation, past
/// the bound (checked for several times the bound, then the gate opens).
#[tokio::test]
async fn a_cold_key_waits_for_its_value() {
    let redis = RedisServer::start();
    let cache = redis.cache("soft-cold");
    let call = cold(cache.clone(), 4);
    let mut call = std::pin::pin!(call);
    tokio::select! {
        _ = call.as_mut() => panic!("a cold call returned before its value was computed"),
        () = async {
            COLD_GATE.until_arrived(1).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        } => {}
    }
    COLD_GATE.open();
    assert_eq!(call.await, 4);
}
