//! Does compressing cached values pay? For values from 1 KB to 1 MB, the bytes stored in Redis
//! and the time of a hit, with compression off and on, in the same run against the same server.
//!
//! `cargo run --release --example compression` (needs `redis-server` on PATH; it starts its own on
//! a free loopback port). Loopback is the most favourable network for not compressing: across
//! hosts every byte saved also saves transfer time.

use std::time::{Duration, Instant};

use redis_cache_examples::cli::Cli;
use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::Product;
use redis_cached::{Cache, redis_cache};

/// A page of `n` products: realistic, repetitive text (about 200 bytes each).
#[redis_cache(ttl = 600, skip(cache), cache = cache)]
async fn page(cache: &Cache, n: u64) -> Vec<Product> {
    (0..n).map(Product::sample).collect()
}

const ROUNDS: usize = 9;

async fn hit_time(cache: &Cache, n: u64, calls: u32) -> Duration {
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(page(cache, n).await);
        }
        rounds.push(started.elapsed() / calls);
    }
    rounds.sort();
    rounds[ROUNDS / 2]
}

async fn stored_bytes(redis: &RedisServer, prefix: &str) -> u64 {
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut total = 0;
    for key in keys {
        let len: u64 = redis::cmd("STRLEN")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        total += len;
    }
    total
}

const USAGE: &str = "\
Bytes stored and hit time for values from 1 KB to 1 MB, compression off and on.

usage: cargo run --release --example compression

Starts its own redis-server (on PATH) on a free loopback port; reads no environment variable.
";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    Cli::parse("compression", USAGE, &[]);
    let redis = RedisServer::start();
    println!("| products | stored, plain | stored, LZ4 | hit, plain | hit, LZ4 | LZ4 / plain |");
    println!("|---|---|---|---|---|---|");
    for n in [5, 20, 80, 320, 1280, 5000] {
        let plain = Cache::builder()
            .url(redis.url())
            .prefix(format!("plain{n}"))
            .compress_above(usize::MAX)
            .max_value_bytes(usize::MAX)
            .build()
            .unwrap();
        let packed = Cache::builder()
            .url(redis.url())
            .prefix(format!("lz4{n}"))
            .compress_above(0)
            .max_value_bytes(usize::MAX)
            .build()
            .unwrap();
        page(&plain, n).await;
        page(&packed, n).await;
        let plain_bytes = stored_bytes(&redis, &format!("plain{n}")).await;
        let packed_bytes = stored_bytes(&redis, &format!("lz4{n}")).await;
        let calls = (200_000 / n as u32).clamp(20, 2000);
        let (mut t_plain, mut t_packed) = (Vec::new(), Vec::new());
        // Interleaved, so drift affects both alike.
        for _ in 0..3 {
            t_plain.push(hit_time(&plain, n, calls).await);
            t_packed.push(hit_time(&packed, n, calls).await);
        }
        t_plain.sort();
        t_packed.sort();
        let (t_plain, t_packed) = (t_plain[1], t_packed[1]);
        println!(
            "| {n} | {plain_bytes} B | {packed_bytes} B ({:.0}%) | {:.1} µs | {:.1} µs | {:.2} |",
            100.0 * packed_bytes as f64 / plain_bytes as f64,
            t_plain.as_secs_f64() * 1e6,
            t_packed.as_secs_f64() * 1e6,
            t_packed.as_secs_f64() / t_plain.as_secs_f64()
        );
    }
}
