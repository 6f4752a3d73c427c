//! The local tier (`local = N`): copies in this process, removed when Redis's entry changes,
//! whoever changes it: another process's `_invalidate`, `_refresh` or clear (the `local_peer`
//! binary), a `DEL` or `FLUSHALL` typed into `redis-cli`, the entry's expiry. Each change is
//! awaited as an event (the tier's announcement), never by sleeping.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis_cache_tests::fixtures::{LOCAL_GENERATION, local_value};
use redis_cache_tests::local::{
    coherent, entries_become, incoherent, local_hit, next_event, tracked,
};
use redis_cache_tests::{RedisServer, Runs};
use redis_cached::{Cache, redis_cache, stats_for};

/// `local_value(1)` cached in this process: computed (generation `generation`), read back from
/// Redis once (which copies it), then answered locally.
async fn copied(cache: &Cache, generation: u64) -> String {
    LOCAL_GENERATION.store(generation, SeqCst);
    let value = local_value(cache, 1).await;
    coherent(cache).await;
    let copy = local_hit(LOCAL_VALUE, || local_value(cache, 1)).await;
    assert_eq!(copy, value, "the copy is of the stored value");
    value
}

const LOCAL_VALUE: &str = "fixtures::local_value";

/// Waits until the copy of `local_value(1)` is gone.
async fn gone(cache: &Cache) {
    entries_become(cache, LOCAL_VALUE, 0).await;
}

