//! Quickstart: `cargo run --example quickstart`.
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). If it answers, the first
//! round of calls misses (the slow body runs), the next ones hit, and the stored keys are listed;
//! `exchange_rate` has the local tier (`local = 100`), so after one read from Redis it answers
//! from this process in well under a microsecond. If Redis does not answer, the functions still
//! answer: they run every time (fallback), except `exchange_rate`, which the local tier
//! memoizes in the process alone.

use std::time::{Duration, Instant};

use redis_cache_examples::cli::Cli;
use redis_cached::{CacheBuilder, redis_cache};
use serde::{Deserialize, Serialize};

/// Keys of this example live under their own prefix, so it never touches anything else.
const PREFIX: &str = "quickstart-example";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u32,
    name: String,
    email: String,
}

/// Stands in for a database: every query takes a while.
struct Db;

impl Db {
    async fn query_user(&self, id: u32) -> Result<User, String> {
        tokio::time::sleep(Duration::from_millis(150)).await;
        match id {
            0 => Err("no user 0".to_string()),
            _ => Ok(User {
                id,
                name: format!("user-{id}"),
                email: format!("user-{id}@example.com"),
            }),
        }
    }
}

/// `db` is a handle, not part of the question: `skip` leaves it out of the key.
/// `Err` is never cached, `Ok` is cached for 60 seconds.
#[redis_cache(ttl = 60, skip(db))]
async fn user(db: &Db, id: u32) -> Result<User, String> {
    db.query_user(id).await
}

/// `local = 100`: up to 100 decoded copies in this process, removed as soon as Redis's entry
/// changes (in any process); the value must be `Clone`.
#[redis_cache(ttl = 60, local = 100)]
async fn exchange_rate(from: String, to: String) -> f64 {
    tokio::time::sleep(Duration::from_millis(120)).await;
    if from == to { 1.0 } else { 1.08 }
}

/// Any `Serialize` argument is hashed into the key.
#[redis_cache(ttl = 60)]
async fn word_count(text: String) -> usize {
    tokio::time::sleep(Duration::from_millis(100)).await;
    text.split_whitespace().count()
}

const USAGE: &str = "\
Quickstart: a few cached functions, called twice, against your Redis.

usage: cargo run --example quickstart

environment:
  REDIS_URL            the Redis to use (default redis://127.0.0.1:6379); without one the
                       functions still answer, uncached
  REDIS_CACHE_PREFIX   and the other REDIS_* variables of CacheBuilder::from_env
  REDIS_CACHE_QUIET    set to silence the line printed when Redis cannot be reached
";

#[tokio::main]
async fn main() {
    Cli::parse("quickstart", USAGE, &[]);
    let builder = match CacheBuilder::from_env() {
        Ok(builder) => builder.prefix(PREFIX),
        Err(err) => {
            eprintln!("invalid configuration: {err}");
            std::process::exit(2);
        }
    };
    let cache = builder.build().unwrap_or_else(|err| {
        eprintln!("invalid configuration: {err}");
        std::process::exit(2);
    });
    redis_cached::set_default(cache.clone()).expect("no default installed yet");

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| redis_cached::DEFAULT_URL.into());
    let redis = reachable(&url).await;
    match &redis {
        Some(_) => {
            println!(
                "Redis is reachable at {url}: the first round misses, the next ones hit \
                 (exchange_rate: from this process from the third round on).\n"
            )
        }
        None => println!(
            "Redis is NOT reachable at {url} (start one with `redis-server`, or set REDIS_URL).\n\
             Fallback mode: every call runs the function and still answers, except \
             exchange_rate, which the local tier memoizes in this process.\n"
        ),
    }
    if let Some(conn) = &redis {
        clear_example_keys(conn.clone()).await;
    }

    let db = Db;
    for round in 1..=3 {
        println!("round {round}");
        for id in [1, 2, 0] {
            let t = Instant::now();
            let result = user(&db, id).await;
            println!(
                "  user({id})            -> {:<58} {:>7.2?}",
                short(&result),
                t.elapsed()
            );
        }
        let t = Instant::now();
        let rate = exchange_rate("EUR".into(), "USD".into()).await;
        println!(
            "  exchange_rate(EUR, USD) -> {rate:<52} {:>7.2?}",
            t.elapsed()
        );
        let t = Instant::now();
        let n = word_count("the quick brown fox".to_string()).await;
        println!(
            "  word_count(\"the quick brown fox\") -> {n:<37} {:>7.2?}",
            t.elapsed()
        );
    }

    if let Some(conn) = redis {
        println!(
            "\nkeys stored under `{PREFIX}:` (prefix:function:fingerprint:args), with their TTL:"
        );
        for (key, ttl) in example_keys(conn).await {
            println!("  {key}  (expires in {ttl} s)");
        }
    }

    println!("\nper-function counters:");
    for s in redis_cached::stats() {
        println!(
            "  {:<28} local hits {:>2}  hits {:>2}  misses {:>2}  executions {:>2}  fallbacks {:>2}",
            s.function, s.local_hits, s.hits, s.misses, s.executions, s.fallbacks
        );
    }
}

fn short(result: &Result<User, String>) -> String {
    match result {
        Ok(u) => format!("Ok({} <{}>)", u.name, u.email),
        Err(e) => format!("Err({e:?}) (errors are never cached)"),
    }
}

/// A connection if Redis answers `PING` within a second.
async fn reachable(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    let connect = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()?;
        Some(conn)
    };
    tokio::time::timeout(Duration::from_secs(1), connect)
        .await
        .ok()
        .flatten()
}

async fn example_keys(mut conn: redis::aio::MultiplexedConnection) -> Vec<(String, i64)> {
    // SCAN, not KEYS: this may be a shared production Redis, where KEYS blocks the server.
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let Ok((next, batch)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}:*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
        else {
            break;
        };
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap_or(-2);
        out.push((key, ttl));
    }
    out
}

/// So every run starts cold and shows misses first.
async fn clear_example_keys(mut conn: redis::aio::MultiplexedConnection) {
    for (key, _) in example_keys(conn.clone()).await {
        let _: Result<(), _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
    }
}
