//! `--codecs`: each codec on the bench program's value (a ~200-byte product record) and on a
//! large one (a page of products, about 10 KB in bincode):
//!
//! - `encode` / `decode`: nanoseconds to seal the value into its envelope (with the default
//!   `compress_above`, as a miss stores it) and to open it into the type again (as a hit does);
//! - `payload` / `stored`: the codec's bytes, and the whole entry as stored (header included,
//!   LZ4-compressed when that saves an eighth);
//! - `hit/s`: hits of a cached function at 64 tasks, through a cache of that codec.
//!
//! Every figure is the median of the rounds; in each round the codecs run one after another, so
//! a slow moment of the machine does not fall on one codec only.

use std::hint::black_box;
use std::time::{Duration, Instant};

use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::Product;
use redis_cached::__private::bench::{open_in, seal_in};
use redis_cached::{Cache, Codec, DEFAULT_COMPRESS_ABOVE, redis_cache};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::measure::{self, median};

/// Keys of each function read by the hit case.
const KEYS: u64 = 500;
/// Concurrent tasks of the hit case.
const TASKS: usize = 64;
/// Bytes the large value has in bincode, about.
const LARGE_BYTES: usize = 10_000;

#[redis_cache(ttl = 3600, skip(cache), cache = cache, name = "bench::codec_small")]
async fn small(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

#[redis_cache(ttl = 3600, skip(cache), cache = cache, name = "bench::codec_large")]
async fn large(cache: &Cache, id: u64) -> Vec<Product> {
    page(id)
}

/// Products enough for [`LARGE_BYTES`] in bincode.
fn page(id: u64) -> Vec<Product> {
    let envelope = seal_in(Codec::Bincode, &Product::sample(id), usize::MAX).expect("encodes");
    let one = envelope.len() - 32;
    (0..LARGE_BYTES.div_ceil(one) as u64)
        .map(|i| Product::sample(id * 1000 + i))
        .collect()
}

/// One codec's figures for one value, over the rounds.
#[derive(Default)]
struct Figures {
    encode_ns: Vec<f64>,
    decode_ns: Vec<f64>,
    hits_per_sec: Vec<f64>,
    payload: usize,
    stored: usize,
}

/// Nanoseconds per call of `op`, over about `time`.
fn per_call(time: Duration, mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < time {
        for _ in 0..64 {
            op();
        }
        calls += 64;
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn codec_round<T: Serialize + DeserializeOwned>(
    codec: Codec,
    value: &T,
    time: Duration,
    figures: &mut Figures,
) {
    let sealed = seal_in(codec, value, DEFAULT_COMPRESS_ABOVE).expect("encodes");
    figures.stored = sealed.len();
    figures.payload = seal_in(codec, value, usize::MAX).expect("encodes").len() - 32;
    figures.encode_ns.push(per_call(time, || {
        black_box(seal_in(codec, black_box(value), DEFAULT_COMPRESS_ABOVE));
    }));
    figures.decode_ns.push(per_call(time, || {
        black_box(open_in::<T>(codec, black_box(&sealed)).expect("decodes"));
    }));
}

pub async fn run(last_core: &str, time: Duration, rounds: usize) {
    let redis = RedisServer::start_with(&["--server_cpulist", last_core]);
    let caches: Vec<(Codec, Cache)> = Codec::ENABLED
        .iter()
        .map(|&codec| {
            let cache = Cache::builder()
                .url(redis.url())
                .prefix(format!("bench-{codec}"))
                .codec(codec)
                .build()
                .expect("cache");
            (codec, cache)
        })
        .collect();
    for (_, cache) in &caches {
        for id in 0..KEYS {
            small(cache, id).await;
            large(cache, id).await;
        }
    }
    let small_value = Product::sample(7);
    let large_value = page(7);
    let mut figures: Vec<[Figures; 2]> = caches.iter().map(|_| Default::default()).collect();
    for _ in 0..rounds {
        for ((codec, cache), [small_figures, large_figures]) in caches.iter().zip(&mut figures) {
            codec_round(*codec, &small_value, time / 4, small_figures);
            codec_round(*codec, &large_value, time / 4, large_figures);
            let c = cache.clone();
            let sample = measure::run(TASKS, time, move |rng| {
                let (cache, id) = (c.clone(), rng.u64(0..KEYS));
                async move { assert_eq!(small(&cache, id).await.id, id) }
            })
            .await;
            small_figures.hits_per_sec.push(sample.ops_per_sec());
            let c = cache.clone();
            let sample = measure::run(TASKS, time, move |rng| {
                let (cache, id) = (c.clone(), rng.u64(0..KEYS));
                async move { assert!(!large(&cache, id).await.is_empty()) }
            })
            .await;
            large_figures.hits_per_sec.push(sample.ops_per_sec());
        }
    }
    for (codec, _) in &caches {
        for function in ["bench::codec_small", "bench::codec_large"] {
            let stats = redis_cached::stats_for(function).expect("called");
            assert_eq!(stats.invalid, 0, "{codec}: {function}");
        }
    }
    println!(
        "codecs: medians of {rounds} rounds, {time:?} per hit case ({TASKS} tasks, {KEYS} keys), \
         encode/decode over {:?} each",
        time / 4
    );
    for (index, name) in [(0, "product record"), (1, "page of products")] {
        println!("\n{name}\n");
        println!(
            "| codec | encode ns | decode ns | payload bytes | stored bytes | hit/s at {TASKS} tasks | hit/s vs bincode |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let baseline = caches
            .iter()
            .zip(&figures)
            .find(|((codec, _), _)| *codec == Codec::DEFAULT)
            .map(|(_, f)| median(&f[index].hits_per_sec))
            .unwrap_or(1.0);
        for ((codec, _), f) in caches.iter().zip(&figures) {
            let f = &f[index];
            let hits = median(&f.hits_per_sec);
            println!(
                "| {codec} | {:.0} | {:.0} | {} | {} | {hits:.0} | {:.2} |",
                median(&f.encode_ns),
                median(&f.decode_ns),
                f.payload,
                f.stored,
                hits / baseline,
            );
        }
    }
}
