// Stampede protection in one process: single-flight, cancelled and panicking leaders, Redis down,
// the stale window, early refresh and TTL jitter. The multi-process claims are in
// `stampede_processes.rs`.
//
// Each test has its own function, so their counters and statics do not meet.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis_cached::{Cache, redis_cache, stats_for};
use redis_cache_tests::deployment::Deployment;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A function's name as stats show it: this module's path, then the function.
fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}

/// Counts arrivals; lets a task wait for the n-th (an event, not a sleep).
struct Gate {
    arrived: AtomicUsize,
    notify: Notify,
}

impl Gate {
    const fn new() -> Self {
        Gate {
            arrived: AtomicUsize::new(0),
            notify: Notify::const_new(),
        }
    }

    fn arrive(&self) {
        self.arrived.fetch_add(1, SeqCst);
        self.notify.notify_waiters();
    }

    async fn until(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.arrived.load(SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }
}

/// Spawns `n` tasks, each calling `call` with its own handle on `cache`.
fn spawn_callers<T, Fut>(n: usize, cache: &Cache, call: impl Fn(Cache) -> Fut) -> Vec<JoinHandle<T>>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    (0..n).map(|_| tokio::spawn(call(cache.clone()))).collect()
}

const CALLERS: usize = 1000;

static COLD_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static COLD_ARRIVED: Gate = Gate::new();

/// Holds its callers in flight until all of them have called.
#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn cold_product(cache: &Cache, id: u64) -> String {
    COLD_EXECUTIONS.fetch_add(1, SeqCst);
    COLD_ARRIVED.until(CALLERS).await;
    format!("product {id}")
}

#[tokio::test]
async fn a_thousand_concurrent_callers_of_a_cold_key_run_the_function_once() {
    let redis = start();
    let cache = redis.cache("sf");
    let callers: Vec<_> = spawn_callers(CALLERS, &cache, |cache| async move {
        COLD_ARRIVED.arrive();
        cold_product(&cache, 7).await
    });
    for caller in callers {
        assert_eq!(caller.await.unwrap(), "product 7");
    }
    assert_eq!(COLD_EXECUTIONS.load(SeqCst), 1);
    let stats = stats_for(&name("cold_product")).unwrap();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.writes, 1);
    // The others shared the leader's outcome, or (arriving after it) hit the stored entry.
    assert_eq!(stats.coalesced + stats.hits, CALLERS as u64 - 1);
    assert!(stats.coalesced > 0);
    assert_eq!(cache.in_flight(), 0, "the in-flight table is empty again");
    assert!(
        redis.keys().await.iter().all(|k| !k.ends_with(":lock")),
        "no lock is left behind"
    );
}

static DOWN_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static DOWN_ARRIVED: Gate = Gate::new();

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn while_redis_is_down(cache: &Cache, id: u64) -> u64 {
    DOWN_EXECUTIONS.fetch_add(1, SeqCst);
    DOWN_ARRIVED.until(CALLERS).await;
    id * 2
}

#[tokio::test]
async fn with_redis_down_a_thousand_concurrent_callers_run_the_function_once() {
    let cache = redis_cache_tests::unreachable_cache("down");
    let callers: Vec<_> = spawn_callers(CALLERS, &cache, |cache| async move {
        DOWN_ARRIVED.arrive();
        while_redis_is_down(&cache, 21).await
    });
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 42);
    }
    assert_eq!(
        DOWN_EXECUTIONS.load(SeqCst),
        1,
        "an outage must not multiply load"
    );
    let stats = stats_for(&name("while_redis_is_down")).unwrap();
    assert_eq!((stats.fallbacks, stats.coalesced), (1, CALLERS as u64 - 1));
    assert_eq!(cache.in_flight(), 0);
}

static CANCEL_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static CANCEL_STARTED: Gate = Gate::new();

/// The first execution never finishes (its caller is cancelled); later ones return their number.
#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn slow_first_time(cache: &Cache, id: u64) -> u64 {
    let run = CANCEL_EXECUTIONS.fetch_add(1, SeqCst) + 1;
    if run == 1 {
        CANCEL_STARTED.arrive();
        std::future::pending::<()>().await;
    }
    id + run
}

