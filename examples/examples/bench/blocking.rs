//! `--blocking`: a blocking (non-`async`) cached function called from plain threads, no runtime
//! anywhere in the program's own code, next to what it replaces: a hand-written blocking
//! redis-rs `GET` + bincode decode, each thread on its own connection (as a connection pool
//! would give it).
//!
//! - `raw GET`: the hand-written read of a pre-stored value;
//! - `hit`: a `#[redis_cache]` blocking function whose keys are all in Redis;
//! - `local hit`: the same with `local = 10_000`, every key copied in the process.
//!
//! At 1 and 16 threads. In each round the three cases run one after another, so a slow moment of
//! the machine does not fall on one case only; every figure is the median of the rounds, and a
//! ratio is the median of the rounds' ratios.

use std::time::{Duration, Instant};

use redis::Commands;
use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::Product;
use redis_cached::{Cache, redis_cache};

use crate::measure::median;

/// Keys read by every case.
const KEYS: u64 = 1000;
/// The concurrencies measured.
const THREADS: [usize; 2] = [1, 16];

#[redis_cache(ttl = 3600, skip(cache), cache = cache, name = "bench::blocking_hit")]
fn hit(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

#[redis_cache(ttl = 3600, local = 10_000, skip(cache), cache = cache, name = "bench::blocking_local")]
fn local_hit(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

fn raw_key(id: u64) -> String {
    format!("raw:blocking:{id}")
}

pub fn run(last_core: &str, time: Duration, rounds: usize) {
    let redis = RedisServer::start_with(&["--server_cpulist", last_core]);
    let cache = Cache::builder()
        .url(redis.url())
        .prefix("bench")
        .build()
        .expect("cache");
    let client = redis.client();
    let mut setup = client.get_connection().expect("a connection");
    for id in 0..KEYS {
        let bytes = bincode::serde::encode_to_vec(Product::sample(id), bincode::config::standard())
            .expect("encodes");
        let () = setup.set(raw_key(id), bytes).expect("SET");
        hit(&cache, id);
        local_hit(&cache, id);
    }
    redis_cached::block_on(cache.flush());
    // Copies are made by reads after the stores.
    for id in 0..KEYS {
        local_hit(&cache, id);
    }

    println!(
        "blocking calls from plain threads, {KEYS} keys, {rounds} rounds of {:?} per case",
        time
    );
    println!(
        "| threads | raw GET + decode | hit | hit / raw | local hit | local hit / raw |\n\
         |---:|---:|---:|---:|---:|---:|"
    );
    for threads in THREADS {
        let (mut raw, mut hits, mut locals) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            raw.push(per_sec(threads, time, || {
                let mut conn = client.get_connection().expect("a connection");
                move |id| {
                    let bytes: Vec<u8> = conn.get(raw_key(id)).expect("GET");
                    let (value, _): (Product, usize) =
                        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                            .expect("decodes");
                    assert_eq!(value.id, id);
                }
            }));
            hits.push(per_sec(threads, time, || {
                let cache = cache.clone();
                move |id| assert_eq!(hit(&cache, id).id, id)
            }));
            locals.push(per_sec(threads, time, || {
                let cache = cache.clone();
                move |id| assert_eq!(local_hit(&cache, id).id, id)
            }));
        }
        let ratios = |case: &[f64]| {
            let r: Vec<f64> = case.iter().zip(&raw).map(|(c, r)| c / r).collect();
            median(&r)
        };
        println!(
            "| {threads} | {:.0}/s | {:.0}/s | {:.2} | {:.0}/s | {:.1} |",
            median(&raw),
            median(&hits),
            ratios(&hits),
            median(&locals),
            ratios(&locals),
        );
    }
    let stats = redis_cached::stats_for("bench::blocking_hit").expect("called");
    assert_eq!(
        stats.fallbacks, 0,
        "every hit was answered by Redis: {stats:?}"
    );
}

/// Calls per second of `threads` plain threads, each with the call `make` gives it, for `time`.
fn per_sec<M, C>(threads: usize, time: Duration, make: M) -> f64
where
    M: Fn() -> C,
    C: FnMut(u64) + Send,
{
    let calls: Vec<C> = (0..threads).map(|_| make()).collect();
    let started = Instant::now();
    let deadline = started + time;
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = calls
            .into_iter()
            .enumerate()
            .map(|(thread, mut call)| {
                scope.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(thread as u64 + 1);
                    let mut made = 0u64;
                    while Instant::now() < deadline {
                        call(rng.u64(0..KEYS));
                        made += 1;
                    }
                    made
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker"))
            .sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}