fn peer(redis: &RedisServer, prefix: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_local_peer"))
        .args(args)
        .env("REDIS_URL", redis.url())
        .env("REDIS_CACHE_PREFIX", prefix)
        .env("REDIS_CONNECT_TIMEOUT_MS", "10000")
        .env("REDIS_COMMAND_TIMEOUT_MS", "10000")
        .output()
        .expect("run local_peer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The key of `local_value(1)` in `prefix`.
async fn key_of_one(redis: &RedisServer, prefix: &str) -> String {
    let keys: Vec<String> = redis
        .command(&["KEYS", &format!("{prefix}:fixtures::local_value:*}}")])
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys.into_iter().next().unwrap()
}

// One test for every change made elsewhere: they share `local_value` and its generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_of_the_entry_elsewhere_removes_the_copy() {
    let redis = RedisServer::start();
    let prefix = "local-changes";
    let cache = redis.cache(prefix);

    // Another process's `_invalidate`: the next call computes afresh.
    let old = copied(&cache, 0).await;
    peer(&redis, prefix, &["invalidate", "1"]);
    gone(&cache).await;
    LOCAL_GENERATION.store(1, SeqCst);
    let new = local_value(&cache, 1).await;
    assert_ne!(new, old, "not the copy of the invalidated entry");
    assert!(new.contains("generation 1"), "{new}");

    // Another process's `_refresh`: the next call reads its value.
    copied(&cache, 1).await;
    peer(&redis, prefix, &["refresh", "1", "7"]);
    gone(&cache).await;
    let refreshed = local_value(&cache, 1).await;
    assert!(refreshed.contains("generation 7"), "{refreshed}");
    assert!(!refreshed.contains(&format!("pid {}", std::process::id())));

    // Another process's `clear_function`.
    copied(&cache, 2).await;
    peer(&redis, prefix, &["clear"]);
    gone(&cache).await;
    LOCAL_GENERATION.store(3, SeqCst);
    assert!(local_value(&cache, 1).await.contains("generation 3"));

    // `DEL` from redis-cli.
    copied(&cache, 4).await;
    let key = key_of_one(&redis, prefix).await;
    assert_eq!(redis.cli(&["DEL", &key]).trim(), "1");
    gone(&cache).await;
    LOCAL_GENERATION.store(5, SeqCst);
    assert!(local_value(&cache, 1).await.contains("generation 5"));

    // `FLUSHALL` from redis-cli.
    copied(&cache, 6).await;
    assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");
    gone(&cache).await;
    LOCAL_GENERATION.store(7, SeqCst);
    assert!(local_value(&cache, 1).await.contains("generation 7"));

    // The entry's expiry. Setting the expiry is itself a change (announced, the copy goes);
    // read it again, so the copy is back, and the expiry then removes it.
    let value = copied(&cache, 8).await;
    let key = key_of_one(&redis, prefix).await;
    assert_eq!(redis.cli(&["PEXPIRE", &key, "3000"]).trim(), "1");
    gone(&cache).await;
    let again = local_hit(LOCAL_VALUE, || local_value(&cache, 1)).await;
    assert_eq!(again, value, "copied again before the expiry");
    gone(&cache).await;
    LOCAL_GENERATION.store(9, SeqCst);
    assert!(local_value(&cache, 1).await.contains("generation 9"));

    let stats = stats_for("fixtures::local_value").unwrap();
    assert!(stats.local_invalidations >= 6, "{stats:?}");
    assert_eq!(stats.calls(), stats.local_hits + stats.hits + stats.misses);
}

/// `local_ttl` as long as the entry lives: only an announcement or the tier's own clearing can
/// remove its copy during the test.
#[redis_cache(ttl = 300, local = 100, local_ttl = 300, skip(cache, runs), cache = cache)]
async fn after_kill(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id * 10 + runs.count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_channel_is_killed_no_older_copy_is_served_once_it_is_back() {
    let redis = RedisServer::start();
    let cache = redis.cache("local-kill");
    let runs = Runs::default();
    let first = after_kill(&cache, &runs, 1).await;
    coherent(&cache).await;
    let name = format!("{}::after_kill", module_path!());
    let copy = local_hit(&name, || after_kill(&cache, &runs, 1)).await;
    assert_eq!(copy, first);

    // Kill the tier's connection (RESP3, tracking) and delete the entry in one transaction: no
    // channel exists when the entry changes, so the change is never announced to this process.
    // Only the tier's rule (a channel that comes back drops every copy made before) can remove
    // the copy now.
    let list = redis.cli(&["CLIENT", "LIST"]);
    let tracking: Vec<&str> = list
        .lines()
        .filter(|line| line.contains("resp=3"))
        .filter_map(|line| line.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(tracking.len(), 1, "{list}");
    let key = redis
        .keys()
        .await
        .into_iter()
        .find(|k| !k.ends_with(":lock"))
        .unwrap();
    let (killed, deleted): (u64, u64) = redis::pipe()
        .atomic()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(tracking[0])
        .cmd("DEL")
        .arg(&key)
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    assert_eq!((killed, deleted), (1, 1));
    // The channel comes back on a new connection (the tier marked itself incoherent first, and
    // drops its copies before it says it is coherent again).
    redis_cache_tests::eventually("a new tracking connection", || {
        let list = redis.cli(&["CLIENT", "LIST"]);
        list.lines()
            .filter(|line| line.contains("resp=3"))
            .any(|line| !line.contains(&format!("id={} ", tracking[0])))
    })
    .await;
    coherent(&cache).await;
    // Back: the copy from before the kill is gone, the function runs again.
    let after = after_kill(&cache, &runs, 1).await;
    assert_ne!(
        after, first,
        "the copy cached before the kill is not served"
    );
    assert_eq!(runs.count(), 2);
}

#[redis_cache(ttl = 300, local = 100, local_ttl = 1, skip(cache, runs), cache = cache)]
async fn short_local_ttl(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id * 1000 + runs.count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_paused_no_copy_is_served_past_local_ttl() {
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("local-pause")
        .command_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let runs = Runs::default();
    let first = short_local_ttl(&cache, &runs, 1).await;
    coherent(&cache).await;
    let name = format!("{}::short_local_ttl", module_path!());
    let copy = local_hit(&name, || short_local_ttl(&cache, &runs, 1)).await;
    assert_eq!(copy, first, "copied");
    redis.pause();
    // Redis last confirmed the copy (a ping round answered) before this instant, so the copy
    // cannot be served once local_ttl has passed after it (plus the millisecond its wall-clock
    // deadline is rounded to).
    let bound = Instant::now() + Duration::from_secs(1) + Duration::from_millis(10);
    let mut later = None;
    while later.is_none() {
        // Read before the call: a call that serves the copy checked its deadline after this,
        // however long the machine takes to let this task see the answer.
        let asked = Instant::now();
        let value = short_local_ttl(&cache, &runs, 1).await;
        if value == first {
            assert!(asked < bound, "the copy was served past local_ttl");
        } else {
            later = Some(value);
        }
    }
    redis.resume();
    assert_eq!(runs.count(), 2, "computed once more, then memoized locally");
}

#[redis_cache(ttl = 300, local = 100, local_ttl = 1, skip(cache, runs), cache = cache)]
async fn confirmed_copy(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id * 1000 + runs.count()
}

/// `local_ttl` bounds how long a copy is served *without Redis's confirmation*: while the
/// invalidation channel is up, its pings confirm the copy, and it is served past `local_ttl`
/// without a round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_channel_is_up_a_copy_is_served_past_local_ttl() {
    let redis = RedisServer::start();
    let cache = redis.cache("local-confirmed");
    let runs = Runs::default();
    let name = format!("{}::confirmed_copy", module_path!());
    // The first call asks Redis to track the function; copies read before it does live
    // local_ttl at most, the second key's (read after) is covered by the channel.
    confirmed_copy(&cache, &runs, 1).await;
    coherent(&cache).await;
    tracked(&cache, 1).await;
    let first = confirmed_copy(&cache, &runs, 2).await;
    local_hit(&name, || confirmed_copy(&cache, &runs, 2)).await;
    let copied = Instant::now();
    // Time passing is what is tested: three times local_ttl, with the channel up throughout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(copied.elapsed() >= Duration::from_secs(3));
    let hits = stats_for(&name).unwrap();
    assert_eq!(confirmed_copy(&cache, &runs, 2).await, first);
    let after = stats_for(&name).unwrap();
    assert_eq!(
        (after.local_hits - hits.local_hits, after.hits - hits.hits),
        (1, 0),
        "served from the copy, without asking Redis: {after:?}"
    );
    assert_eq!(runs.count(), 2);
}

#[redis_cache(ttl = 300, local = 100, skip(cache, runs), cache = cache)]
async fn without_redis(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id + 1
}

#[tokio::test]
async fn with_no_redis_at_all_the_tier_memoizes_alone() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let cache = redis_cache_tests::test_builder()
        .url(url)
        .prefix("local-absent")
        .build()
        .unwrap();
    let runs = Runs::default();
    for _ in 0..20 {
        assert_eq!(without_redis(&cache, &runs, 1).await, 2);
    }
    assert_eq!(runs.count(), 1, "one execution, then the process's copy");
    let stats = stats_for(&format!("{}::without_redis", module_path!())).unwrap();
    assert_eq!((stats.fallbacks, stats.local_hits), (1, 19), "{stats:?}");
}

#[redis_cache(ttl = 300, local = 1000, skip(cache), cache = cache)]
async fn under_load(cache: &Cache, id: u64) -> u64 {
    id * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_calls_keep_being_answered_locally() {
    let mut redis = RedisServer::start();
    let cache = redis.cache("local-load");
    under_load(&cache, 0).await;
    coherent(&cache).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..64u64)
        .map(|task| {
            let (cache, stop) = (cache.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = 0u64;
                while !stop.load(SeqCst) {
                    let id = (task * 7 + calls) % 50;
                    assert_eq!(under_load(&cache, id).await, id * 3, "a wrong value");
                    calls += 1;
                    tokio::task::yield_now().await;
                }
                calls
            })
        })
        .collect();
    let name = format!("{}::under_load", module_path!());
    let local_hits = || stats_for(&name).unwrap().local_hits;
    // Wait until the load is answered locally, then kill Redis. Each wait is bounded, so a
    // tier that stopped answering fails the test instead of hanging it.
    let reach = |hits: u64| {
        let local_hits = &local_hits;
        tokio::time::timeout(redis_cache_tests::local::EVENT_WAIT, async move {
            while local_hits() < hits {
                tokio::task::yield_now().await;
            }
        })
    };
    reach(1000).await.expect("the load is answered locally");
    redis.kill();
    incoherent(&cache).await;
    let at_kill = local_hits();
    reach(at_kill + 1000)
        .await
        .expect("calls keep being answered locally after the kill");
    stop.store(true, SeqCst);
    for task in tasks {
        task.await.expect("no call failed");
    }
}

#[redis_cache(ttl = 300, local = 100, skip(cache), cache = cache)]
async fn many_keys(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test]
async fn the_tier_holds_at_most_local_entries() {
    let redis = RedisServer::start();
    let cache = redis.cache("local-bound");
    many_keys(&cache, 0).await;
    coherent(&cache).await;
    // Each key twice: the second call reads it from Redis and copies it.
    for id in 0..1000 {
        many_keys(&cache, id).await;
        many_keys(&cache, id).await;
    }
    let stats = stats_for(&format!("{}::many_keys", module_path!())).unwrap();
    assert!(stats.local_entries <= 100, "{stats:?}");
    assert!(stats.local_evictions > 0, "{stats:?}");
    assert!(stats.local_bytes > 0, "{stats:?}");
}

#[redis_cache(ttl = 300, local = 100, skip(cache), cache = cache)]
async fn budgeted(cache: &Cache, id: u64) -> Vec<u8> {
    // Random bytes: LZ4 cannot shrink them, so each copy is charged its 10 KB.
    let mut rng = fastrand::Rng::with_seed(id);
    (0..10_000).map(|_| rng.u8(..)).collect()
}

#[tokio::test]
async fn the_byte_budget_bounds_the_tier_of_a_cache() {
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("local-bytes")
        .local_max_bytes(50_000)
        .build()
        .unwrap();
    let name = format!("{}::budgeted", module_path!());
    budgeted(&cache, 0).await;
    // Copies made before the channel is up are dropped when it comes up: wait for it first.
    coherent(&cache).await;
    local_hit(&name, || budgeted(&cache, 0)).await;
    for id in 1..20 {
        budgeted(&cache, id).await;
        budgeted(&cache, id).await;
    }
    // Twenty 10 KB values read back from Redis; 50 KB holds four copies, the others are served
    // from Redis instead.
    let stats = stats_for(&name).unwrap();
    assert!(stats.local_bytes <= 50_000, "{stats:?}");
    assert!((1..=4).contains(&stats.local_entries), "{stats:?}");
}

#[redis_cache(ttl = 300, local = 100, skip(cache), cache = cache)]
async fn parsed<T>(cache: &Cache, text: String) -> Option<T>
where
    T: std::str::FromStr + Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned,
    T: 'static,
{
    text.parse().ok()
}

#[tokio::test]
async fn each_instantiation_of_a_generic_function_has_its_copies_and_loses_them() {
    let redis = RedisServer::start();
    let prefix = "local-generic";
    let cache = redis.cache(prefix);
    let name = format!("{}::parsed", module_path!());
    let stats = || stats_for(&name).unwrap();
    parsed::<u32>(&cache, "7".into()).await;
    parsed::<u64>(&cache, "7".into()).await;
    coherent(&cache).await;
    let u32_copy = local_hit(&name, || parsed::<u32>(&cache, "7".into())).await;
    let u64_copy = local_hit(&name, || parsed::<u64>(&cache, "7".into())).await;
    assert_eq!((u32_copy, u64_copy), (Some(7u32), Some(7u64)));
    assert!(stats().local_entries >= 1, "{:?}", stats());

    let keys: Vec<String> = redis
        .command(&["KEYS", &format!("{prefix}:*}}")])
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        assert_eq!(redis.cli(&["DEL", &key]).trim(), "1");
    }
    // Each DEL reaches its instantiation's store.
    entries_become(&cache, &name, 0).await;
}