#[tokio::test]
async fn a_cancelled_leader_does_not_strand_its_followers() {
    let redis = start();
    let cache = redis.cache("cancel");
    let leader = tokio::spawn({
        let cache = cache.clone();
        async move { slow_first_time(&cache, 10).await }
    });
    CANCEL_STARTED.until(1).await;
    let followers: Vec<_> = spawn_callers(10, &cache, |cache| async move {
        slow_first_time(&cache, 10).await
    });
    // Let every follower join the leader's flight before the leader goes away.
    tokio::task::yield_now().await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for follower in followers {
        assert_eq!(follower.await.unwrap(), 12, "one follower took over");
    }
    assert_eq!(CANCEL_EXECUTIONS.load(SeqCst), 2);
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(redis.keys().await.len(), 1, "the entry, and no lock");
}

static PANIC_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static PANIC_STARTED: Gate = Gate::new();
static PANIC_RELEASE: Gate = Gate::new();

/// The first execution panics once released; later ones return their number.
#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn panics_first_time(cache: &Cache, id: u64) -> u64 {
    let run = PANIC_EXECUTIONS.fetch_add(1, SeqCst) + 1;
    if run == 1 {
        PANIC_STARTED.arrive();
        PANIC_RELEASE.until(1).await;
        panic!("the database driver panicked");
    }
    id + run
}

#[tokio::test]
async fn a_panicking_leader_does_not_strand_its_followers() {
    let redis = start();
    let cache = redis.cache("panic");
    let leader = tokio::spawn({
        let cache = cache.clone();
        async move { panics_first_time(&cache, 10).await }
    });
    PANIC_STARTED.until(1).await;
    let followers: Vec<_> = spawn_callers(10, &cache, |cache| async move {
        panics_first_time(&cache, 10).await
    });
    tokio::task::yield_now().await;
    PANIC_RELEASE.arrive();
    assert!(
        leader.await.unwrap_err().is_panic(),
        "the panic reaches its caller"
    );
    for follower in followers {
        assert_eq!(follower.await.unwrap(), 12);
    }
    assert_eq!(PANIC_EXECUTIONS.load(SeqCst), 2);
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(redis.keys().await.len(), 1, "the entry, and no lock");
}

