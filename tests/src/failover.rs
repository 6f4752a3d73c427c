//! A failover under load: tasks call a cached function in a loop while the test kills a
//! primary; a checker finds out when the cache is used again. Shared by the cluster and
//! Sentinel tests and the `topologies` example, which prints the figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis_cached::{Cache, CacheBuilder, redis_cache};

/// Keys the load cycles through.
pub const LOAD_KEYS: u64 = 1000;
/// Fresh keys the checker stores and reads back each round: with three primaries, 16 random
/// keys miss a given one with probability (2/3)^16 < 0.2%.
pub const CHECK_KEYS: u64 = 16;

/// What callers saw during one failover.
#[derive(Debug, Clone)]
pub struct FailoverReport {
    /// Calls made by the load tasks, from start to end of the run.
    pub calls: u64,
    /// Calls that returned a wrong value (callers never see a cache error; a wrong value is
    /// the only error they could see).
    pub errors: u64,
    /// The slowest call after the kill.
    pub slowest: Duration,
    /// From the kill until fresh keys were stored and read back from Redis again.
    pub recovered_after: Duration,
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "calls {}, errors {}, slowest call {:.1?}, cache used again {:.2?} after the kill",
            self.calls, self.errors, self.slowest, self.recovered_after
        )
    }
}

/// The command and connect deadlines of a failover test: short, as in production (the defaults
/// are 100 and 250 ms), so calls routed to the killed node give up quickly. A slow reply only
/// turns into a fallback, which returns the right value: the failover assertions count wrong
/// values, not fallbacks.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_millis(500);

/// A cache from `builder` with [`FAILOVER_TIMEOUT`] deadlines and its own prefix.
pub fn cache(builder: CacheBuilder, prefix: &str) -> Cache {
    builder
        .command_timeout(FAILOVER_TIMEOUT)
        .connect_timeout(FAILOVER_TIMEOUT)
        .prefix(prefix)
        .build()
        .expect("valid failover cache")
}

/// The loaded function: doubles its argument.
#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "failover::doubled")]
pub async fn doubled(cache: &Cache, id: u64) -> u64 {
    id * 2
}

static CHECKED_RUNS: AtomicU64 = AtomicU64::new(0);

/// The checker's function: counts its runs, so a read-back that ran the body is a miss.
#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "failover::checked")]
pub async fn checked(cache: &Cache, id: u64) -> u64 {
    CHECKED_RUNS.fetch_add(1, Ordering::SeqCst);
    id + 1
}

/// `tasks` tasks making `calls` calls each of [`doubled`] on keys of their own (misses and
/// stores), awaited.
pub async fn spread_load(cache: &Cache, tasks: u64, calls: u64) {
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for id in task * calls..(task + 1) * calls {
                    assert_eq!(doubled(&cache, id).await, id * 2);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a load task panicked");
    }
}

/// Whether the cache stores and serves fresh keys: each is called, its store awaited, then
/// called again without its body running.
pub async fn cache_works(cache: &Cache) -> bool {
    let first = fastrand::u64(1 << 40..);
    for id in first..first + CHECK_KEYS {
        if checked(cache, id).await != id + 1 {
            return false;
        }
    }
    cache.flush().await;
    let before = CHECKED_RUNS.load(Ordering::SeqCst);
    for id in first..first + CHECK_KEYS {
        if checked(cache, id).await != id + 1 {
            return false;
        }
    }
    CHECKED_RUNS.load(Ordering::SeqCst) == before
}

/// Runs `tasks` tasks calling [`doubled`] over [`LOAD_KEYS`] keys; once they are warm, runs
/// `kill`, then polls until the cache works again (or `deadline` after
/// the kill), and stops the load.
pub async fn under_load(
    cache: &Cache,
    tasks: usize,
    kill: impl FnOnce(),
    deadline: Duration,
) -> FailoverReport {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let slowest_after_kill = Arc::new(AtomicU64::new(0));
    let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let mut handles = Vec::new();
    for task in 0..tasks as u64 {
        let (cache, stop, calls, errors, slowest, killed_at) = (
            cache.clone(),
            stop.clone(),
            calls.clone(),
            errors.clone(),
            slowest_after_kill.clone(),
            killed_at.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut id = task * 7919 % LOAD_KEYS;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let value = doubled(&cache, id).await;
                let took = started.elapsed();
                calls.fetch_add(1, Ordering::Relaxed);
                if value != id * 2 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                if killed_at.get().is_some_and(|at| started >= *at) {
                    slowest.fetch_max(took.as_nanos() as u64, Ordering::Relaxed);
                }
                id = (id + 1) % LOAD_KEYS;
                // A request handler returns to the runtime between requests. Without this, a
                // task whose calls all complete at once (the breaker open) would keep the
                // worker from the others, and their calls would look slow.
                tokio::task::yield_now().await;
            }
        }));
    }
    // Under load a slow reply can make one check fall back: retry until the cache is in use.
    let warming = Instant::now();
    while !cache_works(cache).await {
        assert!(
            warming.elapsed() < deadline,
            "the cache was not in use within {deadline:?}, before the kill"
        );
    }
    let killed = Instant::now();
    killed_at.set(killed).expect("one kill");
    kill();
    let recovered_after = loop {
        if cache_works(cache).await {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < deadline,
            "the cache was not used again within {deadline:?} of the kill; breaker {:?}, the \
             checker's counters {:?}",
            cache.breaker(),
            redis_cached::stats_for("failover::checked"),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await.expect("a load task panicked");
    }
    FailoverReport {
        calls: calls.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        slowest: Duration::from_nanos(slowest_after_kill.load(Ordering::Relaxed)),
        recovered_after,
    }
}

