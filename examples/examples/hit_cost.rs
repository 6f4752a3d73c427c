//! A quick measurement of what a cache hit costs compared with the floor: a raw redis-rs `GET`
//! plus a bincode decode of the same value on a multiplexed connection.
//!
//! `cargo run --release --example hit_cost` (needs `redis-server` on PATH; it starts its own on a
//! free loopback port). Both paths run in the same process against the same server, interleaved
//! in rounds, and the median per-call time of each is reported with their ratio.

use std::time::{Duration, Instant};

use cache_runtime::{Cache, redis_cache};
use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::Product;

#[redis_cache(ttl = 600, skip(cache), cache = cache)]
async fn product(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

const ROUNDS: usize = 10;
const CALLS_PER_ROUND: usize = 2_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let redis = RedisServer::start();
    let cache = redis.cache("bench");
    let mut conn = redis.connection().await;

    // Warm: our entry exists (one miss), and a raw entry holds the same value, bincode-encoded.
    let expected = product(&cache, 1).await;
    let raw_key = "raw:product:1";
    let raw_bytes = bincode::serde::encode_to_vec(&expected, bincode::config::standard()).unwrap();
    let () = redis::cmd("SET")
        .arg(raw_key)
        .arg(&raw_bytes)
        .query_async(&mut conn)
        .await
        .unwrap();
    println!("value: {} bytes encoded", raw_bytes.len());

    let mut raw = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..CALLS_PER_ROUND {
            let bytes: Vec<u8> = redis::cmd("GET")
                .arg(raw_key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let (value, _): (Product, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(value.id, 1);
        }
        raw.push(t.elapsed() / CALLS_PER_ROUND as u32);

        let t = Instant::now();
        for _ in 0..CALLS_PER_ROUND {
            assert_eq!(product(&cache, 1).await.id, 1);
        }
        ours.push(t.elapsed() / CALLS_PER_ROUND as u32);
    }
    let stats = cache_runtime::stats_for("hit_cost::product").unwrap();
    assert_eq!(stats.executions, 1, "every measured call was a hit");

    let (raw, ours) = (median(raw), median(ours));
    println!(
        "raw GET + decode : {raw:>9.2?} per call (median of {ROUNDS} rounds x {CALLS_PER_ROUND})"
    );
    println!("#[redis_cache] hit: {ours:>9.2?} per call");
    println!(
        "ratio hit / raw  : {:.3}",
        ours.as_secs_f64() / raw.as_secs_f64()
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
