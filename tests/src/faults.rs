//! The fault-injection scenarios: what production does to a `redis-server`, done to a real one
//! while 64 tasks call a cached function, with what the callers saw.
//!
//! Each scenario starts its own server(s), warms the cache, starts the load, injects the fault,
//! holds it, repairs it, and then calls until the cache is used again (an entry is stored).
//! `tests/faults.rs` asserts on the [`FaultReport`]s; `examples/faults.rs` prints them as a table.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis_cached::{Cache, FunctionStats, redis_cache, stats_for};
use tokio::task::JoinHandle;

use crate::{RedisServer, TEST_TIMEOUT, free_port};

/// Concurrent callers during every fault.
pub const TASKS: usize = 64;
/// Distinct keys they call.
const KEYS: u64 = 200;
/// How long a fault lasts. Longer than any deadline, so a call that waited for Redis instead of
/// its deadline shows as a slow call.
pub const HOLD: Duration = Duration::from_secs(3);
/// The command timeout of the scenarios' caches.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(100);
/// How long the scenarios' caches wait for another caller's lock. A lock whose holder timed out
/// on the lock script's reply is held without anyone knowing; this bounds what it costs.
pub const LOCK_WAIT: Duration = Duration::from_millis(300);
/// Into a fault, when the callers' progress starts to be counted (the breaker has opened).
pub const SETTLE: Duration = Duration::from_millis(500);
/// How long the cache may take to be used again after a repair before the scenario gives up.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

/// The expected value: callers check every answer against it.
pub fn expected(id: u64) -> u64 {
    id * 3 + 1
}

macro_rules! scenario_functions {
    ($($name:ident),* $(,)?) => {
        $(
            #[redis_cache(ttl = 60, skip(cache), cache = cache)]
            pub async fn $name(cache: &Cache, id: u64) -> u64 {
                expected(id)
            }
        )*
    };
}

// One function per scenario, so each has its own counters when they run in parallel.
scenario_functions!(
    never_started,
    killed,
    sigstop,
    client_pause,
    debug_sleep,
    oom,
    evicting,
    garbage,
    requirepass,
    read_only,
);

/// What the callers saw during one fault.
#[derive(Debug, Clone)]
pub struct FaultReport {
    pub fault: &'static str,
    pub calls: u64,
    /// Calls that did not return the function's value (an error would show here).
    pub wrong: u64,
    pub slowest: Duration,
    /// Calls completed from [`SETTLE`] into the fault until its repair: a cache that waited for
    /// Redis would complete none.
    pub calls_during_fault: u64,
    /// From the repair to the first value stored again.
    pub recovered_after: Option<Duration>,
    /// The function's counters at the end.
    pub stats: FunctionStats,
    /// The cache's circuit breaker openings.
    pub breaker_opened: u64,
}