static NONE_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static NONE_ARRIVED: Gate = Gate::new();
static ERR_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static ERR_ARRIVED: Gate = Gate::new();

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn missing_user(cache: &Cache, id: u64) -> Option<String> {
    NONE_EXECUTIONS.fetch_add(1, SeqCst);
    NONE_ARRIVED.until(20).await;
    (id == 0).then(|| "root".to_string())
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn failing_lookup(cache: &Cache, id: u64) -> Result<u64, String> {
    ERR_EXECUTIONS.fetch_add(1, SeqCst);
    ERR_ARRIVED.until(20).await;
    Err(format!("no row {id}"))
}

static ZERO_NONE_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static ZERO_NONE_ARRIVED: Gate = Gate::new();

/// `none_ttl` from configuration that comes out as zero: the `None` is not stored.
fn no_missing_ttl() -> Duration {
    Duration::ZERO
}

#[redis_cache(ttl = 60, none_ttl = no_missing_ttl(), skip(cache), cache = cache)]
async fn missing_user_zero_ttl(cache: &Cache, id: u64) -> Option<String> {
    ZERO_NONE_EXECUTIONS.fetch_add(1, SeqCst);
    ZERO_NONE_ARRIVED.until(20).await;
    (id == 0).then(|| "root".to_string())
}

#[tokio::test]
async fn a_none_that_cannot_be_stored_is_still_shared_with_the_followers() {
    let redis = start();
    let cache = redis.cache("zero-none");
    let callers: Vec<_> = spawn_callers(20, &cache, |cache| async move {
        ZERO_NONE_ARRIVED.arrive();
        missing_user_zero_ttl(&cache, 5).await
    });
    for caller in callers {
        assert_eq!(caller.await.unwrap(), None);
    }
    assert_eq!(ZERO_NONE_EXECUTIONS.load(SeqCst), 1, "one execution for 20 callers");
    assert!(redis.keys().await.is_empty(), "a zero none_ttl stores nothing");
}

#[tokio::test]
async fn followers_share_a_none_but_run_the_function_themselves_after_an_err() {
    let redis = start();
    let cache = redis.cache("shapes");
    let nones: Vec<_> = spawn_callers(20, &cache, |cache| async move {
        NONE_ARRIVED.arrive();
        missing_user(&cache, 5).await
    });
    for caller in nones {
        assert_eq!(caller.await.unwrap(), None);
    }
    assert_eq!(
        NONE_EXECUTIONS.load(SeqCst),
        1,
        "a None is shared, not stored"
    );
    assert!(redis.keys().await.is_empty());

    // An `E` need not be `Clone` or serializable, so it cannot be handed over: each follower of a
    // failed leader runs the function itself (errors are never cached either).
    let errs: Vec<_> = spawn_callers(20, &cache, |cache| async move {
        ERR_ARRIVED.arrive();
        failing_lookup(&cache, 5).await
    });
    for caller in errs {
        assert_eq!(caller.await.unwrap(), Err("no row 5".to_string()));
    }
    assert_eq!(ERR_EXECUTIONS.load(SeqCst), 20);
    assert_eq!(cache.in_flight(), 0);
}

static STALE_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static STALE_FAILS: AtomicBool = AtomicBool::new(false);
static REFRESH_STARTED: Gate = Gate::new();
static REFRESH_RELEASE: Gate = Gate::new();

/// Its second execution (the first refresh) waits to be released; returns its execution number,
/// or an error while `STALE_FAILS` is set.
#[redis_cache(ttl = 3, stale = 60, jitter = 0.0, early_refresh = false, skip(cache), cache = cache)]
async fn stale_price(cache: &Cache, id: u64) -> Result<u64, String> {
    let run = STALE_EXECUTIONS.fetch_add(1, SeqCst) + 1;
    if run == 2 {
        REFRESH_STARTED.arrive();
        REFRESH_RELEASE.until(1).await;
    }
    if STALE_FAILS.load(SeqCst) {
        return Err(format!("database down for {id}"));
    }
    Ok(run)
}

/// Waits (on the wall clock, which is what logical expiry is measured by) until the only entry
/// on `redis` is past its TTL, read from its envelope header (`fresh_until` at bytes 16..24).
async fn until_logically_expired(redis: &Deployment) {
    let keys = redis.keys().await;
    let [key] = keys.as_slice() else {
        panic!("expected one entry, found {keys:?}")
    };
    let mut conn = redis.connection().await;
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let fresh_until = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(fresh_until.saturating_sub(now) + 5)).await;
}

#[tokio::test]
async fn in_the_stale_window_callers_get_the_old_value_at_once_and_keep_it_if_refresh_fails() {
    let redis = start();
    let cache = redis.cache("stale");
    assert_eq!(stale_price(&cache, 1).await, Ok(1));
    until_logically_expired(&redis).await;

    // One caller refreshes (and is held inside the function)...
    let refresher = tokio::spawn({
        let cache = cache.clone();
        async move { stale_price(&cache, 1).await }
    });
    REFRESH_STARTED.until(1).await;
    // ...while another is served the stale value without waiting for it.
    assert_eq!(stale_price(&cache, 1).await, Ok(1));
    REFRESH_RELEASE.arrive();
    assert_eq!(
        refresher.await.unwrap(),
        Ok(2),
        "the refresher gets the new value"
    );
    assert_eq!(
        stale_price(&cache, 1).await,
        Ok(2),
        "and so does everyone after"
    );

    // Fail-safe: the refresh returns Err, the stale value keeps being served.
    until_logically_expired(&redis).await;
    STALE_FAILS.store(true, SeqCst);
    let failing = std::time::Instant::now();
    assert_eq!(
        stale_price(&cache, 1).await,
        Ok(2),
        "the error is not served"
    );
    assert_eq!(STALE_EXECUTIONS.load(SeqCst), 3);
    // Right after a failed refresh, callers get the stale value without running it again: the
    // refresher keeps the lock for 1 s (the runtime's backoff after a failed refresh). Only
    // checkable if this call came within that second, which a loaded machine may not allow.
    assert_eq!(stale_price(&cache, 1).await, Ok(2));
    if failing.elapsed() < Duration::from_secs(1) {
        assert_eq!(STALE_EXECUTIONS.load(SeqCst), 3);
    }

    let stats = stats_for(&name("stale_price")).unwrap();
    assert_eq!((stats.misses, stats.hits, stats.stale), (2, 1, 3));
}

