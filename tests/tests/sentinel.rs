//! Redis Sentinel: the cache finds the primary through three sentinels and follows a failover
//! without a restart.

use std::time::Duration;

use redis_cache_tests::failover;
use redis_cache_tests::sentinel::SentinelGroup;
use redis_cached::{Cache, redis_cache};

static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn looked_up(cache: &Cache, id: u64) -> u64 {
    RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    id * 3
}

#[tokio::test(flavor = "multi_thread")]
async fn the_primary_is_found_through_the_sentinels_and_followed_across_a_failover() {
    let mut group = SentinelGroup::start();
    let cache = group.cache("sentinel");
    assert_eq!(looked_up(&cache, 1).await, 3);
    cache.flush().await;
    assert_eq!(looked_up(&cache, 1).await, 3);
    assert_eq!(RUNS.load(std::sync::atomic::Ordering::SeqCst), 1, "a hit");
    let stored: Vec<String> = group
        .primary
        .command(&["KEYS", "sentinel:*"])
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "stored on the primary the sentinels named");

    let loaded = failover::cache(group.builder(), "sentinel");
    let report = failover::under_load(
        &loaded,
        64,
        || group.primary.kill(),
        Duration::from_secs(60),
    )
    .await;
    println!("sentinel failover: {report}");
    assert_eq!(report.errors, 0, "{report}");
    group.wait_for_failover();
    assert_eq!(group.primary_port(), group.replica.port());
    let stored: Vec<String> = group
        .replica
        .command(&["KEYS", "sentinel:*"])
        .await
        .unwrap();
    assert!(!stored.is_empty(), "the promoted replica takes the stores");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_holds_one_command_connection_and_one_per_sentinel() {
    let group = SentinelGroup::start();
    let servers = [&group.primary, &group.replica];
    let baseline: usize = servers.iter().map(|s| s.connected_clients()).sum();
    let sentinels_before: usize = group
        .sentinels()
        .iter()
        .map(|s| s.connected_clients())
        .sum();
    let cache = group.cache("budget");
    failover::spread_load(&cache, 64, 50).await;
    cache.flush().await;
    let held = redis_cache_tests::settled(1, || {
        servers
            .iter()
            .map(|s| s.connected_clients())
            .sum::<usize>()
            .saturating_sub(baseline)
    })
    .await;
    // At most one per sentinel once the test's own look-ups have closed.
    let to_sentinels = redis_cache_tests::settled(3, || {
        group
            .sentinels()
            .iter()
            .map(|s| s.connected_clients())
            .sum::<usize>()
            .saturating_sub(sentinels_before)
    })
    .await;
    println!(
        "sentinel: this process holds {held} connection(s) to the data nodes and \
         {to_sentinels} to the sentinels"
    );
    assert_eq!(held, 1, "one multiplexed connection to the primary");
    assert!(
        to_sentinels <= 3,
        "at most one per sentinel: {to_sentinels}"
    );
}

#[redis_cache(ttl = 300, local = 100, skip(cache, runs), cache = cache)]
async fn sentinel_local(cache: &Cache, runs: &redis_cache_tests::Runs, id: u64) -> u64 {
    runs.tick();
    id * 1000 + runs.count()
}

/// The local tier behind Sentinel: its channel goes to the primary, and after a failover to the
/// new one, with every copy from before dropped.
#[tokio::test(flavor = "multi_thread")]
async fn the_local_tier_follows_the_primary_across_a_failover() {
    use redis_cache_tests::local::{coherent, entries_become, incoherent, local_hit};

    let mut group = SentinelGroup::start();
    let cache = group.cache("slocal");
    let runs = redis_cache_tests::Runs::default();
    let local = || redis_cached::stats_for(&format!("{}::sentinel_local", module_path!())).unwrap();
    let name = format!("{}::sentinel_local", module_path!());
    let first = sentinel_local(&cache, &runs, 1).await;
    coherent(&cache).await;
    assert_eq!(
        local_hit(&name, || sentinel_local(&cache, &runs, 1)).await,
        first
    );

    // A DEL on the primary removes the copy.
    let keys: Vec<String> = group.primary.command(&["KEYS", "slocal:*}"]).await.unwrap();
    let [key] = <[String; 1]>::try_from(keys).expect("one entry");
    assert_eq!(group.primary.cli(&["DEL", &key]).trim(), "1");
    entries_become(&cache, &name, 0).await;
    let second = sentinel_local(&cache, &runs, 1).await;
    assert_ne!(second, first);
    local_hit(&name, || sentinel_local(&cache, &runs, 1)).await;

    // The primary dies; the channel follows the sentinels to the promoted replica.
    group.primary.kill();
    incoherent(&cache).await;
    group.wait_for_failover();
    coherent(&cache).await;
    assert_eq!(
        local().local_entries,
        0,
        "every copy dropped: {:?}",
        local()
    );
    // And it hears the new primary: a DEL there removes a new copy.
    let value = sentinel_local(&cache, &runs, 2).await;
    assert_eq!(
        local_hit(&name, || sentinel_local(&cache, &runs, 2)).await,
        value
    );
    let keys: Vec<String> = group.replica.command(&["KEYS", "slocal:*}"]).await.unwrap();
    for key in keys {
        group.replica.cli(&["DEL", &key]);
    }
    entries_become(&cache, &name, 0).await;
    assert_ne!(sentinel_local(&cache, &runs, 2).await, value);
}
