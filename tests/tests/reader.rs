//! A read replica endpoint: lookups go to the replica, everything else to the primary; a
//! dead replica sends lookups back to the primary.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache};

static RUNS: AtomicU64 = AtomicU64::new(0);

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn read(cache: &Cache, id: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    id + 1
}

/// `GET` calls a server has answered, from `INFO commandstats`.
fn gets(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn lookups_go_to_the_reader_and_back_to_the_primary_when_it_dies() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let mut replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    // Once the replica is dead its breaker stays open for the rest of the test: no probe of the
    // dead replica (a fallback) lands among the hits counted below, however slow the calls.
    let cache = primary
        .builder()
        .reader_url(replica.url())
        .prefix("reader")
        .circuit_breaker(5, Duration::from_secs(60), Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(read(&cache, 1).await, 2);
    cache.flush().await;
    // Replication is asynchronous (a read right after a write may miss, the documented
    // trade-off): wait until the replica holds the entry.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replica.cli(&["KEYS", "reader:*"]).trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never replicated");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hits = redis_cached::stats_for("reader::read").unwrap().hits;
    let before = (gets(&primary), gets(&replica));
    for _ in 0..10 {
        assert_eq!(read(&cache, 1).await, 2);
    }
    assert_eq!(RUNS.load(SeqCst), 1);
    let stats = redis_cached::stats_for("reader::read").unwrap();
    assert_eq!(stats.hits - hits, 10, "ten hits");
    assert_eq!(gets(&replica) - before.1, 10, "served by the replica");
    assert_eq!(gets(&primary), before.0, "not by the primary");

    replica.kill();
    for _ in 0..20 {
        assert_eq!(read(&cache, 1).await, 2);
    }
    assert!(gets(&primary) > before.0, "lookups moved to the primary");
    let after = redis_cached::stats_for("reader::read").unwrap();
    assert!(
        after.hits >= stats.hits + 10,
        "the primary's hits: {after:?}"
    );
}

static VERSION: AtomicU64 = AtomicU64::new(1);

#[redis_cache(ttl = 300, local = 100, skip(cache), cache = cache)]
async fn versioned(cache: &Cache, id: u64) -> u64 {
    id * 100 + VERSION.load(SeqCst)
}

/// A replica that stopped replicating (`REPLICAOF NO ONE`) keeps what it had: a lagging one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_invalidation_a_lagging_replica_is_not_read_and_no_old_copy_is_kept() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let cache = primary
        .builder()
        .reader_url(replica.url())
        .prefix("lag")
        .build()
        .unwrap();
    assert_eq!(versioned(&cache, 1).await, 101);
    cache.flush().await;
    redis_cache_tests::local::coherent(&cache).await;
    redis_cache_tests::eventually("replicated", || {
        !replica.cli(&["KEYS", "lag:*"]).trim().is_empty()
    })
    .await;
    // The replica stops following the primary: it lags from now on.
    assert_eq!(replica.cli(&["REPLICAOF", "NO", "ONE"]).trim(), "OK");
    VERSION.store(2, SeqCst);
    assert_eq!(versioned_invalidate(&cache, 1).await, Ok(true));
    // Read from the primary (a miss, the new value), not the replica's old entry, and that is
    // what the local tier keeps.
    assert_eq!(versioned(&cache, 1).await, 102);
    cache.flush().await;
    assert_eq!(versioned(&cache, 1).await, 102);
    assert_eq!(versioned(&cache, 1).await, 102);
}