static BACKGROUND_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static BACKGROUND_STARTED: Gate = Gate::new();
static BACKGROUND_RELEASE: Gate = Gate::new();

/// `refresh = "background"`: the cache is an owned handle (a borrowed parameter cannot go into
/// the spawned refresh). Its second execution (the refresh) waits to be released.
#[redis_cache(
    ttl = 3,
    stale = 60,
    jitter = 0.0,
    early_refresh = false,
    refresh = "background",
    skip(cache),
    cache = cache
)]
async fn background_price(cache: Cache, id: u64) -> Result<u64, String> {
    let run = BACKGROUND_EXECUTIONS.fetch_add(1, SeqCst) + 1;
    if run == 2 {
        BACKGROUND_STARTED.arrive();
        BACKGROUND_RELEASE.until(1).await;
    }
    Ok(run * 100 + id)
}

/// A call that must return without waiting for a refresh the test holds: a call that waited
/// would never return, so the bound only turns that hang into a failure.
async fn without_waiting<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call waited for the refresh")
}

#[tokio::test]
async fn a_background_refresh_serves_every_caller_the_stale_value_and_runs_once() {
    let redis = start();
    let cache = redis.cache("background");
    assert_eq!(background_price(cache.clone(), 1).await, Ok(101));
    until_logically_expired(&redis).await;

    // The caller that starts the refresh is served the stale value too: the refresh runs in a
    // spawned task, held inside the function until the test releases it.
    assert_eq!(
        without_waiting(background_price(cache.clone(), 1)).await,
        Ok(101)
    );
    BACKGROUND_STARTED.until(1).await;
    // While it runs, callers keep getting the stale value and start no second refresh.
    for _ in 0..3 {
        assert_eq!(
            without_waiting(background_price(cache.clone(), 1)).await,
            Ok(101)
        );
    }
    assert_eq!(BACKGROUND_EXECUTIONS.load(SeqCst), 2);
    BACKGROUND_RELEASE.arrive();
    // The refresh's store is background work: `flush` waits for it.
    cache.flush().await;
    assert_eq!(background_price(cache.clone(), 1).await, Ok(201));
    assert_eq!(BACKGROUND_EXECUTIONS.load(SeqCst), 2);

    let stats = stats_for(&name("background_price")).unwrap();
    assert_eq!(
        (stats.misses, stats.stale, stats.hits, stats.writes),
        (1, 4, 1, 2)
    );
}

/// A service handle as services write them: cheap to clone, shared state behind an `Arc`.
#[derive(Clone)]
struct Catalog {
    cache: Cache,
    executions: std::sync::Arc<AtomicU64>,
    failing: std::sync::Arc<AtomicBool>,
}

impl Catalog {
    fn describe(&self, name: &str) -> String {
        format!("{name} #{}", self.executions.load(SeqCst))
    }

    /// The body uses `self` as a reference (a method call, a field, and passed on as `&Self`),
    /// which the background refresh must keep working on its clone.
    #[redis_cache(
        ttl = 3,
        stale = 60,
        jitter = 0.0,
        early_refresh = false,
        refresh = "background",
        cache = self.cache
    )]
    async fn title(&self, name: String) -> Result<String, String> {
        self.executions.fetch_add(1, SeqCst);
        if self.failing.load(SeqCst) {
            return Err(format!("{name}: database down"));
        }
        Ok(describe_with(self, &name))
    }
}

