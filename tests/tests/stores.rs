//! When a miss's store lands: before the call returns by default, after it with
//! `CacheBuilder::background_stores(true)`, and in every case even if the caller is cancelled.
//!
//! Every test runs on Tokio's current-thread runtime and inspects Redis with `redis-cli` (a
//! blocking call): a spawned store cannot run while the test looks, so what the test sees right
//! after a call is exactly what that call waited for.

use std::future::Future;
use std::pin::pin;

use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache, stats_for};
use tokio::sync::Notify;

/// Every key on `redis`, sorted, read without yielding to the runtime.
fn keys_now(redis: &RedisServer) -> Vec<String> {
    // Not a terminal: redis-cli prints one key per line.
    let mut keys: Vec<String> = redis
        .cli(&["KEYS", "*"])
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// A cache on `redis` whose misses return before their stores land.
fn background_cache(redis: &RedisServer, prefix: &str) -> Cache {
    redis
        .builder()
        .prefix(prefix)
        .background_stores(true)
        .build()
        .unwrap()
}

/// `writes` of a function of this file, as stats show it.
fn writes(function: &str) -> u64 {
    stats_for(&format!("stores::{function}"))
        .expect("registered")
        .writes
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn waited_for(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[tokio::test]
async fn by_default_a_miss_returns_after_its_store_and_the_release_of_its_lock() {
    let redis = RedisServer::start();
    let cache = redis.cache("fg");
    assert_eq!(waited_for(&cache, 1).await, 2);
    let keys = keys_now(&redis);
    assert_eq!(keys.len(), 1, "the entry, and no lock: {keys:?}");
    assert!(keys[0].starts_with("fg:stores::waited_for:"));
    assert_eq!(writes("waited_for"), 1);
}

#[redis_cache(ttl = 60, lock = false, skip(cache), cache = cache)]
async fn unlocked_waited_for(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[tokio::test]
async fn without_the_lock_option_a_miss_still_returns_after_its_store() {
    let redis = RedisServer::start();
    let cache = redis.cache("fg-unlocked");
    assert_eq!(unlocked_waited_for(&cache, 1).await, 2);
    let keys = keys_now(&redis);
    assert_eq!(keys.len(), 1, "the entry, and no lock: {keys:?}");
    assert_eq!(writes("unlocked_waited_for"), 1);
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn stored_later(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[tokio::test]
async fn with_background_stores_a_miss_returns_first_and_flush_waits_for_the_store() {
    let redis = RedisServer::start();
    let cache = background_cache(&redis, "bg");
    assert_eq!(stored_later(&cache, 1).await, 2);
    let keys = keys_now(&redis);
    // The call took the key's lock before computing; the store that releases it has not run.
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with("}:lock"), "only the lock: {keys:?}");
    assert_eq!(writes("stored_later"), 0);

    cache.flush().await;
    let keys = keys_now(&redis);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        !keys[0].ends_with(":lock"),
        "the entry, and no lock: {keys:?}"
    );
    assert_eq!(writes("stored_later"), 1);
}

#[redis_cache(ttl = 60, lock = false, skip(cache), cache = cache)]
async fn unlocked_stored_later(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[tokio::test]
async fn with_background_stores_and_no_lock_a_miss_costs_only_its_lookup() {
    let redis = RedisServer::start();
    let cache = background_cache(&redis, "bg-unlocked");
    assert_eq!(unlocked_stored_later(&cache, 1).await, 2);
    assert_eq!(
        keys_now(&redis),
        Vec::<String>::new(),
        "neither the lock nor the store has been sent"
    );
    cache.flush().await;
    assert_eq!(keys_now(&redis).len(), 1);
    assert_eq!(writes("unlocked_stored_later"), 1);
}

static BODY_DONE: Notify = Notify::const_new();

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn cancelled_while_storing(cache: &Cache, id: u64) -> u64 {
    BODY_DONE.notify_one();
    id + 1
}

/// Drives `call` until `event` fires, then drops it.
async fn cancel_after<T>(call: impl Future<Output = T>, event: impl Future<Output = ()>) {
    let (mut call, mut event) = (pin!(call), pin!(event));
    tokio::select! {
        biased;
        _ = &mut call => panic!("the call finished before it could be cancelled"),
        () = &mut event => {}
    }
}

#[tokio::test]
async fn a_caller_cancelled_while_its_value_is_stored_does_not_lose_the_store() {
    let redis = RedisServer::start();
    let cache = redis.cache("cancelled");
    // The body has returned, so the call is waiting for its store (which cannot run before the
    // call is dropped: one thread, and the test does not yield in between).
    cancel_after(cancelled_while_storing(&cache, 1), BODY_DONE.notified()).await;
    assert_eq!(writes("cancelled_while_storing"), 0);
    cache.flush().await;
    let keys = keys_now(&redis);
    assert_eq!(keys.len(), 1, "the entry, and no lock: {keys:?}");
    assert_eq!(writes("cancelled_while_storing"), 1);
}
