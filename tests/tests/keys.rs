//! Key stability: the exact keys of a few calls are pinned here. Keys are shared by every replica
//! and every deploy, so a change to any segment (prefix, function, fingerprint, argument hash)
//! silently empties the cache in production. If this test fails, the key format changed: that
//! must be a deliberate, documented decision, not an accident.

use redis_cache_tests::{Gate, RedisServer};
use redis_cached::{Cache, redis_cache};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Price {
    cents: u64,
    currency: String,
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn price(cache: &Cache, sku: u32, currency: &str) -> Price {
    Price {
        cents: u64::from(sku) * 100,
        currency: currency.to_string(),
    }
}

#[redis_cache(ttl = 60, skip(cache), cache = cache, name = "catalog::tags", version = 3)]
async fn tags(cache: &Cache, ids: Vec<u64>, label: Option<String>) -> Vec<String> {
    ids.iter().map(|i| format!("{label:?}{i}")).collect()
}

struct Catalog {
    cache: Cache,
}

impl Catalog {
    #[redis_cache(ttl = 60, cache = self.cache)]
    async fn item(&self, id: u64) -> Result<String, std::io::Error> {
        Ok(format!("item {id}"))
    }
}

#[tokio::test]
async fn keys_are_pinned() {
    let redis = RedisServer::start();
    let cache = redis.cache("pin");
    price(&cache, 1, "EUR").await;
    price(&cache, 42, "USD").await;
    tags(&cache, vec![1, 2, 3], None).await;
    tags(&cache, vec![], Some("a:b*c".into())).await;
    Catalog {
        cache: cache.clone(),
    }
    .item(7)
    .await
    .unwrap();

    // The argument hash is wrapped in braces, a Redis Cluster hash tag: the entry and its lock
    // (`...:#{...}:lock`, pinned below) share a slot. No lock outlives its computation.
    let keys = redis.keys().await;
    let expected = [
        // tags(vec![], Some("a:b*c")): argument values never reach the key as text.
        "pin:catalog::tags:f802d0c8:{0f57bb1b6928ca5d1e693597f5236363}",
        // tags(vec![1, 2, 3], None)
        "pin:catalog::tags:f802d0c8:{3f1c6470a36206041de075a5ed07b66d}",
        // Catalog::item(7): methods are named by their type; `self` is not hashed.
        "pin:keys::Catalog::item:21e7264a:{8d60d72b3dfbd80275b7540c1797d1c5}",
        // price(1, "EUR") and price(42, "USD")
        "pin:keys::price:5386c132:{7892711c3a6c135b85b15e2cd4764fe6}",
        "pin:keys::price:5386c132:{90f57a5dc570e621366e4b2e8c34be77}",
    ];
    assert_eq!(keys, expected, "the key format changed");
}

#[redis_cache(ttl = 60, skip(cache, gate), cache = cache)]
async fn gated(cache: &Cache, gate: &Gate, sku: u32) -> u32 {
    gate.wait().await;
    sku
}

/// A lock is `{prefix}:{function}:{fingerprint}:#{{args}}:lock`: the entry's hash tag (one slot)
/// behind a `#`, so a local tier that tracks `{prefix}:{function}:{fingerprint}:{` never hears of
/// it. Replicas of different versions must agree on it to share a computation.
#[tokio::test]
async fn the_lock_key_is_pinned() {
    let redis = RedisServer::start();
    let cache = redis.cache("pin");
    let gate = Gate::new();
    let call = gated(&cache, &gate, 1);
    tokio::pin!(call);
    // The body runs under the lock: once it started, the lock is in Redis.
    tokio::select! {
        _ = &mut call => panic!("the body cannot finish before the gate opens"),
        () = gate.until_arrived(1) => {}
    }
    let lock = "pin:keys::gated:d60d7135:#{51025a4491835505e12ef9d2eb86ceeb}:lock";
    assert_eq!(redis.keys().await, [lock], "the lock key format changed");
    gate.open();
    assert_eq!(call.await, 1);
    cache.flush().await;
    let entry = "pin:keys::gated:d60d7135:{51025a4491835505e12ef9d2eb86ceeb}";
    assert_eq!(redis.keys().await, [entry]);
    assert_eq!(redis_cache_tests::lock_of(entry), lock);
}
