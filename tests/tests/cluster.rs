//! Redis Cluster: the behaviour, stampede, tags and invalidation suites against one 6-node
//! cluster (3 primaries, 3 replicas) this binary shares, a namespace per test; and what only a
//! cluster has, each on a cluster of its own: clearing across primaries, failover (of the whole
//! shard, and of one primary while the others keep serving), slots moving under load, the
//! connection budget, the local tier's channels.

redis_cache_tests::suite!(behaviour, redis_cache_tests::deployment::Topology::Cluster);
redis_cache_tests::suite!(stampede, redis_cache_tests::deployment::Topology::Cluster);
redis_cache_tests::suite!(tags, redis_cache_tests::deployment::Topology::Cluster);
redis_cache_tests::suite!(batch, redis_cache_tests::deployment::Topology::Cluster);
redis_cache_tests::suite!(acl, redis_cache_tests::deployment::Topology::Cluster);
redis_cache_tests::suite!(
    invalidation,
    redis_cache_tests::deployment::Topology::Cluster
);

use std::time::Duration;

use redis_cache_tests::cluster::{FAILOVER_NODE_TIMEOUT_MS, RedisCluster};
use redis_cache_tests::deployment::{Deployment, Topology};
use redis_cache_tests::failover;
use redis_cached::{Cache, redis_cache};

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "cluster::cleared")]
async fn cleared(cache: &Cache, id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "cluster::kept")]
async fn kept(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_a_function_removes_exactly_its_keys_on_every_primary() {
    let redis = Deployment::start(Topology::Cluster);
    let cache = redis.cache("clr");
    let other = redis.cache("clr-other");
    for id in 0..300 {
        cleared(&cache, id).await;
        kept(&cache, id).await;
        cleared(&other, id).await;
    }
    cache.flush().await;
    other.flush().await;
    let mut conn = redis.connection().await;
    for id in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(redis.prefix(&format!("unrelated:{{{id}}}")))
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // The function's keys are spread over all three primaries, so one node's scan would miss some.
    let primaries = redis.cluster().expect("a cluster").primaries();
    assert_eq!(primaries.len(), 3);
    let pattern = redis.prefix("clr:cluster::cleared:*");
    for node in &primaries {
        let on_node: Vec<String> = node.command(&["KEYS", &pattern]).await.unwrap();
        assert!(!on_node.is_empty(), "every primary holds some of the keys");
    }

    let removed = cache.clear_function("cluster::cleared").await.unwrap();
    assert_eq!(removed, 300);
    assert!(
        redis
            .keys_matching("clr:cluster::cleared:*")
            .await
            .is_empty()
    );
    assert_eq!(redis.keys_matching("clr:cluster::kept:*").await.len(), 300);
    assert_eq!(redis.keys_matching("clr-other:*").await.len(), 300);
    assert_eq!(redis.keys_matching("unrelated:*").await.len(), 100);
}

/// Twice the examples' node timeout: on a CPU-starved machine a 1 s timeout can also mark a
/// healthy but starved node as failing, and the failover of the killed one then waits for the
/// primaries to agree.
const NODE_TIMEOUT_UNDER_LOAD_MS: u64 = 2 * FAILOVER_NODE_TIMEOUT_MS;

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_killed_under_load_fails_over_with_no_errors_and_the_cache_comes_back() {
    let mut cluster = RedisCluster::start_with_node_timeout(NODE_TIMEOUT_UNDER_LOAD_MS);
    let cache = failover::cache(cluster.builder(), "fo");
    let victim = cluster.primary_of("fo");
    // If the cache takes long to come back, the captured output says what the cluster thought.
    let watchdog = cluster.report_after(Duration::from_secs(60));
    let report = failover::under_load(
        &cache,
        64,
        || cluster.nodes_mut()[victim].kill(),
        Duration::from_secs(120),
    )
    .await;
    drop(watchdog);
    println!("cluster failover: {report}");
    assert_eq!(report.errors, 0, "{report}");
    assert!(report.calls > 0);
    // The replica took over the slots: three primaries again.
    cluster.wait_until_healthy(3);
}

/// One breaker per primary: while one shard fails over, the keys of the other two keep being
/// served from Redis, in every 100 ms window.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_primary_sends_only_its_own_keys_to_the_function() {
    // With the default (`yes`), every node refuses every key (CLUSTERDOWN) from the moment the
    // cluster agrees a primary failed until its replica is promoted: no client could hit then.
    let mut cluster = RedisCluster::start_with(
        NODE_TIMEOUT_UNDER_LOAD_MS,
        &["--cluster-require-full-coverage", "no"],
    );
    let cache = failover::cache(cluster.builder(), "shards");
    // Which primary holds each id's entry: store it, and see whose key count grew.
    let primaries: Vec<usize> = (0..cluster.nodes().len())
        .filter(|&i| cluster.nodes()[i].cli(&["ROLE"]).starts_with("master"))
        .collect();
    let sizes = |cluster: &RedisCluster| {
        primaries
            .iter()
            .map(|&i| {
                cluster.nodes()[i]
                    .cli(&["DBSIZE"])
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .collect::<Vec<u64>>()
    };
    let mut shard_of = Vec::new();
    for id in 0..failover::SHARD_IDS as u64 {
        let before = sizes(&cluster);
        failover::sharded(&cache, id).await;
        cache.flush().await;
        let after = sizes(&cluster);
        let shard = (0..primaries.len())
            .find(|&s| after[s] > before[s])
            .expect("the entry landed on a primary");
        shard_of.push(shard);
    }
    assert_eq!(
        cache.breakers().len(),
        1 + primaries.len(),
        "the cluster's, then one per primary: {:?}",
        cache.breakers()
    );
    let victim = 0;
    let watchdog = cluster.report_after(Duration::from_secs(60));
    let report = failover::per_shard(
        &cache,
        &shard_of,
        victim,
        64,
        || cluster.nodes_mut()[primaries[victim]].kill(),
        Duration::from_secs(120),
    )
    .await;
    drop(watchdog);
    println!("per-shard failover: {report}");
    assert_eq!(report.errors, 0, "{report}");
    let fewest = report.fewest();
    for shard in (0..primaries.len()).filter(|&s| s != victim) {
        assert!(
            fewest[shard] > 0,
            "shard {shard} had a window without hits: {report}"
        );
    }
    // The killed primary's breaker opened (it is no longer listed: its replica serves the
    // slots now); the others' never did.
    let breakers = cache.breakers();
    println!("breakers: {breakers:?}");
    assert!(cache.breaker().opened >= 1, "{breakers:?}");
    assert_eq!(breakers.len(), 1 + primaries.len(), "{breakers:?}");
    for breaker in &breakers {
        assert_eq!(breaker.stats.opened, 0, "{breakers:?}");
    }
    // Once the slot map no longer names the killed primary, its breaker stops counting as open.
    // The map is read in a spawned task the cache does not announce: poll, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cache.breaker().state != redis_cached::BreakerState::Closed {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} {:?}",
            cache.breaker(),
            cache.breakers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.wait_until_healthy(3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_holds_one_connection_per_primary_and_one_for_pub_sub_whatever_the_load() {
    let cluster = RedisCluster::start();
    let baseline: usize = cluster.nodes().iter().map(|n| n.connected_clients()).sum();
    let cache = cluster.cache("budget");
    // Load from 64 tasks, and a lock wait (which opens the pub/sub connection).
    failover::spread_load(&cache, 64, 50).await;
    budget_wait(&cluster, &cache).await;
    cache.flush().await;
    // The test's own inspection connections close asynchronously: wait for them to go.
    let held = redis_cache_tests::settled(3 + 1, || {
        cluster
            .nodes()
            .iter()
            .map(|n| n.connected_clients())
            .sum::<usize>()
            .saturating_sub(baseline)
    })
    .await;
    println!("cluster: this process holds {held} connections");
    assert_eq!(held, 3 + 1, "one per primary, one pub/sub");
}

static WAITED_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "cluster::waited")]
async fn waited(cache: &Cache, id: u64) -> u64 {
    WAITED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    id
}

/// Makes a call wait on a lock held by "another process", which opens the pub/sub connection,
/// then releases the lock the way a holder does (delete and publish), which wakes it.
async fn budget_wait(cluster: &RedisCluster, cache: &Cache) {
    waited(cache, 1).await;
    cache.flush().await;
    let [key] = <[String; 1]>::try_from(cluster.keys_matching("budget:cluster::waited:*").await)
        .expect("one entry");
    let lock = redis_cache_tests::lock_of(&key);
    let mut conn = cluster.connection().await;
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(&key)
        .cmd("SET")
        .arg(&lock)
        .arg("another-process")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let call = tokio::spawn({
        let cache = cache.clone();
        async move { waited(&cache, 1).await }
    });
    // Subscribed: the channel shows up on the node the notifier picked. Polled: the server has
    // no event for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cluster
        .nodes()
        .iter()
        .any(|n| n.cli(&["PUBSUB", "CHANNELS"]).contains(&lock))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter never subscribed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(&lock)
        .cmd("PUBLISH")
        .arg(&lock)
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(call.await.unwrap(), 1);
    assert_eq!(WAITED_RUNS.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[redis_cache(ttl = 300, local = 1000, skip(cache, runs), cache = cache)]
async fn cluster_local(cache: &Cache, runs: &redis_cache_tests::Runs, id: u64) -> u64 {
    runs.tick();
    id * 1000 + runs.count()
}

/// The local tier on a cluster: a channel per primary hears the changes of every slot, and a
/// failover (a replica taking over its primary) drops every copy once the channel follows it.
#[tokio::test(flavor = "multi_thread")]
async fn the_local_tier_hears_every_primary_and_drops_its_copies_after_a_failover() {
    use redis_cache_tests::local::{coherent, entries_become, incoherent, local_hit};

    let cluster = RedisCluster::start();
    let cache = cluster.cache("clocal");
    let runs = redis_cache_tests::Runs::default();
    let local = || redis_cached::stats_for(&format!("{}::cluster_local", module_path!())).unwrap();
    cluster_local(&cache, &runs, 0).await;
    coherent(&cache).await;
    // Thirty keys: computed, read back (copied), then answered locally.
    let name = format!("{}::cluster_local", module_path!());
    let mut values = Vec::new();
    for id in 0..30 {
        values.push(cluster_local(&cache, &runs, id).await);
        let copy = local_hit(&name, || cluster_local(&cache, &runs, id)).await;
        assert_eq!(copy, values[id as usize]);
    }
    let keys: Vec<String> = cluster
        .keys_matching("clocal:*")
        .await
        .into_iter()
        .filter(|k| !k.ends_with(":lock"))
        .collect();
    let mut primaries: Vec<usize> = keys.iter().map(|k| cluster.primary_of(k)).collect();
    primaries.sort_unstable();
    primaries.dedup();
    assert_eq!(primaries.len(), 3, "the keys live on every primary");

    // A DEL on any primary removes the copy of that key.
    let mut conn = cluster.connection().await;
    for key in &keys {
        let removed: u64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(removed, 1);
    }
    entries_become(&cache, &name, 0).await;
    let executed = runs.count();
    for id in 0..30 {
        assert_ne!(cluster_local(&cache, &runs, id).await, values[id as usize]);
    }
    assert_eq!(runs.count(), executed + 30, "every key computed again");

    // Copied again, then a replica takes over its primary.
    for id in 0..30 {
        local_hit(&name, || cluster_local(&cache, &runs, id)).await;
    }
    assert!(local().local_entries >= 30, "{:?}", local());
    let replica = cluster
        .nodes()
        .iter()
        .find(|n| n.cli(&["ROLE"]).starts_with("slave"))
        .expect("a replica");
    assert_eq!(replica.cli(&["CLUSTER", "FAILOVER"]).trim(), "OK");
    incoherent(&cache).await;
    coherent(&cache).await;
    assert_eq!(
        local().local_entries,
        0,
        "every copy dropped: {:?}",
        local()
    );
}

/// Entries the resharding test works on: the first half stored before the slots move, the other
/// half computed while they move.
const RESHARD_IDS: usize = 2048;

static RESHARDED_RUNS: [std::sync::atomic::AtomicU64; RESHARD_IDS] =
    [const { std::sync::atomic::AtomicU64::new(0) }; RESHARD_IDS];

#[redis_cache(
    ttl = 300,
    early_refresh = false,
    skip(cache),
    cache = cache,
    name = "cluster::resharded"
)]
async fn resharded(cache: &Cache, id: u64) -> u64 {
    RESHARDED_RUNS[id as usize].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    id * 5
}

/// `redis-cli --cluster reshard` moves 2,000 slots (and their keys, with `MIGRATE`) from one
/// primary to another while 64 tasks call: the cache follows `ASK` and `MOVED`, no call gets a
/// wrong value, no stored entry is missed, and no lock is left behind.
#[tokio::test(flavor = "multi_thread")]
async fn slots_moving_under_load_lose_no_entry_and_leave_no_lock() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

    let cluster = RedisCluster::start();
    let cache = cluster.cache("reshard");
    let warm = RESHARD_IDS as u64 / 2;
    for id in 0..warm {
        resharded(&cache, id).await;
    }
    cache.flush().await;
    let primaries: Vec<usize> = (0..cluster.nodes().len())
        .filter(|&i| cluster.nodes()[i].cli(&["ROLE"]).starts_with("master"))
        .collect();
    let (from, to) = (primaries[0], primaries[1]);
    let stored_on = |node: usize| -> std::collections::HashSet<String> {
        let keys = cluster.nodes()[node].cli(&["KEYS", "reshard:*"]);
        keys.lines().map(str::to_string).collect()
    };
    let from_before = stored_on(from);

    let stop = Arc::new(AtomicBool::new(false));
    let moving = Arc::new(AtomicBool::new(false));
    let (calls, wrong, hits_while_moving) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let (cache, stop, moving) = (cache.clone(), stop.clone(), moving.clone());
        let (calls, wrong, hits) = (calls.clone(), wrong.clone(), hits_while_moving.clone());
        tasks.push(tokio::spawn(async move {
            // Each task owns the ids congruent to it: a run during its call is its call's.
            let ids: Vec<u64> = (task..RESHARD_IDS as u64).step_by(64).collect();
            for &id in ids.iter().cycle() {
                if stop.load(SeqCst) {
                    break;
                }
                let runs = RESHARDED_RUNS[id as usize].load(SeqCst);
                if resharded(&cache, id).await != id * 5 {
                    wrong.fetch_add(1, SeqCst);
                }
                calls.fetch_add(1, SeqCst);
                if moving.load(SeqCst) && RESHARDED_RUNS[id as usize].load(SeqCst) == runs {
                    hits.fetch_add(1, SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    moving.store(true, SeqCst);
    let started = std::time::Instant::now();
    tokio::task::block_in_place(|| cluster.reshard(from, to, 2000));
    let took = started.elapsed();
    moving.store(false, SeqCst);
    // Some more calls after the move, on the new owner.
    let after = calls.load(SeqCst);
    while calls.load(SeqCst) < after + 64 * 32 {
        tokio::task::yield_now().await;
    }
    stop.store(true, SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    cache.flush().await;

    let left = stored_on(from).intersection(&from_before).count();
    let stats = redis_cached::stats_for("cluster::resharded").unwrap();
    let recomputed = (0..warm as usize)
        .filter(|&id| RESHARDED_RUNS[id].load(SeqCst) != 1)
        .count();
    let cold_runs: u64 = (warm as usize..RESHARD_IDS)
        .map(|id| RESHARDED_RUNS[id].load(SeqCst))
        .sum();
    println!(
        "resharding: 2000 slots moved in {took:.2?}, of the {} entries on the source, it kept \
         {left} of them; calls {}, wrong {}, hits while moving {}, fallbacks {}, errors {}; \
         stored entries recomputed {recomputed}; {} cold ids computed {cold_runs} times",
        from_before.len(),
        calls.load(SeqCst),
        wrong.load(SeqCst),
        hits_while_moving.load(SeqCst),
        stats.fallbacks,
        stats.errors,
        RESHARD_IDS as u64 - warm,
    );
    assert!(left < from_before.len(), "live keys moved with their slots");
    assert_eq!(wrong.load(SeqCst), 0);
    assert!(hits_while_moving.load(SeqCst) > 0);
    assert_eq!(
        recomputed, 0,
        "every entry stored before the move was found during and after it"
    );
    assert!(
        cluster.keys_matching("reshard:*:lock").await.is_empty(),
        "no lock left behind"
    );
    // An entry and its lock share a slot (the hash tag), so they always move together.
    let keys = cluster.keys_matching("reshard:*").await;
    let node = &cluster.nodes()[primaries[2]];
    for key in keys.iter().step_by(16) {
        let slot = |key: &str| node.cli(&["CLUSTER", "KEYSLOT", key]);
        assert_eq!(slot(key), slot(&redis_cache_tests::lock_of(key)));
    }
    // And every entry is served from where it lives now.
    for id in 0..RESHARD_IDS as u64 {
        assert_eq!(resharded(&cache, id).await, id * 5);
    }
    let executions = redis_cached::stats_for("cluster::resharded")
        .unwrap()
        .executions;
    assert_eq!(executions, stats.executions, "all were hits");
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "cluster::blocking")]
fn blocking_product(cache: &Cache, id: u64) -> String {
    format!("product {id}")
}

/// A blocking function on a cluster, from a plain thread: its keys spread over the primaries,
/// each read by the links a blocking call makes on the cache's I/O thread.
#[test]
fn a_blocking_function_misses_then_hits_across_the_primaries() {
    let cluster = Deployment::start(Topology::Cluster);
    let cache = cluster.cache("blocking");
    for id in 0..30 {
        let (value, outcome) = blocking_product_with_outcome(&cache, id);
        assert_eq!(value, format!("product {id}"));
        assert_eq!(outcome.outcome(), redis_cached::Outcome::Miss);
    }
    redis_cached::block_on(cache.flush());
    for id in 0..30 {
        let (_, outcome) = blocking_product_with_outcome(&cache, id);
        assert_eq!(outcome.outcome(), redis_cached::Outcome::Hit, "key {id}");
    }
    let entries = redis_cached::block_on(cluster.keys_matching("*cluster::blocking*"));
    assert_eq!(entries.len(), 30);
}
