//! `--tags`: what `invalidate_tag` costs in a large database, and what tag structures weigh
//! before and after their entries expire.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache};

/// Filler keys, so that anything scanning the keyspace would show.
const DATABASE_KEYS: u64 = 1_000_000;
/// Entries that expire, for the memory figure.
const EXPIRING: u64 = 100_000;

/// `size` entries share the tag `group:{size}`.
#[redis_cache(ttl = 3600, tags("group:{size}"), skip(cache), cache = cache)]
async fn grouped(cache: &Cache, size: u64, item: u64) -> u64 {
    size + item
}

/// Short-lived entries: 100 shard tags and one tag over all of them.
#[redis_cache(ttl = 3, jitter = 0.0, tags("shard:{shard}", "expiring"), skip(cache), cache = cache)]
async fn expiring(cache: &Cache, shard: u64, item: u64) -> u64 {
    shard + item
}

pub(crate) async fn run(core: &str) {
    let redis = RedisServer::start_with(&["--server_cpulist", core]);
    let cache = Cache::builder()
        .url(redis.url())
        .prefix("bench-tags")
        .build()
        .expect("cache");
    let mut conn = redis.connection().await;
    for batch in 0..DATABASE_KEYS / 10_000 {
        let mut pipe = redis::pipe();
        for i in 0..10_000 {
            let key = format!("filler:{}", batch * 10_000 + i);
            pipe.cmd("SET").arg(key).arg(i).ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("fill");
    }
    let sizes = [1, 100, 10_000];
    for size in sizes {
        fill(&cache, size, move |cache, item| async move {
            grouped(&cache, size, item).await;
        })
        .await;
    }
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    println!("invalidate_tag in a database of {keys} keys (one run each):");
    println!("  {:>8} {:>8} {:>12}", "entries", "removed", "time");
    for size in sizes {
        let started = Instant::now();
        let removed = cache
            .invalidate_tag(&format!("group:{size}"))
            .await
            .expect("invalidate_tag");
        let took = started.elapsed();
        println!("  {size:>8} {removed:>8} {took:>12.2?}");
    }

    fill(&cache, EXPIRING, |cache, item| async move {
        expiring(&cache, item % 100, item).await;
    })
    .await;
    let (tags, members, bytes) = tag_memory(&mut conn).await;
    let used = used_memory(&mut conn).await;
    println!(
        "\n{EXPIRING} entries with a 3 s TTL, tagged `shard:{{0..100}}` and `expiring`:\n  \
         before they expire: {tags} tag sets, {members} members, {bytes} bytes (MEMORY USAGE ... \
         SAMPLES 0), used_memory {used}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (tags, _, _) = tag_memory(&mut conn).await;
        if tags == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (tags, members, bytes) = tag_memory(&mut conn).await;
    let used = used_memory(&mut conn).await;
    println!(
        "  after they expire:  {tags} tag sets, {members} members, {bytes} bytes, used_memory {used}"
    );
}

/// Calls `call(cache, item)` for `count` items from 32 tasks.
async fn fill<F, Fut>(cache: &Cache, count: u64, call: F)
where
    F: Fn(Cache, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let (cache, call) = (cache.clone(), call.clone());
            tokio::spawn(async move {
                for item in (task..count).step_by(32) {
                    call(cache.clone(), item).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("fill");
    }
}

/// How many tag sets there are, their members, and their `MEMORY USAGE` in total (the marks of
/// invalidated tags, kept an hour, are not counted).
async fn tag_memory(conn: &mut MultiplexedConnection) -> (u64, u64, u64) {
    let mut cursor = 0u64;
    let (mut count, mut members, mut bytes) = (0, 0, 0);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("bench-tags:#tag:*")
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await
            .expect("SCAN");
        for key in keys.into_iter().filter(|key| !key.ends_with(":at")) {
            // SAMPLES 0: every element counted, not an estimate from five of them.
            let usage: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(conn)
                .await
                .expect("MEMORY USAGE");
            let cardinality: u64 = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(conn)
                .await
                .expect("ZCARD");
            count += 1;
            members += cardinality;
            bytes += usage.unwrap_or(0);
        }
        cursor = next;
        if cursor == 0 {
            return (count, members, bytes);
        }
    }
}

async fn used_memory(conn: &mut MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory_human:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}