/// Entries the per-shard load spreads over a cluster's primaries.
pub const SHARD_IDS: usize = 192;
/// The per-shard load counts hits in windows of this length.
pub const WINDOW: Duration = Duration::from_millis(100);

static SHARDED_RUNS: [AtomicU64; SHARD_IDS] = [const { AtomicU64::new(0) }; SHARD_IDS];

/// The per-shard load's function: counts its runs per id, so a call that did not run it was
/// served from Redis.
#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "failover::sharded")]
pub async fn sharded(cache: &Cache, id: u64) -> u64 {
    SHARDED_RUNS[id as usize].fetch_add(1, Ordering::SeqCst);
    id * 3
}

/// What the calls for each shard saw while one shard failed over.
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// Per shard, the calls served from Redis in each [`WINDOW`] after the kill.
    pub hits: Vec<Vec<u64>>,
    /// The killed shard.
    pub victim: usize,
    /// Calls made, and those that returned a wrong value.
    pub calls: u64,
    pub errors: u64,
    /// From the kill until a call for the killed shard's keys was served from Redis again.
    pub recovered_after: Duration,
}

impl ShardReport {
    /// The windows after the first (the kill's own) until the killed shard served again.
    pub fn windows(&self) -> std::ops::Range<usize> {
        1..self.hits[self.victim].len()
    }

    /// Per shard, the fewest hits in one of [`ShardReport::windows`].
    pub fn fewest(&self) -> Vec<u64> {
        self.hits
            .iter()
            .map(|per_window| {
                per_window[self.windows()]
                    .iter()
                    .copied()
                    .min()
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl std::fmt::Display for ShardReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "calls {}, errors {}, killed shard {} served again {:.2?} after the kill; hits per \
             {WINDOW:?} window after the first, fewest per shard {:?}",
            self.calls,
            self.errors,
            self.victim,
            self.recovered_after,
            self.fewest()
        )?;
        for (shard, per_window) in self.hits.iter().enumerate() {
            write!(f, "\n  shard {shard}: {per_window:?}")?;
        }
        Ok(())
    }
}

/// `tasks` tasks call [`sharded`], each on ids of one shard (`shard_of[id]`, shards numbered
/// from 0), counting the calls served from Redis per shard and [`WINDOW`]; after `kill` (of
/// shard `victim`), the load runs until a call for the victim's keys is served from Redis again
/// (or `deadline`).
pub async fn per_shard(
    cache: &Cache,
    shard_of: &[usize],
    victim: usize,
    tasks: usize,
    kill: impl FnOnce(),
    deadline: Duration,
) -> ShardReport {
    let shards = shard_of.iter().max().map_or(0, |max| max + 1);
    let max_windows = (deadline.as_millis() / WINDOW.as_millis()) as usize + 2;
    let hits: Arc<Vec<Vec<AtomicU64>>> = Arc::new(
        (0..shards)
            .map(|_| (0..max_windows).map(|_| AtomicU64::new(0)).collect())
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    // Each id belongs to one task, so a run of the function during a call is that call's.
    let mut handles = Vec::new();
    for task in 0..tasks {
        let shard = task % shards;
        let (rank, of) = (task / shards, tasks.div_ceil(shards));
        let ids: Vec<u64> = (0..shard_of.len())
            .filter(|&id| shard_of[id] == shard)
            .enumerate()
            .filter(|(nth, _)| nth % of == rank)
            .map(|(_, id)| id as u64)
            .collect();
        let (cache, stop, calls, errors, hits, killed_at) = (
            cache.clone(),
            stop.clone(),
            calls.clone(),
            errors.clone(),
            hits.clone(),
            killed_at.clone(),
        );
        handles.push(tokio::spawn(async move {
            for &id in ids.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let runs = SHARDED_RUNS[id as usize].load(Ordering::SeqCst);
                let value = sharded(&cache, id).await;
                calls.fetch_add(1, Ordering::Relaxed);
                if value != id * 3 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let served = SHARDED_RUNS[id as usize].load(Ordering::SeqCst) == runs;
                if let Some(killed) = killed_at.get()
                    && served
                {
                    let window = (killed.elapsed().as_millis() / WINDOW.as_millis()) as usize;
                    if let Some(count) = hits[shard].get(window) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Warm: the tasks have made calls on every shard before the kill.
    let warm = Instant::now();
    while calls.load(Ordering::Relaxed) < 10 * tasks as u64 {
        assert!(warm.elapsed() < deadline, "the load did not start");
        tokio::task::yield_now().await;
    }
    let killed = Instant::now();
    killed_at.set(killed).expect("one kill");
    kill();
    // The killed shard is served again once its replica is promoted: a cluster event no
    // client hears of, so poll the counts, a window at a time.
    let last = loop {
        let now = (killed.elapsed().as_millis() / WINDOW.as_millis()) as usize;
        if let Some(window) = (1..now).find(|&w| hits[victim][w].load(Ordering::Relaxed) > 0) {
            break window;
        }
        assert!(
            killed.elapsed() < deadline,
            "the killed shard was not served again within {deadline:?}; breakers {:?}",
            cache.breakers()
        );
        tokio::time::sleep(WINDOW / 2).await;
    };
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await.expect("a load task panicked");
    }
    ShardReport {
        hits: hits
            .iter()
            .map(|per_window| {
                per_window[..=last]
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect()
            })
            .collect(),
        victim,
        calls: calls.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        recovered_after: WINDOW * last as u32,
    }
}
