//! How long clearing one function takes on a large keyspace:
//! `cargo run --release --example clear`.
//!
//! Starts its own `redis-server` on a free loopback port, fills it with 1,000,000 keys, of which
//! 100,000 belong to one cached function (the rest: another function of the same cache, another
//! cache's keys, and unrelated data), then times `Cache::clear_function` and checks that exactly
//! that function's keys are gone. Clearing is `SCAN` + `UNLINK` in batches, two passes over the
//! whole keyspace, so its time grows with the database, not with the function.

use std::time::Instant;

use redis_cache_examples::cli::Cli;
use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache};

const TOTAL: u64 = 1_000_000;
const OURS: u64 = 100_000;

#[redis_cache(ttl = 3600, skip(cache), cache = cache)]
async fn price(cache: &Cache, id: u64) -> u64 {
    id * 3
}

const USAGE: &str = "\
How long clearing one function takes in a keyspace of 1,000,000 keys.

usage: cargo run --release --example clear

Starts its own redis-server (on PATH) on a free loopback port; reads no environment variable.
";

#[tokio::main]
async fn main() {
    Cli::parse("clear", USAGE, &[]);
    let redis = RedisServer::start();
    let cache = redis.cache("shop");
    // One real entry gives the key's shape; the others differ only in the argument hash.
    price(&cache, 0).await;
    let real = redis.keys().await.pop().expect("one entry");
    let stem = &real[..real.rfind('{').expect("hash tag")];
    redis.command::<()>(&["DEL", &real]).await.expect("DEL");
    let mut conn = redis.connection().await;
    let filled = Instant::now();
    for batch in 0..TOTAL / 10_000 {
        let mut pipe = redis::pipe();
        for i in 0..10_000 {
            let n = batch * 10_000 + i;
            let key = if n < OURS {
                format!("{stem}{{{n:032x}}}")
            } else {
                match n % 3 {
                    0 => format!("shop:clear::stock:0badc0de:{{{n:032x}}}"),
                    1 => format!("other-cache:clear::price:0badc0de:{{{n:032x}}}"),
                    _ => format!("session:{n}"),
                }
            };
            pipe.cmd("SET").arg(key).arg(n).arg("EX").arg(3600).ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("fill");
    }
    let dbsize = || async {
        let mut conn = redis.connection().await;
        redis::cmd("DBSIZE")
            .query_async::<u64>(&mut conn)
            .await
            .expect("DBSIZE")
    };
    println!("filled {} keys in {:.1?}", dbsize().await, filled.elapsed());

    let started = Instant::now();
    let removed = cache.clear_function("clear::price").await.expect("clear");
    let took = started.elapsed();
    let left = dbsize().await;
    println!(
        "clear_function(\"clear::price\"): removed {removed} keys of {TOTAL} in {took:.2?}; {left} keys left"
    );
    assert_eq!((removed, left), (OURS, TOTAL - OURS));
}