#[redis_cache(ttl = 300, local = 10, skip(cache, runs), cache = cache)]
async fn across_runtimes(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id + runs.count()
}

/// A cache outliving the runtime its channel ran on (a `static` cache used by several
/// `#[tokio::test]`s) is not left believing it hears every change: it is incoherent once that
/// runtime is gone, and the next call on another runtime opens a new channel.
#[test]
fn the_channel_is_reopened_on_the_next_runtime() {
    let redis = RedisServer::start();
    let cache = redis.cache("local-runtimes");
    let runs = Runs::default();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    runtime().block_on(async {
        across_runtimes(&cache, &runs, 1).await;
        coherent(&cache).await;
    });
    assert!(!cache.local_coherent(), "its runtime is gone");
    runtime().block_on(async {
        // The command connection died with the first runtime too: this call may fall back
        // while it reconnects; it starts the new channel either way.
        across_runtimes(&cache, &runs, 1).await;
        coherent(&cache).await;
        let first = across_runtimes(&cache, &runs, 1).await;
        let name = format!("{}::across_runtimes", module_path!());
        let copy = local_hit(&name, || across_runtimes(&cache, &runs, 1)).await;
        assert_eq!(copy, first);
        let keys: Vec<String> = redis.command(&["KEYS", "local-runtimes:*}"]).await.unwrap();
        for key in keys {
            redis.cli(&["DEL", &key]);
        }
        entries_become(&cache, &name, 0).await;
        assert_ne!(
            across_runtimes(&cache, &runs, 1).await,
            first,
            "heard the DEL"
        );
    });
}

