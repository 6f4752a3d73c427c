// The cache-aside contract against a real `redis-server` per test.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_cached::{Cache, redis_cache, stats_for};
use redis_cache_tests::Runs;
use redis_cache_tests::deployment::Deployment;
use serde::{Deserialize, Serialize};

/// A function's name as stats show it: this module's path, then the function.
fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    tags: Vec<String>,
}

struct Db;

#[redis_cache(ttl = 60, skip(cache, runs, db), cache = cache)]
async fn product(cache: &Cache, runs: &Runs, db: &Db, id: u64) -> Product {
    let _ = db;
    runs.tick();
    Product {
        id,
        name: format!("product {id}"),
        tags: vec!["a".into(), "b c".into()],
    }
}

#[tokio::test]
async fn second_call_is_a_hit_and_does_not_run_the_body() {
    let product_runs = Runs::default();
    let redis = start();
    let cache = redis.cache("hit");
    let first = product(&cache, &product_runs, &Db, 7).await;
    let second = product(&cache, &product_runs, &Db, 7).await;
    assert_eq!(first, second);
    assert_eq!(product_runs.count(), 1);
    let stats = stats_for(&name("product")).expect("registered");
    assert_eq!(
        (stats.hits, stats.misses, stats.executions, stats.writes),
        (1, 1, 1, 1)
    );
    assert_eq!(stats.fallbacks + stats.errors + stats.invalid, 0);
    assert_eq!(redis.keys().await.len(), 1);
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn join(cache: &Cache, runs: &Runs, a: &str, b: &str, parts: Vec<String>) -> String {
    runs.tick();
    format!("{a}|{b}|{}", parts.join("|"))
}

#[tokio::test]
async fn arguments_that_format_alike_get_distinct_entries() {
    let join_runs = Runs::default();
    let redis = start();
    let cache = redis.cache("collide");
    let calls: [(&str, &str, &[&str]); 5] = [
        ("a b", "", &[]),
        ("a", "b", &[]),
        ("a", " b", &[]),
        ("", "", &["a b"]),
        ("", "", &["a", "b"]),
    ];
    for (a, b, parts) in calls {
        let parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        let expected = format!("{a}|{b}|{}", parts.join("|"));
        assert_eq!(join(&cache, &join_runs, a, b, parts).await, expected);
    }
    assert_eq!(join_runs.count(), 5, "every distinct call ran");
    assert_eq!(redis.keys().await.len(), 5, "one key per distinct call");
    // And each is now a hit returning its own value.
    for (a, b, parts) in calls {
        let parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        let expected = format!("{a}|{b}|{}", parts.join("|"));
        assert_eq!(join(&cache, &join_runs, a, b, parts).await, expected);
    }
    assert_eq!(join_runs.count(), 5);
}

#[redis_cache(ttl = 60, skip(cache, runs, request_id), cache = cache)]
async fn with_skipped(cache: &Cache, runs: &Runs, request_id: u64, x: u32) -> u32 {
    let _ = request_id;
    runs.tick();
    x + 1
}

#[tokio::test]
async fn skipped_arguments_do_not_change_the_key() {
    let skipped_runs = Runs::default();
    let redis = start();
    let cache = redis.cache("skip");
    assert_eq!(with_skipped(&cache, &skipped_runs, 1, 10).await, 11);
    assert_eq!(with_skipped(&cache, &skipped_runs, 2, 10).await, 11);
    assert_eq!(
        skipped_runs.count(),
        1,
        "a different skipped argument is still a hit"
    );
    assert_eq!(with_skipped(&cache, &skipped_runs, 2, 11).await, 12);
    assert_eq!(
        skipped_runs.count(),
        2,
        "a different key argument is a miss"
    );
}

#[redis_cache(ttl = 45, skip(cache), cache = cache)]
async fn with_ttl(cache: &Cache, x: u32) -> u32 {
    x
}

#[tokio::test]
async fn the_ttl_is_set_on_the_key() {
    let redis = start();
    let cache = redis.cache("ttl");
    let started = std::time::Instant::now();
    with_ttl(&cache, 1).await;
    let keys = redis.keys().await;
    assert_eq!(keys.len(), 1);
    let mut conn = redis.connection().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    // 45 s shortened by up to 10% (jitter), less what has passed since the store: on a loaded
    // machine (or a cluster, whose key listing is slow) that can be seconds.
    let elapsed = started.elapsed().as_millis() as i64 + 1;
    assert!(
        pttl > 40_500 - elapsed && pttl <= 45_000,
        "PTTL {pttl} ({elapsed} ms after the call began)"
    );
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn fallible(cache: &Cache, runs: &Runs, x: i32) -> std::io::Result<i32> {
    runs.tick();
    if x < 0 {
        Err(std::io::Error::other("negative"))
    } else {
        Ok(x)
    }
}

#[tokio::test]
async fn errors_are_not_cached_ok_values_are() {
    let fallible_runs = Runs::default();
    let redis = start();
    let cache = redis.cache("result");
    assert!(fallible(&cache, &fallible_runs, -1).await.is_err());
    assert!(fallible(&cache, &fallible_runs, -1).await.is_err());
    assert_eq!(
        fallible_runs.count(),
        2,
        "an Err is recomputed every time"
    );
    assert!(redis.keys().await.is_empty(), "an Err is never stored");
    assert_eq!(fallible(&cache, &fallible_runs, 3).await.unwrap(), 3);
    assert_eq!(fallible(&cache, &fallible_runs, 3).await.unwrap(), 3);
    assert_eq!(fallible_runs.count(), 3);
    assert_eq!(redis.keys().await.len(), 1);
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn maybe(cache: &Cache, runs: &Runs, x: u8) -> Option<u8> {
    runs.tick();
    (x > 0).then_some(x)
}

#[redis_cache(ttl = 600, none_ttl = 30, skip(cache, runs), cache = cache)]
async fn maybe_with_none(cache: &Cache, runs: &Runs, x: u8) -> Option<u8> {
    runs.tick();
    (x > 0).then_some(x)
}

#[tokio::test]
async fn none_is_cached_only_with_none_ttl() {
    let maybe_none_runs = Runs::default();
    let maybe_runs = Runs::default();
    let redis = start();
    let cache = redis.cache("option");
    assert_eq!(maybe(&cache, &maybe_runs, 0).await, None);
    assert_eq!(maybe(&cache, &maybe_runs, 0).await, None);
    assert_eq!(maybe_runs.count(), 2, "None is recomputed");
    assert_eq!(maybe(&cache, &maybe_runs, 4).await, Some(4));
    assert_eq!(maybe(&cache, &maybe_runs, 4).await, Some(4));
    assert_eq!(maybe_runs.count(), 3, "Some is cached");

    assert_eq!(maybe_with_none(&cache, &maybe_none_runs, 0).await, None);
    assert_eq!(maybe_with_none(&cache, &maybe_none_runs, 0).await, None);
    assert_eq!(
        maybe_none_runs.count(),
        1,
        "None is cached with none_ttl"
    );
    let none_key = redis
        .keys()
        .await
        .into_iter()
        .find(|k| k.contains("maybe_with_none"))
        .unwrap();
    let mut conn = redis.connection().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&none_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 30_000,
        "None lives none_ttl seconds, not ttl's 600: PTTL {pttl}"
    );
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn corruptible(cache: &Cache, runs: &Runs, x: u64) -> Product {
    runs.tick();
    Product {
        id: x,
        name: "fresh".into(),
        tags: vec![],
    }
}

#[tokio::test]
async fn corrupt_or_foreign_values_are_misses_and_get_overwritten() {
    let corrupt_runs = Runs::default();
    let redis = start();
    let cache = redis.cache("corrupt");
    corruptible(&cache, &corrupt_runs, 1).await;
    cache.flush().await;
    let key = redis.keys().await.pop().unwrap();
    let mut conn = redis.connection().await;
    let valid: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();

    let garbage: Vec<Vec<u8>> = vec![
        b"not an envelope".to_vec(),
        valid[..valid.len() - 1].to_vec(),
        {
            let mut v = valid.clone();
            v[2] = 99; // unknown envelope version
            v
        },
        {
            let mut v = valid.clone();
            v[3] = 42; // another codec
            v
        },
    ];
    let before = stats_for(&name("corruptible")).unwrap();
    for bad in &garbage {
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(bad)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(corruptible(&cache, &corrupt_runs, 1).await.name, "fresh");
        cache.flush().await;
        let now: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            now.len(),
            valid.len(),
            "the entry was overwritten with a valid one"
        );
    }
    // Another type at the key (a hash) is replaced too.
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg("f")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(corruptible(&cache, &corrupt_runs, 1).await.name, "fresh");
    cache.flush().await;
    let kind: String = redis::cmd("TYPE")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "string");

    let after = stats_for(&name("corruptible")).unwrap();
    assert_eq!(after.invalid - before.invalid, 5);
    assert_eq!(after.executions - before.executions, 5);
    assert_eq!(after.errors, 0);
    // The overwritten entry is a hit again.
    corruptible(&cache, &corrupt_runs, 1).await;
    assert_eq!(corrupt_runs.count(), 6);
}

#[redis_cache(ttl = 60, name = "pricing::quote", version = 1, skip(cache), cache = cache)]
async fn quote_v1(cache: &Cache, sku: u32) -> u64 {
    u64::from(sku)
}

#[redis_cache(ttl = 60, name = "pricing::quote", version = 2, skip(cache), cache = cache)]
async fn quote_v2(cache: &Cache, sku: u32) -> u64 {
    u64::from(sku) * 100
}

#[tokio::test]
async fn a_new_version_moves_to_new_keys() {
    let redis = start();
    let cache = redis.cache("ver");
    assert_eq!(quote_v1(&cache, 3).await, 3);
    assert_eq!(
        quote_v2(&cache, 3).await,
        300,
        "version 2 does not read version 1's entry"
    );
    let keys = redis.keys().await;
    assert_eq!(keys.len(), 2);
    let split: Vec<Vec<&str>> = keys.iter().map(|k| k.rsplitn(3, ':').collect()).collect();
    assert_eq!(split[0][0], split[1][0], "same arguments hash");
    assert_ne!(split[0][1], split[1][1], "different fingerprints");
    let start = format!("{}:pricing::quote:", redis.prefix("ver"));
    assert!(keys.iter().all(|k| k.starts_with(&start)), "{keys:?}");
}

struct Repo {
    cache: Cache,
    factor: u64,
}

static REPO_RUNS: AtomicU64 = AtomicU64::new(0);

impl Repo {
    /// Methods: `self` is not part of the key; the type's name is.
    #[redis_cache(ttl = 60, cache = self.cache)]
    async fn scaled(&self, x: u64) -> u64 {
        REPO_RUNS.fetch_add(1, SeqCst);
        x * self.factor
    }
}

#[tokio::test]
async fn methods_are_keyed_by_type_and_arguments_not_self() {
    let redis = start();
    let cache = redis.cache("method");
    let a = Repo {
        cache: cache.clone(),
        factor: 2,
    };
    let b = Repo { cache, factor: 3 };
    assert_eq!(a.scaled(5).await, 10);
    assert_eq!(
        b.scaled(5).await,
        10,
        "self is not in the key: b reads a's entry"
    );
    assert_eq!(REPO_RUNS.load(SeqCst), 1);
    let keys = redis.keys().await;
    assert!(
        keys[0].starts_with(&format!("{}:{}:", redis.prefix("method"), name("Repo::scaled"))),
        "{keys:?}"
    );
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn parse<T>(cache: &Cache, text: String) -> Option<T>
where
    T: std::str::FromStr + Serialize + serde::de::DeserializeOwned,
{
    text.parse().ok()
}

#[tokio::test]
async fn generic_instantiations_do_not_share_entries() {
    let redis = start();
    let cache = redis.cache("generic");
    assert_eq!(parse::<u8>(&cache, "300".into()).await, None);
    assert_eq!(parse::<u16>(&cache, "300".into()).await, Some(300));
    assert_eq!(parse::<u32>(&cache, "300".into()).await, Some(300));
    assert_eq!(parse::<u16>(&cache, "300".into()).await, Some(300));
    assert_eq!(
        redis.keys().await.len(),
        2,
        "u16 and u32 entries, None not stored"
    );
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn counted(cache: &Cache, runs: &Runs, x: u64) -> u64 {
    runs.tick();
    x + 1
}

#[tokio::test]
async fn with_no_redis_listening_every_call_returns_the_functions_value() {
    let slow_runs = Runs::default();
    // A port with nothing behind it: connections are refused.
    let port = redis_cache_tests::free_port();
    let cache = Cache::builder()
        .url(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for i in 0..50 {
        assert_eq!(counted(&cache, &slow_runs, i).await, i + 1);
    }
    assert_eq!(slow_runs.count(), 50);
    let stats = stats_for(&name("counted")).unwrap();
    assert_eq!((stats.fallbacks, stats.hits, stats.misses), (50, 0, 0));
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn against_hung_server(cache: &Cache, x: u64) -> u64 {
    x * 3
}

/// Tokio's clock is paused: it jumps straight to the next timer whenever every task waits, so the
/// elapsed time below is exactly what the code waited for, with no wall-clock timing involved.
#[tokio::test(start_paused = true)]
async fn a_server_that_accepts_but_never_answers_costs_at_most_the_connect_timeout() {
    // The kernel completes the TCP handshake from the backlog, but nothing ever reads or replies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let connect_timeout = Duration::from_millis(200);
    let cache = Cache::builder()
        .url(url)
        .connect_timeout(connect_timeout)
        .command_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(against_hung_server(&cache, 2).await, 6);
    assert!(
        started.elapsed() <= connect_timeout,
        "the first call waited {:?}, more than the connect timeout",
        started.elapsed()
    );
    for i in 0..20 {
        assert_eq!(against_hung_server(&cache, i).await, i * 3);
    }
    let stats = stats_for(&name("against_hung_server")).unwrap();
    assert_eq!(stats.fallbacks, 21);
    drop(listener);
}

#[redis_cache(ttl = 60)]
async fn outside_tokio(x: u64) -> u64 {
    x + 2
}

#[test]
fn without_a_tokio_runtime_the_function_just_runs() {
    let value = block_on_without_tokio(outside_tokio(1));
    assert_eq!(value, 3);
    assert_eq!(stats_for(&name("outside_tokio")).unwrap().fallbacks, 1);
}

/// A minimal executor that is not Tokio, to prove the cache does not require one.
fn block_on_without_tokio<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn across_restart(cache: &Cache, runs: &Runs, x: u64) -> u64 {
    runs.tick();
    x * 10
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_the_cache_is_used_again() {
    let restart_runs = Runs::default();
    let mut redis = start_own();
    // A breaker that probes at once: every call while Redis is down tries to connect (and is
    // refused at once), so the first call after the restart must find Redis again, no waiting.
    let cache = redis
        .builder()
        .prefix("restart")
        .circuit_breaker(5, Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(across_restart(&cache, &restart_runs, 1).await, 10);
    assert_eq!(across_restart(&cache, &restart_runs, 1).await, 10);
    assert_eq!(restart_runs.count(), 1);

    redis.kill();
    for _ in 0..5 {
        assert_eq!(
            across_restart(&cache, &restart_runs, 1).await,
            10,
            "answers while Redis is down"
        );
    }
    assert_eq!(restart_runs.count(), 6);
    let down = stats_for(&name("across_restart")).unwrap();
    assert_eq!(down.fallbacks, 5);

    redis.restart();
    assert_eq!(across_restart(&cache, &restart_runs, 2).await, 20);
    cache.flush().await;
    let up = stats_for(&name("across_restart")).unwrap();
    assert_eq!(
        up.writes,
        down.writes + 1,
        "the first call after the restart stores again"
    );
    assert_eq!(across_restart(&cache, &restart_runs, 2).await, 20);
    assert_eq!(restart_runs.count(), 7, "and the next one is a hit");
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn may_panic(cache: Cache, runs: std::sync::Arc<Runs>, fail: bool) -> u64 {
    runs.tick();
    if fail {
        panic!("boom");
    }
    7
}

#[tokio::test]
async fn a_panic_propagates_and_leaves_nothing_behind() {
    let panic_runs = std::sync::Arc::new(Runs::default());
    let redis = start();
    let cache = redis.cache("panic");
    let joined = tokio::spawn(may_panic(cache.clone(), panic_runs.clone(), true)).await;
    let err = joined.expect_err("the panic reaches the caller");
    assert!(err.is_panic());
    // Its lock is released by a background task (a drop guard cannot wait for Redis).
    assert!(
        redis.keys().await.iter().all(|k| k.ends_with(":lock")),
        "nothing stored for the panicking call"
    );
    assert_eq!(may_panic(cache.clone(), panic_runs.clone(), false).await, 7);
    assert_eq!(may_panic(cache.clone(), panic_runs.clone(), false).await, 7);
    assert_eq!(
        panic_runs.count(),
        2,
        "later calls work and cache normally"
    );
    assert_eq!(redis.keys().await.len(), 1, "the entry, and no lock");
    assert_eq!(cache.in_flight(), 0);
}

#[redis_cache(ttl = 60, skip(cache, started, gate), cache = cache)]
async fn cancellable(
    cache: &Cache,
    started: &tokio::sync::Notify,
    gate: &tokio::sync::Notify,
    x: u64,
) -> u64 {
    started.notify_one();
    gate.notified().await;
    x
}

#[tokio::test]
async fn a_cancelled_call_stores_nothing_and_blocks_nothing() {
    let redis = start();
    let cache = redis.cache("cancel");
    let (started, gate) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
    // Drive the call until its body is running (past the lookup), then drop it there.
    let mut call = Box::pin(cancellable(&cache, &started, &gate, 1));
    tokio::select! {
        () = started.notified() => {}
        _ = &mut call => panic!("the body cannot finish: its gate is closed"),
    }
    drop(call);
    // The lock's release runs in a spawned task, which flush waits for: no entry, no lock.
    cache.flush().await;
    assert_eq!(redis.keys().await, Vec::<String>::new());
    let stats = stats_for(&name("cancellable")).unwrap();
    assert_eq!(
        (stats.calls(), stats.executions),
        (0, 0),
        "a call cancelled mid-body has no outcome, and its body did not complete"
    );
    // The same key works right away.
    gate.notify_one();
    assert_eq!(cancellable(&cache, &started, &gate, 1).await, 1);
    assert_eq!(redis.keys().await.len(), 1, "the entry, and no lock");
    assert_eq!(cache.in_flight(), 0);
}

/// Freezes Redis (SIGSTOP) as its last act, so its value can only be stored after it returned.
#[redis_cache(ttl = 60, skip(cache, redis), cache = cache)]
async fn freezes_redis(cache: &Cache, redis: &Deployment, id: u64) -> u64 {
    redis.pause();
    id
}

#[tokio::test]
async fn with_background_stores_a_miss_returns_its_value_before_the_store_lands() {
    let redis = start_own();
    // A command deadline far longer than the test: a store the caller waited for could only
    // end by timing out, with Redis still frozen, and nothing would be stored.
    let cache = redis
        .builder()
        .prefix("background-store")
        .command_timeout(Duration::from_secs(30))
        .background_stores(true)
        .build()
        .unwrap();
    assert_eq!(freezes_redis(&cache, &redis, 7).await, 7);
    // The call came back while Redis is frozen: its store is still on its way.
    redis.resume();
    cache.flush().await;
    let keys = redis.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stats = stats_for(&name("freezes_redis")).unwrap();
    assert_eq!((stats.misses, stats.writes), (1, 1));
}

/// The future of a call carries the hit path only: the connect, lock, refresh and fallback paths
/// are boxed. Inlined, they made every call's future 8 KB, copied on every hit. (2,192 bytes
/// today: the value's codec, two function pointers and the codec's id, travels with the call,
/// as do the attribute's rules, `soft_timeout` among them; the cluster's routing is one more
/// level of calls, boxed; the lookup's place among those pipelined together is 48 bytes, and a
/// window of them is boxed.)
#[test]
fn a_calls_future_carries_only_the_hit_path() {
    let cache = Cache::disabled();
    let size = std::mem::size_of_val(&with_ttl(&cache, 1));
    // 16 bytes of slack for layout changes between toolchains.
    assert!(size <= CALL_OVERHEAD, "the future of a call is {size} bytes");
    let local = std::mem::size_of_val(&holds_a_kilobyte_locally(&cache, 1));
    assert!(
        local <= LOCAL_CALL_OVERHEAD,
        "the future of a call with `local` is {local} bytes"
    );
}

/// What a call's future may add to its body's: the hit path, with 16 bytes of slack.
const CALL_OVERHEAD: usize = 2208;

/// The future of a call with `local = N`, whatever its body holds: the arguments, and the local
/// hit's value or the boxed rest of the flow. The local hit is looked up without a future of its
/// own. (It carried the Redis hit path too: 2,336 bytes, moved on every local hit; then the local
/// hit's own future, 640 bytes; now 56 for a `u64` of a `u64`, with 16 bytes of slack.)
const LOCAL_CALL_OVERHEAD: usize = 72;

/// A body that keeps a kilobyte alive across an `.await`.
async fn kilobyte_body(id: u64) -> u64 {
    let block = [id as u8; 1024];
    tokio::task::yield_now().await;
    block.iter().map(|b| u64::from(*b)).sum()
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn holds_a_kilobyte(cache: &Cache, id: u64) -> u64 {
    let block = [id as u8; 1024];
    tokio::task::yield_now().await;
    block.iter().map(|b| u64::from(*b)).sum()
}

#[redis_cache(ttl = 60, local = 10, skip(cache), cache = cache)]
async fn holds_a_kilobyte_locally(cache: &Cache, id: u64) -> u64 {
    let block = [id as u8; 1024];
    tokio::task::yield_now().await;
    block.iter().map(|b| u64::from(*b)).sum()
}

/// The body's future is made only when the body runs (the flow carries a closure owning the
/// arguments), so each layer of the flow does not keep a copy of it: a call's future is at most
/// the body's plus [`CALL_OVERHEAD`], however much state the body holds. (Passed as a future, the
/// 1,056-byte body made a 7,616-byte call; now 2,176.) With `local = N` the flow past the local
/// hit is boxed, and the call's future holds none of the body: [`LOCAL_CALL_OVERHEAD`] at most.
#[test]
fn a_calls_future_does_not_copy_the_bodys_state() {
    let cache = Cache::disabled();
    let body = std::mem::size_of_val(&kilobyte_body(1));
    assert!(body > 1024, "the body holds its kilobyte: {body}");
    let size = std::mem::size_of_val(&holds_a_kilobyte(&cache, 1));
    assert!(
        size <= body + CALL_OVERHEAD,
        "the future of a call is {size} bytes, the body's {body}"
    );
    let local = std::mem::size_of_val(&holds_a_kilobyte_locally(&cache, 1));
    assert!(
        local <= LOCAL_CALL_OVERHEAD,
        "the future of a call with `local` is {local} bytes, the body's {body}"
    );
}

#[redis_cache(ttl = 60, skip(cache, runs), cache = cache)]
async fn mixed(cache: &Cache, runs: &Runs, id: u64) -> Result<u64, String> {
    runs.tick();
    // A chance for concurrent callers of the same key to join this one.
    tokio::task::yield_now().await;
    if id % 5 == 4 {
        Err(format!("{id} fails"))
    } else {
        Ok(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_that_returns_is_exactly_one_outcome() {
    let redis = start();
    let cache = redis.cache("outcomes");
    let runs = std::sync::Arc::new(Runs::default());
    let mut calls = 0;
    for round in 0..3u64 {
        // Eight concurrent calls on each of ten keys: misses, hits, coalesced calls; ids ending
        // in 4 or 9 fail, are never stored, and miss again each round.
        let tasks: Vec<_> = (0..80u64)
            .map(|i| {
                let (cache, runs) = (cache.clone(), runs.clone());
                tokio::spawn(async move { mixed(&cache, &runs, i % 10).await })
            })
            .collect();
        for task in tasks {
            let id = task.await.unwrap().ok();
            assert!(id.is_none_or(|id| id < 10));
            calls += 1;
        }
        // Through a cache without Redis: fallbacks.
        let disabled = Cache::disabled();
        assert_eq!(mixed(&disabled, &runs, round).await, Ok(round));
        calls += 1;
    }
    cache.flush().await;
    let stats = stats_for(&name("mixed")).unwrap();
    assert_eq!(stats.calls(), calls, "{stats:?}");
    assert_eq!(
        stats.hits + stats.stale + stats.misses + stats.coalesced + stats.fallbacks,
        calls
    );
    assert_eq!(stats.fallbacks, 3, "{stats:?}");
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    assert_eq!(stats.executions, runs.count(), "{stats:?}");
}

struct Account {
    id: u64,
    is_admin: bool,
}

impl serde::Serialize for Account {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.id)
    }
}

#[redis_cache(ttl = 60, condition = !account.is_admin, skip(cache, runs), cache = cache)]
async fn dashboard(cache: &Cache, runs: &Runs, account: &Account) -> String {
    runs.tick();
    format!("dashboard of {} ({} runs)", account.id, runs.count())
}

#[tokio::test]
async fn a_false_condition_runs_the_function_without_the_cache() {
    // Its own servers: it counts every command they executed.
    let redis = start_own();
    let cache = redis.cache("condition");
    let runs = Runs::default();
    let (user, admin) = (
        Account {
            id: 1,
            is_admin: false,
        },
        Account {
            id: 2,
            is_admin: true,
        },
    );
    let first = dashboard(&cache, &runs, &user).await;
    assert_eq!(dashboard(&cache, &runs, &user).await, first, "cached");
    let sent = redis.cache_commands();
    assert_ne!(dashboard(&cache, &runs, &admin).await, dashboard(&cache, &runs, &admin).await);
    assert_eq!(redis.cache_commands(), sent, "a false condition sends no command to Redis");
    assert_eq!(runs.count(), 3, "the admin's calls ran every time");
    assert_eq!(redis.keys().await.len(), 1, "only the user's entry was stored");
    let stats = stats_for(&name("dashboard")).unwrap();
    assert_eq!(
        (stats.bypassed, stats.hits, stats.misses, stats.calls()),
        (2, 1, 1, 4),
        "{stats:?}"
    );
}

/// Not `Serialize`: only its id is the key.
struct Session {
    user_id: u64,
    token: String,
}

#[redis_cache(ttl = 60, key = session.user_id, cache = cache)]
async fn home(cache: &Cache, runs: &Runs, session: &Session) -> String {
    let _ = &session.token;
    runs.tick();
    format!("home of {}", session.user_id)
}

#[tokio::test]
async fn a_key_expression_is_hashed_instead_of_the_arguments_and_companions_agree() {
    let redis = start();
    let cache = redis.cache("key-expr");
    let runs = Runs::default();
    let session = |token: &str| Session {
        user_id: 7,
        token: token.into(),
    };
    assert_eq!(home(&cache, &runs, &session("a")).await, "home of 7");
    assert_eq!(home(&cache, &runs, &session("b")).await, "home of 7");
    assert_eq!(runs.count(), 1, "another token, the same key");
    assert_eq!(redis.keys().await.len(), 1);
    assert!(home_invalidate(&cache, &session("c")).await.unwrap());
    assert!(
        redis.entries().await.is_empty(),
        "the companion derives the same key"
    );
    home(&cache, &runs, &session("d")).await;
    assert_eq!(runs.count(), 2);
    // `_refresh` recomputes the same key, which the next call (another token) then hits.
    home_refresh(&cache, &runs, &session("e")).await;
    assert_eq!(runs.count(), 3);
    home(&cache, &runs, &session("f")).await;
    assert_eq!(runs.count(), 3, "a hit on the refreshed entry");
    assert_eq!(redis.keys().await.len(), 1);
}

/// A TTL read from configuration at run time.
fn configured_ttl() -> Duration {
    Duration::from_secs(45)
}

#[redis_cache(ttl = configured_ttl(), jitter = 0.0, skip(cache), cache = cache)]
async fn from_config(cache: &Cache, id: u64) -> u64 {
    id
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Token {
    value: String,
    expires_in: u64,
}

#[redis_cache(ttl = |t: &Token| Duration::from_secs(t.expires_in), jitter = 0.0, skip(cache), cache = cache)]
async fn token(cache: &Cache, expires_in: u64) -> Token {
    Token {
        value: format!("t{expires_in}"),
        expires_in,
    }
}

/// How long "not found" is remembered, from configuration.
fn configured_missing_ttl() -> u64 {
    20
}

/// The closures see the `Some` value (`&Token`, not `&Option<Token>`); a `None` is kept for
/// `none_ttl`, which neither closure overrides.
#[redis_cache(
    ttl = |t: &Token| Duration::from_secs(t.expires_in),
    none_ttl = configured_missing_ttl(),
    unless = |t: &Token| t.value.is_empty(),
    jitter = 0.0,
    skip(cache),
    cache = cache
)]
async fn maybe_token(cache: &Cache, expires_in: u64) -> Option<Token> {
    (expires_in > 0).then(|| Token {
        value: if expires_in == 1 { String::new() } else { format!("t{expires_in}") },
        expires_in,
    })
}

#[redis_cache(ttl = 60, unless = |page: &Vec<u64>| page.is_empty(), skip(cache, runs), cache = cache)]
async fn page(cache: &Cache, runs: &Runs, n: u64) -> Vec<u64> {
    runs.tick();
    (0..n).collect()
}

#[tokio::test]
async fn ttls_from_expressions_and_values_and_unless() {
    let redis = start();
    let cache = redis.cache("rules");
    let pttl = |key: String| {
        let redis = &redis;
        async move { redis.command::<i64>(&["PTTL", &key]).await.unwrap() }
    };
    let keys = |pattern: &'static str| {
        let redis = &redis;
        async move {
            redis
                .keys()
                .await
                .into_iter()
                .filter(|k| k.contains(pattern))
                .collect::<Vec<_>>()
        }
    };
    from_config(&cache, 1).await;
    let [key] = <[String; 1]>::try_from(keys("from_config").await).unwrap();
    let ms = pttl(key).await;
    assert!((40_000..=45_000).contains(&ms), "ttl = configured_ttl(): {ms} ms");

    token(&cache, 120).await;
    token(&cache, 0).await;
    let tokens = keys("token").await;
    assert_eq!(tokens.len(), 1, "a zero TTL stores nothing: {tokens:?}");
    let ms = pttl(tokens[0].clone()).await;
    assert!((115_000..=120_000).contains(&ms), "the token's own lifetime: {ms} ms");

    let runs = Runs::default();
    assert_eq!(page(&cache, &runs, 0).await, Vec::<u64>::new());
    assert_eq!(page(&cache, &runs, 0).await, Vec::<u64>::new());
    assert_eq!(runs.count(), 2, "an empty page is returned, not stored");
    assert_eq!(page(&cache, &runs, 3).await, vec![0, 1, 2]);
    assert_eq!(page(&cache, &runs, 3).await, vec![0, 1, 2]);
    assert_eq!(runs.count(), 3, "a full page is stored");

    maybe_token(&cache, 0).await;
    maybe_token(&cache, 1).await;
    maybe_token(&cache, 300).await;
    let mut lifetimes = Vec::new();
    for key in keys("maybe_token").await {
        lifetimes.push(pttl(key).await);
    }
    lifetimes.sort();
    let [missing, found] = <[i64; 2]>::try_from(lifetimes.clone())
        .unwrap_or_else(|_| panic!("None and Some(t300) stored, `unless` kept t1 out: {lifetimes:?}"));
    assert!((15_000..=20_000).contains(&missing), "none_ttl = expression: {missing} ms");
    assert!((295_000..=300_000).contains(&found), "ttl from the Some value: {found} ms");
}