/// Waits (on Redis's clock, by the lock's own expiry) until the only lock on `redis` is gone.
async fn until_lock_lapsed(redis: &Deployment) {
    let keys = redis.keys().await;
    let locks: Vec<_> = keys.iter().filter(|k| k.ends_with(":lock")).collect();
    let [lock] = locks.as_slice() else {
        panic!("expected one lock, found {keys:?}")
    };
    let mut conn = redis.connection().await;
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(lock)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((0..=1_000).contains(&ttl_ms), "the failed refresh's backoff: {ttl_ms} ms");
    tokio::time::sleep(Duration::from_millis(ttl_ms as u64 + 5)).await;
}

fn describe_with(catalog: &Catalog, name: &str) -> String {
    catalog.describe(name)
}

#[tokio::test]
async fn a_method_refreshes_in_the_background_on_a_clone_of_self_and_a_failure_keeps_the_stale_value()
 {
    let redis = start();
    let catalog = Catalog {
        cache: redis.cache("background_method"),
        executions: Default::default(),
        failing: Default::default(),
    };
    let title = || catalog.title("lamp".to_string());
    assert_eq!(title().await.as_deref(), Ok("lamp #1"));

    // The refresh fails: the stale value is still served, and stays in Redis.
    until_logically_expired(&redis).await;
    catalog.failing.store(true, SeqCst);
    assert_eq!(title().await.as_deref(), Ok("lamp #1"));
    catalog.cache.flush().await;
    assert_eq!(catalog.executions.load(SeqCst), 2, "the refresh ran");
    assert_eq!(title().await.as_deref(), Ok("lamp #1"));

    // The failed refresh keeps the key's lock for a second (so that a failing database is not
    // asked once per call); once that lapses and the database is back, a refresh replaces it.
    until_lock_lapsed(&redis).await;
    catalog.failing.store(false, SeqCst);
    assert_eq!(title().await.as_deref(), Ok("lamp #1"));
    catalog.cache.flush().await;
    let refreshed = title().await;
    let executions = catalog.executions.load(SeqCst);
    assert_eq!(refreshed, Ok(format!("lamp #{executions}")));
}

static HOT_EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static HOT_COMPUTED: Gate = Gate::new();
static HOT_STOP: AtomicBool = AtomicBool::new(false);

/// A three-second TTL and a 250 ms computation: XFetch refreshes it ahead of each expiry, by
/// a margin of about the computation time times the log of the calls in that window. The stale
/// window is there for a stall of a loaded machine longer than that margin: the entry is then
/// served stale while one caller refreshes it, instead of being missed by every caller.
#[redis_cache(ttl = 3, stale = 30, jitter = 0.0, skip(cache), cache = cache)]
async fn hot_rate(cache: &Cache, pair: u64) -> u64 {
    let run = HOT_EXECUTIONS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(250)).await;
    HOT_COMPUTED.arrive();
    pair + run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_load_early_refresh_renews_a_hot_key_before_it_expires() {
    let redis = start();
    let cache = redis.cache("xfetch");
    hot_rate(&cache, 1).await;
    let load: Vec<_> = spawn_callers(16, &cache, |cache| async move {
        let mut calls = 0u64;
        while !HOT_STOP.load(SeqCst) {
            hot_rate(&cache, 1).await;
            calls += 1;
        }
        calls
    });
    // The first computation and three refreshes: three expiries survived.
    tokio::time::timeout(Duration::from_secs(60), HOT_COMPUTED.until(4))
        .await
        .expect("the hot key is refreshed under load");
    HOT_STOP.store(true, SeqCst);
    let mut calls = 1;
    for task in load {
        calls += task.await.unwrap();
    }
    let stats = stats_for(&name("hot_rate")).unwrap();
    // Each execution after the first is a refresh: early (XFetch, while the entry was fresh), or
    // in the stale window (after a stall of the machine; the refreshing call counts as a miss).
    // None is a cold miss: no caller ever found the key empty.
    let stale_refreshes = stats.misses - 1;
    assert_eq!(
        HOT_EXECUTIONS.load(SeqCst),
        1 + stats.early_refreshes + stale_refreshes,
        "one execution per refresh ({stats:?})"
    );
    assert!(
        stats.early_refreshes >= 1,
        "refreshed ahead of expiry under load ({stats:?})"
    );
    assert_eq!(stats.fallbacks + stats.lock_waits, 0);
    assert_eq!(
        stats.hits + stats.coalesced + stats.misses + stats.stale,
        calls
    );
}