#[redis_cache(ttl = 300, local = 10, skip(cache), cache = cache)]
async fn refused(cache: &Cache, id: u64) -> u64 {
    id + 100
}

/// A server (or an ACL) that refuses `CLIENT TRACKING`: said once, with the reason, and copies
/// are still served, under the `local_ttl` bound alone.
#[tokio::test]
async fn a_server_refusing_tracking_is_logged_once_and_copies_are_bounded_by_local_ttl() {
    let (logs, _guard) = redis_cache_tests::logs::Capture::install();
    let redis = RedisServer::start();
    let acl: String = redis
        .command(&[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">secret",
            "~*",
            "&*",
            "+@all",
            "-client|tracking",
        ])
        .await
        .unwrap();
    assert_eq!(acl, "OK");
    let cache = redis
        .builder()
        .prefix("local-refused")
        .credentials(Some("app"), "secret")
        .build()
        .unwrap();
    let mut events = cache.local_events().unwrap();
    assert_eq!(refused(&cache, 1).await, 101);
    next_event(&mut events).await;
    assert!(!cache.local_coherent());
    assert_eq!(
        logs.count(tracing::Level::WARN, "refuses client-side caching"),
        1
    );
    assert_eq!(refused(&cache, 1).await, 101, "read back, copied");
    let name = format!("{}::refused", module_path!());
    let before = stats_for(&name).unwrap().local_hits;
    assert_eq!(refused(&cache, 1).await, 101);
    assert_eq!(stats_for(&name).unwrap().local_hits, before + 1);
}