/// The cache of the scenarios where Redis stops answering (gone, frozen, blocked): short
/// deadlines, a short lock wait and a breaker that probes every 100 ms.
pub fn fault_cache(url: &str, prefix: &str) -> Cache {
    Cache::builder()
        .url(url)
        .prefix(prefix)
        .connect_timeout(Duration::from_millis(200))
        .command_timeout(COMMAND_TIMEOUT)
        .lock_wait(LOCK_WAIT)
        .circuit_breaker(5, Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .expect("valid fault cache")
}

/// The cache of the scenarios where Redis answers, wrongly (out of memory, evicting, garbage,
/// a password, read-only): deadlines no healthy reply misses on a loaded machine, so that what
/// is counted is the replies, never a timeout.
pub fn answering_fault_cache(url: &str, prefix: &str) -> Cache {
    Cache::builder()
        .url(url)
        .prefix(prefix)
        .connect_timeout(TEST_TIMEOUT)
        .command_timeout(TEST_TIMEOUT)
        .circuit_breaker(5, Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .expect("valid fault cache")
}

type Call<F> = fn(Cache, u64) -> F;

/// [`TASKS`] tasks calling a function until stopped, each checking every value and timing every
/// call.
struct Load {
    stop: Arc<AtomicBool>,
    /// Calls completed so far, by all tasks.
    completed: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<(u64, u64, Duration)>>,
}

impl Load {
    fn start<F>(cache: &Cache, call: Call<F>) -> Load
    where
        F: Future<Output = u64> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let tasks = (0..TASKS as u64)
            .map(|task| {
                let (cache, stop, completed) = (cache.clone(), stop.clone(), completed.clone());
                tokio::spawn(async move {
                    let (mut calls, mut wrong, mut slowest) = (0, 0, Duration::ZERO);
                    let mut id = task;
                    while !stop.load(SeqCst) {
                        id = (id + 7) % KEYS;
                        let started = Instant::now();
                        let value = call(cache.clone(), id).await;
                        slowest = slowest.max(started.elapsed());
                        calls += 1;
                        completed.fetch_add(1, SeqCst);
                        wrong += u64::from(value != expected(id));
                        // A service's pace, not a spin: the fault, not the CPU, sets the latency.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    (calls, wrong, slowest)
                })
            })
            .collect();
        Load {
            stop,
            completed,
            tasks,
        }
    }

    /// Calls completed from [`SETTLE`] into a fault that has just begun until the end of
    /// [`HOLD`].
    async fn progress_during_fault(&self) -> u64 {
        tokio::time::sleep(SETTLE).await;
        let before = self.completed.load(SeqCst);
        tokio::time::sleep(HOLD - SETTLE).await;
        self.completed.load(SeqCst) - before
    }

    async fn finish(self) -> (u64, u64, Duration) {
        self.stop.store(true, SeqCst);
        let mut total = (0, 0, Duration::ZERO);
        for task in self.tasks {
            let (calls, wrong, slowest) = task.await.expect("load task");
            total = (total.0 + calls, total.1 + wrong, total.2.max(slowest));
        }
        total
    }
}

/// Number of keys on `redis` (on a fresh connection).
async fn dbsize(redis: &RedisServer) -> u64 {
    redis.command(&["DBSIZE"]).await.expect("DBSIZE")
}

/// Calls with fresh arguments until one call stores an entry on `redis`; how long that took.
async fn until_stored<F>(redis: &RedisServer, cache: &Cache, call: Call<F>) -> Option<Duration>
where
    F: Future<Output = u64>,
{
    let started = Instant::now();
    let mut id = 1_000_000;
    while started.elapsed() < RECOVERY_LIMIT {
        id += 1;
        let before = dbsize(redis).await;
        assert_eq!(call(cache.clone(), id).await, expected(id));
        if dbsize(redis).await > before {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Runs the load around `fault` and `repair`, then waits for the cache to store again.
async fn run<F, Fault, Repair>(
    name: &'static str,
    function: &str,
    redis: &RedisServer,
    cache: &Cache,
    call: Call<F>,
    fault: Fault,
    repair: Repair,
) -> FaultReport
where
    F: Future<Output = u64> + Send + 'static,
    Fault: Future<Output = ()>,
    Repair: Future<Output = ()>,
{
    let load = Load::start(cache, call);
    fault.await;
    let during = load.progress_during_fault().await;
    repair.await;
    report(name, function, redis, cache, call, load, during).await
}

/// After the repair: waits for the cache to store again, stops the load, and reports.
async fn report<F>(
    name: &'static str,
    function: &str,
    redis: &RedisServer,
    cache: &Cache,
    call: Call<F>,
    load: Load,
    calls_during_fault: u64,
) -> FaultReport
where
    F: Future<Output = u64>,
{
    let recovered_after = until_stored(redis, cache, call).await;
    let (calls, wrong, slowest) = load.finish().await;
    FaultReport {
        fault: name,
        calls,
        wrong,
        slowest,
        calls_during_fault,
        recovered_after,
        stats: stats_for(function).expect("called"),
        breaker_opened: cache.breaker().opened,
    }
}

/// Stores every key once, so the fault hits a warm cache.
async fn warm<F: Future<Output = u64>>(cache: &Cache, call: Call<F>) {
    for id in 0..KEYS {
        call(cache.clone(), id).await;
    }
}

pub async fn redis_never_started() -> FaultReport {
    let port = free_port();
    let cache = fault_cache(&format!("redis://127.0.0.1:{port}"), "never");
    let call: Call<_> = |c, id| async move { never_started(&c, id).await };
    let load = Load::start(&cache, call);
    let during = load.progress_during_fault().await;
    // Redis appears where the application was told it would be; no restart of the application.
    let redis = RedisServer::start_at(port, &[]);
    report(
        "Redis never started (then started)",
        concat!(module_path!(), "::never_started"),
        &redis,
        &cache,
        call,
        load,
        during,
    )
    .await
}

pub async fn redis_killed_and_restarted() -> FaultReport {
    let mut redis = RedisServer::start();
    let cache = fault_cache(&redis.url(), "killed");
    let call: Call<_> = |c, id| async move { killed(&c, id).await };
    warm(&cache, call).await;
    let load = Load::start(&cache, call);
    redis.kill();
    let during = load.progress_during_fault().await;
    redis.restart();
    report(
        "killed (SIGKILL), restarted on the same port",
        concat!(module_path!(), "::killed"),
        &redis,
        &cache,
        call,
        load,
        during,
    )
    .await
}

pub async fn redis_paused_with_sigstop() -> FaultReport {
    let redis = RedisServer::start();
    let cache = fault_cache(&redis.url(), "sigstop");
    let call: Call<_> = |c, id| async move { sigstop(&c, id).await };
    warm(&cache, call).await;
    run(
        "paused (SIGSTOP, then SIGCONT)",
        concat!(module_path!(), "::sigstop"),
        &redis,
        &cache,
        call,
        async { redis.pause() },
        async { redis.resume() },
    )
    .await
}

pub async fn redis_client_pause() -> FaultReport {
    let redis = RedisServer::start();
    let cache = fault_cache(&redis.url(), "cpause");
    let call: Call<_> = |c, id| async move { client_pause(&c, id).await };
    warm(&cache, call).await;
    let millis = HOLD.as_millis().to_string();
    run(
        "CLIENT PAUSE (ALL)",
        concat!(module_path!(), "::client_pause"),
        &redis,
        &cache,
        call,
        async {
            let () = redis
                .command(&["CLIENT", "PAUSE", &millis, "ALL"])
                .await
                .expect("CLIENT PAUSE");
        },
        // The pause ends by itself; HOLD has passed.
        async {},
    )
    .await
}

pub async fn redis_debug_sleep() -> FaultReport {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let cache = fault_cache(&redis.url(), "dsleep");
    let call: Call<_> = |c, id| async move { debug_sleep(&c, id).await };
    warm(&cache, call).await;
    let url = redis.url();
    let secs = HOLD.as_secs().to_string();
    run(
        "DEBUG SLEEP (server blocked)",
        concat!(module_path!(), "::debug_sleep"),
        &redis,
        &cache,
        call,
        async move {
            // The sleeping command blocks its own connection: send it from a task.
            tokio::spawn(async move {
                let client = redis::Client::open(url).expect("url");
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect");
                let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                    .arg("SLEEP")
                    .arg(secs)
                    .query_async(&mut conn)
                    .await;
            });
        },
        async {},
    )
    .await
}

pub async fn redis_out_of_memory() -> FaultReport {
    let redis =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    let cache = answering_fault_cache(&redis.url(), "oom");
    let call: Call<_> = |c, id| async move { oom(&c, id).await };
    warm(&cache, call).await;
    run(
        "maxmemory reached, noeviction (writes fail)",
        concat!(module_path!(), "::oom"),
        &redis,
        &cache,
        call,
        async {
            // The memory is full: the limit drops below what Redis already uses, so every write
            // is refused for the whole fault. (Filling it with other data was not enough under
            // load: freed client buffers let small writes through again.)
            let () = redis
                .command(&["CONFIG", "SET", "maxmemory", "1"])
                .await
                .expect("CONFIG SET");
            let refused: redis::RedisResult<()> = redis.command(&["SET", "probe", "x"]).await;
            assert_eq!(refused.unwrap_err().code(), Some("OOM"));
            // The warm keys are hits; new arguments are misses whose writes are refused.
            for id in 500_000..500_050 {
                assert_eq!(call(cache.clone(), id).await, expected(id));
            }
        },
        async {
            let () = redis
                .command(&["CONFIG", "SET", "maxmemory", "4mb"])
                .await
                .expect("free memory");
        },
    )
    .await
}

pub async fn redis_evicting() -> FaultReport {
    let redis =
        RedisServer::start_with(&["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"]);
    let cache = answering_fault_cache(&redis.url(), "lru");
    let call: Call<_> = |c, id| async move { evicting(&c, id).await };
    warm(&cache, call).await;
    let filler = "x".repeat(64 << 10);
    run(
        "maxmemory reached, allkeys-lru (entries evicted)",
        concat!(module_path!(), "::evicting"),
        &redis,
        &cache,
        call,
        async {
            // Other data pushes the cache's entries out.
            for i in 0..64 {
                let () = redis
                    .command(&["SET", &format!("filler:{i}"), &filler])
                    .await
                    .expect("fill");
            }
        },
        async {},
    )
    .await
}

pub async fn redis_holds_garbage() -> FaultReport {
    let redis = RedisServer::start();
    let cache = answering_fault_cache(&redis.url(), "garbage");
    let call: Call<_> = |c, id| async move { garbage(&c, id).await };
    warm(&cache, call).await;
    let keys = redis.keys().await;
    run(
        "garbage, truncated, other types, old versions",
        concat!(module_path!(), "::garbage"),
        &redis,
        &cache,
        call,
        async {
            let mut conn = redis.connection().await;
            for (i, key) in keys.iter().enumerate() {
                let mut pipe = redis::pipe();
                pipe.del(key).ignore();
                match i % 5 {
                    0 => pipe.set(key, "not an envelope").ignore(),
                    // A truncated envelope: a valid header start, then nothing.
                    1 => pipe.set(key, &b"RC\x01\x01\0\0\0\0"[..]).ignore(),
                    2 => pipe.hset(key, "field", "value").ignore(),
                    3 => pipe.rpush(key, "item").ignore(),
                    // Envelope version 9, codec 7: written by a future or another build.
                    _ => pipe.set(key, &[b'R', b'C', 9, 7, 0, 0, 0, 0][..]).ignore(),
                };
                let () = pipe.query_async(&mut conn).await.expect("tamper");
            }
        },
        async {},
    )
    .await
}

pub async fn redis_requires_a_password() -> FaultReport {
    let redis = RedisServer::start();
    let cache = answering_fault_cache(&redis.url(), "auth");
    let call: Call<_> = |c, id| async move { requirepass(&c, id).await };
    warm(&cache, call).await;
    let with_password = format!("redis://:s3cret@127.0.0.1:{}", redis.port());
    let admin = |url: String, args: &'static [&'static str]| async move {
        let client = redis::Client::open(url).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let _: redis::Value = redis::cmd(args[0])
            .arg(&args[1..])
            .query_async(&mut conn)
            .await
            .expect("admin command");
    };
    run(
        "CONFIG SET requirepass while running",
        concat!(module_path!(), "::requirepass"),
        &redis,
        &cache,
        call,
        async {
            admin(redis.url(), &["CONFIG", "SET", "requirepass", "s3cret"]).await;
            // Existing connections stay authenticated: drop them, as a failover or restart would.
            let kill = &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"];
            admin(with_password.clone(), kill).await;
        },
        admin(with_password.clone(), &["CONFIG", "SET", "requirepass", ""]),
    )
    .await
}

pub async fn redis_read_only_replica() -> FaultReport {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let cache = answering_fault_cache(&replica.url(), "replica");
    let call: Call<_> = |c, id| async move { read_only(&c, id).await };
    run(
        "pointed at a read-only replica (writes fail)",
        concat!(module_path!(), "::read_only"),
        &replica,
        &cache,
        call,
        async {},
        async {
            // Promoted, as a failover would.
            let () = replica
                .command(&["REPLICAOF", "NO", "ONE"])
                .await
                .expect("promote");
        },
    )
    .await
}