#[redis_cache(ttl = 100, skip(cache), cache = cache)]
async fn jittered(cache: &Cache, id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 100, jitter = 0.0, skip(cache), cache = cache)]
async fn exact(cache: &Cache, id: u64) -> u64 {
    id
}

/// For each key matching `pattern`: the lifetime its envelope was given (`fresh until` minus
/// `computed at`, bytes 16..24 and 8..16: the jittered TTL, exactly) and its remaining Redis
/// TTL, in milliseconds.
async fn lifetimes(redis: &Deployment, pattern: &str) -> Vec<(i64, i64)> {
    let mut conn = redis.connection().await;
    let keys = redis.keys_matching(pattern).await;
    let mut out = Vec::new();
    for key in keys {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let at = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(bytes[range].try_into().unwrap()) as i64
        };
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.push((at(16..24) - at(8..16), pttl));
    }
    out
}

#[tokio::test]
async fn ttl_jitter_spreads_expiries_of_keys_written_together() {
    let redis = start();
    let cache = redis.cache("jitter");
    let started = std::time::Instant::now();
    for id in 0..200 {
        jittered(&cache, id).await;
        exact(&cache, id).await;
    }
    let spread = lifetimes(&redis, &format!("jitter:{}::jittered:*", module_path!())).await;
    let exact = lifetimes(&redis, &format!("jitter:{}::exact:*", module_path!())).await;
    // No key was written longer ago than this (more than a second on a loaded machine).
    let elapsed = started.elapsed().as_millis() as i64 + 1;
    assert_eq!(spread.len(), 200);
    let given: Vec<i64> = spread.iter().map(|&(lifetime, _)| lifetime).collect();
    let (min, max) = (*given.iter().min().unwrap(), *given.iter().max().unwrap());
    // Default jitter: up to 10% shorter, so within [90 s, 100 s] in whole milliseconds (a draw
    // just under 10% truncates to 90,000 ms), and actually spread.
    assert!(min >= 90_000 && max <= 100_000, "{min}..{max}");
    assert!(
        max - min > 5_000,
        "200 keys spread over {} ms only",
        max - min
    );
    assert!(exact.iter().all(|&(lifetime, _)| lifetime == 100_000));
    // Redis was given that lifetime: what remains of it is what has passed since the write.
    for (lifetime, pttl) in spread.iter().chain(&exact) {
        assert!(
            *pttl <= *lifetime && *pttl > lifetime - elapsed,
            "TTL {pttl} ms for a lifetime of {lifetime} ms"
        );
    }
}

#[redis_cache(ttl = 60, lock = false, skip(cache), cache = cache)]
async fn unlocked(cache: &Cache, id: u64) -> u64 {
    id * 7
}

/// `lock = false`: a miss never waits for the process holding the key's lock; it computes at once
/// and leaves storing to the holder.
#[tokio::test]
async fn without_the_lock_option_a_busy_key_is_computed_at_once_and_not_stored() {
    let redis = start();
    let cache = redis.cache("unlocked");
    // Without the lock option the lock is taken alongside the function, and the value stored
    // before the call returns: nothing to wait for.
    assert_eq!(unlocked(&cache, 1).await, 7);
    let key = redis.keys().await.pop().expect("stored: the lock was free");
    unlocked_invalidate(&cache, 1).await.unwrap();

    // Another process is computing the key.
    let lock = redis_cache_tests::lock_of(&key);
    redis
        .command::<()>(&["SET", &lock, "their-token", "PX", "60000"])
        .await
        .unwrap();
    assert_eq!(unlocked(&cache, 1).await, 7);
    assert_eq!(redis.keys().await, vec![lock.clone()], "left to the holder");
    let stats = stats_for(&name("unlocked")).unwrap();
    assert_eq!(
        (stats.lock_waits, stats.lock_timeouts, stats.misses),
        (0, 0, 2)
    );

    redis.command::<()>(&["DEL", &lock]).await.unwrap();
    assert_eq!(unlocked(&cache, 1).await, 7);
    assert_eq!(redis.keys().await, vec![key]);
}