static FILLED_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[redis_cache(ttl = 300, local = 100, early_refresh = false, cache = cache, skip(cache))]
async fn filled(cache: &Cache, id: u64) -> String {
    let run = FILLED_RUNS.fetch_add(1, SeqCst);
    format!("{id} run {run}")
}

#[redis_cache(ttl = 300, local = 10, cache = cache, skip(cache))]
async fn sentinel(cache: &Cache, id: u64) -> u64 {
    id
}

/// The announcements Redis sent before now have all been heard: a copy of `sentinel` is made,
/// its key deleted from outside, and its removal awaited (announcements of one server arrive in
/// order).
async fn heard_everything(redis: &RedisServer, cache: &Cache, prefix: &str) {
    sentinel(cache, 1).await;
    local_hit("local::sentinel", || sentinel(cache, 1)).await;
    let keys: Vec<String> = redis
        .command(&["KEYS", &format!("{prefix}:local::sentinel:*}}")])
        .await
        .unwrap();
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    assert_eq!(redis.cli(&del).trim(), keys.len().to_string());
    entries_become(cache, "local::sentinel", 0).await;
}

/// A miss keeps the value it stored: Redis's announcement of that store is told apart from a
/// change (the key's next announcement after a copy made from this process's store is that
/// store's), so the next call is a local hit, not a Redis read. Changes made afterwards, here or
/// elsewhere, still remove the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_keeps_what_it_stored_and_the_next_call_is_local() {
    let redis = RedisServer::start();
    let prefix = "local-filled";
    let cache = redis.cache(prefix);
    sentinel(&cache, 0).await;
    coherent(&cache).await;
    // The function's first copy routes its announcements to its store; until then a store's
    // own announcement could be missed, so that store is not kept.
    filled(&cache, 100).await;
    // Its store's announcement may come after a read copied it, and remove that copy: heard
    // first, so the copy made next stays.
    heard_everything(&redis, &cache, prefix).await;
    local_hit("local::filled", || filled(&cache, 100)).await;
    let before = filled_stats();
    let runs_before = FILLED_RUNS.load(SeqCst);

    let first: Vec<String> = futures_of(&cache, 0..20).await;
    // Every store's own announcement has arrived and been told apart.
    heard_everything(&redis, &cache, prefix).await;
    let stats = filled_stats();
    assert_eq!(stats.misses - before.misses, 20, "{stats:?}");
    assert_eq!(stats.local_entries, 21, "with 100's: {stats:?}");
    let redis_reads = stats.redis_latency.count;
    assert_eq!(futures_of(&cache, 0..20).await, first, "the stored values");
    let stats = filled_stats();
    assert_eq!(stats.local_hits - before.local_hits, 20, "{stats:?}");
    assert_eq!(stats.hits, before.hits, "no Redis hit: {stats:?}");
    assert_eq!(
        stats.redis_latency.count, redis_reads,
        "no round trip: {stats:?}"
    );

    // A change elsewhere after that store still removes the copy.
    let keys: Vec<String> = redis
        .command(&["KEYS", &format!("{prefix}:local::filled:*")])
        .await
        .unwrap();
    assert_eq!(keys.len(), 21);
    assert_eq!(redis.cli(&["DEL", &keys[0]]).trim(), "1");
    entries_become(&cache, "local::filled", 20).await;
    // And so does this process's own invalidation, at once.
    filled_invalidate(&cache, 5).await.unwrap();
    let again = filled(&cache, 5).await;
    assert_ne!(again, first[5], "computed again after the invalidation");
    assert_eq!(FILLED_RUNS.load(SeqCst), runs_before + 21);
}

