//! Tags against a real `redis-server` per test (the suite is shared with `cluster.rs`).

redis_cache_tests::suite!(tags, redis_cache_tests::deployment::Topology::Single);

use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache};

#[redis_cache(ttl = 300, tags("order:{id}"), skip(cache), cache = cache)]
async fn order(cache: &Cache, id: u64) -> u64 {
    id
}

/// An invalidation that fails half-way (here: `UNLINK` refused by an ACL) forgets nothing: run
/// again, it removes the entries the first attempt could not.
#[tokio::test]
async fn a_failed_tag_invalidation_can_be_run_again() {
    let redis = RedisServer::start();
    let cache = redis.cache("tag-retry");
    order(&cache, 1).await;
    redis
        .command::<()>(&["ACL", "SETUSER", "default", "-unlink"])
        .await
        .unwrap();
    assert!(cache.invalidate_tag("order:1").await.is_err());
    redis
        .command::<()>(&["ACL", "SETUSER", "default", "+unlink"])
        .await
        .unwrap();
    assert_eq!(cache.invalidate_tag("order:1").await.unwrap(), 1);
    let entries = redis.keys_but_tags().await;
    assert!(entries.is_empty(), "{entries:?}");
}