async fn futures_of(cache: &Cache, ids: std::ops::Range<u64>) -> Vec<String> {
    let mut values = Vec::new();
    for id in ids {
        values.push(filled(cache, id).await);
    }
    values
}

#[redis_cache(ttl = 300, local = 100, skip(cache), cache = cache)]
async fn held_here(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn not_held_here(cache: &Cache, id: u64) -> u64 {
    id + 2
}

/// Redis tracks one prefix per function a process keeps copies of, not the cache's whole
/// prefix: the misses of a function without `local` (their locks and stores) are announced to
/// no one, and a change of a held entry is announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_is_told_only_of_the_functions_it_keeps_copies_of() {
    let redis = RedisServer::start();
    let prefix = "local-fleet";
    let cache = redis.cache(prefix);
    let held = format!("{}::held_here", module_path!());
    held_here(&cache, 1).await;
    coherent(&cache).await;
    // The first call asked the channel to track the function's prefix: the server tracks two,
    // that one and the channel's probe (which matches no key).
    tracked(&cache, 1).await;
    assert!(
        redis
            .cli(&["INFO", "stats"])
            .contains("tracking_total_prefixes:2")
    );
    // A copy made now is covered and served.
    local_hit(&held, || held_here(&cache, 1)).await;

    let before = cache.local_announcements().unwrap();
    for id in 0..50 {
        assert_eq!(not_held_here(&cache, id).await, id + 2);
    }
    cache.flush().await;
    assert_eq!(redis.keys().await.len(), 51, "the misses were stored");
    // A change of the held entry from elsewhere: announced, and the copy goes. Announcements
    // arrive in the order of the writes, so any of the misses' would have come before it.
    let key = redis
        .keys()
        .await
        .into_iter()
        .find(|k| k.contains("held_here"))
        .unwrap();
    assert_eq!(redis.cli(&["DEL", &key]).trim(), "1");
    entries_become(&cache, &held, 0).await;
    let told = cache.local_announcements().unwrap() - before;
    assert_eq!(
        told, 1,
        "only the held entry's change (the cache's whole prefix would announce the 50 misses' \
         locks and stores, about 150)"
    );

    // Another process computes the held entry again: its lock is outside the tracked prefix, so
    // this process hears of the store only, not of the lock's taking and release.
    // (Without a local tier, so the function's copies counted are this process's alone.)
    let other = redis
        .builder()
        .prefix(prefix)
        .local_max_bytes(0)
        .build()
        .unwrap();
    held_here(&other, 1).await;
    other.flush().await;
    // This process copies the stored value, then the entry is deleted again: announcements
    // arrive in the order of the writes, so the other's lock would have come before.
    local_hit(&held, || held_here(&cache, 1)).await;
    assert_eq!(redis.cli(&["DEL", &key]).trim(), "1");
    entries_become(&cache, &held, 0).await;
    let told = cache.local_announcements().unwrap() - before;
    assert_eq!(
        told, 3,
        "the first delete, the other's store and the second delete (its lock would add two)"
    );
}
